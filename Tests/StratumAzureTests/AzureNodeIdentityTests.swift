import Crypto
import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumAzure

/// The VM world with a storage account and a container, and the Blob Storage fake of that
/// account behind `STRATUM_AZURE_STORAGE_ENDPOINT`'s equivalent, signed with the key the ARM
/// fake's `listKeys` hands out.
struct AzureStorageWorld {
    static let account = "stratumnodes01"
    static let container = "ckpt"

    let vms: AzureVMWorld
    let blob: AzureBlobFake
    let blobServer: LoopbackHTTPServer
    let provider: AzureProvider

    static func run(_ body: (AzureStorageWorld) async throws -> Void) async throws {
        try await AzureVMWorld.run { vms in
            let blob = AzureBlobFake(account: account, containers: [container])
            let blobServer = try await blob.serve()
            await vms.fake.set(storageKey: blob.accountKey, forAccount: account)
            var client = vms.client
            client.configuration.endpoints.storage = URL(string: "http://127.0.0.1:\(blobServer.port)")!
            let world = AzureStorageWorld(vms: vms, blob: blob, blobServer: blobServer, provider: AzureProvider(client: client))
            do {
                try await world.storage()
                try await body(world)
            } catch {
                await blobServer.shutdown()
                throw error
            }
            await blobServer.shutdown()
        }
    }

    var accountID: String { vms.client.resourceGroup(AzureVMWorld.group, "Microsoft.Storage/storageAccounts/\(Self.account)") }
    var containerID: String { "\(accountID)/blobServices/default/containers/\(Self.container)" }

    func storage() async throws {
        try await vms.put(accountID, ["location": .string(AzureVMWorld.region), "sku": ["name": "Standard_LRS"], "kind": "StorageV2"])
        try await vms.put(containerID, ["properties": ["publicAccess": "None"]])
    }

    func resource(_ type: String, _ name: String, _ inputs: [String: Value]) -> ResolvedResource {
        ResolvedResource(
            address: ResourceAddress(type: type, name: name), region: AzureVMWorld.region, inputs: inputs, dependencies: [],
            ownership: Ownership(stack: "demo/dev", lineage: "lineage-0001"))
    }

    func identity(_ name: String = "node", scope: String? = nil) -> ResolvedResource {
        resource("azure_node_identity", name, ["resource_group": .string(AzureVMWorld.group), "scope": .string(scope ?? containerID)])
    }

    func archive(sha256: String = TrainerArchive.bundled.sha256) -> ResolvedResource {
        resource("azure_blob", "trainer", [
            "container": .string(containerID), "key": .string(TrainerArchive.bundled.objectKey), "source": .string(BundledArtifact.trainer), "sha256": .string(sha256),
        ])
    }

    func assignments() async -> [String] { await vms.ids("Microsoft.Authorization/roleAssignments") }
    func identities() async -> [String] { await vms.ids(AzureNodeIdentityKind.identityType) }
}

@Suite("Azure node identity and trainer archive on the ARM and Blob fakes", .serialized, .timeLimit(.minutes(3)))
struct AzureNodeIdentityTests {
    /// Create makes the identity, then its Storage Blob Data Contributor assignment at the
    /// container; read finds both; a new scope moves the assignment; delete removes the
    /// assignment, then the identity.
    @Test func createReadUpdateDelete() async throws {
        try await AzureStorageWorld.run { world in
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(world.identity(), token: token)
            #expect(await world.identities() == [state.id])
            let principal = try #require(state.attributes["principal_id"]?.stringValue)
            let clientID = try #require(state.attributes["client_id"]?.stringValue)
            #expect(!principal.isEmpty && !clientID.isEmpty && principal != clientID)
            let identity = try world.vms.sentBody(state.id)
            #expect(identity["tags"]?["stratum-token"]?.string == token)

            let assignment = try #require(state.attributes["role_assignment_id"]?.stringValue)
            #expect(assignment.hasPrefix(world.containerID + "/providers/Microsoft.Authorization/roleAssignments/"))
            #expect(await world.assignments() == [assignment])
            let body = try world.vms.sentBody(assignment)
            #expect(body["properties"]?["principalId"]?.string == principal)
            #expect(body["properties"]?["principalType"]?.string == "ServicePrincipal")
            #expect(body["properties"]?["roleDefinitionId"]?.string == "/subscriptions/\(AzureVMWorld.subscription)/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe")
            // The name is a version-5 GUID of the scope, principal and role.
            let guid = String(assignment.split(separator: "/").last ?? "")
            #expect(UUID(uuidString: guid) != nil && guid.dropFirst(14).first == "5")

            let read = try await world.provider.read(type: "azure_node_identity", resources: [state])
            #expect(read == [state])

            // Another scope: the assignment moves, the identity (and so its VMs) stays.
            var moved = world.identity()
            moved.inputs["scope"] = .string(world.accountID)
            let updated = try await world.provider.update(state, to: moved)
            #expect(updated.id == state.id && updated.attributes["client_id"]?.stringValue == clientID)
            let now = try #require(updated.attributes["role_assignment_id"]?.stringValue)
            #expect(now.hasPrefix(world.accountID + "/providers/Microsoft.Authorization/roleAssignments/"))
            #expect(await world.assignments() == [now])

            try await world.provider.delete(updated)
            #expect(await world.assignments().isEmpty)
            #expect(await world.identities().isEmpty)
            let order = world.vms.received.all.filter { $0.method == "DELETE" }.map { pathOf($0).contains("roleAssignments") ? "assignment" : "identity" }
            // The update removed the old assignment; the delete, the new one, then the identity.
            #expect(order == ["assignment", "assignment", "identity"])
            // Deleting again finds nothing and is fine.
            try await world.provider.delete(updated)
        }
    }

    /// Without a scope (its nodes' bucket is on another cloud): the identity alone, no
    /// assignment, and the issuer another cloud registers for its Entra tokens.
    @Test func anIdentityForABucketOnAnotherCloudHasNoAssignment() async throws {
        try await AzureStorageWorld.run { world in
            let unscoped = world.resource("azure_node_identity", "federated", ["resource_group": .string(AzureVMWorld.group)])
            let state = try await world.provider.create(unscoped, token: UUID().uuidString.lowercased())
            #expect(await world.identities() == [state.id])
            #expect(await world.assignments().isEmpty)
            #expect(state.attributes["role_assignment_id"] == nil && state.attributes["scope"] == nil)
            let tenant = try #require(state.attributes["tenant_id"]?.stringValue)
            #expect(state.attributes["issuer"]?.stringValue == "https://login.microsoftonline.com/\(tenant)/v2.0")
            #expect(state.attributes["principal_id"]?.stringValue?.isEmpty == false)
            // Refresh finds nothing missing; delete removes the identity alone.
            #expect(try await world.provider.read(type: "azure_node_identity", resources: [state]) == [state])
            try await world.provider.delete(state)
            #expect(await world.identities().isEmpty)
        }
    }

    /// A federated credential of an identity: its body is the SDK model's, read finds it, a new
    /// subject is PUT in place, delete removes it.
    @Test func aFederatedCredentialTrustsAnotherIssuer() async throws {
        try await AzureStorageWorld.run { world in
            let identity = try await world.provider.create(world.identity(), token: UUID().uuidString.lowercased())
            let inputs: [String: Value] = [
                "identity": .string(identity.id), "issuer": "https://accounts.google.com", "subject": "104857600123456789012",
                "audiences": .list(["api://AzureADTokenExchange"]),
            ]
            let made = try await world.provider.create(world.resource("azure_federated_credential", "gcp-nodes", inputs), token: UUID().uuidString.lowercased())
            #expect(made.id.hasPrefix(identity.id + "/federatedIdentityCredentials/"))
            let body = try world.vms.sentBody(made.id)
            #expect(body["properties"]?["issuer"]?.string == "https://accounts.google.com")
            #expect(body["properties"]?["subject"]?.string == "104857600123456789012")
            let read = try #require(try await world.provider.read(type: "azure_federated_credential", resources: [made]).first ?? nil)
            #expect(read.attributes["audiences"] == .list(["api://AzureADTokenExchange"]) && read.attributes["subject"] == "104857600123456789012")
            var moved = inputs
            moved["subject"] = "204857600123456789012"
            let updated = try await world.provider.update(made, to: world.resource("azure_federated_credential", "gcp-nodes", moved))
            #expect(try world.vms.sentBody(made.id)["properties"]?["subject"]?.string == "204857600123456789012")
            try await world.provider.delete(updated)
            #expect(try await world.provider.read(type: "azure_federated_credential", resources: [updated]) == [nil])
            try await world.provider.delete(identity)
        }
    }

    /// The assignment's answer lost: the create fails, and its retry with the same token PUTs
    /// the same assignment (its name derived, not random), so there is still one; recovery
    /// adopts the identity by its token and completes it.
    @Test func aRetryAfterALostAnswerMakesOneAssignment() async throws {
        try await AzureStorageWorld.run { world in
            await world.vms.fake.inject(.lostResponse, into: "PUT Microsoft.Authorization/roleAssignments")
            let token = UUID().uuidString.lowercased()
            let resource = world.identity()
            await #expect(throws: ProviderError.self) { try await world.provider.create(resource, token: token) }
            #expect(await world.assignments().count == 1)
            let retried = try await world.provider.create(resource, token: token)
            #expect(await world.assignments() == [retried.attributes["role_assignment_id"]?.stringValue ?? ""])
            let recovered = try #require(try await world.provider.recover(PendingOperation(creating: resource, provider: "azure", token: token)))
            #expect(recovered.attributes["role_assignment_id"] == retried.attributes["role_assignment_id"])
            #expect(await world.assignments().count == 1)
            #expect(try await world.provider.recover(PendingOperation(creating: resource, provider: "azure", token: "another")) == nil)
            // Another create's token on an identity of the same name: refused, nothing touched.
            let error = await #expect(throws: ProviderError.self) { try await world.provider.create(resource, token: "another") }
            #expect(error?.message.contains("already exists") == true)
        }
    }

    /// An assignment deleted out of band is drift of `scope`: update makes it again.
    @Test func aDeletedAssignmentIsDrift() async throws {
        try await AzureStorageWorld.run { world in
            let state = try await world.provider.create(world.identity(), token: "t1")
            let assignment = try #require(state.attributes["role_assignment_id"]?.stringValue)
            await world.vms.fake.deleteOutOfBand(assignment)
            let read = try #require(try await world.provider.read(type: "azure_node_identity", resources: [state]).first ?? nil)
            #expect(read.attributes["scope"] == nil && read.attributes["role_assignment_id"] == nil)
            #expect(read.attributes["client_id"] == state.attributes["client_id"])
            let healed = try await world.provider.update(read, to: world.identity())
            #expect(healed.attributes["role_assignment_id"]?.stringValue == assignment)
            #expect(await world.assignments() == [assignment])
            // The identity deleted out of band: the resource is gone.
            await world.vms.fake.deleteOutOfBand(state.id)
            #expect(try await world.provider.read(type: "azure_node_identity", resources: [healed]) == [nil])
        }
    }

    /// ARM refuses an assignment to a principal the directory does not know (a deleted
    /// identity's), and a second assignment of the same role to the same principal at the same scope.
    @Test func theFakeRefusesAssignmentsARMRefuses() async throws {
        try await AzureStorageWorld.run { world in
            let client = world.vms.client
            let role = AzureNodeIdentityKind.roleDefinition(scope: world.containerID, client: client)
            let stranger = "11111111-2222-4333-8444-555555555555"
            let body: CloudJSON = ["properties": ["roleDefinitionId": .string(role), "principalId": .string(stranger), "principalType": "ServicePrincipal"]]
            let path = AzureNodeIdentityKind.assignmentID(scope: world.containerID, principal: stranger, role: role)
            let refused = await #expect(throws: ProviderError.self) { _ = try await client.put(path, body: body, action: "roleAssignments.create") }
            #expect(refused?.message.contains("PrincipalNotFound") == true, "\(refused?.message ?? "")")

            let state = try await world.provider.create(world.identity(), token: "t1")
            let principal = try #require(state.attributes["principal_id"]?.stringValue)
            let twin = "\(world.containerID)/providers/Microsoft.Authorization/roleAssignments/\(UUID().uuidString.lowercased())"
            let same: CloudJSON = ["properties": ["roleDefinitionId": .string(role), "principalId": .string(principal), "principalType": "ServicePrincipal"]]
            let exists = await #expect(throws: ProviderError.self) { _ = try await client.put(twin, body: same, action: "roleAssignments.create") }
            #expect(exists?.message.contains("RoleAssignmentExists") == true, "\(exists?.message ?? "")")

            // The kind reads PrincipalNotFound as the directory catching up: worth retrying.
            let kind = AzureNodeIdentityKind(client: client)
            let ghost: CloudJSON = ["id": "x", "properties": ["principalId": .string(stranger)]]
            let later = await #expect(throws: ProviderError.self) {
                _ = try await kind.assign(identity: ghost, scope: world.containerID, resource: world.identity(), client: client)
            }
            #expect(later?.kind == .transient)
        }
    }

    /// The trainer's archive lands in the container as the exact bytes Stratum carries, with
    /// their SHA-256 and the create's token as metadata, signed with the account's key; read
    /// finds it; delete removes it. A key that is not the account's is refused by the service.
    @Test func theArchiveLandsByteForByte() async throws {
        try await AzureStorageWorld.run { world in
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(world.archive(), token: token)
            let archive = TrainerArchive.bundled
            let key = archive.objectKey
            #expect(state.attributes["url"]?.stringValue == "az://\(AzureStorageWorld.account)/\(AzureStorageWorld.container)/\(key)")
            let landed = try #require(await world.blob.blob(AzureStorageWorld.container, key))
            #expect(SHA256.hash(data: landed).map { String(format: "%02x", $0) }.joined() == archive.sha256)
            #expect(landed == archive.data)
            let metadata = try #require(await world.blob.metadata(AzureStorageWorld.container, key))
            #expect(metadata["stratum_sha256"] == archive.sha256 && metadata["stratum_token"] == token)
            #expect(await world.blob.refused == 0)

            #expect(try await world.provider.read(type: "azure_blob", resources: [state]) == [state])
            let recovered = try #require(try await world.provider.recover(PendingOperation(creating: world.archive(), provider: "azure", token: token)))
            #expect(recovered.attributes["size"] == .int(archive.data.count))
            #expect(try await world.provider.recover(PendingOperation(creating: world.archive(), provider: "azure", token: "other")) == nil)

            try await world.provider.delete(state)
            #expect(await world.blob.blobNames(AzureStorageWorld.container).isEmpty)
            #expect(try await world.provider.read(type: "azure_blob", resources: [state]) == [nil])
            try await world.provider.delete(state)

            // A plan made by another build (another trainer) is refused before any upload.
            let other = await #expect(throws: ProviderError.self) { try await world.provider.create(world.archive(sha256: String(repeating: "0", count: 64)), token: "t") }
            #expect(other?.message.contains("plan again") == true)

            // The wrong key: the service refuses the signature.
            await world.vms.fake.set(storageKey: Data(repeating: 7, count: 64).base64EncodedString(), forAccount: AzureStorageWorld.account)
            let refused = await #expect(throws: ProviderError.self) { try await world.provider.create(world.archive(), token: "t") }
            #expect(refused?.kind == .auth)
            #expect(await world.blob.refused == 1)
            #expect(await world.blob.blobNames(AzureStorageWorld.container).isEmpty)
        }
    }

    /// A VM with the node identity names it as its only, user-assigned identity, and its node
    /// setup carries the identity's client id (and nothing secret).
    @Test func aVMUsesTheUserAssignedIdentity() async throws {
        try await AzureStorageWorld.run { world in
            let identity = try await world.provider.create(world.identity(), token: "t1")
            let id = try #require(identity.attributes["id"]?.stringValue)
            let clientID = try #require(identity.attributes["client_id"]?.stringValue)
            let workload = TrainerRun().inputs(url: "az://\(AzureStorageWorld.account)/\(AzureStorageWorld.container)/\(TrainerArchive.bundled.objectKey)", sha256: TrainerArchive.bundled.sha256)
            let node = AzureVMWorld.vm(
                "worker-0", workload.merging(["identity": .string(id), "identity_client_id": .string(clientID), "pool": "worker", "index": 0, "count": 1]) { $1 },
                world: world.vms)
            let state = try await world.provider.create(node, token: "t2")
            let body = try world.vms.sentBody(state.id)
            #expect(body["identity"] == ["type": "UserAssigned", "userAssignedIdentities": .object([id: [:]])])
            let live = try #require(await world.vms.fake.resource(state.id)?.mapValue?["identity"]?.mapValue?["userAssignedIdentities"]?.mapValue?[id]?.mapValue)
            #expect(live["clientId"]?.stringValue == clientID)
            let setup = try NodeSetupDocument(base64: try #require(body["properties"]?["osProfile"]?["customData"]?.string))
            #expect(setup.environment["AZURE_CLIENT_ID"] == clientID)
            #expect(setup.environment["STRATUM_TRAINER_SHA256"] == TrainerArchive.bundled.sha256)
            let document = setup.text
            for word in ["AccountKey", "SharedKey", "client_secret", "access_token=", world.blob.accountKey] { #expect(!document.contains(word), "\(word)") }

            // Without an identity the trainer cannot be fetched: refused before any call.
            var bare = node
            bare.inputs["identity"] = nil
            bare.inputs["identity_client_id"] = nil
            let problems = AzureVMInputs.problems(bare.inputs)
            #expect(problems.contains { $0.contains("user-assigned identity") }, "\(problems)")
            // A VM naming an identity that does not exist is refused by ARM.
            var dangling = AzureVMWorld.vm("worker-1", node.inputs, world: world.vms)
            dangling.inputs["identity"] = .string(id + "-gone")
            await #expect(throws: ProviderError.self) { try await world.provider.create(dangling, token: "t3") }
        }
    }
}
