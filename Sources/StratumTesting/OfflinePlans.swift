import Foundation
import StratumCore
import StratumEngine
import StratumState

/// Plans made without calling any cloud: a stack planned as new, and planned again over the
/// state that plan's apply would leave (every value known only after apply set to a stand-in),
/// to see how an input shows in a plan and whether changing it updates or replaces a resource.
public enum OfflinePlans {
    /// The plan of `stack` over `snapshot` (empty: everything is created).
    public static func plan(
        _ stack: EvaluatedStack, providers: ProviderRegistry, over snapshot: StateSnapshot = StateSnapshot(lineage: "offline", serial: 0)
    ) throws -> Plan {
        try Planner(providers: providers).plan(stack: stack, snapshot: snapshot, refreshed: nil, now: Date(timeIntervalSince1970: 0))
    }

    /// The state `plan`'s creates would leave: each resource with its planned attributes, and
    /// what is known only after apply (ids, addresses, references to them) as one stand-in.
    public static func state(after plan: Plan) -> StateSnapshot {
        func known(_ value: Value) -> Value {
            switch value {
            case .unknown, .reference: return "known-after-apply"
            case .list(let items): return .list(items.map(known))
            case .map(let entries): return .map(entries.mapValues(known))
            case .sensitive(let inner): return .sensitive(known(inner))
            default: return value
            }
        }
        var resources: [ResourceAddress: ResourceState] = [:]
        for change in plan.changes {
            guard let after = change.after else { continue }
            resources[change.address] = ResourceState(
                address: change.address, provider: change.provider, region: change.region, id: "id-\(change.address)",
                attributes: after.mapValues(known), dependencies: change.dependencies)
        }
        return StateSnapshot(lineage: "offline", serial: 1, resources: resources)
    }

    /// What `PlanRenderer` shows of the change to `address` in `plan` (empty when none).
    public static func shown(_ address: ResourceAddress, in plan: Plan) -> String {
        let text = PlanRenderer.render(plan)
        guard let start = text.range(of: "  # \(address) ") else { return "" }
        let rest = text[start.lowerBound...]
        return String(rest[..<(rest.range(of: "\n    }\n")?.upperBound ?? rest.endIndex)])
    }
}
