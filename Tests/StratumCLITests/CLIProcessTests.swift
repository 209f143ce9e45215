import Foundation
import StratumTesting
import Testing

/// Runs the built `stratum` and `stratum-fixture` binaries as real processes.
struct CLI {
    let binary: URL
    let directory: URL
    var environment: [String: String] = [:]

    init(_ name: String, in directory: URL) {
        // The test bundle sits beside the binaries the build produced.
        let buildDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        self.binary = buildDirectory.appendingPathComponent(name)
        self.directory = directory
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    func start(_ arguments: [String], extraEnvironment: [String: String] = [:]) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = directory
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        for (key, value) in environment.merging(extraEnvironment, uniquingKeysWith: { $1 }) { env[key] = value }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return (process, out, err)
    }

    /// Runs the binary to its end without blocking a thread while the child runs: a blocked
    /// thread of the shared pool (one per core) starves every other suite's async work.
    @discardableResult
    func run(_ arguments: [String], extraEnvironment: [String: String] = [:]) async throws -> Result {
        let run = try await BuiltBinary.run(binary.lastPathComponent, arguments, in: directory, environment: environment.merging(extraEnvironment) { $1 })
        return Result(status: run.status, stdout: run.stdout, stderr: run.stderr)
    }

    /// Runs the binary to its end on this thread: only for a `defer`'s clean-up, which cannot
    /// await.
    @discardableResult
    func runBlocking(_ arguments: [String], extraEnvironment: [String: String] = [:]) throws -> Result {
        let (process, out, err) = try start(arguments, extraEnvironment: extraEnvironment)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// Polls `condition` until it holds or `seconds` pass, without holding a thread of the shared
/// pool (a blocked pool thread starves the in-process servers other tests talk to).
/// The condition may itself await (a command run to its end, say).
func eventually(seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}

/// Waits for `process` to end, as `eventually` waits.
@discardableResult
func exited(_ process: Process, seconds: Double = 120) async -> Bool { await eventually(seconds: seconds) { !process.isRunning } }

/// Whether a worker's checkpoint directory holds a complete checkpoint: one whose `DONE` the
/// trainer wrote after its state (a `step-` directory alone may still be being written).
func hasCompleteCheckpoint(_ directory: URL) -> Bool {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).contains {
        $0.hasPrefix("step-") && FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).appendingPathComponent("DONE").path)
    }
}

func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}

@Suite("CLI as real processes", .serialized)
struct CLIProcessTests {
    @Test func crashMidApplyThenRerunCreatesNothingTwice() async throws {
        let dir = try TestSupport.temporaryDirectory("crash")
        let cli = CLI("stratum-fixture", in: dir)
        let cloud = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud"))
        let args = ["apply", "--stack", "fake-fan", "--auto-approve", "--parallelism", "1"]

        // The third child blocks inside its create: everything before it is done.
        let (process, _, _) = try cli.start(args, extraEnvironment: ["STRATUM_FAKE_BLOCK_ON": "fake_thing.child[2]"])
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: cloud.blockedMarker.path) })

        // While it holds the lock, a second apply fails at once and says who holds it.
        let contender = try await cli.run(args)
        #expect(contender.status == 1)
        #expect(contender.stderr.contains("locked"))
        #expect(contender.stderr.contains("pid \(process.processIdentifier)"))

        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let beforeRerun = try cloud.inventory().count
        #expect(beforeRerun >= 3 && beforeRerun < 6)

        let rerun = try await cli.run(args)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(cloud.createCounts().values.allSatisfy { $0 == 1 }, "\(cloud.createCounts())")
        #expect(cloud.createCounts().count == 6)

        // State matches the cloud exactly.
        let listed = try await cli.run(["state", "list", "--stack", "fake-fan"])
        let addresses = Set(listed.stdout.split(separator: "\n").map(String.init))
        let inventory = try cloud.inventory()
        #expect(Set(inventory.values.map(\.address.description)) == addresses)
        #expect(inventory.count == 6)
        let plan = try await cli.run(["plan", "--stack", "fake-fan", "--detailed-exitcode"])
        #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
    }

    @Test func localProviderEndToEndThroughTheStratumBinary() async throws {
        let dir = try TestSupport.temporaryDirectory("local-e2e")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 2\ninner_steps: 20\nrounds: 3\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]

        let apply = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        #expect(apply.stdout.contains("Apply complete! Resources: 4 added"))
        #expect(apply.stdout.contains("local_node.worker[1]: Creation complete after"))

        let nodes = dir.appendingPathComponent(".stratum/local/nodes")
        func pid(_ index: Int) throws -> Int32 {
            // One directory per node instance: local_node.worker_<i>_-<token>.
            let names = try FileManager.default.contentsOfDirectory(atPath: nodes.path).filter { $0.hasPrefix("local_node.worker_\(index)_-") }
            let name = try #require(names.first)
            #expect(names.count == 1)
            let text = try String(contentsOf: nodes.appendingPathComponent(name).appendingPathComponent("pid"), encoding: .utf8)
            return try #require(Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let first = try pid(0), second = try pid(1)
        #expect(isAlive(first) && isAlive(second))
        // The workload really trains: both workers publish DiLoCo rounds into the bucket.
        let bucket = dir.appendingPathComponent(".stratum/local/buckets/demo-checkpoints")
        let firstRound = bucket.appendingPathComponent("rounds/round-000000")
        #expect(await eventually(seconds: 60) {
            ["worker-000.bin", "worker-001.bin"].allSatisfy { FileManager.default.fileExists(atPath: firstRound.appendingPathComponent($0).path) }
        }, "\((try? FileManager.default.subpathsOfDirectory(atPath: bucket.path)) ?? [])")

        // Kill one's leader out of band: the plan shows drift (its trainer still runs, so the
        // node is replaced, which stops the trainer) and exits 2.
        kill(first, SIGKILL)
        #expect(await eventually(seconds: 5) { !isAlive(first) })
        let drift = try await cli.run(["plan", "--detailed-exitcode"] + common)
        #expect(drift.status == 2, "\(drift.stdout)\(drift.stderr)")
        #expect(drift.stdout.contains("local_node.worker[0] must be replaced because its leader process \(first) was killed outside Stratum"))
        #expect(drift.stdout.contains("Plan: 1 to add, 0 to change, 1 to destroy."))

        let heal = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(heal.status == 0)
        let healed = try pid(0)
        #expect(healed != first && isAlive(healed))
        #expect(try await cli.run(["plan", "--detailed-exitcode"] + common).status == 0)

        // A config change replaces both nodes, new before old; the new ones keep running.
        try "workers: 2\ninner_steps: 20\nrounds: 4\n".write(to: config, atomically: true, encoding: .utf8)
        let replace = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(replace.status == 0, "\(replace.stderr)")
        #expect(replace.stdout.contains("Plan: 2 to add, 0 to change, 2 to destroy."))
        let replaced = [try pid(0), try pid(1)]
        #expect(!replaced.contains(healed) && !replaced.contains(second))
        #expect(replaced.allSatisfy(isAlive))
        #expect(!isAlive(healed) && !isAlive(second))
        #expect(try await cli.run(["plan", "--detailed-exitcode"] + common).status == 0)

        let destroy = try await cli.run(["destroy", "--auto-approve"] + common)
        #expect(destroy.status == 0, "\(destroy.stderr)")
        #expect(destroy.stdout.contains("4 destroyed"))
        #expect(replaced.allSatisfy { !isAlive($0) })
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: dir.appendingPathComponent(".stratum/local").path)
            .filter { !$0.hasPrefix("buckets/.records") && $0 != "buckets" && $0 != "nodes" && $0 != "networks" && $0 != "buckets/.records" }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test func applyRefusesWithoutATerminalAndBadInputIsClear() async throws {
        let dir = try TestSupport.temporaryDirectory("refuse")
        let cli = CLI("stratum", in: dir)
        let refused = try await cli.run(["apply", "--stack", "local-demo"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("--auto-approve"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent(".stratum/local/nodes/local_node.worker_0_").path))

        let bad = dir.appendingPathComponent("bad.yaml")
        try "workerz: 3\n".write(to: bad, atomically: true, encoding: .utf8)
        let invalid = try await cli.run(["plan", "--stack", "local-demo", "--config", bad.path])
        #expect(invalid.status == 1)
        #expect(invalid.stderr.contains("unknown config key 'workerz'"))

        let noTrainer = try await cli.run(["validate", "--stack", "local-demo"], extraEnvironment: ["STRATUM_TRAINER": "/nonexistent/stratum-trainer"])
        #expect(noTrainer.status == 1)
        #expect(noTrainer.stderr.contains("the trainer binary is missing at /nonexistent/stratum-trainer"))
        #expect(noTrainer.stderr.contains("LocalDemo.swift"))

        let unknownStack = try await cli.run(["plan", "--stack", "nope"])
        #expect(unknownStack.stderr.contains("no stack named 'nope'"))
        #expect(unknownStack.stderr.contains("local-demo"))
    }

    @Test func savedPlanAppliesOnceAndIsRefusedWhenStale() async throws {
        let dir = try TestSupport.temporaryDirectory("saved")
        let cli = CLI("stratum-fixture", in: dir)
        let planFile = dir.appendingPathComponent("plan.bin").path
        let saved = try await cli.run(["plan", "--stack", "fake-fan", "--out", planFile])
        #expect(saved.status == 0)
        let mode = try #require(FileManager.default.attributesOfItem(atPath: planFile)[.posixPermissions] as? Int)
        #expect(mode & 0o077 == 0)
        let applied = try await cli.run(["apply", planFile])
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(applied.stdout.contains("6 added"))
        let again = try await cli.run(["apply", planFile])
        #expect(again.status == 1)
        #expect(again.stderr.contains("stale"))

        let json = try await cli.run(["plan", "--stack", "fake-fan", "--json"], extraEnvironment: [:])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["format_version"] as? String == "1.2")
        let history = try await cli.run(["state", "history", "--stack", "fake-fan"])
        #expect(history.stdout.contains("serial 1"))
        #expect(history.stdout.contains("create fake_thing.root"))
    }
}
