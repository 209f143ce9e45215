import Foundation
import StratumAWS
import StratumTrainerArtifact
import StratumCloud
import StratumCore
import StratumEngine
import StratumTesting
import Testing

/// What `stratum sweep` finds on AWS: every resource carrying Stratum's ownership tags, in every
/// region the account has enabled, against moto.
@Suite("AWS: listing what carries Stratum's ownership", .serialized, .enabled(if: Moto.available, Moto.skipReason))
struct AWSOwnedListingTests {
    /// The world's provider searching only `regions`: every region moto knows would be 30
    /// Describes per type for each listing, a flood for the moto the other suites share.
    static func searching(_ world: AWSWorld, _ regions: [String]) -> AWSProvider {
        AWSProvider(client: world.provider.client, options: .init(clientTokenFilter: world.provider.options.clientTokenFilter, searchRegions: regions))
    }

    @Test(.timeLimit(.minutes(4)))
    func everyOwnedResourceIsListedWithItsOwnershipAndCanBeDeleted() async throws {
        let world = try await AWSWorld.make(region: "eu-central-1")
        defer { Task { await world.shutdown() } }
        let lineage = "lineage-\(world.environment)"
        let expires = Date(timeIntervalSince1970: 1_900_000_000)
        let ownership = Ownership(stack: "cluster/\(world.environment)", lineage: lineage, owner: "alice", expires: expires)
        func create(_ type: String, _ name: String, _ inputs: [String: Value], region: String? = nil) async throws -> ResourceState {
            try await world.provider.create(
                ResolvedResource(address: ResourceAddress(type: type, name: name), region: region ?? world.region, inputs: inputs, dependencies: [], ownership: ownership),
                token: UUID().uuidString.lowercased())
        }
        let vpc = try await create("aws_vpc", "main", ["cidr": "10.60.0.0/16"])
        let subnet = try await create("aws_subnet", "a", ["vpc_id": .string(vpc.id), "cidr": "10.60.1.0/24"])
        // Another region than the first: the listing searches every region.
        let far = try await create("aws_vpc", "far", ["cidr": "10.61.0.0/16"], region: "ap-southeast-2")
        let group = try await create("aws_placement_group", "gang", ["name": .string("gang-\(world.environment)"), "strategy": "cluster"])
        let bucket = try await create("aws_s3_bucket", "checkpoints", ["name": .string(world.bucketName)])
        let object = try await create(
            "aws_s3_object", "trainer",
            ["bucket": .string(world.bucketName), "key": "stratum/trainer/listed.zip", "source": .string(BundledArtifact.trainer), "sha256": .string(TrainerArchive.bundled.sha256)])
        let role = try await create("aws_instance_role", "nodes", ["bucket": .string(world.bucketName)])
        let oidc = try await create(
            "aws_oidc_provider", "entra", ["url": .string("https://login.example.test/\(world.environment)/v2.0"), "client_ids": .list(["api://AzureADTokenExchange"])])
        // Not Stratum's: a VPC made without its tags.
        let foreign = try await world.direct.ec2("CreateVpc", [("CidrBlock", "10.62.0.0/16")], region: world.region, idempotent: false)
        let foreignId = try #require(foreign["vpc"]?.string("vpcId"))
        let searching = Self.searching(world, [world.region, "ap-southeast-2"])

        func listed() async throws -> [String: [OwnedResource]] {
            var found: [String: [OwnedResource]] = [:]
            for (type, kind) in searching.kinds {
                let owned = try #require(try await kind.owned(), "\(type) cannot list what it holds")
                found[type] = owned.filter { $0.ownership.lineage == lineage }
            }
            return found
        }
        let found = try await listed()
        #expect(found["aws_vpc"]?.map(\.state.id).sorted() == [vpc.id, far.id].sorted())
        #expect(found["aws_vpc"]?.first { $0.state.id == far.id }?.state.region == "ap-southeast-2")
        #expect(found["aws_vpc"]?.first { $0.state.id == vpc.id }?.state.address.description == "aws_vpc.main")
        #expect(found["aws_subnet"]?.map(\.state.id) == [subnet.id])
        #expect(found["aws_placement_group"]?.map(\.state.id) == [group.id])
        #expect(found["aws_s3_bucket"]?.map(\.state.id) == [bucket.id])
        #expect(found["aws_s3_bucket"]?.first?.state.region == world.region)
        #expect(found["aws_s3_object"]?.map(\.state.id) == [object.id])
        #expect(found["aws_instance_role"]?.map(\.state.id) == [role.id])
        #expect(found["aws_oidc_provider"]?.map(\.state.id) == [oidc.id])
        for item in found.values.flatMap({ $0 }) {
            #expect(item.ownership == ownership, "\(item.state.address): \(item.ownership)")
        }
        let everyVPC = try #require(try await searching.kinds["aws_vpc"]?.owned())
        #expect(!everyVPC.contains { $0.state.id == foreignId }, "a VPC without Stratum's tags was listed")

        // Each listed state is enough to delete what it names: objects before their bucket and
        // subnets before their VPC, as sweep finds by trying.
        for type in ["aws_s3_object", "aws_s3_bucket", "aws_subnet", "aws_vpc", "aws_placement_group", "aws_instance_role", "aws_oidc_provider"] {
            for item in found[type] ?? [] { try await world.provider.delete(item.state) }
        }
        let after = try await listed()
        #expect(after.values.allSatisfy { $0.isEmpty }, "\(after.filter { !$0.value.isEmpty }.mapValues { $0.map(\.state.id) })")
        _ = try await world.direct.ec2("DeleteVpc", [("VpcId", foreignId)], region: world.region, idempotent: true)
    }

    /// A whole GPU cluster whose state is lost: every resource it made is found as an orphan,
    /// and deleting them in passes (machines before their subnets, the archive before its
    /// bucket) leaves nothing behind.
    @Test(.timeLimit(.minutes(4)))
    func aClusterWhoseStateIsLostIsFoundAndDeletedWhole() async throws {
        let world = try await AWSWorld.make(region: "ca-central-1")
        defer { Task { await world.shutdown() } }
        let stack = try world.stack(world.config(workers: 2))
        let applied = try await world.apply(try await world.plan(stack))
        #expect(applied.ok, "\(applied.failed.map { "\($0.step.address): \($0.error)" })")
        let snapshot = await world.store.read(workspace: world.workspace)
        let lineage = snapshot.lineage
        let searching = Self.searching(world, [world.region])

        // The state is known: nothing of it is an orphan.
        let known = [world.workspace: OrphanSearch.Known(lineage: lineage, addresses: Set(snapshot.resources.keys))]
        let kept = try await OrphanSearch.run(providers: [searching], known: known)
        #expect(kept.unlisted.isEmpty)
        #expect(!kept.orphans.contains { $0.owned.ownership.lineage == lineage })

        // Lost: everything it recorded is found, and only that (other tests share this moto).
        let lost = try await OrphanSearch.run(providers: [searching], known: [:])
        #expect(lost.failed.isEmpty, "\(lost.failed.map { "\($0.provider): \($0.error)" })")
        let orphans = lost.orphans.filter { $0.owned.ownership.lineage == lineage }
        #expect(Set(orphans.map(\.owned.state.address)) == Set(snapshot.resources.keys))
        #expect(Set(orphans.map(\.owned.state.id)) == Set(snapshot.resources.values.map(\.id)))

        let deleted = LockedValue(0)
        var deletion = OrphanDeletion { event in if case .deleted = event { deleted.update { $0 += 1 } } }
        deletion.clock = world.provider.client.clock
        #expect(try await deletion.run(orphans))
        #expect(deleted.get() == snapshot.resources.count)
        let leftover = try await world.inventory()
        #expect(leftover.values.allSatisfy { $0 == 0 }, "left behind: \(leftover)")
        let again = try await OrphanSearch.run(providers: [searching], known: [:])
        #expect(!again.orphans.contains { $0.owned.ownership.lineage == lineage })
    }

    /// `STRATUM_AWS_SEARCH_REGIONS` limits the search; without it, the regions come from
    /// DescribeRegions.
    @Test func theSearchRegionsComeFromTheEnvironmentOrTheAccount() async throws {
        // Without a list, every region the account has enabled is searched (asking each would
        // wake every region of the shared moto at once: the list is what is checked).
        let world = try await AWSWorld.make(region: "sa-east-1")
        defer { Task { await world.shutdown() } }
        let regions = try await world.provider.regionsToSearch()
        #expect(regions.count > 10 && regions.contains("sa-east-1") && regions.contains("us-east-1"), "\(regions)")
        #expect(try await Self.searching(world, ["eu-west-1"]).regionsToSearch() == ["eu-west-1"])
        let limited = AWSProvider.fromEnvironment(["STRATUM_AWS_SEARCH_REGIONS": "us-west-2, eu-west-1", "AWS_REGION": "eu-west-1"])
        #expect(limited.options.searchRegions == ["eu-west-1", "us-west-2"])
        #expect(limited.options.homeRegion == "eu-west-1")
        #expect(AWSProvider.fromEnvironment([:]).options.searchRegions == nil)
    }
}
