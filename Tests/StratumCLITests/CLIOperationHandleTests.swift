import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

@Suite("CLI: operation handles in the journal", .timeLimit(.minutes(3)))
struct CLIOperationHandleTests {
    @Test func statePendingShowsTheCloudOperationARowWaitsOn() async throws {
        let dir = try TestSupport.temporaryDirectory("pending-handle")
        let cli = CLI("stratum-fixture", in: dir)
        let apply = try await cli.run(["apply", "--stack", "fake-fan", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")

        // A create that recorded its operation's handle, as a run killed while waiting leaves it.
        let path = dir.appendingPathComponent(".stratum/state.db").path
        let handle = "operations/op-\(UUID().uuidString.prefix(8).lowercased())"
        let store = try SQLiteStateStore(path: path)
        let workspace = try #require(try await store.workspaces().first)
        let row = PendingOperation(
            address: ResourceAddress(type: "fake_thing", name: "slow"), action: .create, provider: "fake", region: "default",
            token: "tok-slow", startedAt: Date(), ownership: .unowned)
        try await store.beginOperation(workspace: workspace, row)
        try await store.recordOperationHandle(workspace: workspace, id: row.id, handle: handle)
        #expect(workspace.hasPrefix("fake-fan/"))

        let text = try await cli.run(["state", "pending", "--stack", "fake-fan"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("create fake_thing.slow  token tok-slow  operation \(handle)"), "\(text.stdout)")

        let json = try await cli.run(["state", "pending", "--stack", "fake-fan", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        #expect(rows?.first?["handle"] as? String == handle)
        #expect(rows?.first?["token"] as? String == "tok-slow")
    }
}

@Suite("CLI: a killed create resumes its cloud operation", .timeLimit(.minutes(3)))
struct CLILongRunningRecoveryTests {
    @Test func aRunKilledWhileACreateWaitsIsResumedByTheNextRunWithoutASecondOperation() async throws {
        let dir = try TestSupport.temporaryDirectory("lro-kill")
        let cli = CLI("stratum-fixture", in: dir)
        let cloud = LongRunningProvider(root: dir.appendingPathComponent(".stratum/lro-cloud"))
        let args = ["apply", "--stack", "lro", "--auto-approve"]

        // The create starts its operation, records the handle, and waits: kill it there.
        let (process, _, _) = try cli.start(args)
        var handle: String?
        #expect(await eventually(seconds: 30) {
            let pending = try? await cli.run(["state", "pending", "--stack", "lro", "--json"])
            let rows = pending.flatMap { try? JSONSerialization.jsonObject(with: Data($0.stdout.utf8)) as? [[String: Any]] }
            handle = rows?.first?["handle"] as? String
            return handle != nil
        })
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let recorded = try #require(handle)
        #expect(cloud.startedOperations == [recorded])

        // The operation finishes while no run watches; the next run resumes it and adopts the result.
        try cloud.finish(recorded)
        let rerun = try await cli.run(args)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("lro_thing.slow: the interrupted create had succeeded; adopted"), "\(rerun.stderr)")
        #expect(cloud.startedOperations == [recorded])
        #expect(try await cli.run(["state", "pending", "--stack", "lro"]).stdout.contains("No pending operations"))
        let list = try await cli.run(["state", "list", "--stack", "lro"])
        #expect(list.stdout.contains("lro_thing.slow"), "\(list.stdout)")
    }
}
