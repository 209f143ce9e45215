import Foundation
import StratumBootstrap
import StratumCloud
import StratumCore

/// An EC2 instance. `subnet_ids` lists acceptable subnets in order of preference (one per
/// zone, typically): when AWS has no capacity for the instance type in one, the next is
/// tried, each with its own ClientToken derived from the engine's token, so failover never
/// makes a second machine.
struct InstanceKind: EC2ResourceKind {
    static let typeName = "aws_instance"

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        NodeContract.review(prior, desired: desired)
    }
    let type = Self.typeName

    func billing(_ attributes: [String: Value], region: String) -> Billing? {
        attributes["instance_type"]?.stringValue.map { .machines(instanceType: $0, region: region, spot: attributes["spot"]?.boolValue == true, count: 1) }
    }
    let describeAction = "DescribeInstances"
    let itemsPath = "reservationSet"
    let idField = "instanceId"
    let idFilter = "instance-id"
    /// How long a delete waits for the instance to reach `terminated` (its subnet and
    /// security group cannot be deleted before).
    var terminationTimeout: Duration = .seconds(900)

    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "ami": .input(forceNew: true, required: true),
            "instance_type": .input(forceNew: true, required: true),
            "subnet_ids": .input(required: true),
            "security_group_ids": .input(forceNew: true),
            "placement_group": .input(forceNew: true),
            "key_name": .input(forceNew: true),
            // The instance profile (an aws_instance_role's) whose role the node's software uses.
            "iam_instance_profile": .input(forceNew: true),
            // These three become the instance's user data, which EC2 keeps in plain text.
            "user_data": .input(forceNew: true, plainText: true),
            // The bundled trainer, fetched from the cluster's bucket and built at boot (StratumBootstrap).
            // Rank 0's address (a reference to its private IP): the node contract's STRATUM_COORDINATOR.
            "coordinator": .input(forceNew: true),
            "trainer_url": .input(forceNew: true),
            "trainer_sha256": .input(forceNew: true),
            "trainer_config": .input(forceNew: true, plainText: true),
            "trainer_arguments": .input(forceNew: true, plainText: true),
            "command": .input(forceNew: true, plainText: true),
            // A Secret here goes to SSM Parameter Store and is read by the node with its role
            // (AWSNodeSecrets); plain entries are in the user data.
            "env": .input(forceNew: true, deliversSecrets: true),
            "container_image": .input(forceNew: true),
            // The node's link conditions (LinkProfile.value), shaped by its user data at boot: a change replaces the machine.
            "link": .input(forceNew: true),
            "root_volume_gib": .input(forceNew: true),
            "root_device_name": .input(forceNew: true),
            "spot": .input(forceNew: true),
            "pool": .input(forceNew: true),
            "index": .input(forceNew: true),
            "count": .input(forceNew: true),
            "checkpoint_url": .input(forceNew: true, plainText: true),
            "labels": .input(),
            "gpus": .input(forceNew: true),
            "gpu_class": .input(forceNew: true),
            "subnet_id": .computed,
            "availability_zone": .computed,
            "private_ip": .computed,
            "public_ip": .computed,
            "state": .computed,
        ]) { $1 })
    }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let type = resource.inputs["instance_type"]?.stringValue, !AWSInstanceTypes.looksValid(type) {
            problems.append(AWSValidation.problem(resource, "'\(type)' is not an EC2 instance type (expected FAMILY.SIZE, e.g. p5.48xlarge)"))
        }
        if case .list(let subnets)? = resource.inputs["subnet_ids"], subnets.isEmpty {
            problems.append(AWSValidation.problem(resource, "subnet_ids must list at least one subnet"))
        }
        if let problem = AWSNodeSecrets.problem(resource.inputs) { problems.append(AWSValidation.problem(resource, problem)) }
        return problems
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        let subnets = resource.strings("subnet_ids")
        guard !subnets.isEmpty else { throw ProviderError(.permanent, "subnet_ids must list at least one subnet", address: resource.address) }
        // A secret that arrived through a reference resolved only now is checked again here.
        if let problem = AWSNodeSecrets.problem(resource.inputs) { throw ProviderError(.permanent, problem, address: resource.address) }
        let secrets = try await AWSNodeSecrets.put(resource, client: ec2.client)
        var stockouts: [String] = []
        for (i, subnet) in subnets.enumerated() {
            // AWS refuses one ClientToken with different parameters, so each subnet gets its own.
            let clientToken = i == 0 ? token : "\(token)-\(i)"
            do {
                let response = try await ec2.call("RunInstances", try runParameters(resource, subnet: subnet, clientToken: clientToken, tags: tags, secrets: secrets), idempotent: false)
                guard let item = response.items("instancesSet").first, let id = item.string("instanceId") else {
                    throw ProviderError(.transient, "RunInstances returned no instance", address: resource.address)
                }
                return resource.state(id: id, computed: computed(from: item))
            } catch let error as ProviderError where error.kind == .capacity {
                stockouts.append("\(subnet): \(error.message)")
            } catch let error as ProviderError where error.kind == .permanent && error.message.contains("iamInstanceProfile") {
                // A new instance profile takes a few seconds to reach EC2: worth a retry.
                throw ProviderError(
                    .transient, "\(error.message) (an instance profile made moments ago is not yet known to EC2; retrying)", address: resource.address)
            }
        }
        let type = resource.string("instance_type") ?? "?"
        // Every zone allowed is out: the region is, as far as this resource may go.
        throw ProviderError(
            .capacity,
            "no capacity for \(type) in any of the \(subnets.count) subnet(s) allowed (\(stockouts.joined(separator: "; "))); add subnets in other zones to subnet_ids, or try another region",
            address: resource.address, scope: subnets.count > 1 ? .region(resource.region) : .zone(nil))
    }

    func runParameters(_ resource: ResolvedResource, subnet: String, clientToken: String, tags: [String: String], secrets: [String: String] = [:]) throws -> EC2Parameters {
        var p = EC2Parameters()
        p.add("ImageId", try resource.requireString("ami"))
        p.add("InstanceType", try resource.requireString("instance_type"))
        p.add("MinCount", "1")
        p.add("MaxCount", "1")
        p.add("ClientToken", clientToken)
        p.add("SubnetId", subnet)
        p.add(list: "SecurityGroupId", resource.strings("security_group_ids"))
        if let group = resource.string("placement_group"), !group.isEmpty { p.add("Placement.GroupName", group) }
        if let key = resource.string("key_name"), !key.isEmpty { p.add("KeyName", key) }
        if let profile = resource.string("iam_instance_profile"), !profile.isEmpty { p.add("IamInstanceProfile.Name", profile) }
        let machine = AWSInstanceCatalog.bootstrapMachine(
            instanceType: try resource.requireString("instance_type"), gpus: resource.inputs["gpus"]?.intValue, gpuClass: resource.string("gpu_class"))
        if let userData = try NodeUserData.render(resource, flavour: .aws, machine: machine, secrets: secrets) { p.add("UserData", userData.bytes.base64EncodedString()) }
        if let size = resource.inputs["root_volume_gib"]?.intValue {
            p.add("BlockDeviceMapping.1.DeviceName", resource.string("root_device_name") ?? "/dev/sda1")
            p.add("BlockDeviceMapping.1.Ebs.VolumeSize", String(size))
            p.add("BlockDeviceMapping.1.Ebs.VolumeType", "gp3")
            p.add("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true")
        }
        if resource.inputs["spot"]?.boolValue == true {
            p.add("InstanceMarketOptions.MarketType", "spot")
            p.add("InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time")
            p.add("InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "terminate")
        }
        var instanceTags = tags
        for (key, value) in OwnershipTags.userTags(resource.inputs["labels"]) where instanceTags[key] == nil { instanceTags[key] = value }
        p.add(tagSpecification: "instance", tags: instanceTags, index: 1)
        p.add(tagSpecification: "volume", tags: tags, index: 2)
        return p
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        let state = item.string("instanceState/name") ?? ""
        guard state != "terminated", state != "shutting-down" else { return nil }
        var fresh = prior
        for (key, value) in computed(from: item) { fresh.attributes[key] = value }
        if let type = item.string("instanceType") { fresh.attributes["instance_type"] = .string(type) }
        // Labels are written as tags too; only the stack's `tags` input is compared for drift.
        let recorded = OwnershipTags.userTags(prior.attributes["tags"])
        let labels = OwnershipTags.userTags(prior.attributes["labels"])
        var live = OwnershipTags.parse(item).filter { !$0.key.hasPrefix("stratum:") && labels[$0.key] != $0.value }
        if recorded["Name"] == nil { live["Name"] = nil }
        if live != recorded { fresh.attributes["tags"] = .map(live.mapValues(Value.string)) }
        return fresh
    }

    /// The attributes only AWS knows, from a RunInstances or DescribeInstances item.
    func computed(from item: XMLTree) -> [String: Value] {
        [
            "state": .string(item.string("instanceState/name") ?? ""),
            "subnet_id": .string(item.string("subnetId") ?? ""),
            "availability_zone": .string(item.string("placement/availabilityZone") ?? ""),
            "private_ip": .string(item.string("privateIpAddress") ?? ""),
            "public_ip": .string(item.string("ipAddress") ?? ""),
        ]
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource, ec2: EC2API) async throws -> ResourceState {
        // subnet_ids only steers where a new instance goes; a running one stays put.
        var state = try await ec2.updateTags(prior, desired: desired)
        let oldLabels = OwnershipTags.userTags(prior.attributes["labels"])
        let newLabels = OwnershipTags.userTags(desired.inputs["labels"])
        if oldLabels != newLabels {
            let removed = oldLabels.keys.filter { newLabels[$0] == nil }
            if !removed.isEmpty {
                var p = EC2Parameters()
                p.add(list: "ResourceId", [prior.id])
                for (i, key) in removed.sorted().enumerated() { p.add("Tag.\(i + 1).Key", key) }
                _ = try await ec2.call("DeleteTags", p, idempotent: true)
            }
            if !newLabels.isEmpty {
                var p = EC2Parameters()
                p.add(list: "ResourceId", [prior.id])
                p.add(tags: newLabels)
                _ = try await ec2.call("CreateTags", p, idempotent: true)
            }
        }
        state.attributes["labels"] = desired.inputs["labels"] ?? .null
        return state
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        var p = EC2Parameters()
        p.add(list: "InstanceId", [state.id])
        do {
            _ = try await ec2.call("TerminateInstances", p, idempotent: true)
        } catch let error as ProviderError where error.kind == .notFound {
            try await AWSNodeSecrets.delete(state, client: ec2.client)
            return
        }
        // Wait for `terminated`: until then the subnet and security group are still in use.
        let describe = EC2Describe(kind: self, ec2: ec2)
        let poller = OperationPoller(timeout: terminationTimeout, backoff: Backoff(base: .seconds(5), cap: .seconds(5), random: { $0.upperBound }), clock: ec2.client.clock)
        let filter = idFilter
        try await poller.wait(for: "the termination of instance \(state.id)", address: state.address) { () -> OperationProgress<Bool> in
            guard let item = try await describe.items(filters: [(filter, [state.id])]).first, item.string("instanceState/name") != "terminated" else { return .done(true) }
            return .running
        }
        try await AWSNodeSecrets.delete(state, client: ec2.client)
    }
}

extension NodeBootScript.AtBoot {
    /// On EC2 the zone is the one RunInstances found capacity in, which the node reads from
    /// the instance metadata service (IMDSv2) when it boots.
    static let aws = NodeBootScript.AtBoot(
        lines: [
            "imds=${STRATUM_AWS_METADATA:-http://169.254.169.254}",
            "imds_token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \"$imds/latest/api/token\" || true)",
            "export \(NodeContract.zoneName)=\"$(curl -sf -H \"X-aws-ec2-metadata-token: $imds_token\" \"$imds/latest/meta-data/placement/availability-zone\" || true)\"",
            "export \(NodeContract.nodeIPName)=\"$(curl -sf -H \"X-aws-ec2-metadata-token: $imds_token\" \"$imds/latest/meta-data/local-ipv4\" || true)\"",
        ],
        variables: [NodeContract.zoneName, NodeContract.nodeIPName])
}
