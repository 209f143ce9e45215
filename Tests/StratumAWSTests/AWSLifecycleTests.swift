import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import StratumStacks
import StratumState
import StratumTesting
import StratumTrainerArtifact
import Testing

/// The aws-gpu-cluster stack driven through the real Planner and Executor against moto.
/// Each test uses its own region and lineage, so they run concurrently.
@Suite("AWS provider against moto", .enabled(if: Moto.available, Moto.skipReason))
struct AWSLifecycleTests {
    @Test func planApplyRefreshDriftRecreateDestroy() async throws {
        let world = try await AWSWorld.make(region: "us-west-1")
        defer { Task { await world.shutdown() } }
        let stack = try world.stack(world.config(workers: 2))

        let first = try await world.plan(stack)
        #expect(first.changes.allSatisfy { $0.action == .create })
        // vpc, 2 subnets, gateway, route table, security group, placement group, bucket, node role, trainer archive, 2 workers
        #expect(first.changes.count == 12)
        let applied = try await world.apply(first)
        #expect(applied.failed.isEmpty, "\(applied.failed.map { "\($0.step.address): \($0.error)" })")
        #expect(applied.ok)
        let afterApply = try await world.inventory()
        #expect(afterApply == ["instance": 2, "vpc": 1, "subnet": 2, "internet_gateway": 1, "route_table": 1, "security_group": 1, "placement_group": 1, "bucket": 1])

        // Each worker boots into the node setup that fetches the trainer archive from the bucket
        // with its role, builds it and runs it as its DiLoCo rank.
        let worker0 = try #require(await world.store.read(workspace: world.workspace).resources[ResourceAddress(type: "aws_instance", name: "worker", index: 0)])
        let attribute = try await world.direct.ec2("DescribeInstanceAttribute", [("InstanceId", worker0.id), ("Attribute", "userData")], region: world.region, idempotent: true)
        let setup = try NodeSetupDocument(base64: attribute.string("userData/value") ?? "")
        #expect(setup.environment["STRATUM_NODE_INDEX"] == "0")
        #expect(setup.environment["STRATUM_CHECKPOINT_URL"] == "s3://\(world.bucketName)")
        let archive = TrainerArchive.bundled
        #expect(setup.environment["STRATUM_TRAINER_URL"] == "s3://\(world.bucketName)/\(archive.objectKey)")
        #expect(setup.environment["STRATUM_TRAINER_SHA256"] == archive.sha256)
        #expect(setup.workload.contains("exec /opt/stratum/bin/stratum-trainer --config /etc/stratum/trainer.yaml"))
        #expect(setup.workload.contains("\"diloco.rank=$STRATUM_NODE_INDEX\""))
        #expect(!setup.text.contains("stratum/worker"))
        // Every worker's user data, as EC2 holds it, is a document Debian's cloud-init accepts.
        for index in 0..<2 {
            let worker = try #require(await world.store.read(workspace: world.workspace).resources[ResourceAddress(type: "aws_instance", name: "worker", index: index)])
            let data = try await world.direct.ec2("DescribeInstanceAttribute", [("InstanceId", worker.id), ("Attribute", "userData")], region: world.region, idempotent: true)
            let problems = try await NodeSetupDocument(base64: data.string("userData/value") ?? "").schemaProblems()
            #expect(problems == nil, "aws_instance.worker[\(index)]: \(problems ?? "")")
        }
        // The archive in the bucket is the bytes this binary carries.
        let object = try await world.direct.s3("GET", bucket: world.bucketName, key: archive.objectKey, region: world.region, action: "GetObject")
        #expect(object.body == archive.data)
        // The instance runs with the node role's instance profile; the role may use this bucket.
        let profile = try #require(worker0.attributes["iam_instance_profile"]?.stringValue)
        let role = try await world.direct.iam("GetRolePolicy", [("RoleName", profile), ("PolicyName", "stratum-bucket")], idempotent: true)
        let policy = (role["GetRolePolicyResult"]?.string("PolicyDocument")).flatMap { $0.removingPercentEncoding } ?? ""
        #expect(policy.contains("arn:aws:s3:::\(world.bucketName)/*"), "\(policy)")
        let described = try await world.direct.ec2("DescribeInstances", [("InstanceId.1", worker0.id)], region: world.region, idempotent: true)
        #expect(described.string("reservationSet/item/instancesSet/item/iamInstanceProfile/arn")?.hasSuffix("/\(profile)") == true)
        #expect(worker0.attributes["placement_group"] == "aws-gpu-cluster-workers")

        // Refresh is batched: one Describe (or ListBuckets) per resource type.
        world.provider.client.metrics.reset()
        let refreshed = try await world.refresh()
        #expect(refreshed.live.values.allSatisfy { $0 != nil })
        let calls = world.provider.client.metrics.byAction
        for action in ["DescribeInstances", "DescribeVpcs", "DescribeSubnets", "DescribeInternetGateways", "DescribeRouteTables", "DescribeSecurityGroups", "DescribePlacementGroups", "ListBuckets"] {
            #expect(calls[action] == 1, "\(action): \(calls[action] ?? 0) calls")
        }

        let second = try await world.plan(stack)
        #expect(!second.hasChanges, "\(second.actionable.map { "\($0.address) \($0.action) \($0.changedAttributes)" })")

        // Someone terminates a worker behind Stratum's back.
        let snapshot = await world.store.read(workspace: world.workspace)
        let victim = try #require(snapshot.resources[ResourceAddress(type: "aws_instance", name: "worker", index: 1)])
        _ = try await world.direct.ec2("TerminateInstances", [("InstanceId.1", victim.id)], region: world.region, idempotent: true)
        let drift = try await world.plan(stack)
        #expect(drift.actionable.map(\.address.description) == ["aws_instance.worker[1]"])
        #expect(drift.actionable.first?.action == .create)
        #expect(drift.actionable.first?.reason?.contains("no longer exists") == true)
        #expect(try await world.apply(drift).ok)
        let recreated = await world.store.read(workspace: world.workspace).resources[victim.address]
        #expect(recreated != nil && recreated?.id != victim.id)
        #expect(try await world.inventory()["instance"] == 2)
        #expect(!(try await world.plan(stack)).hasChanges)

        let destroy = try await world.destroyPlan()
        let destroyed = try await world.apply(destroy)
        #expect(destroyed.ok, "\(destroyed.failed.map { "\($0.step.address): \($0.error)" })")
        #expect(await world.store.read(workspace: world.workspace).resources.isEmpty)
        let leftover = try await world.inventory()
        #expect(leftover.values.allSatisfy { $0 == 0 }, "left behind: \(leftover)")
    }

    @Test func retriedRunInstancesWithTheSameTokenMakesOneInstance() async throws {
        let world = try await AWSWorld.make(region: "us-west-2")
        defer { Task { await world.shutdown() } }
        let stack = try world.stack(world.config(workers: 1, placementGroup: false))
        // Make the network first, so the instance create can be called on its own.
        let network = try await world.plan(stack)
        #expect(try await world.apply(network).ok)

        // The provider asked twice with one token (as the executor retries) answers the same instance.
        let snapshot = await world.store.read(workspace: world.workspace)
        let worker = try #require(snapshot.resources[ResourceAddress(type: "aws_instance", name: "worker", index: 0)])
        let ownership = Ownership(stack: world.workspace, lineage: snapshot.lineage)
        let resource = ResolvedResource(
            address: ResourceAddress(type: "aws_instance", name: "probe"), region: world.region,
            inputs: ["ami": "ami-12c6146b", "instance_type": "p5.48xlarge", "subnet_ids": .list([worker.attributes["subnet_id"] ?? .null])],
            dependencies: [], ownership: ownership)
        let token = UUID().uuidString.lowercased()
        let once = try await world.provider.create(resource, token: token)
        let twice = try await world.provider.create(resource, token: token)
        #expect(once.id == twice.id)
        let probes = try await world.direct.ec2(
            "DescribeInstances", [("Filter.1.Name", "tag:stratum:address"), ("Filter.1.Value.1", "aws_instance.probe"), ("Filter.2.Name", "tag:stratum:lineage"), ("Filter.2.Value.1", snapshot.lineage)],
            region: world.region, idempotent: true)
        #expect(probes.items("reservationSet").flatMap { $0.items("instancesSet") }.count == 1)
        try await world.provider.delete(once)

        // A RunInstances whose response is lost on the way back: the executor retries with the
        // same token, and the provider finds the instance instead of making a second.
        let replaced = try world.stack(world.config(workers: 2, placementGroup: false))
        await world.faults.set(lostRunInstancesResponses: 1)
        let launchedBefore = await world.faults.forwarded["RunInstances", default: 0]
        let grow = try await world.plan(replaced)
        // worker[1] is new; worker[0] is replaced too (its WORKERS env changes).
        let launches = grow.actionable.filter { $0.address.type == "aws_instance" && $0.action != .delete }.count
        #expect(launches == 2)
        let result = try await world.apply(grow)
        #expect(result.ok, "\(result.failed.map { "\($0.step.address): \($0.error)" })")
        #expect(await world.faults.injected["lost-response"] == 1)
        #expect(try await world.inventory()["instance"] == 2)
        // One launch per instance reached AWS; the retry found its instance instead of launching again.
        let launchedAfter = await world.faults.forwarded["RunInstances", default: 0]
        #expect(launchedAfter == launchedBefore + launches)
        #expect(try await world.apply(try await world.destroyPlan()).ok)
        #expect(try await world.inventory().values.allSatisfy { $0 == 0 })
    }

    @Test func throttlingAndAZoneWithoutCapacity() async throws {
        let world = try await AWSWorld.make(region: "eu-west-1")
        defer { Task { await world.shutdown() } }
        // EC2 and S3 are throttled hard; IAM (a role of eight calls, which one retry of the
        // whole step would rarely get through at this share) is not part of this test.
        await world.faults.set(throttleShare: 0.3, services: ["ec2", "s3"])
        await world.faults.set(zonesWithoutCapacity: ["eu-west-1a"])
        let stack = try world.stack(world.config(workers: 6, placementGroup: false))
        let result = try await world.apply(try await world.plan(stack))
        #expect(result.failed.isEmpty, "\(result.failed.map { "\($0.step.address): \($0.error)" })")
        #expect(result.ok)
        #expect(await world.faults.injected["throttle", default: 0] > 5)
        #expect(await world.faults.injected["capacity", default: 0] >= 6)
        let lineage = try await world.lineage
        let instances = try await world.tagged("DescribeInstances", items: "", lineage: lineage)
        // Six workers, no duplicates, all failed over to the zone that had capacity.
        #expect(instances.count == 6)
        #expect(Set(instances.compactMap { $0.items("tagSet").first { $0.string("key") == "stratum:address" }?.string("value") }).count == 6)
        #expect(instances.allSatisfy { $0.string("placement/availabilityZone") == "eu-west-1b" })
        let state = await world.store.read(workspace: world.workspace)
        #expect(state.resources.values.filter { $0.type == "aws_instance" }.allSatisfy { $0.attributes["availability_zone"] == "eu-west-1b" })
        let bucket = await world.provider.client.rateLimiter(service: "ec2", region: world.region)
        #expect(await bucket.throttleEvents > 0)

        // Refresh follows NextToken: six instances in pages of five are two calls.
        await world.faults.set(throttleShare: 0)
        let paged = AWSProvider(client: world.provider.client, options: .init(describePageSize: 5))
        let recorded = state.resources.values.filter { $0.type == "aws_instance" }
        world.provider.client.metrics.reset()
        let live = try await paged.read(type: "aws_instance", resources: Array(recorded))
        #expect(live.allSatisfy { $0 != nil })
        #expect(world.provider.client.metrics.byAction["DescribeInstances"] == 2)

        #expect(try await world.apply(try await world.destroyPlan()).ok)
        #expect(try await world.inventory().values.allSatisfy { $0 == 0 })
    }

    @Test func noZoneWithCapacityIsAClearCapacityError() async throws {
        let world = try await AWSWorld.make(region: "eu-west-2")
        defer { Task { await world.shutdown() } }
        await world.faults.set(zonesWithoutCapacity: ["eu-west-2a", "eu-west-2b"])
        let stack = try world.stack(world.config(workers: 1, placementGroup: false))
        let result = try await world.apply(try await world.plan(stack))
        #expect(result.failed.count == 1)
        let failure = try #require(result.failed.first)
        #expect(failure.step.address.description == "aws_instance.worker[0]")
        let error = try #require(failure.error as? ProviderError)
        #expect(error.kind == .capacity)
        #expect(error.message.contains("no capacity for p5.48xlarge"))
        #expect(error.message.contains("eu-west-2a") && error.message.contains("eu-west-2b"))
        #expect(try await world.inventory()["instance"] == 0)
        #expect(try await world.apply(try await world.destroyPlan()).ok)
    }

    @Test func badCredentialsAreAuthErrorsWithoutTheSecret() async throws {
        let secret = "very-secret-key-material"
        let world = try await AWSWorld.make(region: "eu-west-3", accessKey: "AKIDREVOKED", secret: secret)
        defer { Task { await world.shutdown() } }
        await world.faults.set(rejectedAccessKeys: ["AKIDREVOKED"])
        let result = try await world.apply(try await world.plan(try world.stack(world.config(workers: 1))))
        #expect(!result.failed.isEmpty)
        for failure in result.failed {
            let error = try #require(failure.error as? ProviderError)
            #expect(error.kind == .auth)
            #expect(error.message.contains("AuthFailure") || error.message.contains("InvalidAccessKeyId"))
            #expect(!error.description.contains(secret))
        }
        #expect(result.failed.contains { ($0.error as? ProviderError)?.message.contains("AWS was not able to validate the provided access credentials") == true })
        #expect(result.succeeded.isEmpty)
    }

    @Test func unknownInstanceTypeIsAPermanentErrorWithAWSMessage() async throws {
        let world = try await AWSWorld.make(region: "eu-central-1")
        defer { Task { await world.shutdown() } }
        // Caught before any call when it cannot be an instance type at all.
        #expect(throws: ValidationError.self) { try world.stack(world.config(workers: 1, instanceType: "p5_48xlarge")) }
        // moto launches any type; the proxy answers as AWS does for one that does not exist.
        await world.faults.set(knownInstanceTypes: ["p5.48xlarge", "g5.xlarge"])
        let result = try await world.apply(try await world.plan(try world.stack(world.config(workers: 1, placementGroup: false, instanceType: "p9.96xlarge"))))
        let failure = try #require(result.failed.first)
        let error = try #require(failure.error as? ProviderError)
        #expect(error.kind == .permanent)
        #expect(error.description == "aws_instance.worker[0]: AWS RunInstances failed: InvalidParameterValue: Invalid value 'p9.96xlarge' for InstanceType.")
        #expect(try await world.inventory()["instance"] == 0)
        #expect(try await world.apply(try await world.destroyPlan()).ok)
    }

    @Test func recoveryFindsWhatAnInterruptedCreateLeft() async throws {
        let world = try await AWSWorld.make(region: "ap-southeast-1")
        defer { Task { await world.shutdown() } }
        let ownership = Ownership(stack: world.workspace, lineage: "lineage-\(UUID().uuidString.prefix(8))")
        let vpcAddress = ResourceAddress(type: "aws_vpc", name: "net")
        let token = UUID().uuidString.lowercased()
        let vpc = ResolvedResource(address: vpcAddress, region: world.region, inputs: ["cidr": "10.9.0.0/16"], dependencies: [], ownership: ownership)
        let created = try await world.provider.create(vpc, token: token)
        func operation(_ resource: ResolvedResource, token: String) -> PendingOperation {
            PendingOperation(
                address: resource.address, action: .create, provider: "aws", region: world.region, token: token, startedAt: Date(),
                ownership: ownership, inputs: resource.inputs)
        }
        let recovered = try await world.provider.recover(operation(vpc, token: token))
        #expect(recovered?.id == created.id)
        #expect(recovered?.attributes["cidr"] == "10.9.0.0/16")
        #expect(try await world.provider.recover(operation(vpc, token: "never-sent")) == nil)

        let bucket = ResolvedResource(
            address: ResourceAddress(type: "aws_s3_bucket", name: "ckpt"), region: world.region, inputs: ["name": .string(world.bucketName), "versioning": true],
            dependencies: [], ownership: ownership)
        let bucketToken = UUID().uuidString.lowercased()
        _ = try await world.provider.create(bucket, token: bucketToken)
        let adopted = try await world.provider.recover(operation(bucket, token: bucketToken))
        #expect(adopted?.id == world.bucketName)
        #expect(adopted?.attributes["versioning"] == true)
        #expect(try await world.provider.read(type: "aws_s3_bucket", resources: [try #require(adopted)]).first??.attributes["versioning"] == true)

        // Instances: by the client-token filter (AWS; the proxy translates it for moto), and by
        // the token tag (what a provider configured for an emulator uses), including a token
        // derived by zone failover.
        let subnet = try await world.provider.create(
            ResolvedResource(address: ResourceAddress(type: "aws_subnet", name: "net"), region: world.region, inputs: ["vpc_id": .string(created.id), "cidr": "10.9.1.0/24"], dependencies: [], ownership: ownership),
            token: UUID().uuidString.lowercased())
        let instance = ResolvedResource(
            address: ResourceAddress(type: "aws_instance", name: "node"), region: world.region,
            inputs: ["ami": "ami-12c6146b", "instance_type": "g5.xlarge", "subnet_ids": .list([.string(subnet.id), .string(subnet.id)])], dependencies: [], ownership: ownership)
        let instanceToken = UUID().uuidString.lowercased()
        let launched = try await world.provider.create(instance, token: instanceToken)
        #expect(try await world.provider.recover(operation(instance, token: instanceToken))?.id == launched.id)
        let byTag = AWSProvider(client: world.direct, options: .init(clientTokenFilter: false))
        #expect(try await byTag.recover(operation(instance, token: instanceToken))?.id == launched.id)
        #expect(try await byTag.recover(operation(instance, token: "never-sent")) == nil)
        #expect(try await world.provider.recover(operation(instance, token: "never-sent")) == nil)
        try await world.provider.delete(launched)
        #expect(try await world.provider.recover(operation(instance, token: instanceToken)) == nil)
        try await world.provider.delete(subnet)

        let imported = try await world.provider.importResource(type: "aws_vpc", region: world.region, id: created.id, address: vpcAddress)
        #expect(imported?.attributes["cidr"] == "10.9.0.0/16")

        try await world.provider.delete(created)
        try await world.provider.delete(try #require(adopted))
        #expect(try await world.provider.read(type: "aws_vpc", resources: [created]) == [nil])
        // Deleting what is already gone succeeds.
        try await world.provider.delete(created)
    }
}
