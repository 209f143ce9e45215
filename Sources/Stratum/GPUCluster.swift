import Foundation

/// A GPU model, as offer catalogs name it: `.h100`, `.a100_80gb`, or any string (`"B200"`).
public struct GPUModel: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var name: String

    public init(_ name: String) { self.name = name }
    public init(stringLiteral value: String) { self.name = value }

    public var description: String { name }

    public static let h100: GPUModel = "H100"
    public static let h200: GPUModel = "H200"
    public static let b200: GPUModel = "B200"
    public static let a100: GPUModel = "A100"
    public static let a100_80gb: GPUModel = "A100-80GB"
    public static let l40s: GPUModel = "L40S"
    public static let l4: GPUModel = "L4"
    public static let a10g: GPUModel = "A10G"
    public static let t4: GPUModel = "T4"
}

/// A gang of GPU machines whose cloud, region, zone and machine type are decided at plan time:
/// the cheapest offer of the merged catalogs that fits `count` GPUs of `gpu` on one of the
/// `clouds`, within `maxHourlyPrice` and over the `interconnect` asked for. The plan shows the
/// decision, the next two runners-up and why other offers were left out; state records it
/// (`stratum_placement.<name>`), and it stays until the request changes, a failover moves the
/// cluster, or `stratum plan --replace-placement` chooses again.
///
/// Where it lands it brings a network (`<name>`) and its nodes (`<name>[i]`), all in one zone:
///
///     GPUCluster(
///         "train", gpu: .h100, count: 16,
///         clouds: [.aws(region: "us-east-1", zones: ["us-east-1a", "us-east-1b"]), .gcp(region: "us-central1")],
///         spot: false, maxHourlyPrice: 400, interconnect: .rdma,
///         command: ["/opt/stratum/bin/stratum-trainer", "train"])
public struct GPUCluster: Resource {
    public let name: String
    public var gpu: GPUModel
    /// GPUs in the whole cluster; offers whose GPUs per machine divide it fit.
    public var count: Int
    /// Where the cluster may land, in order of preference when prices tie.
    public var clouds: [Placement]
    public var spot: Bool
    /// The most the whole cluster may cost an hour, USD; failover never goes above it.
    public var maxHourlyPrice: Double?
    public var interconnect: InterconnectRequirement
    public var image: String
    public var command: [String]
    public var env: [String: any StringExpression]
    public var labels: [String: String]
    /// Where the nodes keep checkpoints: a URL of your own, or nil for the cluster's own bucket
    /// (`checkpointBucket`).
    public var checkpoint: (any StringExpression)?
    /// The name of the bucket the cluster brings when `checkpoint` is nil (default
    /// `<name>-checkpoints`; object-store names are global, so a real stack names its own). It
    /// stays where it is when the cluster moves: on the first of `clouds` (or, when they span
    /// several clouds, the first whose buckets other clouds' nodes can be let into), and every
    /// node, wherever it lands, gets an identity that may use it.
    public var checkpointBucket: String?
    /// The block of the network the cluster brings where it lands.
    public var cidr: String
    public var explicitDependencies: [ResourceAddress] = []
    public let location: SourceLocation

    public init(
        _ name: String, gpu: GPUModel, count: Int, clouds: [Placement], spot: Bool = false, maxHourlyPrice: Double? = nil,
        interconnect: InterconnectRequirement = .any, image: String = "", command: [String], env: [String: any StringExpression] = [:],
        labels: [String: String] = [:], checkpoint: (any StringExpression)? = nil, checkpointBucket: String? = nil, cidr: String = "10.64.0.0/16",
        fileID: String = #fileID, line: Int = #line
    ) {
        self.name = name
        self.gpu = gpu
        self.count = count
        self.clouds = clouds
        self.spot = spot
        self.maxHourlyPrice = maxHourlyPrice
        self.interconnect = interconnect
        self.image = image
        self.command = command
        self.env = env
        self.labels = labels
        self.checkpoint = checkpoint
        self.checkpointBucket = checkpointBucket
        self.cidr = cidr
        self.location = SourceLocation(file: fileID, line: line)
    }

    /// The address of the cluster's placement decision in state.
    public var address: ResourceAddress { ResourceAddress(type: "stratum_placement", name: name) }

    /// The bucket the cluster brings for its checkpoints (nil when `checkpoint` names another
    /// place, or when no cloud of `clouds` can share one).
    public var bucket: Bucket? {
        guard checkpoint == nil, let home = Self.checkpointHome(clouds) else { return nil }
        var bucket = Bucket(checkpointBucket ?? "\(name)-checkpoints", on: home)
        bucket.explicitDependencies = explicitDependencies
        return bucket
    }

    /// Where a cluster that may land on `clouds` keeps its bucket: the first site when they are
    /// all one cloud, else the first whose buckets nodes of other clouds can be let into.
    static func checkpointHome(_ clouds: [Placement]) -> Placement? {
        guard let first = clouds.first else { return nil }
        let providers = Set(clouds.map(\.provider))
        var home = providers.count == 1 ? first : clouds.first { $0.lowering.sharesBuckets(with: providers) }
        home?.zones = []
        return home
    }

    public var request: ClusterRequest {
        ClusterRequest(
            name: name, gpu: gpu.name, count: count, sites: clouds.map { ClusterSite(cloud: $0.provider, region: $0.region, zones: $0.zones) },
            spot: spot, maxHourlyPrice: maxHourlyPrice, interconnect: interconnect)
    }

    public func declare(into content: inout StackContent) {
        var problems = nameDiagnostics(name, location: location)
        func problem(_ message: String) { problems.append(Diagnostic(address: address, message: message, location: location)) }
        if count < 1 { problem("count must be at least 1 GPU (got \(count))") }
        if clouds.isEmpty { problem("clouds must name at least one place to land, e.g. [.aws(region: \"us-east-1\")]") }
        let sites = clouds.map { "\($0.provider) \($0.region)" }
        if Set(sites).count != sites.count { problem("clouds lists the same cloud and region more than once") }
        if let cap = maxHourlyPrice, !(cap > 0) { problem("maxHourlyPrice must be a positive number of dollars an hour (got \(cap))") }
        if command.isEmpty { problem("command must not be empty") }
        if ClusterDecisions.racer(name) != nil { problem("a cluster's name must not end in -race<N>: that names a cluster's copies in `apply --race`") }
        if let why = CIDR.problem(in: cidr) { problem("invalid CIDR '\(cidr)': \(why)") }
        if checkpoint == nil, !clouds.isEmpty, Self.checkpointHome(clouds) == nil {
            problem(
                "none of the clouds \(Set(clouds.map(\.provider)).sorted().joined(separator: ", ")) can keep a bucket the others' nodes are let into "
                    + "(with their own identities); list one that can first, or pass checkpoint: a URL of your own")
        }
        content.diagnostics += problems
        content.clusters.append(ClusterDeclaration(request: request, location: location))
        // The bucket is declared whether or not the cluster has landed: it stays put when it moves.
        if problems.isEmpty, let bucket { bucket.declare(into: &content) }
        guard problems.isEmpty, let decision = ClusterDecisions.current[name] else { return }
        content.resources.append(DesiredResource(
            address: address, provider: "stratum", region: "global", inputs: decision.attributes, dependsOn: explicitDependencies, location: location))
        lower(on: decision.landing, as: decision.alias ?? name, into: &content)
        // In a race, each other landing gets a copy of its own (`<name>-race2`, ...), never
        // under the name the decision's own nodes carry.
        let racers = ClusterDecisions.racers[name] ?? []
        for (landing, copy) in zip(racers, ClusterDecisions.racerNames(name, count: racers.count, besides: decision.alias)) {
            lower(on: landing, as: copy, into: &content)
        }
    }

    /// Declares the cluster's network and nodes where `landing` put it, named `alias`.
    func lower(on landing: Landing, as alias: String, into content: inout StackContent) {
        guard let site = clouds.first(where: { $0.provider == landing.cloud && $0.region == landing.region }) else {
            content.diagnostics.append(Diagnostic(
                address: address, message: "the recorded placement (\(landing)) is not among the cluster's clouds; run plan with --replace-placement",
                location: location))
            return
        }
        var placement = site
        placement.zones = landing.zone.map { [$0] } ?? site.zones
        let network = Network(alias, cidr: cidr, on: placement)
        var pool = NodePool(
            alias, count: landing.machines,
            machine: MachineRequest(gpus: landing.gpusPerMachine, gpuClass: gpu.name, instanceType: landing.instanceType, spot: landing.spot),
            image: image, command: command, env: env, labels: labels, checkpoint: checkpoint ?? bucket?.url, network: network, on: placement)
        pool.checkpointBucket = bucket
        pool.explicitDependencies = explicitDependencies + [address]
        pool.gang = landing.machines > 1
        network.declare(into: &content)
        pool.declare(into: &content)
    }
}

/// A `GPUCluster` as the stack body declared it: what placement decides on.
public struct ClusterDeclaration: Sendable, Hashable {
    public var request: ClusterRequest
    public var location: SourceLocation
}

/// The placement decisions a stack body is evaluated with, by cluster name: a cluster without
/// one declares only its request (and no resources).
public enum ClusterDecisions {
    @TaskLocal public static var current: [String: PlacementDecision] = [:]
    /// Further landings raced against each cluster's decision (`apply --race`), by cluster.
    @TaskLocal public static var racers: [String: [Landing]] = [:]

    /// The name of a cluster's copy in a race: `train-race2` (its network and nodes carry it).
    public static func racerName(_ cluster: String, _ number: Int) -> String { "\(cluster)-race\(number)" }

    /// The names of `count` racing copies of `cluster`, from `-race2` on, skipping the name
    /// the decision's own nodes carry (`besides`).
    public static func racerNames(_ cluster: String, count: Int, besides alias: String?) -> [String] {
        var names: [String] = []
        var number = 2
        while names.count < count {
            let name = racerName(cluster, number)
            if name != alias { names.append(name) }
            number += 1
        }
        return names
    }

    /// The cluster and racer number of a racer's name, nil for any other name.
    public static func racer(_ name: String) -> (cluster: String, number: Int)? {
        guard let range = name.range(of: "-race", options: .backwards), let number = Int(name[range.upperBound...]) else { return nil }
        return (String(name[..<range.lowerBound]), number)
    }
}
