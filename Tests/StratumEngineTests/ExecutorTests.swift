import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

@Suite("Executor")
struct ExecutorTests {
    @Test func failureStopsOnlyDependentsAndIsReported() async throws {
        // The root fails; its children wait for it and are skipped. An independent bucket-like
        // thing (another stack resource with no edge) still gets created.
        let world = try World(options: .init(failOn: "fake_thing.root"))
        var content = FakeFanStack().body(config: { var c = FakeFanStack.Config(); c.count = 2; return c }())
        CustomResource("fake_thing", "independent", provider: "fake", inputs: ["value": "x"]).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "fake-fan", environment: "test")
        let result = try await world.apply(try await world.plan(stack))
        #expect(!result.ok)
        #expect(result.failed.map(\.step.address.description) == ["fake_thing.root"])
        #expect(Set(result.skipped.map(\.step.address.description)) == ["fake_thing.child[0]", "fake_thing.child[1]"])
        #expect(result.succeeded.map(\.address.description) == ["fake_thing.independent"])
        let state = try await world.store.read(workspace: world.workspace)
        #expect(state.resources.keys.map(\.description) == ["fake_thing.independent"])
    }

    @Test func stalePlanIsRefused() async throws {
        let world = try World()
        let stack = try world.stack { $0.count = 1 }
        let stale = try await world.plan(stack)
        try await world.apply(try await world.plan(stack))
        let error = try await #require(throws: StalePlanError.self) { try await world.apply(stale) }
        #expect(error.description.contains("stale"))
        #expect(try world.provider.inventory().count == 2)

        // A plan from another state (lineage) is refused too.
        var foreign = try await world.plan(stack)
        foreign.lineage = "someone-else"
        let other = try await #require(throws: StalePlanError.self) { try await world.apply(foreign) }
        #expect(other.description.contains("another state"))
    }

    @Test func parallelismIsRespected() async throws {
        let world = try World(options: .init(latency: .milliseconds(20)))
        let probe = ConcurrencyProbe()
        let result = try await world.apply(try await world.plan(try world.stack { $0.count = 12 }), parallelism: 3, observer: probe)
        #expect(result.ok)
        #expect(probe.peak <= 3)
        #expect(probe.peak >= 2)
    }

    @Test func retriesThrottlingWithBackoffOnInjectedClock() async throws {
        let time = VirtualClock()
        let policy = RetryPolicy(maxAttempts: 4, backoff: Backoff(base: .seconds(1), cap: .seconds(3), random: { $0.upperBound }), clock: time.clock)
        let attempts = Counter()
        let value = try await policy.run {
            if await attempts.next() < 3 { throw ProviderError(.throttled, "slow down") }
            return 42
        }
        #expect(value == 42)
        #expect(time.sleeps == [.seconds(1), .seconds(2)])
        let permanent = Counter()
        await #expect(throws: ProviderError.self) {
            try await policy.run { _ = await permanent.next(); throw ProviderError(.permanent, "bad") }
        }
        #expect(await permanent.value == 1)
    }
}

actor Counter {
    var value = 0
    func next() -> Int { value += 1; return value }
}

/// Tracks how many steps run at once.
final class ConcurrencyProbe: ApplyObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private var maximum = 0
    var peak: Int { lock.withLock { maximum } }
    func stepStarted(_ step: ExecutionStep) { lock.withLock { running += 1; maximum = max(maximum, running) } }
    func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration) { lock.withLock { running -= 1 } }
}

@Suite("Replacement order")
struct ReplacementOrderTests {
    func replaceRoot(createBeforeDestroy: Bool) async throws -> (events: [String], world: World) {
        let world = try World(options: .init(createBeforeDestroy: createBeforeDestroy))
        try await world.apply(try await world.plan(try world.stack { $0.count = 1 }))
        let replace = try await world.plan(try world.stack { $0.count = 1; $0.size = 9 })
        #expect(replace.changes.first { $0.address.description == "fake_thing.root" }?.createBeforeDestroy == createBeforeDestroy)
        #expect(try await world.apply(replace).ok)
        let events = world.provider.events().dropFirst(2).filter { $0.contains("fake_thing.root") }
        return (Array(events), world)
    }

    @Test func createBeforeDestroyWhereTheTypeAllowsIt() async throws {
        let (events, world) = try await replaceRoot(createBeforeDestroy: true)
        #expect(events.map { $0.split(separator: " ")[0] } == ["create", "delete"])
        // The deposed copy is gone from state once the old resource is deleted.
        let state = try await world.store.read(workspace: world.workspace)
        #expect(state.resources.keys.map(\.description).sorted() == ["fake_thing.child[0]", "fake_thing.root"])
        #expect(try world.provider.inventory().count == 2)
    }

    @Test func destroyBeforeCreateOtherwise() async throws {
        let (events, _) = try await replaceRoot(createBeforeDestroy: false)
        #expect(events.map { $0.split(separator: " ")[0] } == ["delete", "create"])
    }
}

@Suite("Outputs")
struct OutputTests {
    @Test func recordedAfterApplyAndClearedByDestroy() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 1 }))
        let state = try await world.store.read(workspace: world.workspace)
        let root = try #require(state.resources[ResourceAddress(type: "fake_thing", name: "root")])
        #expect(state.outputs["root_id"] == root.attributes["id"])
        #expect(state.outputs["root_id"]?.stringValue?.hasPrefix("thing-") == true)
        try await world.apply(try await world.destroyPlan())
        #expect(try await world.store.read(workspace: world.workspace).outputs.isEmpty)
    }
}
