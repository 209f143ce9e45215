import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

/// `count` fake things that depend on nothing, so every create can start at once.
func independentThings(_ count: Int) throws -> EvaluatedStack {
    var content = StackContent()
    for index in 0..<count {
        CustomResource("fake_thing", "thing", index: index, provider: "fake", inputs: ["value": "v"]).declare(into: &content)
    }
    return try StackEvaluator.evaluate(content, name: "fake-fan", environment: "test")
}

@Suite("Executor stops on resource exhaustion")
struct ExhaustionTests {
    @Test(arguments: [ProviderError.Kind.quota, .capacity])
    func createsStopAfterThreeSameKindFailures(kind: ProviderError.Kind) async throws {
        let world = try World(options: .init(quota: 3, exhaustion: kind))
        let result = try await world.apply(try await world.plan(try independentThings(40)), parallelism: 1)

        // Three creates fit; the next three are refused in a row; nothing after is attempted.
        #expect(result.succeeded.count == 3)
        #expect(result.failed.count == 3)
        #expect(world.provider.refusals() == 3)
        #expect(result.notStarted.count == 34)
        #expect(result.notStarted.allSatisfy { $0.kind == .create })
        let exhaustion = try #require(result.exhaustion)
        #expect(exhaustion.kind == kind)
        #expect(exhaustion.failures == 3)
        #expect(exhaustion.description.contains("3 creates in a row failed"))
        #expect(!result.ok)
        // What was created is in state; the journal holds nothing.
        #expect(try await world.store.read(workspace: world.workspace).resources.count == 3)
        #expect(try await world.store.pendingOperations(workspace: world.workspace).isEmpty)
    }

    @Test func inFlightCreatesFinishAndTheAttemptsStayBounded() async throws {
        let world = try World(options: .init(latency: .milliseconds(4), quota: 5))
        let result = try await world.apply(try await world.plan(try independentThings(200)), parallelism: 8)
        // The executor stops after three refusals in a row as it sees them. A success whose
        // response was still on its way (the fake saves, then waits out its latency, while a
        // refusal answers at once) can land between refusals and break a streak, so each
        // success observed allows at most two more failures; then what was in flight at the
        // stop (at most parallelism - 1) finishes. The quota is checked before the save
        // without a lock, so a round of parallel creates can pass it together.
        let attempts = result.succeeded.count + result.failed.count
        #expect(world.provider.refusals() >= 3)
        #expect(result.succeeded.count <= 5 + 8 - 1)
        #expect(result.failed.count <= 3 + (8 - 1) + 2 * result.succeeded.count)
        #expect(attempts <= (5 + 8 - 1) * 3 + 3 + 8 - 1, "\(attempts) creates attempted")
        #expect(result.notStarted.count == 200 - attempts)
        #expect(try world.provider.inventory().count == result.succeeded.count)
    }

    @Test func aLimitOfZeroNeverStops() async throws {
        let world = try World(options: .init(quota: 2))
        let registry = world.registry
        let plan = try await world.plan(try independentThings(10))
        let result = try await Executor(providers: registry, store: world.store, workspace: world.workspace, parallelism: 1, retry: .none, exhaustionLimit: 0).apply(plan)
        #expect(result.failed.count == 8)
        #expect(result.notStarted.isEmpty)
        #expect(result.exhaustion == nil)
    }

    @Test func differentKindsAndOtherFailuresDoNotAddUp() async throws {
        let fake = try World().provider
        let provider = AlternatingExhaustion.provider(inner: fake)
        let registry = ProviderRegistry([provider])
        let store = InMemoryStateStore()
        let snapshot = await store.read(workspace: "w")
        let plan = try Planner(providers: registry).plan(stack: try independentThings(12), snapshot: snapshot, refreshed: nil, now: Date())
        let result = try await Executor(providers: registry, store: store, workspace: "w", parallelism: 1, retry: .none).apply(plan)
        // capacity, quota, capacity, ...: never three of one kind in a row, so every create is tried.
        #expect(result.failed.count == 12)
        #expect(result.notStarted.isEmpty)
        #expect(result.exhaustion == nil)
    }

    @Test func dependentsOfCreatesNotStartedAreNotStartedEither() async throws {
        // a[0..2] are refused (quota 0); z and the thing that needs it are then never tried.
        var content = StackContent()
        for index in 0..<3 { CustomResource("fake_thing", "a", index: index, provider: "fake", inputs: ["value": "v"]).declare(into: &content) }
        let root = CustomResource("fake_thing", "z", provider: "fake", inputs: ["value": "v"])
        root.declare(into: &content)
        CustomResource("fake_thing", "z_child", provider: "fake", inputs: ["parent": root["id"]]).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "fake-fan", environment: "test")
        let world = try World(options: .init(quota: 0))
        let result = try await world.apply(try await world.plan(stack), parallelism: 1)
        #expect(world.provider.refusals() == 3)
        #expect(result.failed.count == 3)
        #expect(result.skipped.isEmpty)
        #expect(Set(result.notStarted.map(\.address.description)) == ["fake_thing.z", "fake_thing.z_child"])
    }

    @Test func aRefusedCreateStillSkipsItsDependents() async throws {
        // One refusal is no streak: the root fails, its children are skipped as after any failure.
        let world = try World(options: .init(quota: 0))
        let result = try await world.apply(try await world.plan(try world.stack { $0.count = 4 }), parallelism: 1)
        #expect(world.provider.refusals() == 1)
        #expect(result.failed.count == 1)
        #expect(result.skipped.count == 4)
        #expect(result.exhaustion == nil)
    }
}

/// Fails every create, alternating between capacity and quota.
final class AlternatingExhaustion: @unchecked Sendable {
    private let lock = NSLock()
    private var calls = 0

    static func provider(inner: FakeCloudProvider) -> InterceptingProvider {
        let counter = AlternatingExhaustion()
        return InterceptingProvider(wrapping: inner) { resource, _, _ in
            let call = counter.lock.withLock { counter.calls += 1; return counter.calls }
            throw ProviderError(call.isMultiple(of: 2) ? .quota : .capacity, "refused", address: resource.address)
        }
    }
}

@Suite("Executor stops when asked")
struct StopTests {
    @Test(.timeLimit(.minutes(3)))
    func stepsInFlightFinishAndNoNewOneStarts() async throws {
        let world = try World(options: .init(latency: .milliseconds(20)))
        let plan = try await world.plan(try independentThings(30))
        let probe = StartCounter()
        // Ask to stop once three steps have started: the three finish, nothing else starts.
        let result = try await Executor(
            providers: world.registry, store: world.store, workspace: world.workspace, parallelism: 3, retry: .none, observer: probe,
            shouldStop: { probe.started >= 3 }
        ).apply(plan)
        #expect(result.stopped)
        #expect(probe.started == 3)
        #expect(result.succeeded.count == 3)
        #expect(result.failed.isEmpty)
        #expect(result.notStarted.count == 27)
        #expect(try await world.store.read(workspace: world.workspace).resources.count == 3)
        #expect(try await world.store.pendingOperations(workspace: world.workspace).isEmpty)
        #expect(try world.provider.inventory().count == 3)

        // A later apply finishes the rest, creating nothing twice.
        let rest = try await world.apply(try await world.plan(try independentThings(30)))
        #expect(rest.ok)
        #expect(rest.succeeded.count == 27)
        #expect(world.provider.createCounts().values.allSatisfy { $0 == 1 })
    }
}

final class StartCounter: ApplyObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var started: Int { lock.withLock { count } }
    func stepStarted(_ step: ExecutionStep) { lock.withLock { count += 1 } }
    func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration) {}
}

@Suite("Large plans")
struct LargePlanTests {
    @Test func textSummarizesWhileJSONKeepsEveryChange() async throws {
        let world = try World()
        let plan = try await world.plan(try world.stack { $0.count = 5000 })
        #expect(plan.actionable.count == 5001)

        let text = PlanRenderer.render(plan, limit: PlanRenderer.defaultLimit)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count < 600, "\(lines.count) lines")
        #expect(text.components(separatedBy: " will be created").count - 1 == PlanRenderer.defaultLimit)
        #expect(text.contains("4951 more change(s) not shown; `--full` prints every one"))
        #expect(text.contains("Changes by type:\n  fake_thing  5001 to add\n"))
        #expect(text.contains("Plan: 5001 to add, 0 to change, 0 to destroy."))

        let full = PlanRenderer.render(plan)
        #expect(full.components(separatedBy: " will be created").count - 1 == 5001)
        #expect(!full.contains("more change(s) not shown"))

        let json = try JSONSerialization.jsonObject(with: try PlanJSON(plan: plan, version: "test").encoded(pretty: false)) as? [String: Any]
        #expect((json?["resource_changes"] as? [Any])?.count == 5001)
    }

    @Test func summaryCountsEachTypeAndAction() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 60 }))
        // 60 children change value in place, the root is replaced (size forces it), 10 go away.
        let plan = try await world.plan(try world.stack { $0.count = 50; $0.value = "v2"; $0.size = 2 })
        let text = PlanRenderer.render(plan, limit: 5)
        #expect(text.contains("  fake_thing  50 to change, 1 to replace, 10 to destroy\n"), "\(text)")
        #expect(text.contains("Plan: 1 to add, 50 to change, 11 to destroy."))
    }

    @Test func smallPlansAreUnchanged() async throws {
        let world = try World()
        let plan = try await world.plan(try world.stack { $0.count = 3 })
        #expect(PlanRenderer.render(plan, limit: PlanRenderer.defaultLimit) == PlanRenderer.render(plan))
        #expect(!PlanRenderer.render(plan, limit: 50).contains("Changes by type"))
    }
}

@Suite("Scope typos")
struct ScopeTests {
    @Test func patternsThatMatchNothingAreNamed() {
        let known: Set<ResourceAddress> = [
            ResourceAddress(type: "fake_thing", name: "root"),
            ResourceAddress(type: "fake_thing", name: "child", index: 0),
        ]
        let scope = PlanScope(
            targets: [ResourceAddress(type: "fake_thing", name: "child"), ResourceAddress(type: "fake_thing", name: "roots")],
            excludes: [ResourceAddress(type: "fake_thing", name: "child", index: 3)])
        let (targets, excludes) = scope.unmatched(in: known)
        #expect(targets.map(\.description) == ["fake_thing.roots"])
        #expect(excludes.map(\.description) == ["fake_thing.child[3]"])
        #expect(PlanScope().unmatched(in: known).targets.isEmpty)
        #expect(PlanScope().unmatched(in: known).excludes.isEmpty)
    }
}
