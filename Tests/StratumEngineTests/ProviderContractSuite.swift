import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

/// The provider contract on the fake cloud, and the engine's side of it: handles of
/// long-running operations survive a crash, and a retried create looks before it acts.
@Suite("ProviderContractTests: fake cloud", .timeLimit(.minutes(3)))
struct FakeProviderContractTests {
    static func contract() throws -> ProviderContractTests {
        let provider = FakeCloudProvider(root: try TestSupport.temporaryDirectory("fake-contract"))
        return ProviderContractTests(.init(provider: provider, type: "fake_thing", region: "default", inputs: { ["value": .string($0)] }))
    }

    @Test func idempotentCreateByToken() async throws { try await Self.contract().idempotentCreateByToken() }
    @Test func lostResponseIsRecovered() async throws { try await Self.contract().lostResponseIsRecovered() }
    @Test func batchedReadWithMissingMembers() async throws { try await Self.contract().batchedReadWithMissingMembers() }
    @Test func deleteOfWhatIsGone() async throws { try await Self.contract().deleteOfWhatIsGone() }
    @Test func importByID() async throws { try await Self.contract().importByID() }
}

@Suite("ProviderContractTests: long-running operations", .timeLimit(.minutes(3)))
struct LongRunningOperationTests {
    /// Polls `condition` until it holds, failing after `seconds`.
    static func waitUntil(seconds: Double = 20, _ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try await !condition() {
            guard Date() < deadline else { throw ProviderContractTests.ContractViolation("timed out waiting until \(what)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test func aHandleRecordedBeforeACrashIsResumedByRecoveryNotStartedAgain() async throws {
        let cloud = LongRunningProvider(root: try TestSupport.temporaryDirectory("lro-cloud"))
        let registry = ProviderRegistry([cloud])
        // SQLite: the handle goes through the journal's handle column.
        let path = try TestSupport.temporaryDirectory("lro").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        let workspace = "lro/test"
        let stack = try StackEvaluator.evaluate(LongRunningStack().body(config: .init()), name: "lro", environment: "test")
        let plan = try Planner(providers: registry).plan(stack: stack, snapshot: try await store.read(workspace: workspace), refreshed: nil, now: Date())

        // The apply waits on the operation, which never finishes: the run is killed there.
        let run = Task { try await Executor(providers: registry, store: store, workspace: workspace, retry: .none).apply(plan) }
        try await Self.waitUntil("the handle is journaled") {
            try await store.pendingOperations(workspace: workspace).first?.handle != nil
        }
        run.cancel()
        _ = await run.result

        // A later run opens the same file and finds the row with its handle.
        let reopened = try SQLiteStateStore(path: path)
        let rows = try await reopened.pendingOperations(workspace: workspace)
        let handle = try #require(rows.first?.handle)
        #expect(rows.count == 1)
        #expect(cloud.startedOperations == [handle])

        // The operation finishes while no one watches; recovery resumes it and adopts its result.
        try cloud.finish(handle)
        let outcomes = try await Recovery(providers: registry, store: reopened, workspace: workspace).run()
        #expect(outcomes == [.adopted(ResourceAddress(type: "lro_thing", name: "slow"), id: LongRunningProvider.thingID(handle))])
        #expect(cloud.startedOperations == [handle])
        #expect(try await reopened.pendingOperations(workspace: workspace).isEmpty)
        #expect(try await reopened.read(workspace: workspace).resources.count == 1)
    }
}

@Suite("Executor looks before it retries a create", .timeLimit(.minutes(3)))
struct LookBeforeRetryTests {
    /// A cloud whose creates are not idempotent: the first one takes effect and its answer is
    /// lost; any further call makes another resource.
    final class LosesFirstAnswer: @unchecked Sendable {
        private let lock = NSLock()
        private var calls = 0

        func provider(_ inner: FakeCloudProvider) -> InterceptingProvider {
            InterceptingProvider(wrapping: inner) { resource, context, kind in
                let call = self.lock.withLock { self.calls += 1; return self.calls }
                guard call == 1 else { return try await kind.create(resource, context: OperationContext(token: UUID().uuidString)) }
                _ = try await kind.create(resource, context: context)
                throw ProviderError(.transient, "connection reset", address: resource.address)
            }
        }
    }

    @Test func aCreateWhoseAnswerWasLostIsAdoptedInsteadOfMadeAgain() async throws {
        let world = try World()
        let provider = LosesFirstAnswer().provider(world.provider)
        let registry = ProviderRegistry([provider])
        let stack = try world.stack { $0.count = 0 }
        let plan = try Planner(providers: registry).plan(stack: stack, snapshot: try await world.store.read(workspace: world.workspace), refreshed: nil, now: Date())
        let retry = RetryPolicy(maxAttempts: 3, clock: VirtualClock().clock)
        let result = try await Executor(providers: registry, store: world.store, workspace: world.workspace, retry: retry).apply(plan)
        #expect(result.ok)
        #expect(world.provider.createCounts() == ["fake_thing.root": 1])
        let state = try await world.store.read(workspace: world.workspace)
        #expect(state.resources.values.map(\.id) == Array(try world.provider.inventory().keys))
    }
}
