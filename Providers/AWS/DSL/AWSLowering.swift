import Stratum
import StratumCore

extension Placement {
    /// Amazon Web Services in `region`; `zones` lists the availability zones a network spans,
    /// in order of preference (default: the region's `a` and `b` zones).
    public static func aws(region: String, zones: [String] = []) -> Placement {
        Placement(provider: "aws", region: region, zones: zones, lowering: AWSLowering())
    }
}

/// How the portable resources become AWS resources when placed on `.aws(region:)`.
///
/// - `Network` → `aws_vpc` + one `aws_subnet` per zone + `aws_internet_gateway` +
///   `aws_route_table` + `aws_security_group` (all traffic from inside the VPC).
/// - `Bucket` → `aws_s3_bucket`.
/// - `NodePool` → one `aws_instance` per node, whose `subnet_ids` are the network's subnets in
///   zone order: a node that meets a capacity shortage in one zone is placed in the next. A pool
///   whose `checkpointBucket` is on AWS gets an `aws_instance_role` for it (named after the pool).
///   Each node carries its `link` (`NodePool.link(for:)`), which its user data shapes at boot.
/// - A bucket's grant to nodes of another cloud → an `aws_instance_role` that only their
///   identity may assume (a GCP service account's Google ID tokens; an Azure managed identity's
///   Entra tokens, whose tenant's issuer becomes the stack's `aws_oidc_provider.entra`); the
///   nodes get its ARN as `AWS_ROLE_ARN` and exchange their tokens with STS for its keys.
public struct AWSLowering: PlacementLowering {
    static let resourceTypes = ["network": "aws_vpc", "bucket": "aws_s3_bucket", "node": "aws_instance"]

    public init() {}

    public func resourceType(kind: String, on placement: Placement) -> String {
        Self.resourceTypes[kind] ?? "aws_\(kind)"
    }

    /// A deep-learning image with the NVIDIA driver and container runtime, resolved by AWS at launch.
    public static let defaultGPUImage = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"

    /// The zones a network placed on AWS spans.
    public static func zones(of placement: Placement) -> [String] {
        placement.zones.isEmpty ? ["\(placement.region)a", "\(placement.region)b"] : placement.zones
    }

    /// The subnets of `network`, one per zone in preference order.
    public static func subnets(of network: Network) -> [Ref<String>] {
        zones(of: network.placement).indices.map { Ref(ResourceAddress(type: "aws_subnet", name: network.name, index: $0), "id") }
    }

    /// The security group every node on `network` joins.
    public static func securityGroup(of network: Network) -> Ref<String> {
        Ref(ResourceAddress(type: "aws_security_group", name: network.name), "id")
    }

    public func declare(network: Network, into content: inout StackContent) {
        let region = network.placement.region
        let vpc = network.address
        let zones = Self.zones(of: network.placement)
        func add(_ type: String, index: Int? = nil, _ inputs: [String: Value]) {
            content.resources.append(DesiredResource(
                address: ResourceAddress(type: type, name: network.name, index: index), provider: "aws", region: region, inputs: inputs,
                dependsOn: network.explicitDependencies, location: network.location))
        }
        let vpcId = Value.reference(AttributeReference(address: vpc, attribute: "id"))
        add("aws_vpc", ["cidr": .string(network.cidr)])
        guard let blocks = CIDRSplit.subnets(of: network.cidr, count: zones.count) else {
            content.diagnostics.append(Diagnostic(address: vpc, message: "cannot split \(network.cidr) into \(zones.count) subnets, one per zone; use a larger block", location: network.location))
            return
        }
        for (i, zone) in zones.enumerated() {
            add("aws_subnet", index: i, ["vpc_id": vpcId, "cidr": .string(blocks[i]), "availability_zone": .string(zone), "map_public_ip": .bool(true)])
        }
        let gateway = ResourceAddress(type: "aws_internet_gateway", name: network.name)
        add("aws_internet_gateway", ["vpc_id": vpcId])
        add("aws_route_table", [
            "vpc_id": vpcId,
            "internet_gateway_id": .reference(AttributeReference(address: gateway, attribute: "id")),
            "subnet_ids": .list(Self.subnets(of: network).map(\.value)),
        ])
        add("aws_security_group", [
            "vpc_id": vpcId, "name": .string(network.name), "description": .string("Stratum network \(network.name)"),
            "ingress": .list([.map(["protocol": "-1", "from_port": -1, "to_port": -1, "cidr": .string(network.cidr)])]),
        ])
    }

    /// GCP service accounts' and Azure managed identities' tokens are trusted by a role.
    public func sharesBuckets(with clouds: Set<String>) -> Bool { clouds.isSubset(of: ["aws", "gcp", "azure"]) }

    public func grant(_ bucket: Bucket, to identity: WorkloadIdentity, as name: String, into content: inout StackContent) -> [String: any StringExpression]? {
        var role = AWS.InstanceRole(name, bucket: bucket, region: bucket.placement.region, webIdentities: [identity])
        switch identity.tokenSource {
        case "gcp":
            // IAM trusts Google's tokens without a registered provider.
            break
        case "azure":
            // An Entra tenant's issuer is registered once in the stack (one tenant per stack).
            let provider = AWS.OIDCProvider("entra", url: identity.issuer, clientIDs: [identity.audience])
            if !content.resources.contains(where: { $0.address == provider.address }) { provider.declare(into: &content) }
            role.providers = [provider.arn]
        default:
            return nil
        }
        role.declare(into: &content)
        return [
            "AWS_ROLE_ARN": role.roleARN, "STRATUM_WEB_IDENTITY": identity.tokenSource, "STRATUM_WEB_IDENTITY_AUDIENCE": identity.audience,
            "AWS_REGION": bucket.placement.region,
        ]
    }

    public func declare(bucket: Bucket, into content: inout StackContent) {
        if let why = S3BucketNames.problem(bucket.name) {
            content.diagnostics.append(Diagnostic(address: bucket.address, message: "invalid S3 bucket name '\(bucket.name)': \(why)", location: bucket.location))
        }
        content.resources.append(DesiredResource(
            address: bucket.address, provider: "aws", region: bucket.placement.region,
            inputs: ["name": .string(bucket.name), "versioning": .bool(bucket.versioning)],
            dependsOn: bucket.explicitDependencies, location: bucket.location))
    }

    public func declare(nodePool pool: NodePool, into content: inout StackContent) {
        guard let network = pool.network else {
            content.diagnostics.append(Diagnostic(address: pool.address, message: "a node pool on AWS needs a network (pass network: Network(…, on: .aws(region: …)))", location: pool.location))
            return
        }
        guard network.placement.provider == "aws", network.placement.region == pool.placement.region else {
            content.diagnostics.append(Diagnostic(address: pool.address, message: "the pool's network must be on AWS in \(pool.placement.region) too", location: pool.location))
            return
        }
        guard let instanceType = pool.machine.instanceType ?? AWSInstanceCatalog.instanceType(for: pool.machine) else {
            content.diagnostics.append(Diagnostic(
                address: pool.address,
                message: "no EC2 instance type known for \(pool.machine.gpus) × \(pool.machine.gpuClass ?? "GPU"); set machine.instanceType (e.g. p5.48xlarge)",
                location: pool.location))
            return
        }
        let isMachineImage = pool.image.hasPrefix("ami-") || pool.image.hasPrefix("resolve:ssm:")
        var inputs = pool.contractInputs.merging([
            "instance_type": .string(instanceType),
            "ami": .string(isMachineImage ? pool.image : Self.defaultGPUImage),
            "subnet_ids": .list(Self.subnets(of: network).map(\.value)),
            "security_group_ids": .list([Self.securityGroup(of: network).value]),
            "command": .list(pool.command.map(Value.string)),
            "env": .map(pool.env.mapValues(\.value)),
            "labels": .map(pool.labels.mapValues(Value.string)),
            "gpus": .int(pool.machine.gpus),
        ]) { $1 }
        if !isMachineImage, !pool.image.isEmpty { inputs["container_image"] = .string(pool.image) }
        if let gpuClass = pool.machine.gpuClass { inputs["gpu_class"] = .string(gpuClass) }
        if pool.machine.spot { inputs["spot"] = .bool(true) }
        if let bucket = pool.checkpointBucket {
            guard bucket.placement.provider == "aws" else {
                _ = pool.federateCheckpoints(as: nil, into: &content)
                return
            }
            let role = AWS.InstanceRole(pool.name, bucket: bucket, region: pool.placement.region)
            role.declare(into: &content)
            inputs["iam_instance_profile"] = role.instanceProfile.value
        }
        if pool.gang, pool.count > 1 {
            // A gang shares a cluster placement group (named after the pool: placement group
            // names are unique in an account's region).
            let group = AWS.PlacementGroup(pool.name + StackNaming.suffix, region: pool.placement.region)
            group.declare(into: &content)
            inputs["placement_group"] = group.id.value
        }
        for index in 0..<pool.count {
            var nodeInputs = inputs
            nodeInputs["index"] = .int(index)
            nodeInputs["link"] = pool.link(for: index)?.value
            nodeInputs.merge(coordinatorInput(index: index, rankZero: pool.node(0))) { $1 }
            content.resources.append(DesiredResource(
                address: pool.node(index), provider: "aws", region: pool.placement.region, inputs: nodeInputs,
                dependsOn: pool.explicitDependencies, location: pool.location))
        }
    }
}

/// The EC2 instance type for a GPU class and count, where there is one obvious choice.
public enum AWSInstanceCatalog {
    static let gpuTypes: [String: [Int: String]] = [
        "H100": [8: "p5.48xlarge", 1: "p5.4xlarge"],
        "H200": [8: "p5en.48xlarge"],
        "A100": [8: "p4d.24xlarge"],
        "A10G": [1: "g5.xlarge", 4: "g5.12xlarge", 8: "g5.48xlarge"],
        "L4": [1: "g6.xlarge", 4: "g6.12xlarge", 8: "g6.48xlarge"],
        "L40S": [1: "g6e.xlarge", 4: "g6e.12xlarge", 8: "g6e.48xlarge"],
        "T4": [1: "g4dn.xlarge", 4: "g4dn.12xlarge"],
    ]

    public static func instanceType(for machine: MachineRequest) -> String? {
        if machine.gpus == 0 {
            if machine.cpus <= 2, machine.memoryGiB <= 8 { return "m7i.large" }
            if machine.cpus <= 4, machine.memoryGiB <= 16 { return "m7i.xlarge" }
            if machine.cpus <= 16, machine.memoryGiB <= 64 { return "m7i.4xlarge" }
            return nil
        }
        guard let gpuClass = machine.gpuClass?.uppercased() else { return nil }
        return gpuTypes[gpuClass]?[machine.gpus]
    }
}

/// Splits an IPv4 block into equal subnets.
enum CIDRSplit {
    /// `count` consecutive blocks inside `cidr`, each 4 prefix bits longer (up to /28), or nil.
    static func subnets(of cidr: String, count: Int) -> [String]? {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let prefix = Int(parts[1]) else { return nil }
        let octets = parts[0].split(separator: ".").compactMap { UInt32($0) }
        guard octets.count == 4 else { return nil }
        let base = octets.reduce(UInt32(0)) { $0 << 8 | $1 }
        var newPrefix = min(prefix + 4, 28)
        while newPrefix < 28, (1 << (newPrefix - prefix)) < count { newPrefix += 1 }
        guard newPrefix > prefix || count == 1, (1 << max(newPrefix - prefix, 0)) >= count else { return nil }
        return (0..<count).map { i in
            let address = base + UInt32(i) << UInt32(32 - newPrefix)
            let text = [24, 16, 8, 0].map { String((address >> UInt32($0)) & 255) }.joined(separator: ".")
            return "\(text)/\(newPrefix)"
        }
    }
}

