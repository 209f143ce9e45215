import Foundation
import Metrics
import StratumCore
import StratumState

/// What a reconcile found and did: every resource out of shape, why, what was done about it,
/// and the stack's hourly cost. `stratum reconcile --report FILE` writes it as JSON.
public struct DriftReport: Sendable, Codable, Equatable {
    /// Why a resource is out of shape.
    public enum Kind: String, Sendable, Codable {
        /// Recorded in state, gone from its cloud: it is made again.
        case missing
        /// Its attributes changed outside Stratum: they are set back.
        case changed
        /// It failed, was preempted, or stayed unhealthy past its grace: it is replaced.
        case failed
        /// Gone from its cloud and no longer declared: state forgets it.
        case forgotten
        /// Not drift: the stack declares something other than what exists (a new or changed
        /// resource); reconcile applies it all the same.
        case declared
    }

    /// One attribute, as recorded (`before`) and as found or wanted (`after`).
    public struct Attribute: Sendable, Codable, Equatable {
        public var name: String
        public var before: Value?
        public var after: Value?
    }

    public struct Item: Sendable, Codable, Equatable {
        public var address: String
        public var kind: Kind
        public var reason: String
        /// The change that brings it back in shape (`create`, `update`, `replace`, `delete`).
        public var action: String
        /// For `changed`: each attribute as recorded and as found live; for the rest, the
        /// attributes the change sets (before: as found, after: as declared).
        public var attributes: [Attribute]
        /// `fixed`, `failed` (with `error`), `reported` (policy report) or `not attempted`.
        public var outcome: String
        public var error: String?
    }

    public struct Cost: Sendable, Codable, Equatable {
        public var hourly_before: Double
        public var hourly_after: Double
        public var unpriced: [String]

        public init(hourly_before: Double, hourly_after: Double, unpriced: [String]) {
            self.hourly_before = hourly_before
            self.hourly_after = hourly_after
            self.unpriced = unpriced
        }
    }

    /// A node as the pass found it: `health` is ok, unhealthy, failed or unknown (no endpoint).
    public struct Node: Sendable, Codable, Equatable {
        public var address: String
        public var provider: String
        public var zone: String
        public var health: String
        public var detail: String

        public init(address: String, provider: String, zone: String, health: String, detail: String) {
            self.address = address
            self.provider = provider
            self.zone = zone
            self.health = health
            self.detail = detail
        }
    }

    public var stack: String
    public var environment: String
    public var policy: String
    /// `in-shape`, `fixed`, `reported`, `failed` or `skipped`.
    public var outcome: String
    public var exit_code: Int32
    public var started_at: Date
    public var finished_at: Date
    public var duration_seconds: Double
    public var resources: Int
    public var drift: [Item]
    public var cost: Cost?
    public var nodes: [Node] = []
    /// Why the run failed or was skipped.
    public var error: String?

    public init(
        stack: String, environment: String, policy: String, outcome: String, exitCode: Int32, startedAt: Date, finishedAt: Date, resources: Int,
        drift: [Item], cost: Cost?, error: String? = nil
    ) {
        self.stack = stack
        self.environment = environment
        self.policy = policy
        self.outcome = outcome
        self.exit_code = exitCode
        self.started_at = startedAt
        self.finished_at = finishedAt
        self.duration_seconds = finishedAt.timeIntervalSince(startedAt)
        self.resources = resources
        self.drift = drift
        self.cost = cost
        self.error = error
    }

    /// Records the pass in the metrics (`EngineMetrics`): its outcome and duration, the state's
    /// resources, nodes by provider, zone and health, drift by kind, the hourly cost, and when a
    /// pass last ended without error. `previousNodes` are the node series the last pass set,
    /// set to 0 where they are gone.
    public func record(previousNodes: Set<[String]> = []) -> Set<[String]> {
        let scope = [("stack", stack), ("environment", environment)]
        Counter(label: EngineMetrics.reconcileRuns, dimensions: scope + [("outcome", outcome)]).increment()
        Timer(label: EngineMetrics.reconcileSeconds, dimensions: scope).recordNanoseconds(Int64(max(0, duration_seconds) * 1e9))
        guard outcome != "failed", outcome != "skipped" else { return previousNodes }
        Gauge(label: EngineMetrics.lastSuccess, dimensions: scope).record(finished_at.timeIntervalSince1970)
        let failed = drift.filter { $0.kind == .failed }.count
        Gauge(label: EngineMetrics.resources, dimensions: scope + [("state", "failed")]).record(Double(failed))
        Gauge(label: EngineMetrics.resources, dimensions: scope + [("state", "ok")]).record(Double(max(0, resources - failed)))
        for kind in [Kind.missing, .changed, .failed, .forgotten, .declared] {
            Gauge(label: EngineMetrics.drift, dimensions: scope + [("kind", kind.rawValue)]).record(Double(drift.filter { $0.kind == kind }.count))
        }
        if let cost { Gauge(label: EngineMetrics.costPerHour, dimensions: scope).record(cost.hourly_after) }
        var counts: [[String]: Int] = [:]
        for node in nodes { counts[[node.provider, node.zone, node.health], default: 0] += 1 }
        for series in previousNodes.union(counts.keys) {
            Gauge(label: EngineMetrics.nodes, dimensions: scope + [("provider", series[0]), ("zone", series[1]), ("health", series[2])])
                .record(Double(counts[series] ?? 0))
        }
        return Set(counts.keys)
    }

    /// How many items are drift proper (everything but `declared`).
    public var driftCount: Int { drift.filter { $0.kind != .declared }.count }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }

    /// A value as the report may show it: a sensitive one (a secret) never.
    static func shown(_ value: Value?) -> Value? {
        guard let value else { return nil }
        return value.containsSensitive ? .string("(sensitive)") : value
    }

    /// The items of `plan`: each change it makes, classified against what state recorded
    /// (`recorded`) and what the refresh found (`refreshed`).
    public static func items(plan: Plan, recorded: [ResourceAddress: ResourceState], refreshed: RefreshResult?) -> [Item] {
        var items: [Item] = []
        for change in plan.changes where change.action != .noop {
            let before = recorded[change.address]
            let live = refreshed?.live[change.address] ?? nil
            let gone = before != nil && refreshed != nil && live == nil
            var kind = Kind.declared
            var reason = change.reason ?? "the stack declares it so"
            var attributes: [Attribute] = []
            if gone {
                kind = .missing
                reason = "it no longer exists (deleted outside Stratum)"
            } else if let failure = live?.failure ?? before?.failure {
                kind = .failed
                reason = failure
            } else if let before, let live, before.attributes != live.attributes {
                let names = Set(before.attributes.keys).union(live.attributes.keys).filter { before.attributes[$0] != live.attributes[$0] }
                    .filter { !$0.hasPrefix("stratum_") }
                if !names.isEmpty {
                    kind = .changed
                    reason = "changed outside Stratum: \(names.sorted().joined(separator: ", "))"
                    attributes = names.sorted().map { Attribute(name: $0, before: shown(before.attributes[$0]), after: shown(live.attributes[$0])) }
                }
            }
            if attributes.isEmpty {
                attributes = change.changedAttributes.map { Attribute(name: $0, before: shown(change.before?[$0]), after: shown(change.after?[$0])) }
            }
            items.append(Item(address: change.address.description, kind: kind, reason: reason, action: change.action.rawValue, attributes: attributes, outcome: "pending"))
        }
        for address in plan.vanished {
            items.append(Item(
                address: address.description, kind: .forgotten, reason: "gone from its cloud and no longer declared", action: "forget", attributes: [],
                outcome: "pending"))
        }
        return items.sorted { $0.address < $1.address }
    }
}
