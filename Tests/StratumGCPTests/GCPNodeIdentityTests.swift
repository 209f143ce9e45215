import Crypto
import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumGCP

/// The provider against the loopback Storage and IAM fakes (each checks every request against
/// Google's discovery document), linked so a bucket policy may only name accounts that exist.
struct GCPIdentityWorld {
    static let project = "stratum-test"
    static let region = "us-central1"
    static let bucket = "stratum-identity-bucket"

    let storage: GCSBucketFake
    let iam: GCPIAMFake
    let servers: [LoopbackHTTPServer]
    let provider: GCPProvider

    static func make() async throws -> GCPIdentityWorld {
        let storage = try GCSBucketFake(project: project)
        let iam = try GCPIAMFake(project: project)
        await storage.link(iam: iam)
        let storageServer = try await storage.serve(), iamServer = try await iam.serve()
        let clock = VirtualClock().clock
        let tokens = BearerTokenCache(clock: clock) { BearerToken(value: "ya29.fake-token", lifetime: .seconds(3600)) }
        let endpoints = GCPEndpoints(storage: storageServer.url.appendingPathComponent("storage/v1"), iam: iamServer.url)
        let client = try GCPClient(
            configuration: GCPClient.Configuration(endpoints: endpoints), credentials: GCPCredentials(source: .metadataServer, project: project, tokens: tokens),
            project: project, transport: AsyncHTTPTransport(), clock: clock)
        let world = GCPIdentityWorld(storage: storage, iam: iam, servers: [storageServer, iamServer], provider: GCPProvider(client: client))
        _ = try await world.provider.create(
            ResolvedResource(
                address: ResourceAddress(type: "gcp_bucket", name: "checkpoints"), region: region, inputs: ["name": .string(bucket), "versioning": true],
                dependencies: [], ownership: Ownership(stack: "demo/dev", lineage: "lineage-1")),
            token: UUID().uuidString.lowercased())
        return world
    }

    /// Runs `body` on a fresh world and expects neither fake saw a request Google would refuse.
    static func run(_ body: (GCPIdentityWorld) async throws -> Void) async throws {
        let world = try await make()
        var failure: (any Error)?
        do { try await body(world) } catch { failure = error }
        let violations = await world.storage.violations + world.iam.violations
        for server in world.servers { await server.shutdown() }
        if let failure { throw failure }
        #expect(violations.isEmpty, "\(violations)")
    }

    static func account(_ name: String = "node", _ inputs: [String: Value] = ["bucket": .string(bucket)]) -> ResolvedResource {
        ResolvedResource(
            address: ResourceAddress(type: "gcp_service_account", name: name), region: region, inputs: inputs, dependencies: [],
            ownership: Ownership(stack: "demo/dev", lineage: "lineage-1"))
    }

    static func archive(bucket: String = bucket) -> ResolvedResource {
        let archive = TrainerArchive.bundled
        return ResolvedResource(
            address: ResourceAddress(type: "gcp_storage_object", name: "trainer"), region: region,
            inputs: [
                "bucket": .string(bucket), "name": .string(archive.objectKey), "source": .string(BundledArtifact.trainer), "sha256": .string(archive.sha256),
            ],
            dependencies: [], ownership: Ownership(stack: "demo/dev", lineage: "lineage-1"))
    }

    static let role = "roles/storage.objectAdmin"
}

@Suite("ProviderContractTests: GCP service accounts and objects on the IAM and Storage fakes", .timeLimit(.minutes(3)))
struct GCPIdentityContractTests {
    @Test func serviceAccountContract() async throws {
        try await GCPIdentityWorld.run { world in
            try await ProviderContractTests(.init(provider: world.provider, type: "gcp_service_account", region: GCPIdentityWorld.region) { _ in
                ["bucket": .string(GCPIdentityWorld.bucket)]
            }).all()
            #expect(await world.iam.emails().isEmpty, "the contract checks left accounts behind")
            #expect(await world.storage.members(of: GCPIdentityWorld.role, on: GCPIdentityWorld.bucket).isEmpty)
        }
    }

    @Test func trainerObjectContract() async throws {
        try await GCPIdentityWorld.run { world in
            // One object per bucket: each check's resources name a bucket of their own.
            for name in ["idem", "lost", "batch-a", "batch-b", "batch-c", "gone", "imported"] {
                _ = try await world.provider.create(
                    ResolvedResource(
                        address: ResourceAddress(type: "gcp_bucket", name: name), region: GCPIdentityWorld.region,
                        inputs: ["name": .string("stratum-contract-\(name)")], dependencies: [], ownership: Ownership(stack: "c/t", lineage: "l")),
                    token: UUID().uuidString)
            }
            let subject = ProviderContractTests.Subject(provider: world.provider, type: "gcp_storage_object", region: GCPIdentityWorld.region) { name in
                GCPIdentityWorld.archive(bucket: "stratum-contract-\(name)").inputs
            }
            let contract = ProviderContractTests(subject)
            try await contract.idempotentCreateByToken()
            try await contract.lostResponseIsRecovered()
            try await contract.deleteOfWhatIsGone()
            try await contract.importByID()
        }
    }
}

@Suite("GCP node identity: service account, bucket binding, trainer archive", .timeLimit(.minutes(3)))
struct GCPNodeIdentityTests {
    /// A create makes the account (its description carrying the create's token) and binds it
    /// to objectAdmin on the bucket; the state records its email.
    @Test func createMakesTheAccountAndBindsItToTheBucket() async throws {
        try await GCPIdentityWorld.run { world in
            let state = try await world.provider.create(GCPIdentityWorld.account(), token: "token-1")
            let email = try #require(state.attributes["email"]?.stringValue)
            #expect(email.hasSuffix("@\(GCPIdentityWorld.project).iam.gserviceaccount.com"))
            #expect(GCPServiceAccountKind.isValid(accountID: String(email.prefix { $0 != "@" })))
            #expect(await world.iam.emails() == [email])
            #expect(await world.storage.members(of: GCPIdentityWorld.role, on: GCPIdentityWorld.bucket) == ["serviceAccount:\(email)"])
            let description = try #require(await world.iam.account(email)?.mapValue?["description"]?.stringValue)
            #expect(description.contains("gcp_service_account.node"))
            // The bucket's default bindings are kept.
            #expect(!(await world.storage.members(of: "roles/storage.legacyBucketOwner", on: GCPIdentityWorld.bucket)).isEmpty)
        }
    }

    /// A create whose answer was lost is tried again with the same token: IAM refuses the id
    /// (409), and the account is adopted because it carries the token; another create's token
    /// finds an account that is not its own and fails without touching it.
    @Test func aRetriedCreateAdoptsItsAccountAndOnlyItsOwn() async throws {
        try await GCPIdentityWorld.run { world in
            await world.iam.loseResponses(of: "iam.projects.serviceAccounts.create")
            await #expect(throws: ProviderError.self) { try await world.provider.create(GCPIdentityWorld.account(), token: "token-1") }
            let again = try await world.provider.create(GCPIdentityWorld.account(), token: "token-1")
            #expect(await world.iam.emails() == [again.id])
            #expect(await world.iam.calls["iam.projects.serviceAccounts.create"] == 2)
            let stranger = await #expect(throws: ProviderError.self) { try await world.provider.create(GCPIdentityWorld.account(), token: "token-2") }
            #expect(stranger?.kind == .permanent)
            #expect(stranger?.message.contains("was not made by this create") == true)
            #expect(await world.iam.emails() == [again.id])
        }
    }

    /// Refresh: a binding removed out of band shows as a change of `bucket` (and apply binds
    /// again); an account deleted out of band is gone.
    @Test func aLostBindingIsDriftAndADeletedAccountIsGone() async throws {
        try await GCPIdentityWorld.run { world in
            let state = try await world.provider.create(GCPIdentityWorld.account(), token: "token-1")
            let clean = try await world.provider.read(type: "gcp_service_account", resources: [state])
            #expect(clean.first??.attributes["bucket"] == .string(GCPIdentityWorld.bucket))

            await world.storage.removeOutOfBand(member: "serviceAccount:\(state.id)", from: GCPIdentityWorld.bucket)
            let drifted = try #require(try await world.provider.read(type: "gcp_service_account", resources: [state]).first ?? nil)
            #expect(drifted.attributes["bucket"] == nil)
            let healed = try await world.provider.update(drifted, to: GCPIdentityWorld.account())
            #expect(healed.attributes["bucket"] == .string(GCPIdentityWorld.bucket))
            #expect(await world.storage.members(of: GCPIdentityWorld.role, on: GCPIdentityWorld.bucket) == ["serviceAccount:\(state.id)"])

            await world.iam.deleteOutOfBand(state.id)
            #expect(try await world.provider.read(type: "gcp_service_account", resources: [state]) == [nil])
        }
    }

    /// A binding IAM has not made visible to Storage yet (the account does not exist as far as
    /// the bucket policy knows) is a transient error, for the engine to try again.
    @Test func aBindingToAnAccountStorageCannotSeeYetIsTransient() async throws {
        try await GCPIdentityWorld.run { world in
            let state = try await world.provider.create(GCPIdentityWorld.account(), token: "token-1")
            await world.storage.removeOutOfBand(member: "serviceAccount:\(state.id)", from: GCPIdentityWorld.bucket)
            await world.iam.deleteOutOfBand(state.id)
            var drifted = state
            drifted.attributes["bucket"] = nil
            let error = await #expect(throws: ProviderError.self) { try await world.provider.update(drifted, to: GCPIdentityWorld.account()) }
            #expect(error?.kind == .transient)
        }
    }

    /// Moving the account to another bucket unbinds it from the first; delete unbinds and
    /// removes the account, and a bucket that is gone by then is no obstacle.
    @Test func moveAndDelete() async throws {
        try await GCPIdentityWorld.run { world in
            _ = try await world.provider.create(
                ResolvedResource(
                    address: ResourceAddress(type: "gcp_bucket", name: "other"), region: GCPIdentityWorld.region, inputs: ["name": "stratum-identity-other"],
                    dependencies: [], ownership: Ownership(stack: "demo/dev", lineage: "lineage-1")),
                token: "bucket-2")
            let state = try await world.provider.create(GCPIdentityWorld.account(), token: "token-1")
            let moved = try await world.provider.update(state, to: GCPIdentityWorld.account("node", ["bucket": "stratum-identity-other"]))
            let member = "serviceAccount:\(state.id)"
            #expect(await world.storage.members(of: GCPIdentityWorld.role, on: GCPIdentityWorld.bucket).isEmpty)
            #expect(await world.storage.members(of: GCPIdentityWorld.role, on: "stratum-identity-other") == [member])

            await world.storage.deleteOutOfBand("stratum-identity-other")
            try await world.provider.delete(moved)
            #expect(await world.iam.emails().isEmpty)
            #expect(await world.iam.calls["iam.projects.serviceAccounts.delete"] == 1)
        }
    }

    /// The trainer archive lands with the carried bytes (checked by SHA-256) and metadata
    /// naming them; bytes changed out of band are drift (the object is gone and made again);
    /// delete removes every generation, so the versioned bucket can go.
    @Test func theTrainerArchiveLandsWholeAndDeleteLeavesTheBucketEmpty() async throws {
        try await GCPIdentityWorld.run { world in
            let archive = TrainerArchive.bundled
            let state = try await world.provider.create(GCPIdentityWorld.archive(), token: "token-1")
            #expect(state.attributes["url"] == .string("gs://\(GCPIdentityWorld.bucket)/\(archive.objectKey)"))
            let stored = try #require(await world.storage.objectData(archive.objectKey, in: GCPIdentityWorld.bucket))
            #expect(SHA256.hash(data: stored).map { String(format: "%02x", $0) }.joined() == archive.sha256)
            #expect(state.attributes["size"] == .int(stored.count))
            #expect(try await world.provider.read(type: "gcp_storage_object", resources: [state]).first??.id == state.id)

            // Someone writes other bytes under the name: the archive is not there any more.
            await world.storage.putObject(archive.objectKey, in: GCPIdentityWorld.bucket, data: Data("not the trainer".utf8))
            #expect(try await world.provider.read(type: "gcp_storage_object", resources: [state]) == [nil])
            // A create then finds other contents under the name, and says so.
            let refused = await #expect(throws: ProviderError.self) { try await world.provider.create(GCPIdentityWorld.archive(), token: "token-2") }
            #expect(refused?.kind == .permanent)

            try await world.provider.delete(state)
            #expect(await world.storage.storedObjects(in: GCPIdentityWorld.bucket).isEmpty, "a generation was left")
        }
    }

    /// A planned SHA-256 that is not the carried archive's (a plan made by another build) is
    /// refused before anything is uploaded.
    @Test func aPlanForAnotherTrainerIsRefused() async throws {
        try await GCPIdentityWorld.run { world in
            var resource = GCPIdentityWorld.archive()
            resource.inputs["sha256"] = .string(String(repeating: "0", count: 64))
            let error = await #expect(throws: ProviderError.self) { try await world.provider.create(resource, token: "token-1") }
            #expect(error?.kind == .permanent)
            #expect(await world.storage.storedObjects(in: GCPIdentityWorld.bucket).isEmpty)
        }
    }
}
