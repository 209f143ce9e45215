import Foundation
import StratumAWS
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing

/// The provider contract on AWS (moto): an EC2 kind (VPC) and S3 buckets.
@Suite("ProviderContractTests: AWS", .enabled(if: Moto.available, Moto.skipReason), .timeLimit(.minutes(3)))
struct AWSProviderContractTests {
    static func vpc(_ world: AWSWorld) -> ProviderContractTests {
        ProviderContractTests(.init(provider: world.provider, type: "aws_vpc", region: world.region, inputs: { _ in ["cidr": "10.40.0.0/16"] }))
    }

    static func bucket(_ world: AWSWorld) -> ProviderContractTests {
        let suffix = world.bucketName
        return ProviderContractTests(.init(provider: world.provider, type: "aws_s3_bucket", region: world.region, inputs: { ["name": .string("\(suffix)-\($0)")] }))
    }

    static func role(_ world: AWSWorld) -> ProviderContractTests {
        let bucket = world.bucketName
        return ProviderContractTests(.init(provider: world.provider, type: "aws_instance_role", region: world.region, inputs: { _ in ["bucket": .string(bucket)] }))
    }

    /// The trainer archive in a bucket the world's provider makes first.
    static func object(_ world: AWSWorld) -> ProviderContractTests {
        let bucket = world.bucketName
        return ProviderContractTests(.init(provider: world.provider, type: "aws_s3_object", region: world.region, inputs: { name in
            ["bucket": .string(bucket), "key": .string("stratum/trainer/\(name).zip"), "source": .string(BundledArtifact.trainer),
             "sha256": .string(TrainerArchive.bundled.sha256)]
        }))
    }

    static func run(_ check: (ProviderContractTests) async throws -> Void, on make: (AWSWorld) -> ProviderContractTests) async throws {
        let world = try await AWSWorld.make(region: "us-west-2")
        do {
            try await check(make(world))
        } catch {
            await world.shutdown()
            throw error
        }
        await world.shutdown()
    }

    @Test func vpcIdempotentCreateByToken() async throws { try await Self.run({ try await $0.idempotentCreateByToken() }, on: Self.vpc) }
    @Test func vpcLostResponseIsRecovered() async throws { try await Self.run({ try await $0.lostResponseIsRecovered() }, on: Self.vpc) }
    @Test func vpcBatchedReadWithMissingMembers() async throws { try await Self.run({ try await $0.batchedReadWithMissingMembers() }, on: Self.vpc) }
    @Test func vpcDeleteOfWhatIsGone() async throws { try await Self.run({ try await $0.deleteOfWhatIsGone() }, on: Self.vpc) }
    @Test func vpcImportByID() async throws { try await Self.run({ try await $0.importByID() }, on: Self.vpc) }

    @Test func bucketIdempotentCreateByToken() async throws { try await Self.run({ try await $0.idempotentCreateByToken() }, on: Self.bucket) }
    @Test func bucketLostResponseIsRecovered() async throws { try await Self.run({ try await $0.lostResponseIsRecovered() }, on: Self.bucket) }
    @Test func bucketBatchedReadWithMissingMembers() async throws { try await Self.run({ try await $0.batchedReadWithMissingMembers() }, on: Self.bucket) }
    @Test func bucketDeleteOfWhatIsGone() async throws { try await Self.run({ try await $0.deleteOfWhatIsGone() }, on: Self.bucket) }
    @Test func roleIdempotentCreateByToken() async throws { try await Self.run({ try await $0.idempotentCreateByToken() }, on: Self.role) }
    @Test func roleLostResponseIsRecovered() async throws { try await Self.run({ try await $0.lostResponseIsRecovered() }, on: Self.role) }
    @Test func roleBatchedReadWithMissingMembers() async throws { try await Self.run({ try await $0.batchedReadWithMissingMembers() }, on: Self.role) }
    @Test func roleDeleteOfWhatIsGone() async throws { try await Self.run({ try await $0.deleteOfWhatIsGone() }, on: Self.role) }

    @Test func objectContract() async throws {
        let world = try await AWSWorld.make(region: "us-west-2")
        do {
            let bucket = try await world.provider.create(
                ResolvedResource(address: ResourceAddress(type: "aws_s3_bucket", name: "artifacts"), region: world.region, inputs: ["name": .string(world.bucketName)], dependencies: []),
                token: UUID().uuidString)
            let contract = Self.object(world)
            try await contract.idempotentCreateByToken()
            try await contract.lostResponseIsRecovered()
            try await contract.batchedReadWithMissingMembers()
            try await contract.deleteOfWhatIsGone()
            try await world.provider.delete(bucket)
        } catch {
            await world.shutdown()
            throw error
        }
        await world.shutdown()
    }

    @Test func bucketImportByID() async throws { try await Self.run({ try await $0.importByID() }, on: Self.bucket) }
}

@Suite("Failure scope of capacity and quota errors")
struct FailureScopeTests {
    @Test func aStockoutIsAZonesAndAQuotaTheRegions() {
        let stockout = AWSErrorClassifier.providerError(
            AWSServiceError(code: "InsufficientInstanceCapacity", message: "none left", status: 500), action: "RunInstances", address: nil, region: "us-east-1")
        #expect(stockout.kind == .capacity)
        #expect(stockout.scope == .zone(nil))
        let quota = AWSErrorClassifier.providerError(
            AWSServiceError(code: "VcpuLimitExceeded", message: "limit", status: 400), action: "RunInstances", address: nil, region: "us-east-1")
        #expect(quota.kind == .quota)
        #expect(quota.scope == .region("us-east-1"))
        let other = AWSErrorClassifier.providerError(AWSServiceError(code: "InvalidParameterValue", message: "bad", status: 400), action: "RunInstances", address: nil)
        #expect(other.scope == nil)
    }
}
