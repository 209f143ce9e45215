import Foundation

/// What the executor will do to one resource.
public enum ChangeAction: String, Sendable, Codable, CaseIterable {
    case noop = "no-op"
    case create
    case update
    case replace
    case delete
}

/// One resource's planned change, with attribute values before and after.
public struct ResourceChange: Sendable, Hashable, Codable {
    public var address: ResourceAddress
    public var provider: String
    public var region: String
    public var action: ChangeAction
    /// For `replace`: create the new resource before deleting the old one.
    public var createBeforeDestroy: Bool
    /// Attributes as refreshed from the provider; nil for creates.
    public var before: [String: Value]?
    /// Attributes after the change, `unknown` where not known until apply; nil for deletes.
    public var after: [String: Value]?
    /// Desired inputs, references unresolved: the executor resolves them as dependencies finish.
    public var inputs: [String: Value]
    /// Attributes whose change forces the replacement.
    public var replacedBy: [String]
    /// What this resource depends on (for deletes: what it depended on in state).
    public var dependencies: [ResourceAddress]
    /// The recorded state this change starts from; nil for creates.
    public var prior: ResourceState?
    /// Why the change is planned when the stack itself did not change, e.g. drift.
    public var reason: String?

    public init(
        address: ResourceAddress, provider: String, region: String, action: ChangeAction, createBeforeDestroy: Bool = false,
        before: [String: Value]?, after: [String: Value]?, inputs: [String: Value] = [:], replacedBy: [String] = [],
        dependencies: [ResourceAddress] = [], prior: ResourceState? = nil, reason: String? = nil
    ) {
        self.address = address
        self.provider = provider
        self.region = region
        self.action = action
        self.createBeforeDestroy = createBeforeDestroy
        self.before = before
        self.after = after
        self.inputs = inputs
        self.replacedBy = replacedBy
        self.dependencies = dependencies
        self.prior = prior
        self.reason = reason
    }

    /// Names of attributes whose value differs between before and after.
    public var changedAttributes: [String] {
        let keys = Set((before ?? [:]).keys).union((after ?? [:]).keys)
        return keys.sorted().filter { (before?[$0] ?? .null) != (after?[$0] ?? .null) }
    }
}

/// A resource that vanished from its cloud and is no longer declared: only state forgets it.
public struct VanishedResource: Sendable, Hashable, Codable {
    public var address: ResourceAddress
    public init(address: ResourceAddress) { self.address = address }
}

/// Everything `apply` will do, bound to the state it was computed from.
public struct Plan: Sendable, Codable {
    /// Bumped when the plan file layout changes incompatibly.
    public static let currentFormat = 1

    public var format: Int
    public var stack: String
    public var environment: String
    /// The state this plan was computed against; apply refuses it if either moved.
    public var lineage: String
    public var serial: Int
    public var createdAt: Date
    public var changes: [ResourceChange]
    /// Resources gone from their cloud and from the stack: apply drops them from state.
    public var vanished: [ResourceAddress]
    /// Declared outputs, references unresolved.
    public var outputs: [String: Value]
    /// Whether the plan destroys everything (from `destroy`).
    public var isDestroy: Bool
    /// What the stack's machines cost an hour before and after, from the offer catalog; nil
    /// when the plan was made without one.
    public var cost: PlanCost?
    /// Where the stack's GPU clusters land and why; empty without clusters.
    public var placements: [PlacementReport]?
    /// Resources that land together or not at all: each GPU cluster's nodes.
    public var gangs: [Gang]?
    /// Gangs raced against each other (`apply --race`): the first to land whole is kept, the
    /// others are released.
    public var races: [Race]?
    /// The churn schedule the stack declares (`stratum chaos churn` runs it); nil: none.
    public var churn: ChurnSchedule?

    public init(
        stack: String, environment: String, lineage: String, serial: Int, createdAt: Date, changes: [ResourceChange],
        vanished: [ResourceAddress] = [], outputs: [String: Value] = [:], isDestroy: Bool = false
    ) {
        self.format = Self.currentFormat
        self.stack = stack
        self.environment = environment
        self.lineage = lineage
        self.serial = serial
        self.createdAt = createdAt
        self.changes = changes
        self.vanished = vanished
        self.outputs = outputs
        self.isDestroy = isDestroy
    }

    /// Changes that do something.
    public var actionable: [ResourceChange] { changes.filter { $0.action != .noop } }

    public var hasChanges: Bool { !actionable.isEmpty || !vanished.isEmpty }

    public var counts: (add: Int, change: Int, destroy: Int) {
        var add = 0, change = 0, destroy = 0
        for c in changes {
            switch c.action {
            case .create: add += 1
            case .update: change += 1
            case .replace: add += 1; destroy += 1
            case .delete: destroy += 1
            case .noop: break
            }
        }
        return (add, change, destroy)
    }
}

/// Resources that land together or not at all (a GPU cluster's nodes, in one zone): when one
/// member cannot be created for lack of capacity or quota, no other member is started and the
/// members that exist are deleted, so the cluster can be tried elsewhere whole.
public struct Gang: Sendable, Hashable, Codable {
    public var name: String
    public var members: [ResourceAddress]

    public init(name: String, members: [ResourceAddress]) {
        self.name = name
        self.members = members
    }
}

/// Gangs started at once for one cluster: the first whose members all exist wins; the others
/// stop starting members and release those they have.
public struct Race: Sendable, Hashable, Codable {
    public var cluster: String
    /// Gang names, the cluster's own decision first.
    public var gangs: [String]

    public init(cluster: String, gangs: [String]) {
        self.cluster = cluster
        self.gangs = gangs
    }
}
