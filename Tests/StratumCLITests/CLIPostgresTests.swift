import Foundation
import StratumTesting
import Testing

@Suite("CLI on the PostgreSQL backend", .serialized)
struct CLIPostgresTests {
    static let url = ProcessInfo.processInfo.environment["STRATUM_TEST_POSTGRES_URL"]

    /// Two checkouts (two working directories, as two machines would be) share one database:
    /// each sees the other's state, and the lock keeps them apart.
    @Test(.enabled(if: url != nil, "set STRATUM_TEST_POSTGRES_URL to run against PostgreSQL"), .timeLimit(.minutes(2)))
    func twoCheckoutsShareStateAndTheLock() async throws {
        let base = try #require(Self.url)
        let schema = "cli_" + UUID().uuidString.prefix(8).lowercased()
        let backend = base + (base.contains("?") ? "&" : "?") + "schema=\(schema)"
        let cloud = try TestSupport.temporaryDirectory("pg-cloud")
        let env = ["STRATUM_BACKEND": backend, "STRATUM_FAKE_CLOUD": cloud.path, "STRATUM_STATE_KEY": "team key"]
        var first = CLI("stratum-fixture", in: try TestSupport.temporaryDirectory("pg-a"))
        var second = CLI("stratum-fixture", in: try TestSupport.temporaryDirectory("pg-b"))
        first.environment = env
        second.environment = env

        let apply = try await first.run(["apply", "--stack", "fake-fan", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(!apply.stderr.contains(base.split(separator: "@").first.map(String.init) ?? "never"))
        // The other checkout has no local state file, yet sees everything.
        let plan = try await second.run(["plan", "--stack", "fake-fan", "--detailed-exitcode"])
        #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
        #expect(try await second.run(["state", "list", "--stack", "fake-fan"]).stdout.split(separator: "\n").count == 6)
        #expect(!FileManager.default.fileExists(atPath: second.directory.appendingPathComponent(".stratum/state.db").path))

        // While one holds the lock (blocked mid-apply), the other is refused and told who holds it.
        try "count: 6\n".write(to: first.directory.appendingPathComponent("c.yaml"), atomically: true, encoding: .utf8)
        let marker = cloud.appendingPathComponent("blocked")
        let (process, _, _) = try first.start(["apply", "--stack", "fake-fan", "--config", "c.yaml", "--auto-approve"], extraEnvironment: ["STRATUM_FAKE_BLOCK_ON": "fake_thing.child[5]"])
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: marker.path) })
        let refused = try await second.run(["plan", "--stack", "fake-fan"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("the state is locked"))
        #expect(refused.stderr.contains("pid \(process.processIdentifier)"))
        // The holder dies without releasing (SIGTERM would wait for the blocked call to finish).
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()

        let destroy = try await second.run(["destroy", "--stack", "fake-fan", "--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stderr)")
        #expect(try FakeCloudProvider(root: cloud).inventory().isEmpty)
    }
}
