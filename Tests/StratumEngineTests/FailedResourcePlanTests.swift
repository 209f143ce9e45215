import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumTesting
import Testing

@Suite("Failed resources and stack-level checks")
struct FailedResourcePlanTests {
    @Test func aResourceItsProviderReportsFailedIsReplacedWithTheReason() async throws {
        let world = try World()
        let stack = try world.stack { $0.count = 1 }
        try await world.apply(try await world.plan(stack))
        let snapshot = try await world.store.read(workspace: world.workspace)
        var refreshed = try await Refresher(providers: world.registry).refresh(snapshot.resources)
        let child = try #require(ResourceAddress(parsing: "fake_thing.child[0]"))
        var failed = try #require(refreshed.live[child] ?? nil)
        failed.attributes[ResourceState.failureAttribute] = "its workload exited with status 3"
        refreshed.live[child] = failed

        let plan = try Planner(providers: world.registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, now: Date())
        let change = try #require(plan.changes.first { $0.address == child })
        #expect(change.action == .replace)
        #expect(change.reason == "its workload exited with status 3")
        #expect(world.actions(plan)["fake_thing.root"] == .noop)
    }

    /// A provider whose only opinion is how many resources one stack may place on it.
    struct Limited: Provider {
        let name = "fake"
        let limit: Int
        var kinds: [String: any ResourceKind] { FakeCloudProvider(root: URL(fileURLWithPath: "/nonexistent")).kinds }
        func validate(stack resources: [DesiredResource]) -> [Diagnostic] {
            resources.count > limit ? [Diagnostic(message: "\(resources.count) resources, at most \(limit)")] : []
        }
    }

    @Test func theStackLevelCheckSeesEveryResourceOfItsProvider() throws {
        let world = try World()
        let stack = try world.stack { $0.count = 4 }  // a root and 4 children
        do {
            try Planner(providers: ProviderRegistry([Limited(limit: 4)])).validate(stack)
            Issue.record("a stack over the provider's limit validated")
        } catch let error as ValidationError {
            #expect(error.diagnostics.map(\.message) == ["5 resources, at most 4"])
        }
        try Planner(providers: ProviderRegistry([Limited(limit: 5)])).validate(stack)
    }
}
