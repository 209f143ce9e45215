import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

/// A fake-cloud world: a provider in a temp directory, in-memory state, and helpers to plan and apply.
struct World {
    let provider: FakeCloudProvider
    let store: any StateStore = InMemoryStateStore()
    let workspace = "fake-fan/test"
    var registry: ProviderRegistry { ProviderRegistry([provider]) }

    init(options: FakeCloudProvider.Options = .init()) throws {
        provider = FakeCloudProvider(root: try TestSupport.temporaryDirectory("fake"), options: options)
    }

    func stack(_ configure: (inout FakeFanStack.Config) -> Void = { _ in }) throws -> EvaluatedStack {
        var config = FakeFanStack.Config()
        configure(&config)
        return try StackEvaluator.evaluate(FakeFanStack().body(config: config), name: "fake-fan", environment: "test")
    }

    func plan(_ stack: EvaluatedStack, scope: PlanScope = PlanScope()) async throws -> Plan {
        let snapshot = try await store.read(workspace: workspace)
        let refreshed = try await Refresher(providers: registry).refresh(snapshot.resources)
        return try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, scope: scope, now: Date())
    }

    func destroyPlan(scope: PlanScope = PlanScope()) async throws -> Plan {
        let snapshot = try await store.read(workspace: workspace)
        let refreshed = try await Refresher(providers: registry).refresh(snapshot.resources)
        return Planner(providers: registry).destroyPlan(stackName: "fake-fan", environment: "test", snapshot: snapshot, refreshed: refreshed, scope: scope, now: Date())
    }

    @discardableResult
    func apply(_ plan: Plan, parallelism: Int = 10, observer: any ApplyObserver = SilentObserver()) async throws -> ApplyResult {
        try await Executor(providers: registry, store: store, workspace: workspace, parallelism: parallelism, retry: .none, observer: observer).apply(plan)
    }

    func actions(_ plan: Plan) -> [String: ChangeAction] {
        Dictionary(uniqueKeysWithValues: plan.changes.map { ($0.address.description, $0.action) })
    }
}

@Suite("Planner diff actions")
struct PlannerTests {
    @Test func createThenNoChanges() async throws {
        let world = try World()
        let stack = try world.stack { $0.count = 2 }
        let first = try await world.plan(stack)
        #expect(world.actions(first) == ["fake_thing.root": .create, "fake_thing.child[0]": .create, "fake_thing.child[1]": .create])
        // The children's parent is the root's id, which only exists after apply.
        let child = try #require(first.changes.first { $0.address.description == "fake_thing.child[0]" })
        #expect(child.after?["parent"] == .unknown)
        #expect(child.after?["id"] == .unknown)
        #expect(child.after?["value"] == "v1")
        let result = try await world.apply(first)
        #expect(result.ok)

        let second = try await world.plan(stack)
        #expect(!second.hasChanges)
        #expect(second.changes.allSatisfy { $0.action == .noop })
    }

    @Test func inPlaceUpdateAndForceNewReplace() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 1 }))

        let update = try await world.plan(try world.stack { $0.count = 1; $0.value = "v2" })
        #expect(world.actions(update) == ["fake_thing.root": .update, "fake_thing.child[0]": .update])
        let rootUpdate = try #require(update.changes.first { $0.address.description == "fake_thing.root" })
        #expect(rootUpdate.changedAttributes == ["value"])
        #expect(rootUpdate.before?["value"] == "v1" && rootUpdate.after?["value"] == "v2")

        let replace = try await world.plan(try world.stack { $0.count = 1; $0.size = 2 })
        let root = try #require(replace.changes.first { $0.address.description == "fake_thing.root" })
        #expect(root.action == .replace)
        #expect(root.replacedBy == ["size"])
        #expect(root.after?["id"] == .unknown)
        // The child refers to the root's id, which becomes unknown: it must be updated too.
        let child = try #require(replace.changes.first { $0.address.description == "fake_thing.child[0]" })
        #expect(child.action == .update)
        #expect(child.after?["parent"] == .unknown)

        let oldRoot = try #require(root.before?["id"])
        #expect(try await world.apply(replace).ok)
        let snapshot = try await world.store.read(workspace: world.workspace)
        let newRoot = try #require(snapshot.resources[ResourceAddress(type: "fake_thing", name: "root")])
        #expect(newRoot.attributes["id"] != oldRoot)
        #expect(snapshot.resources[ResourceAddress(type: "fake_thing", name: "child", index: 0)]?.attributes["parent"] == newRoot.attributes["id"])
        #expect(try world.provider.inventory().count == 2)
    }

    @Test func shrinkingDeletesAndDriftRecreates() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 3 }))
        let shrink = try await world.plan(try world.stack { $0.count = 1 })
        #expect(world.actions(shrink).filter { $0.value != .noop } == ["fake_thing.child[1]": .delete, "fake_thing.child[2]": .delete])
        try await world.apply(shrink)
        #expect(try world.provider.inventory().count == 2)

        // Delete one out of band: the plan recreates it and says why.
        let snapshot = try await world.store.read(workspace: world.workspace)
        let child = try #require(snapshot.resources[ResourceAddress(type: "fake_thing", name: "child", index: 0)])
        try await world.provider.delete(child)
        let heal = try await world.plan(try world.stack { $0.count = 1 })
        #expect(world.actions(heal)["fake_thing.child[0]"] == .create)
        #expect(heal.changes.first { $0.action == .create }?.reason?.contains("outside") == true)
    }

    @Test func destroyDeletesEverythingInReverseOrder() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 3 }))
        let recorder = OrderRecorder()
        let result = try await world.apply(try await world.destroyPlan(), parallelism: 4, observer: recorder)
        #expect(result.ok && result.counts.destroyed == 4)
        let order = recorder.finished()
        let root = try #require(order.firstIndex(of: "fake_thing.root"))
        #expect(order.count == 4)
        #expect(order.filter { $0.hasPrefix("fake_thing.child") }.allSatisfy { order.firstIndex(of: $0)! < root })
        #expect(try world.provider.inventory().isEmpty)
        #expect(try await world.store.read(workspace: world.workspace).resources.isEmpty)
    }

    @Test func targetedDestroyTakesDependentsAndExcludeKeepsDependencies() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 2 }))
        let root = ResourceAddress(type: "fake_thing", name: "root")
        let targeted = try await world.destroyPlan(scope: PlanScope(targets: [root]))
        #expect(Set(targeted.changes.map(\.address.description)) == ["fake_thing.root", "fake_thing.child[0]", "fake_thing.child[1]"])
        let kept = try await world.destroyPlan(scope: PlanScope(excludes: [ResourceAddress(type: "fake_thing", name: "child", index: 0)]))
        #expect(kept.changes.map(\.address.description) == ["fake_thing.child[1]"])
        let one = try await world.destroyPlan(scope: PlanScope(targets: [ResourceAddress(type: "fake_thing", name: "child", index: 1)]))
        #expect(one.changes.map(\.address.description) == ["fake_thing.child[1]"])
    }

    @Test func targetAndExcludeNarrowThePlan() async throws {
        let world = try World()
        let stack = try world.stack { $0.count = 3 }
        let targeted = try await world.plan(stack, scope: PlanScope(targets: [ResourceAddress(type: "fake_thing", name: "child", index: 1)]))
        #expect(Set(targeted.changes.map(\.address.description)) == ["fake_thing.root", "fake_thing.child[1]"])
        let excluded = try await world.plan(stack, scope: PlanScope(excludes: [ResourceAddress(type: "fake_thing", name: "root")]))
        #expect(excluded.changes.isEmpty)
        let excludeGroup = try await world.plan(stack, scope: PlanScope(excludes: [ResourceAddress(type: "fake_thing", name: "child")]))
        #expect(excludeGroup.changes.map(\.address.description) == ["fake_thing.root"])
    }
}

/// Records the order in which steps finish.
final class OrderRecorder: ApplyObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var order: [String] = []
    func stepStarted(_ step: ExecutionStep) {}
    func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration) {
        lock.withLock { order.append(step.address.description) }
    }
    func finished() -> [String] { lock.withLock { order } }
}

@Suite("Refresh")
struct RefreshTests {
    @Test func oneReadPerTypeAndRegionAndGoneResourcesAreReported() async throws {
        let provider = SyntheticProvider(latency: .zero)
        let states = alternatingStates(40, regions: 4)
        provider.seed(states.values.filter { $0.id != "id-7" })
        let result = try await Refresher(providers: ProviderRegistry([provider])).refresh(states)
        #expect(result.readCalls == 4)
        #expect(provider.callCounts()["read"] == 4)
        #expect(result.live.count == 40)
        let gone = result.live.filter { $0.value == nil }.map(\.key)
        #expect(gone == [ResourceAddress(type: "synthetic_disk", name: "r", index: 7)])
        #expect(result.existing.count == 39)
    }
}
