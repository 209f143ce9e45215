/// Where a portable resource lives: which provider manages it, in which region, and how the
/// portable resources become that provider's resources (its lowering).
///
/// A cloud's library defines its own placements, e.g. `.aws(region:)` in StratumAWS, whose
/// lowering turns a `Network` into that cloud's network resources. Two placements are equal
/// when provider, region and zones are.
public struct Placement: Sendable, Hashable {
    /// The provider's name, which also prefixes its resource types (`local_bucket`).
    public var provider: String
    public var region: String
    /// Zones the provider may use, in order of preference (empty: the provider's default).
    public var zones: [String]
    /// How `Network`, `Bucket` and `NodePool` become this provider's resources.
    public var lowering: any PlacementLowering

    public init(provider: String, region: String, zones: [String] = [], lowering: any PlacementLowering = GenericLowering()) {
        self.provider = provider
        self.region = region
        self.zones = zones
        self.lowering = lowering
    }

    /// The embedded default: nodes are local processes, buckets are directories.
    public static let local = Placement(provider: "local", region: "local")

    public static func == (a: Placement, b: Placement) -> Bool {
        a.provider == b.provider && a.region == b.region && a.zones == b.zones
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(provider)
        hasher.combine(region)
        hasher.combine(zones)
    }

    /// The address of a portable resource of `kind` (`network`, `bucket`, `node`) on this placement.
    public func address(kind: String, name: String, index: Int? = nil) -> ResourceAddress {
        ResourceAddress(type: lowering.resourceType(kind: kind, on: self), name: name, index: index)
    }
}

/// How a provider turns the portable resources into its own. Each method is called after the
/// resource's portable checks (name, CIDR, count, command) and appends resources and
/// diagnostics to `content`. The defaults are the generic lowering: one resource of type
/// `<provider>_<kind>` per portable resource (one per node for a pool), with the portable
/// inputs unchanged, which is what Local and custom providers receive.
public protocol PlacementLowering: Sendable {
    /// The resource type of a portable `kind` (`network`, `bucket`, `node`) on `placement`.
    func resourceType(kind: String, on placement: Placement) -> String
    func declare(network: Network, into content: inout StackContent)
    func declare(bucket: Bucket, into content: inout StackContent)
    func declare(nodePool: NodePool, into content: inout StackContent)
    /// Whether nodes on every provider of `clouds` can be let into a bucket this lowering
    /// places: where a `GPUCluster` that may land on several clouds keeps its checkpoints.
    func sharesBuckets(with clouds: Set<String>) -> Bool
    /// Declares what lets nodes presenting `identity` use `bucket` (a bucket this lowering
    /// placed), named after `name`; returns the environment those nodes need to use it, or nil
    /// where this cloud cannot trust that identity.
    func grant(_ bucket: Bucket, to identity: WorkloadIdentity, as name: String, into content: inout StackContent) -> [String: any StringExpression]?
}

extension PlacementLowering {
    public func resourceType(kind: String, on placement: Placement) -> String { "\(placement.provider)_\(kind)" }

    /// The generic lowering's buckets are reached by their URL alone: there is nothing to trust.
    public func sharesBuckets(with clouds: Set<String>) -> Bool { true }

    public func grant(_ bucket: Bucket, to identity: WorkloadIdentity, as name: String, into content: inout StackContent) -> [String: any StringExpression]? {
        [:]
    }

    public func declare(network: Network, into content: inout StackContent) {
        content.resources.append(
            DesiredResource(
                address: network.address, provider: network.placement.provider, region: network.placement.region,
                inputs: ["cidr": .string(network.cidr)], dependsOn: network.explicitDependencies, location: network.location))
    }

    public func declare(bucket: Bucket, into content: inout StackContent) {
        content.resources.append(
            DesiredResource(
                address: bucket.address, provider: bucket.placement.provider, region: bucket.placement.region,
                inputs: ["name": .string(bucket.name), "versioning": .bool(bucket.versioning)],
                dependsOn: bucket.explicitDependencies, location: bucket.location))
    }

    public func declare(nodePool pool: NodePool, into content: inout StackContent) {
        var inputs = pool.contractInputs.merging([
            "image": .string(pool.image),
            "command": .list(pool.command.map(Value.string)),
            "env": .map(pool.env.mapValues(\.value)),
            "labels": .map(pool.labels.mapValues(Value.string)),
            "gpus": .int(pool.machine.gpus),
            "cpus": .int(pool.machine.cpus),
            "memory_gib": .int(pool.machine.memoryGiB),
        ]) { $1 }
        if let gpuClass = pool.machine.gpuClass { inputs["gpu_class"] = .string(gpuClass) }
        if let instanceType = pool.machine.instanceType { inputs["instance_type"] = .string(instanceType) }
        if let network = pool.network { inputs["network_id"] = network.id.value }
        if pool.machine.spot { inputs["spot"] = .bool(true) }
        if pool.placement.zones.count == 1 { inputs["zone"] = .string(pool.placement.zones[0]) }
        for index in 0..<pool.count {
            var nodeInputs = inputs
            nodeInputs["index"] = .int(index)
            // Local nodes share the machine's loopback.
            nodeInputs["coordinator"] = "127.0.0.1"
            if let link = pool.link(for: index) { nodeInputs["link"] = link.value }
            content.resources.append(
                DesiredResource(
                    address: pool.node(index), provider: pool.placement.provider, region: pool.placement.region,
                    inputs: nodeInputs, dependsOn: pool.explicitDependencies, location: pool.location))
        }
    }
}

/// The generic lowering: `<provider>_<kind>` resources with the portable inputs (Local and
/// providers without a lowering of their own).
public struct GenericLowering: PlacementLowering {
    public init() {}
}

/// Common to every resource declaration: an address and explicit dependencies.
public protocol Resource: Declaration {
    var address: ResourceAddress { get }
    /// Dependencies added with `dependsOn`, beyond those implied by references.
    var explicitDependencies: [ResourceAddress] { get set }
}

extension Resource {
    /// Makes this resource wait for `others` even though it refers to none of their attributes.
    public func dependsOn(_ others: any Resource...) -> Self {
        var copy = self
        copy.explicitDependencies += others.map(\.address)
        return copy
    }

    /// Refers to any attribute by name, for attributes without a typed accessor.
    public func attribute<T>(_ name: String, as type: T.Type = String.self) -> Ref<T> {
        Ref(address, name)
    }

    func nameDiagnostics(_ name: String, location: SourceLocation) -> [Diagnostic] {
        guard ResourceAddress.isName(name) else {
            return [Diagnostic(address: address, message: "invalid name '\(name)': use letters, digits, '-' and '_'", location: location)]
        }
        return []
    }
}
