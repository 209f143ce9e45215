import Foundation
import StratumCore
import StratumTesting
import Testing

/// `stratum reconcile` on the fake-fan fixture, as real processes: the drift report and exit
/// codes, fix versus report, two reconcilers at once, and the watch loop ended by SIGTERM.
@Suite("stratum reconcile (CLI)", .serialized)
struct CLIReconcileTests {
    /// The report file's JSON.
    static func report(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// The cloud holds `expected` resources, exactly those state records (some were made again).
    static func matchesState(_ work: FixtureWorkspace, expected: Int) async throws -> Bool {
        let inventory = try work.cloud.inventory()
        let recorded = try await work.stateAddresses()
        return inventory.count == expected && Set(inventory.values.map(\.address.description)) == recorded
    }

    static func items(_ report: [String: Any]) -> [String: [String: Any]] {
        let drift = report["drift"] as? [[String: Any]] ?? []
        return Dictionary(drift.map { ($0["address"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test(.timeLimit(.minutes(2)))
    func reportThenFixThenInShape() async throws {
        let work = try FixtureWorkspace("reconcile")
        let config = try work.config(count: 3)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        let file = work.directory.appendingPathComponent("drift.json").path

        // Nothing changed: in shape, exit 0.
        let clean = try await work.cli.run(["reconcile", "--report", file] + base)
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(clean.stdout.contains("In shape: fake-fan (dev), 4 resource(s)."), "\(clean.stdout)")
        #expect(try Self.report(file)["outcome"] as? String == "in-shape")

        // A child deleted and the root's value changed outside Stratum.
        try work.cloud.preempt("fake_thing.child[1]")
        try work.cloud.tamper("fake_thing.root", set: "value", to: "edited")
        let before = try work.cloud.inventory().count

        // Report only: exit 2, both found with what differs, nothing changed.
        let reported = try await work.cli.run(["reconcile", "--policy", "report", "--report", file] + base)
        #expect(reported.status == 2, "\(reported.stderr)")
        #expect(reported.stdout.contains("2 drifted in fake-fan (dev):"), "\(reported.stdout)")
        var json = try Self.report(file)
        #expect(json["outcome"] as? String == "reported" && json["exit_code"] as? Int == 2 && json["policy"] as? String == "report")
        var items = Self.items(json)
        #expect(Set(items.keys) == ["fake_thing.child[1]", "fake_thing.root"], "\(items.keys)")
        #expect(items["fake_thing.child[1]"]?["kind"] as? String == "missing" && items["fake_thing.child[1]"]?["action"] as? String == "create")
        #expect(items["fake_thing.root"]?["kind"] as? String == "changed" && items["fake_thing.root"]?["action"] as? String == "update")
        let attributes = items["fake_thing.root"]?["attributes"] as? [[String: Any]] ?? []
        #expect(attributes.count == 1 && attributes.first?["name"] as? String == "value")
        #expect(attributes.first?["before"] as? String == "v1" && attributes.first?["after"] as? String == "edited")
        #expect(items.values.allSatisfy { $0["outcome"] as? String == "reported" })
        #expect(json["duration_seconds"] as? Double ?? -1 >= 0 && json["resources"] as? Int == 4)
        #expect(try work.cloud.inventory().count == before)

        // Fix: exit 2, both healed; the next pass finds the stack in shape.
        let fixed = try await work.cli.run(["reconcile", "--report", file] + base)
        #expect(fixed.status == 2, "\(fixed.stderr)")
        json = try Self.report(file)
        items = Self.items(json)
        #expect(json["outcome"] as? String == "fixed")
        #expect(items.values.allSatisfy { $0["outcome"] as? String == "fixed" }, "\(items)")
        let inventory = try work.cloud.inventory().values
        #expect(inventory.count == 4)
        #expect(inventory.first { $0.address.description == "fake_thing.root" }?.attributes["value"] == "v1")
        #expect(try await work.cli.run(["reconcile"] + base).status == 0)
        await #expect(try Self.matchesState(work, expected: 4))
    }

    @Test(.timeLimit(.minutes(2)))
    func aFixThatFailsExitsOneAndSaysWhy() async throws {
        let work = try FixtureWorkspace("reconcile-fail")
        let config = try work.config(count: 2)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        try work.cloud.preempt("fake_thing.child[0]")
        let file = work.directory.appendingPathComponent("drift.json").path
        let failed = try await work.cli.run(["reconcile", "--report", file] + base, extraEnvironment: ["STRATUM_FAKE_FAIL_ON": "fake_thing.child[0]"])
        #expect(failed.status == 1, "\(failed.stderr)")
        let json = try Self.report(file)
        #expect(json["outcome"] as? String == "failed" && json["exit_code"] as? Int == 1)
        let item = Self.items(json)["fake_thing.child[0]"]
        #expect(item?["outcome"] as? String == "failed")
        #expect((item?["error"] as? String)?.contains("refuses to create") == true, "\(String(describing: item))")

        // A stack that cannot be evaluated is an error too, with a report that says so.
        let broken = try await work.cli.run(["reconcile", "--report", file, "--stack", "fake-fan", "--config", "/nonexistent.yaml"])
        #expect(broken.status == 1)
        #expect(try Self.report(file)["error"] as? String != nil)
    }

    /// A reconcile holds the lock (its creates are slow); a second one skips (exit 0) or waits
    /// for it and then finds the stack in shape. Nothing is made twice.
    @Test(.timeLimit(.minutes(3)))
    func twoReconcilersAtOnce() async throws {
        let work = try FixtureWorkspace("reconcile-lock")
        let config = try work.config(count: 4)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        for index in 0..<4 { try work.cloud.preempt("fake_thing.child[\(index)]") }
        let (first, out, err) = try work.cli.start(["reconcile", "--parallelism", "1"] + base, extraEnvironment: ["STRATUM_FAKE_LATENCY_MS": "700"])
        defer { if first.isRunning { first.terminate() } }
        // The apply made five; the first reconcile's first create is the sixth.
        #expect(await eventually(seconds: 60) { work.cloud.events().filter { $0.hasPrefix("create") }.count >= 6 }, "the first reconcile never started fixing")

        let skipped = try await work.cli.run(["reconcile", "--if-locked", "skip"] + base)
        #expect(skipped.status == 0, "\(skipped.stderr)")
        #expect(skipped.stderr.contains("Skipped: the state of fake-fan/dev is locked by"), "\(skipped.stderr)")

        let waited = try await work.cli.run(["reconcile", "--if-locked", "wait", "--lock-timeout", "120"] + base)
        await exited(first)
        let firstOut = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let firstErr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(first.terminationStatus == 2, "\(firstOut)\(firstErr)")
        #expect(waited.status == 0, "\(waited.stdout)\(waited.stderr)")
        #expect(waited.stderr.contains("Waiting for the state lock"), "\(waited.stderr)")
        #expect(waited.stdout.contains("In shape"), "\(waited.stdout)")
        // Each child was made once more, not twice.
        #expect(work.cloud.createCounts().filter { $0.key.hasPrefix("fake_thing.child") }.values.allSatisfy { $0 == 2 })
        await #expect(try Self.matchesState(work, expected: 5))
    }

    @Test(.timeLimit(.minutes(2)))
    func theWatchLoopHealsAndStopsOnSIGTERM() async throws {
        let work = try FixtureWorkspace("reconcile-watch")
        let config = try work.config(count: 2)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        let file = work.directory.appendingPathComponent("drift.json").path
        let (watcher, out, err) = try work.cli.start(["reconcile", "--watch", "--interval", "1s", "--report", file] + base)
        defer { if watcher.isRunning { watcher.terminate() } }
        #expect(await eventually(seconds: 30) { (try? Self.report(file))?["outcome"] as? String == "in-shape" }, "no first pass")

        // A child taken away between passes is made again by the next one.
        try work.cloud.preempt("fake_thing.child[1]")
        #expect(await eventually(seconds: 30) { work.cloud.createCounts()["fake_thing.child[1]"] == 2 }, "the watch loop did not heal the child")
        #expect(await eventually(seconds: 30) { (try? Self.report(file))?["outcome"] as? String == "in-shape" }, "no pass after the fix")

        kill(watcher.processIdentifier, SIGTERM)
        await exited(watcher)
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(watcher.terminationStatus == 0, "\(stdout)\(stderr)")
        #expect(stderr.contains("Stopped by SIGTERM after"), "\(stderr)")
        await #expect(try work.lockEvents().last == "released")
        await #expect(try Self.matchesState(work, expected: 3))
    }

    @Test func badOptionsAreRefused() async throws {
        let work = try FixtureWorkspace("reconcile-options")
        let interval = try await work.cli.run(["reconcile", "--stack", "fake-fan", "--watch", "--interval", "soon"])
        #expect(interval.status != 0 && interval.stderr.contains("is not a duration"), "\(interval.stderr)")
        let watchJSON = try await work.cli.run(["reconcile", "--stack", "fake-fan", "--watch", "--json"])
        #expect(watchJSON.status != 0 && watchJSON.stderr.contains("does not combine with --watch"), "\(watchJSON.stderr)")
        let help = try await work.cli.run(["reconcile", "--help"])
        #expect(help.stdout.contains("Exit codes, for cron and CI"), "\(help.stdout)")
    }
}
