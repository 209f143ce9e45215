/// What each node of a pool asks for.
public struct MachineRequest: Sendable, Hashable {
    public var gpus: Int
    /// GPU class, e.g. `H100`; nil for CPU-only nodes.
    public var gpuClass: String?
    /// A specific instance type, when placement should not choose one.
    public var instanceType: String?
    public var cpus: Int
    public var memoryGiB: Int
    /// Spot (preemptible) capacity: cheaper, and the cloud may take it back.
    public var spot: Bool

    public init(gpus: Int = 0, gpuClass: String? = nil, instanceType: String? = nil, cpus: Int = 1, memoryGiB: Int = 1, spot: Bool = false) {
        self.spot = spot
        self.gpus = gpus
        self.gpuClass = gpuClass
        self.instanceType = instanceType
        self.cpus = cpus
        self.memoryGiB = memoryGiB
    }

    public static let cpu = MachineRequest()
    public static func gpu(_ gpuClass: String, count: Int) -> MachineRequest {
        MachineRequest(gpus: count, gpuClass: gpuClass)
    }
}

/// `count` identical nodes running a workload. Each node is its own resource,
/// `<provider>_node.<name>[i]`, so one lost node is recreated alone.
public struct NodePool: Resource {
    public let name: String
    public var count: Int
    public var machine: MachineRequest
    /// A container image the command runs in (through the NVIDIA container toolkit on GPU
    /// machines), or a cloud's machine image (`ami-…`, a GCE image, a marketplace image); empty:
    /// the command runs on the provider's default image itself.
    public var image: String
    public var command: [String]
    public var env: [String: any StringExpression]
    public var labels: [String: String]
    /// Where the pool keeps checkpoints (a bucket's `url`, or any URL): every node gets it as
    /// `STRATUM_CHECKPOINT_URL`.
    public var checkpoint: (any StringExpression)?
    /// The bucket behind `checkpoint`, when the pool's nodes should be given an identity that
    /// may use it: the pool's cloud makes one (an instance role, a service account, a managed
    /// identity) and, for a bucket on another cloud, asks that cloud to trust it.
    public var checkpointBucket: Bucket?
    public var network: Network?
    public var placement: Placement
    /// Nodes that must be close together (a GPU cluster's gang): where the cloud can, its
    /// lowering keeps them so — a cluster placement group on AWS, a compact placement policy on
    /// GCP, a proximity placement group on Azure, each named after the pool.
    public var gang = false
    /// The link conditions every node of the pool is held to (`LinkProfile`); nil: the
    /// provider's network as it is.
    public var link: LinkProfile?
    /// Per-node link conditions, by node index, over `link`: a pool with two nodes on a fast
    /// link and two on a slow one.
    public var links: [Int: LinkProfile] = [:]
    /// The stack's churn schedule, on this pool's nodes (`Churn`); nil: none.
    public var churn: Churn?
    public var explicitDependencies: [ResourceAddress] = []
    public let location: SourceLocation

    public init(
        _ name: String, count: Int, machine: MachineRequest = .cpu, image: String = "",
        command: [String], env: [String: any StringExpression] = [:], labels: [String: String] = [:],
        checkpoint: (any StringExpression)? = nil, network: Network? = nil, link: LinkProfile? = nil, churn: Churn? = nil, on placement: Placement = .local,
        fileID: String = #fileID, line: Int = #line
    ) {
        self.link = link
        self.churn = churn
        self.name = name
        self.count = count
        self.machine = machine
        self.image = image
        self.command = command
        self.env = env
        self.labels = labels
        self.checkpoint = checkpoint
        self.network = network
        self.placement = placement
        self.location = SourceLocation(file: fileID, line: line)
    }

    /// The address of the group; each node's is this with an index.
    public var address: ResourceAddress { placement.address(kind: "node", name: name) }

    /// The address of node `index`.
    public func node(_ index: Int) -> ResourceAddress { placement.address(kind: "node", name: name, index: index) }

    /// The link conditions of node `index`: its own, else the pool's; nil when unimpaired.
    public func link(for index: Int) -> LinkProfile? {
        let profile = links[index] ?? link
        return profile?.isUnimpaired == true ? nil : profile
    }

    /// The pool with nodes `nodes` held to `profile` (the rest keep theirs).
    public func link(_ profile: LinkProfile, nodes: Range<Int>) -> NodePool {
        var pool = self
        for index in nodes { pool.links[index] = profile }
        return pool
    }

    /// The provider ids of every node.
    public var ids: [Ref<String>] { (0..<max(count, 0)).map { Ref(node($0), "id") } }

    /// Inputs every node of the pool carries on any provider: the pool's name and size, and
    /// its checkpoint location (they reach the node's environment through the node contract).
    public var contractInputs: [String: Value] {
        var inputs: [String: Value] = ["pool": .string(name), "count": .int(count)]
        if let checkpoint { inputs["checkpoint_url"] = checkpoint.value }
        return inputs
    }

    /// Lets this pool's nodes, presenting `identity`, into `checkpointBucket` on another cloud:
    /// the nodes' `env` input with what the bucket's cloud says they need for it, or nil (with
    /// a diagnostic) where that cloud cannot trust them. A lowering calls it for a bucket its
    /// own cloud does not hold.
    public func federateCheckpoints(as identity: WorkloadIdentity?, into content: inout StackContent) -> Value? {
        guard let bucket = checkpointBucket else { return .map(env.mapValues(\.value)) }
        if let identity, let granted = bucket.placement.lowering.grant(bucket, to: identity, as: name, into: &content) {
            return .map(env.merging(granted) { _, granted in granted }.mapValues(\.value))
        }
        content.diagnostics.append(Diagnostic(
            address: address,
            message: "nodes on \(placement.provider) cannot be let into the bucket \(bucket.name) on \(bucket.placement.provider) with their own identity; "
                + "keep the checkpoints on \(placement.provider), or pass checkpoint: a URL the nodes reach by other means",
            location: location))
        return nil
    }

    public func declare(into content: inout StackContent) {
        content.diagnostics += nameDiagnostics(name, location: location)
        if count < 0 {
            content.diagnostics.append(Diagnostic(address: address, message: "count must not be negative (got \(count))", location: location))
            return
        }
        if command.isEmpty {
            content.diagnostics.append(Diagnostic(address: address, message: "command must not be empty", location: location))
        }
        if machine.gpus < 0 {
            content.diagnostics.append(Diagnostic(address: address, message: "gpus must not be negative (got \(machine.gpus))", location: location))
        }
        for problem in link?.problems ?? [] { content.diagnostics.append(Diagnostic(address: address, message: problem, location: location)) }
        for (index, profile) in links.sorted(by: { $0.key < $1.key }) {
            guard (0..<count).contains(index) else {
                content.diagnostics.append(Diagnostic(
                    address: address, message: "a link is set for node \(index), but the pool has nodes 0..<\(count)", location: location))
                continue
            }
            for problem in profile.problems { content.diagnostics.append(Diagnostic(address: node(index), message: problem, location: location)) }
        }
        if let churn {
            if let other = churn.schedule.pool, other != name {
                content.diagnostics.append(Diagnostic(
                    address: address, message: "the churn of pool '\(name)' names the pool '\(other)': leave its pool out", location: churn.location))
            }
            var schedule = churn.schedule
            schedule.pool = name
            content.churn.append(ChurnDeclaration(schedule: schedule, location: churn.location))
        }
        placement.lowering.declare(nodePool: self, into: &content)
    }
}

/// Any provider resource type, for types without a dedicated declaration (and for tests).
public struct CustomResource: Resource {
    public let address: ResourceAddress
    public var provider: String
    public var region: String
    public var inputs: [String: any ValueExpression]
    public var explicitDependencies: [ResourceAddress] = []
    public let location: SourceLocation

    public init(
        _ type: String, _ name: String, index: Int? = nil, provider: String, region: String = "default",
        inputs: [String: any ValueExpression] = [:], fileID: String = #fileID, line: Int = #line
    ) {
        self.address = ResourceAddress(type: type, name: name, index: index)
        self.provider = provider
        self.region = region
        self.inputs = inputs
        self.location = SourceLocation(file: fileID, line: line)
    }

    public subscript(attribute: String) -> Ref<String> { Ref(address, attribute) }

    public func declare(into content: inout StackContent) {
        content.diagnostics += nameDiagnostics(address.name, location: location)
        content.resources.append(
            DesiredResource(
                address: address, provider: provider, region: region, inputs: inputs.mapValues(\.value),
                dependsOn: explicitDependencies, location: location))
    }
}
