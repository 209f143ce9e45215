import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

/// A stack of AWS-specific resources whose knobs change between applies.
struct KnobStack {
    var region: String
    var bucket: String
    var ingressPort = 22
    var versioning = false
    var tags: [String: String] = ["team": "ml"]

    func evaluate(environment: String) throws -> EvaluatedStack {
        var content = StackContent()
        let vpc = AWS.VPC("main", cidr: "10.30.0.0/16", region: region, tags: tags)
        vpc.declare(into: &content)
        AWS.SecurityGroup(
            "ssh", vpc: vpc.id, ingress: [AWS.IngressRule(fromPort: ingressPort, cidr: "10.0.0.0/8"), .betweenMembers], region: region
        ).declare(into: &content)
        AWS.S3Bucket(bucket, versioning: versioning, forceDestroy: true, region: region, tags: tags).declare(into: &content)
        AWS.KeyPair("admin", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxlfyPxWtnaNFBN8IHGYjvm5ZCM1rV0Fhs6m8LY4Kdr stratum", region: region).declare(into: &content)
        return try StackEvaluator.evaluate(content, name: "knobs", environment: environment)
    }
}

@Suite("AWS updates and crash recovery against moto", .enabled(if: Moto.available, Moto.skipReason))
struct AWSUpdateAndRecoveryTests {
    @Test func rulesTagsAndVersioningUpdateInPlace() async throws {
        let world = try await AWSWorld.make(region: "ap-northeast-1")
        defer { Task { await world.shutdown() } }
        var knobs = KnobStack(region: world.region, bucket: world.bucketName)
        #expect(try await world.apply(try await world.plan(try knobs.evaluate(environment: world.environment))).ok)
        #expect(!(try await world.plan(try knobs.evaluate(environment: world.environment))).hasChanges)

        knobs.ingressPort = 443
        knobs.versioning = true
        knobs.tags = ["team": "ml", "cost-center": "42"]
        let change = try await world.plan(try knobs.evaluate(environment: world.environment))
        let actions = Dictionary(uniqueKeysWithValues: change.actionable.map { ($0.address.description, $0.action) })
        #expect(actions == ["aws_security_group.ssh": .update, "aws_s3_bucket.\(world.bucketName)": .update, "aws_vpc.main": .update])
        let before = await world.store.read(workspace: world.workspace).resources
        #expect(try await world.apply(change).ok)
        let after = await world.store.read(workspace: world.workspace).resources
        // Updated, not replaced: same ids.
        #expect(before.mapValues(\.id) == after.mapValues(\.id))
        #expect(!(try await world.plan(try knobs.evaluate(environment: world.environment))).hasChanges)

        // A tag removed outside Stratum shows as drift and is put back.
        let vpc = try #require(after[ResourceAddress(type: "aws_vpc", name: "main")])
        _ = try await world.direct.ec2("DeleteTags", [("ResourceId.1", vpc.id), ("Tag.1.Key", "cost-center")], region: world.region, idempotent: true)
        let drift = try await world.plan(try knobs.evaluate(environment: world.environment))
        #expect(drift.actionable.map(\.address.description) == ["aws_vpc.main"])
        #expect(drift.actionable.first?.changedAttributes == ["tags"])
        #expect(try await world.apply(drift).ok)
        #expect(!(try await world.plan(try knobs.evaluate(environment: world.environment))).hasChanges)

        // A versioned bucket holding checkpoints: force_destroy removes every version first.
        for round in 1...2 {
            _ = try await world.direct.s3(
                "PUT", bucket: world.bucketName, key: "ckpt/step 100.bin", body: Data("weights \(round)".utf8), region: world.region, action: "PutObject")
        }
        let destroy = try await world.apply(try await world.destroyPlan())
        #expect(destroy.ok, "\(destroy.failed.map { "\($0.step.address): \($0.error)" })")
        #expect(try await world.inventory().values.allSatisfy { $0 == 0 })
    }

    @Test func recoveryAdoptsWhatACrashedApplyLeft() async throws {
        let world = try await AWSWorld.make(region: "ap-northeast-2")
        defer { Task { await world.shutdown() } }
        let stack = try KnobStack(region: world.region, bucket: world.bucketName).evaluate(environment: world.environment)
        let plan = try await world.plan(stack)
        let snapshot = await world.store.read(workspace: world.workspace)
        let ownership = Ownership(stack: world.workspace, lineage: snapshot.lineage)

        // The process journals the VPC create, the call succeeds, and it dies before committing.
        let change = try #require(plan.changes.first { $0.address.type == "aws_vpc" })
        let operation = PendingOperation(
            address: change.address, action: .create, provider: "aws", region: world.region, token: UUID().uuidString.lowercased(),
            startedAt: Date(), ownership: ownership, inputs: change.inputs)
        await world.store.beginOperation(workspace: world.workspace, operation)
        let orphan = try await world.provider.create(operation.resolved, token: operation.token)
        // A second row whose call never reached AWS.
        let neverSent = PendingOperation(
            address: ResourceAddress(type: "aws_key_pair", name: "admin"), action: .create, provider: "aws", region: world.region,
            token: UUID().uuidString.lowercased(), startedAt: Date(), ownership: ownership, inputs: ["name": "admin", "public_key": "ssh-ed25519 AAAA x"])
        await world.store.beginOperation(workspace: world.workspace, neverSent)

        let outcomes = try await Recovery(providers: world.registry, store: world.store, workspace: world.workspace).run()
        #expect(outcomes.contains(.adopted(change.address, id: orphan.id)))
        #expect(outcomes.contains(.confirmedGone(neverSent.address)))
        #expect(await world.store.pendingOperations(workspace: world.workspace).isEmpty)

        // The next plan does not create a second VPC.
        let next = try await world.plan(stack)
        #expect(next.changes.first { $0.address == change.address }?.action == .noop)
        #expect(try await world.apply(next).ok)
        #expect(try await world.inventory()["vpc"] == 1)
        #expect(try await world.apply(try await world.destroyPlan()).ok)
        #expect(try await world.inventory().values.allSatisfy { $0 == 0 })
    }
}
