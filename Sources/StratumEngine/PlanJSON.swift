import Foundation
import StratumCore

/// The machine-readable plan, in the shape tools that read Terraform's plan JSON expect:
/// `resource_changes[].change.actions/before/after/after_unknown`.
public struct PlanJSON: Encodable, Sendable {
    public static let formatVersion = "1.2"

    public var format_version = PlanJSON.formatVersion
    public var stratum_version: String
    public var stack: String
    public var environment: String
    public var lineage: String
    public var serial: Int
    public var resource_changes: [ResourceChangeJSON]
    public var output_changes: [String: OutputChangeJSON]
    public var resource_drift: [ResourceDriftJSON]
    /// The machines' hourly cost before and after, from the offer catalog (USD).
    public var cost: CostJSON?
    /// Where each GPU cluster lands, how it was chosen, the runners-up and what was left out.
    public var placements: [PlacementJSON]?

    public struct PlacementJSON: Encodable, Sendable {
        public var cluster: String
        public var request: String
        public var cloud: String
        public var region: String
        public var zone: String?
        public var instance_type: String
        public var machines: Int
        public var gpus_per_machine: Int
        public var spot: Bool
        public var hourly: Double
        /// Why this landing, or that it was kept from state.
        public var reason: String
        public var kept: Bool
        public var feasible: Int
        public var runners_up: [String]
        public var excluded: [ExclusionJSON]
    }

    public struct ExclusionJSON: Encodable, Sendable {
        public var offer: String
        public var reason: String
    }

    public struct CostJSON: Encodable, Sendable {
        public var currency = "USD"
        public var hourly_before: Double
        public var hourly_after: Double
        public var hourly_delta: Double
        public var resources: [ResourceCostJSON]
        /// Machines after the plan without a price: the totals leave them out.
        public var unpriced: [String]
        public var budget: BudgetJSON?
    }

    public struct ResourceCostJSON: Encodable, Sendable {
        public var address: String
        public var action: String
        public var hourly_before: Double?
        public var hourly_after: Double?
        public var before: String?
        public var after: String?
    }

    public struct BudgetJSON: Encodable, Sendable {
        public var hourly: Double
        public var set_by: String
    }

    public struct ResourceChangeJSON: Encodable, Sendable {
        public var address: String
        public var mode = "managed"
        public var type: String
        public var name: String
        public var index: Int?
        public var provider_name: String
        public var change: ChangeJSON
        public var action_reason: String?
    }

    public struct ChangeJSON: Encodable, Sendable {
        public var actions: [String]
        public var before: Value?
        public var after: Value?
        public var after_unknown: Value
        /// `true` where a value is secret; the value itself is left out of before/after.
        public var before_sensitive: Value = .bool(false)
        public var after_sensitive: Value = .bool(false)
        public var replace_paths: [[String]]?
    }

    public struct OutputChangeJSON: Encodable, Sendable {
        public var actions: [String]
        public var after: Value?
        public var after_unknown: Bool
        public var after_sensitive: Bool
    }

    public struct ResourceDriftJSON: Encodable, Sendable {
        public var address: String
        public var change: ChangeJSON
    }

    public init(plan: Plan, version: String) {
        stratum_version = version
        stack = plan.stack
        environment = plan.environment
        lineage = plan.lineage
        serial = plan.serial
        resource_changes = plan.changes.map { change in
            ResourceChangeJSON(
                address: change.address.description, type: change.address.type, name: change.address.name, index: change.address.index,
                provider_name: change.provider,
                change: ChangeJSON(
                    actions: Self.actions(change),
                    before: change.before.map { Self.known(.map($0)) },
                    after: change.after.map { Self.known(.map($0)) },
                    after_unknown: Self.unknownMask(.map(change.after ?? [:])) ?? .map([:]),
                    before_sensitive: change.before.map { Self.sensitiveMask(.map($0)) ?? .map([:]) } ?? .bool(false),
                    after_sensitive: change.after.map { Self.sensitiveMask(.map($0)) ?? .map([:]) } ?? .bool(false),
                    replace_paths: change.replacedBy.isEmpty ? nil : change.replacedBy.map { [$0] }),
                action_reason: change.reason)
        }
        resource_drift = plan.vanished.map { address in
            ResourceDriftJSON(address: address.description, change: ChangeJSON(actions: ["delete"], before: nil, after: nil, after_unknown: .map([:])))
        }
        var outputs: [String: OutputChangeJSON] = [:]
        for (name, value) in plan.outputs {
            let resolvable = !value.containsUnknown
            outputs[name] = OutputChangeJSON(
                actions: ["create"], after: resolvable && !value.containsSensitive ? value : nil, after_unknown: !resolvable,
                after_sensitive: value.containsSensitive)
        }
        output_changes = outputs
        placements = plan.placements.map { reports in
            reports.map { report in
                let landing = report.decision.landing
                return PlacementJSON(
                    cluster: report.cluster, request: report.request, cloud: landing.cloud, region: landing.region, zone: landing.zone,
                    instance_type: landing.instanceType, machines: landing.machines, gpus_per_machine: landing.gpusPerMachine, spot: landing.spot,
                    hourly: landing.hourly, reason: report.decision.reason, kept: report.kept, feasible: report.feasible,
                    runners_up: report.decision.runnersUp, excluded: report.excluded.map { ExclusionJSON(offer: $0.offer.description, reason: $0.reason) })
            }
        }
        cost = plan.cost.map { cost in
            CostJSON(
                hourly_before: cost.hourlyBefore, hourly_after: cost.hourlyAfter, hourly_delta: cost.delta,
                resources: cost.resources.map { resource in
                    ResourceCostJSON(
                        address: resource.address.description, action: resource.action.rawValue, hourly_before: resource.before?.hourly,
                        hourly_after: resource.after?.hourly, before: resource.before?.what, after: resource.after?.what)
                },
                unpriced: cost.unpriced.map(\.description),
                budget: cost.budgets.first.map { BudgetJSON(hourly: $0.hourly, set_by: $0.setBy) })
        }
    }

    static func actions(_ change: ResourceChange) -> [String] {
        switch change.action {
        case .noop: return ["no-op"]
        case .create: return ["create"]
        case .update: return ["update"]
        case .delete: return ["delete"]
        case .replace: return change.createBeforeDestroy ? ["create", "delete"] : ["delete", "create"]
        }
    }

    /// The value with unknowns and secrets removed (maps drop the key, lists keep a null).
    static func known(_ value: Value) -> Value {
        switch value {
        case .unknown, .reference, .sensitive: return .null
        case .map(let entries): return .map(entries.filter { $0.value != .unknown && !$0.value.isReference && !$0.value.isSensitive }.mapValues(known))
        case .list(let items): return .list(items.map(known))
        default: return value
        }
    }

    /// `true` where a value is unknown, mirrored into maps and lists; nil where all is known.
    static func unknownMask(_ value: Value) -> Value? {
        switch value {
        case .unknown, .reference: return .bool(true)
        case .map(let entries):
            let masked = entries.compactMapValues(unknownMask)
            return .map(masked)
        case .list(let items):
            guard items.contains(where: \.containsUnknown) else { return .list([]) }
            return .list(items.map { unknownMask($0) ?? .bool(false) })
        default: return nil
        }
    }

    /// `true` where a value is secret, mirrored into maps and lists; nil where nothing is.
    static func sensitiveMask(_ value: Value) -> Value? {
        switch value {
        case .sensitive: return .bool(true)
        case .map(let entries): return .map(entries.compactMapValues(sensitiveMask))
        case .list(let items):
            guard items.contains(where: \.containsSensitive) else { return .list([]) }
            return .list(items.map { sensitiveMask($0) ?? .bool(false) })
        default: return nil
        }
    }

    public func encoded(pretty: Bool = false) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

extension Value {
    var isReference: Bool { if case .reference = self { return true } else { return false } }
    var isSensitive: Bool { if case .sensitive = self { return true } else { return false } }
}
