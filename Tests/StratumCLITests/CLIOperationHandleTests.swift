import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

@Suite("CLI: operation handles in the journal", .timeLimit(.minutes(1)))
struct CLIOperationHandleTests {
    @Test func statePendingShowsTheCloudOperationARowWaitsOn() async throws {
        let dir = try TestSupport.temporaryDirectory("pending-handle")
        let cli = CLI("stratum-fixture", in: dir)
        let apply = try cli.run(["apply", "--stack", "fake-fan", "--auto-approve"])
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

        let text = try cli.run(["state", "pending", "--stack", "fake-fan"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("create fake_thing.slow  token tok-slow  operation \(handle)"), "\(text.stdout)")

        let json = try cli.run(["state", "pending", "--stack", "fake-fan", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        #expect(rows?.first?["handle"] as? String == handle)
        #expect(rows?.first?["token"] as? String == "tok-slow")
    }
}
