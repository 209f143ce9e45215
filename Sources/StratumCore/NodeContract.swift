/// What every node on every provider is told about itself, as environment variables: the same
/// names and meanings on Local and in every cloud, so a workload runs anywhere unchanged.
///
/// - `STRATUM_NODE_NAME`: `<cluster>-<index>`, unique within the stack.
/// - `STRATUM_NODE_INDEX`, `STRATUM_NODE_COUNT`: this node's rank and the pool's size.
/// - `STRATUM_CLUSTER`: the pool (node group) the node belongs to.
/// - `STRATUM_CLOUD`, `STRATUM_REGION`, `STRATUM_ZONE`: the provider and where the node runs.
/// - `STRATUM_CHECKPOINT_URL`: where the pool keeps checkpoints, when the stack declares it.
/// - `STRATUM_COORDINATOR`: the address of rank 0 (its IP, or a name the network resolves);
///   rank 0 itself, and a node whose provider knows rank 0's address only at boot, learn it then.
/// - `STRATUM_NODE_IP`: the node's own private address, where its peers reach it (cloud nodes
///   learn it at boot; a Local node on the host network has 127.0.0.1).
public struct NodeContract: Sendable, Hashable {
    public var cluster: String
    public var index: Int
    public var count: Int
    public var cloud: String
    public var region: String
    /// Nil where the zone is known only once the node runs (a cloud that picks the zone at
    /// launch): that provider's node bootstrap sets `STRATUM_ZONE` itself.
    public var zone: String?
    public var checkpointURL: String?
    /// Rank 0's address, where the provider knows it before the node boots.
    public var coordinator: String?

    public init(
        cluster: String, index: Int, count: Int, cloud: String, region: String, zone: String?, checkpointURL: String? = nil, coordinator: String? = nil
    ) {
        self.coordinator = coordinator
        self.cluster = cluster
        self.index = index
        self.count = count
        self.cloud = cloud
        self.region = region
        self.zone = zone
        self.checkpointURL = checkpointURL
    }

    /// The contract of a node resource: its pool from the `pool` input (else the resource's
    /// name), its rank from `index` (else the address index), the pool size from `count`, the
    /// checkpoint location from `checkpoint_url`.
    public init(node: ResolvedResource, cloud: String, zone: String?) {
        let inputs = node.inputs
        self.init(
            cluster: inputs["pool"]?.stringValue ?? node.address.name,
            index: inputs["index"]?.intValue ?? node.address.index ?? 0,
            count: inputs["count"]?.intValue ?? 1,
            cloud: cloud, region: node.region, zone: zone,
            checkpointURL: inputs["checkpoint_url"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 },
            coordinator: inputs["coordinator"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 })
    }

    public static let nodeName = "STRATUM_NODE_NAME"
    public static let nodeIndex = "STRATUM_NODE_INDEX"
    public static let nodeCount = "STRATUM_NODE_COUNT"
    public static let clusterName = "STRATUM_CLUSTER"
    public static let cloudName = "STRATUM_CLOUD"
    public static let regionName = "STRATUM_REGION"
    public static let zoneName = "STRATUM_ZONE"
    public static let checkpointURLName = "STRATUM_CHECKPOINT_URL"
    public static let coordinatorName = "STRATUM_COORDINATOR"
    public static let nodeIPName = "STRATUM_NODE_IP"

    /// Every variable of the contract.
    public static let variables = [nodeName, nodeIndex, nodeCount, clusterName, cloudName, regionName, zoneName, checkpointURLName]

    public var name: String { "\(cluster)-\(index)" }

    /// The contract's variables (without `STRATUM_ZONE` when the zone is not known yet, and
    /// without `STRATUM_CHECKPOINT_URL` when none is declared).
    public var environment: [String: String] {
        var env = [
            Self.nodeName: name, Self.nodeIndex: String(index), Self.nodeCount: String(count), Self.clusterName: cluster,
            Self.cloudName: cloud, Self.regionName: region,
        ]
        if let zone { env[Self.zoneName] = zone }
        if let checkpointURL { env[Self.checkpointURLName] = checkpointURL }
        if let coordinator { env[Self.coordinatorName] = coordinator }
        return env
    }

    /// A node's full environment: what the stack set, with the contract's variables on top (a
    /// stack cannot make a node lie about where it is).
    public func environment(over stackEnv: [String: String]) -> [String: String] {
        stackEnv.merging(environment) { $1 }
    }

    /// The `env` input of a node resource as strings.
    public static func stackEnvironment(of node: ResolvedResource) -> [String: String] {
        guard case .map(let map)? = node.inputs["env"] else { return [:] }
        return map.mapValues { $0.stringValue ?? $0.description }
    }

    /// The plan hook of a node kind: a node recorded before its pool's size was one of its
    /// inputs (state written by an earlier Stratum) is read as having today's size, so an
    /// upgrade alone replaces no running node. A node made since carries the size it was given,
    /// and a change of size replaces it (its environment would otherwise say the old one).
    public static func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        var prior = prior
        if prior.attributes["count"] == nil, let count = desired["count"] { prior.attributes["count"] = count }
        return PlanReview(prior: prior)
    }
}
