import Foundation
import StratumCore
import StratumTesting
import Testing

/// Ephemeral environments through the CLI: `up` with a TTL (owner and expiry on every cloud
/// resource), `ls`, `sweep` at an injected time destroying exactly the expired one, `down`, and
/// orphans (owned resources no state knows) listed and, when asked, deleted.
@Suite("Ephemeral environments (CLI)", .serialized)
struct CLIEnvironmentTests {
    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    @Test(.timeLimit(.minutes(2)))
    func upListSweepAndDown() async throws {
        let work = try FixtureWorkspace("environments")
        let config = try work.config(count: 2)
        let base = ["--stack", "fake-fan", "--config", config]
        let started = Date()
        let first = try await work.cli.run(["up", "--env", "exp1", "--ttl", "2h", "--owner", "alice"] + base)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("Creating fake-fan/exp1 for alice, expiring "), "\(first.stderr)")
        #expect(try await work.cli.run(["up", "--env", "exp2", "--ttl", "1d", "--owner", "bob"] + base).status == 0)
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)

        // Every resource of an environment carries its owner and expiry; the long-lived one none.
        let owned = try work.cloud.ownedResources()
        let exp1 = owned.filter { $0.ownership.stack == "fake-fan/exp1" }
        #expect(exp1.count == 3 && exp1.allSatisfy { $0.ownership.owner == "alice" })
        let expiry = try #require(exp1.first?.ownership.expires)
        #expect(abs(expiry.timeIntervalSince(started.addingTimeInterval(7200))) < 60)
        #expect(owned.filter { $0.ownership.stack == "fake-fan/dev" }.allSatisfy { $0.ownership.owner == nil && $0.ownership.expires == nil })

        let listed = try await work.cli.run(["ls"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let rows = listed.stdout.split(separator: "\n").map(String.init)
        #expect(rows.first?.hasPrefix("ENVIRONMENT") == true && rows.count == 4, "\(listed.stdout)")
        #expect(rows.contains { $0.hasPrefix("fake-fan/exp1") && $0.contains("alice") && $0.contains("in 1") && $0.contains(" 3 ") }, "\(listed.stdout)")
        #expect(rows.contains { $0.hasPrefix("fake-fan/dev") && $0.contains(" - ") }, "\(listed.stdout)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(try await work.cli.run(["ls", "--json"]).stdout.utf8)) as? [[String: Any]])
        #expect(json.count == 3 && json.contains { $0["environment"] as? String == "exp2" && $0["owner"] as? String == "bob" && $0["ephemeral"] as? Bool == true })

        // Three hours on: only exp1 has expired, and only it is destroyed.
        let dry = try await work.cli.run(["sweep", "--dry-run", "--as-of", Self.iso(started.addingTimeInterval(3 * 3600))])
        #expect(dry.status == 0 && dry.stdout.contains("1 of 2 environment(s) expired:") && dry.stdout.contains("fake-fan/exp1 (owner alice"), "\(dry.stdout)")
        #expect(try work.cloud.inventory().count == 9)
        let swept = try await work.cli.run(["sweep", "--auto-approve", "--as-of", Self.iso(started.addingTimeInterval(3 * 3600))])
        #expect(swept.status == 0, "\(swept.stdout)\(swept.stderr)")
        #expect(swept.stdout.contains("No orphans."), "\(swept.stdout)")
        let left = try work.cloud.ownedResources()
        #expect(left.count == 6 && !left.contains { $0.ownership.stack == "fake-fan/exp1" })
        #expect(!(try await work.cli.run(["ls"]).stdout.contains("exp1")))

        // down: the other one, by name.
        let down = try await work.cli.run(["down", "exp2", "--stack", "fake-fan", "--auto-approve"])
        #expect(down.status == 0, "\(down.stderr)")
        #expect(try work.cloud.ownedResources().allSatisfy { $0.ownership.stack == "fake-fan/dev" })
        let after = try await work.cli.run(["ls"]).stdout
        #expect(!after.contains("exp2") && after.contains("fake-fan/dev"), "\(after)")

        // Long-lived names and unknown environments are refused, with the reason.
        let prod = try await work.cli.run(["up", "--env", "prod", "--ttl", "1h"] + base)
        #expect(prod.status != 0 && prod.stderr.contains("names a long-lived environment"), "\(prod.stderr)")
        let dev = try await work.cli.run(["up", "--env", "devx", "--ttl", "10s"] + base)
        #expect(dev.status != 0 && dev.stderr.contains("--ttl must be from 1m to 90d"), "\(dev.stderr)")
        let unknown = try await work.cli.run(["down", "nope", "--stack", "fake-fan", "--auto-approve"])
        #expect(unknown.status != 0 && unknown.stderr.contains("is not an environment this state knows"), "\(unknown.stderr)")
    }

    /// Resources made from a state that is gone: listed as orphans, kept unless asked, deleted
    /// with --delete-orphans; what a state knows is never touched.
    @Test(.timeLimit(.minutes(2)))
    func orphansAreListedAndDeletedWhenAsked() async throws {
        let work = try FixtureWorkspace("orphans")
        let config = try work.config(count: 1)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        let lost = work.directory.appendingPathComponent("lost.db").path
        // Another state, against the same cloud.
        #expect(try await work.cli.run(["apply", "--auto-approve", "--state", lost] + base, extraEnvironment: ["STRATUM_FAKE_CLOUD": work.cloud.root.path]).status == 0)
        try FileManager.default.removeItem(atPath: lost)
        #expect(try work.cloud.inventory().count == 4)

        let listed = try await work.cli.run(["sweep"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.contains("2 orphan(s): resources with Stratum's ownership that no state knows:"), "\(listed.stdout)")
        #expect(listed.stdout.contains("fake fake_thing.root") && listed.stdout.contains("fake fake_thing.child[0]"), "\(listed.stdout)")
        #expect(listed.stdout.contains("Not searched for orphans (these types cannot list what they hold): lro_thing."), "\(listed.stdout)")
        #expect(try work.cloud.inventory().count == 4)

        let deleted = try await work.cli.run(["sweep", "--delete-orphans", "--auto-approve"])
        #expect(deleted.status == 0, "\(deleted.stdout)\(deleted.stderr)")
        #expect(deleted.stdout.components(separatedBy: "  deleted fake").count - 1 == 2, "\(deleted.stdout)")
        #expect(try work.cloud.inventory().count == 2)
        #expect(try await work.cli.run(["plan", "--detailed-exitcode"] + base).status == 0)
        #expect(try await work.cli.run(["sweep"]).stdout.contains("No orphans."))
    }

    /// A Local node whose state file was deleted is an orphan: its process keeps running until
    /// `sweep --delete-orphans` stops it.
    @Test(.timeLimit(.minutes(3)))
    func aLocalNodeWithoutAStateIsAnOrphan() async throws {
        let dir = try TestSupport.temporaryDirectory("local-orphan")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 1\ninner_steps: 5\nrounds: 1000\n".write(to: config, atomically: true, encoding: .utf8)
        let lost = dir.appendingPathComponent(".stratum/lost.db").path
        let apply = try await cli.run(["apply", "--auto-approve", "--state", lost, "--stack", "local-demo", "--config", config.path])
        #expect(apply.status == 0, "\(apply.stderr)")
        let nodes = dir.appendingPathComponent(".stratum/local/nodes")
        let node = try #require(try FileManager.default.contentsOfDirectory(atPath: nodes.path).first)
        let pid = try #require(Int32(String(contentsOf: nodes.appendingPathComponent(node).appendingPathComponent("pid"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: lost + suffix) }
        #expect(isAlive(pid))

        // The node, its checkpoint bucket and its network: every Local type lists what it holds.
        let listed = try await cli.run(["sweep", "--provider", "local"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.contains("3 orphan(s)"), "\(listed.stdout)")
        for address in ["local_node.worker[0]", "local_bucket.demo-checkpoints", "local_network.demo"] {
            #expect(listed.stdout.contains("local \(address) "), "\(address) not listed: \(listed.stdout)")
        }
        #expect(!listed.stdout.contains("Not searched"), "\(listed.stdout)")
        #expect(isAlive(pid))
        let bucket = dir.appendingPathComponent(".stratum/local/buckets/demo-checkpoints")
        #expect(FileManager.default.fileExists(atPath: bucket.path))
        let deleted = try await cli.run(["sweep", "--provider", "local", "--delete-orphans", "--auto-approve"])
        #expect(deleted.status == 0, "\(deleted.stdout)\(deleted.stderr)")
        #expect(await eventually(seconds: 30) { !isAlive(pid) })
        #expect(!FileManager.default.fileExists(atPath: nodes.appendingPathComponent(node).path))
        #expect(!FileManager.default.fileExists(atPath: bucket.path))
        #expect(try await cli.run(["sweep", "--provider", "local"]).stdout.contains("No orphans."))
        // Asked for by name, a provider whose search fails fails the sweep; an unknown name is refused.
        let aws = try await cli.run(["sweep", "--provider", "aws"], extraEnvironment: CLICatalogUpdateTests.isolated)
        #expect(aws.status == 1 && aws.stderr.contains("could not search aws for orphans"), "\(aws.stdout)\(aws.stderr)")
        let unknown = try await cli.run(["sweep", "--provider", "nimbus"])
        #expect(unknown.status != 0 && unknown.stderr.contains("is not one of this build's providers"), "\(unknown.stderr)")
    }

    /// A copy of the Local demo in an ephemeral environment keeps its checkpoints in a bucket
    /// of its own (the name suffixed), beside the long-lived one.
    @Test(.timeLimit(.minutes(3)))
    func anEnvironmentsBucketIsItsOwn() async throws {
        let dir = try TestSupport.temporaryDirectory("env-local")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 1\ninner_steps: 5\nrounds: 2\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]
        // The long-lived copy first: the environment beside it gets a network and a bucket of its own.
        let long = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(long.status == 0, "\(long.stdout)\(long.stderr)")
        let up = try await cli.run(["up", "--env", "trial", "--ttl", "1h", "--owner", "alice"] + common)
        #expect(up.status == 0, "\(up.stdout)\(up.stderr)")
        let buckets = dir.appendingPathComponent(".stratum/local/buckets")
        func listed() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: buckets.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted() }
        #expect(listed() == ["demo-checkpoints", "demo-checkpoints-trial"])
        // Its node records the owner and expiry, as a cloud machine's tags would.
        let nodes = dir.appendingPathComponent(".stratum/local/nodes")
        let records = try FileManager.default.contentsOfDirectory(atPath: nodes.path).compactMap { name in
            try? JSONSerialization.jsonObject(with: Data(contentsOf: nodes.appendingPathComponent(name).appendingPathComponent("node.json"))) as? [String: Any]
        }
        let trial = records.filter { ($0["workspace"] as? String) == "local-demo/trial" }
        #expect(trial.count == 1 && trial.allSatisfy { $0["person"] as? String == "alice" && $0["expires"] != nil }, "\(records)")
        // Planning it again keeps the suffix: nothing to change; and both states know all they hold.
        #expect(try await cli.run(["plan", "--detailed-exitcode", "--env", "trial"] + common).status == 0)
        #expect(try await cli.run(["sweep", "--provider", "local"] + common).stdout.contains("No orphans."))
        let down = try await cli.run(["down", "trial", "--auto-approve"] + common)
        #expect(down.status == 0, "\(down.stderr)")
        #expect(listed() == ["demo-checkpoints"])
        #expect(try await cli.run(["destroy", "--auto-approve"] + common).status == 0)
        #expect(listed().isEmpty)
    }
}
