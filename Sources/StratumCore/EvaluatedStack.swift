/// A stack after its body ran: resources, outputs and where its configuration came from.
public struct EvaluatedStack: Sendable {
    public init(
        name: String, environment: String, resources: [DesiredResource], outputs: [String: Value], graph: ResourceGraph, budgets: [BudgetCap] = [],
        clusters: [ClusterRequest] = []
    ) {
        self.budgets = budgets
        self.clusters = clusters
        self.name = name
        self.environment = environment
        self.resources = resources
        self.outputs = outputs
        self.graph = graph
    }

    public var name: String
    public var environment: String
    public var resources: [DesiredResource]
    public var outputs: [String: Value]
    /// Dependency edges: each resource to those it needs first.
    public var graph: ResourceGraph
    /// Caps on the hourly cost of the stack's machines: the stack's `Budget`s and its
    /// environment's `budget_per_hour`.
    public var budgets: [BudgetCap]
    /// The stack's GPU clusters, whose placement is decided before the plan.
    public var clusters: [ClusterRequest]
    /// Where the clusters land and why, once placement decided (empty before).
    public var placements: [PlacementReport] = []
    /// The churn schedule the stack declares (`Churn`, `NodePool(churn:)`), checked against its
    /// pools; nil: none.
    public var churn: ChurnSchedule?

    public var resourcesByAddress: [ResourceAddress: DesiredResource] {
        Dictionary(resources.map { ($0.address, $0) }, uniquingKeysWith: { first, _ in first })
    }
}

