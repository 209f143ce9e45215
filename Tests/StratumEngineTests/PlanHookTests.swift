import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumTesting
import Testing

/// A kind's plan hook: normalises what the cloud reports before the diff, and may ask for a
/// replacement no force-new input asked for.
@Suite("Resource kind plan hook")
struct PlanHookTests {
    /// The fake cloud's kind, as a cloud that reports `value` as a URL (`.../values/<value>`)
    /// and cannot change `value` in place once it holds `frozen`.
    struct URLReportingKind: ForwardingKind {
        let inner: any ResourceKind
        func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
            try await inner.read(resources).map { state in
                guard var state, let value = state.attributes["value"]?.stringValue else { return state }
                state.attributes["value"] = .string("https://cloud.example/v1/values/\(value)")
                return state
            }
        }

        func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
            var normalised = prior
            if let url = prior.attributes["value"]?.stringValue, let last = url.split(separator: "/").last {
                normalised.attributes["value"] = .string(String(last))
            }
            let frozen = normalised.attributes["value"] == "frozen" && desired["value"] != "frozen"
            return PlanReview(prior: normalised, replacement: frozen ? "a frozen value cannot change in place" : nil)
        }
    }

    struct URLReportingCloud: Provider {
        let name = "fake"
        let kinds: [String: any ResourceKind]
        init(_ inner: FakeCloudProvider) { kinds = inner.kinds.mapValues { URLReportingKind(inner: $0) as any ResourceKind } }
    }

    @Test func theLiveStateIsNormalisedBeforeTheDiffAndAKindMayForceAReplacement() async throws {
        let world = try World()
        let registry = ProviderRegistry([URLReportingCloud(world.provider)])
        func plan(_ value: String) async throws -> Plan {
            let stack = try world.stack { $0.count = 0; $0.value = value }
            let snapshot = try await world.store.read(workspace: world.workspace)
            let refreshed = try await Refresher(providers: registry).refresh(snapshot.resources)
            return try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, now: Date())
        }
        func apply(_ plan: Plan) async throws {
            #expect(try await Executor(providers: registry, store: world.store, workspace: world.workspace, retry: .none).apply(plan).ok)
        }
        try await apply(try await plan("frozen"))
        // The cloud reports a URL; normalised, it matches the stack: nothing to do.
        #expect(world.actions(try await plan("frozen")) == ["fake_thing.root": .noop])
        // A change the kind says cannot happen in place becomes a replacement, with its reason.
        let change = try #require(try await plan("thawed").changes.first)
        #expect(change.action == .replace)
        #expect(change.reason == "a frozen value cannot change in place")
    }
}
