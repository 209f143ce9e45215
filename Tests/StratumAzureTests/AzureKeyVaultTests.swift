import Foundation
import Stratum
import StratumBootstrap
import StratumCloud
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing
@testable import StratumAzure

/// The storage world with the Key Vault data-plane fake (and its IMDS route) over the ARM
/// fake's vaults and role assignments.
struct AzureVaultWorld {
    let storage: AzureStorageWorld
    let keyVault: AzureKeyVaultFake
    let server: LoopbackHTTPServer

    static func run(_ body: (AzureVaultWorld) async throws -> Void) async throws {
        try await AzureStorageWorld.run { storage in
            let keyVault = AzureKeyVaultFake(arm: storage.vms.fake)
            let server = try await keyVault.serve()
            let world = AzureVaultWorld(storage: storage, keyVault: keyVault, server: server)
            do {
                try await body(world)
            } catch {
                await server.shutdown()
                throw error
            }
            await server.shutdown()
            let violations = await keyVault.violations
            #expect(violations.isEmpty, "\(violations)")
        }
    }

    var provider: AzureProvider { storage.provider }

    func vault(reader identity: ResourceState, name: String = "secrets") -> ResolvedResource {
        storage.resource("azure_key_vault", name, [
            "resource_group": .string(AzureVMWorld.group), "tenant_id": identity.attributes["tenant_id"] ?? .null,
            "reader": identity.attributes["principal_id"] ?? .null,
        ])
    }

    func node(_ name: String, env: [String: Value], identity: ResourceState, vault: ResourceState?) -> ResolvedResource {
        var inputs: [String: Value] = [
            "command": ["train"], "env": .map(env), "identity": identity.attributes["id"] ?? .null,
            "identity_client_id": identity.attributes["client_id"] ?? .null,
        ]
        if let vault { inputs["key_vault"] = .string(vault.id) }
        return AzureVMWorld.vm(name, inputs, world: storage.vms)
    }

    /// Runs the node's `stratum_secret REFERENCE` from its fetch.sh with /bin/sh, as the VM whose
    /// user-assigned identity has `clientID`, against the fakes; its exit status and standard output.
    func readOnNode(fetch: String, reference: String, clientID: String, vault: String) async throws -> (status: Int32, output: String) {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-fetch-\(UUID().uuidString).sh")
        try fetch.write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:\(server.port)", "AZURE_CLIENT_ID": clientID,
            "STRATUM_AZURE_KEYVAULT_ENDPOINT": keyVault.endpoint(server, vault: vault),
        ]
        // The shell waits on its own thread, not on one of the concurrency pool's.
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                do {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: "/bin/sh")
                    process.arguments = ["-c", #". "$0"; stratum_secret "$1""#, script.path, reference]
                    process.environment = environment
                    let output = Pipe()
                    process.standardOutput = output
                    process.standardError = FileHandle.nullDevice
                    try process.run()
                    let data = output.fileHandleForReading.readDataToEndOfFile()
                    process.waitUntilExit()
                    continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}

@Suite("Azure node secrets through Key Vault on the ARM and Key Vault fakes", .serialized, .timeLimit(.minutes(3)))
struct AzureKeyVaultTests {
    /// Quotes, spaces, a dollar and a backslash: the node prints it byte for byte.
    static let secret = #"hf_"quoted" and 'single'  two  spaces $HOME \n end"#

    /// A VM's secret goes to the cluster's vault through ARM; its customData names it, never its
    /// value; the state holds it sealed; the node reads exactly the value with its identity and
    /// no other identity can; deleting the VM disables it; destroying the vault purges it, and
    /// the same name can be made again.
    @Test func aSecretReachesTheNodeThroughKeyVault() async throws {
        try await AzureVaultWorld.run { world in
            let vms = world.storage.vms
            let identity = try await world.provider.create(world.storage.identity(), token: "t1")
            let vault = try await world.provider.create(world.vault(reader: identity), token: "t2")
            let vaultName = try #require(vault.attributes["name"]?.stringValue)
            #expect(vault.attributes["uri"]?.stringValue == "https://\(vaultName).vault.azure.net/")
            let vaultBody = try vms.sentBody(vault.id)
            #expect(vaultBody["properties"]?["enableRbacAuthorization"] == true && vaultBody["properties"]?["enableSoftDelete"] == true)
            #expect(vaultBody["properties"]?["tenantId"]?.string == AzureARMFake.tenant && vaultBody["properties"]?["accessPolicies"] == nil)
            let assignment = try #require(vault.attributes["role_assignment_id"]?.stringValue)
            #expect(assignment.hasPrefix(vault.id + "/providers/Microsoft.Authorization/roleAssignments/"))
            let granted = try vms.sentBody(assignment)
            #expect(granted["properties"]?["roleDefinitionId"]?.string?.hasSuffix("/roleDefinitions/\(AzureKeyVaultKind.secretsUser)") == true)
            #expect(granted["properties"]?["principalId"]?.string == identity.attributes["principal_id"]?.stringValue)

            let node = world.node("worker-0", env: ["HF_TOKEN": Value.string(Self.secret).markedSensitive, "MODE": "train"], identity: identity, vault: vault)
            let state = try await world.provider.create(node, token: "t3")

            // The customData lists the secret's name in the vault, never its value.
            let encoded = try #require(try vms.sentBody(state.id)["properties"]?["osProfile"]?["customData"]?.string)
            let setup = try NodeSetupDocument(base64: encoded)
            #expect(!setup.text.contains(Self.secret) && !encoded.contains(Self.secret))
            #expect(setup.environment["MODE"] == "train" && setup.environment["HF_TOKEN"] == nil)
            let secretName = AzureNodeSecrets.secretName(vm: "worker-0", key: "HF_TOKEN")
            let reference = "\(vaultName)/\(secretName)"
            #expect(setup.files[NodeBootstrap.secretsListPath] == "HF_TOKEN \(reference)\n")
            #expect(setup.files["/etc/systemd/system/stratum-workload.service"]?.contains("ExecStartPre=\(NodeBootstrap.libexec)/secrets.sh") == true)

            // State: the value only inside a sensitive wrapper, sealed when stored.
            #expect(state.attributes["env"]?.mapValue?["HF_TOKEN"]?.containsSensitive == true)
            let stored = try StateCodec(sealer: StateKey(.material("state key"))).encode(Value.map(state.attributes))
            #expect(!String(decoding: stored, as: UTF8.self).contains("two  spaces"))

            // The vault holds the value; ARM never answers it.
            let secretID = "\(vault.id)/secrets/\(secretName)"
            #expect(await vms.fake.ids(ofType: AzureNodeSecrets.secretType) == [secretID])
            #expect(await vms.fake.secretValue(secretID) == Self.secret)
            let answered = try await vms.client.get(secretID, action: "secrets.get")
            #expect(answered["properties"]?["value"] == nil && answered["properties"]?["secretUri"]?.string == "https://\(vaultName).vault.azure.net/secrets/\(secretName)")

            // The node reads exactly the value with its identity.
            let fetch = try #require(setup.files["\(NodeBootstrap.libexec)/fetch.sh"])
            let clientID = try #require(identity.attributes["client_id"]?.stringValue)
            let read = try await world.readOnNode(fetch: fetch, reference: reference, clientID: clientID, vault: vaultName)
            #expect(read.status == 0)
            #expect(read.output == Self.secret)
            #expect(await world.keyVault.served == 1)

            // Another identity (another cluster's) is refused by the vault.
            let other = try await world.provider.create(world.storage.identity("other"), token: "t4")
            let otherClient = try #require(other.attributes["client_id"]?.stringValue)
            let refused = try await world.readOnNode(fetch: fetch, reference: reference, clientID: otherClient, vault: vaultName)
            #expect(refused.status != 0 && refused.output.isEmpty)
            #expect(await world.keyVault.refused == 1)

            // Deleting the VM disables its secret: no node reads it any more.
            try await world.provider.delete(state)
            let after = try await world.readOnNode(fetch: fetch, reference: reference, clientID: clientID, vault: vaultName)
            #expect(after.status != 0 && after.output.isEmpty)

            // Destroying the vault deletes and purges it with its secrets; the name is free again.
            try await world.provider.delete(vault)
            #expect(await vms.fake.ids(ofType: AzureKeyVaultKind.vaultType).isEmpty)
            #expect(await vms.fake.ids(ofType: AzureNodeSecrets.secretType).isEmpty)
            #expect(await vms.fake.secretValue(secretID) == nil)
            #expect(await vms.fake.deletedVaultNames().isEmpty)
            #expect(await world.storage.assignments().count == 2, "the two identities' container assignments are left")
            let again = try await world.provider.create(world.vault(reader: identity), token: "t5")
            #expect(again.id == vault.id)
            try await world.provider.delete(again)
            try await world.provider.delete(again)
        }
    }

    /// A deleted vault left unpurged (a destroy cut short) is purged by the same resource's next
    /// create; one that is not this resource's is refused, naming it.
    @Test func aLeftoverDeletedVaultIsPurgedOnlyWhenItIsThisResources() async throws {
        try await AzureVaultWorld.run { world in
            let vms = world.storage.vms
            let identity = try await world.provider.create(world.storage.identity(), token: "t1")
            let vault = try await world.provider.create(world.vault(reader: identity), token: "t2")
            let name = try #require(vault.attributes["name"]?.stringValue)
            // Deleted through ARM alone: Azure keeps it soft-deleted, its name taken.
            try await vms.client.deleteAndWait(vault.id, action: "vaults.delete", address: vault.address)
            #expect(await vms.fake.deletedVaultNames() == [name])
            // Another resource asking for that name is refused, and the leftover kept.
            var stranger = world.vault(reader: identity, name: "stranger")
            stranger.inputs["name"] = .string(name)
            let error = await #expect(throws: ProviderError.self) { try await world.provider.create(stranger, token: "t3") }
            #expect(error?.message.contains("soft delete") == true, "\(error?.message ?? "")")
            #expect(await vms.fake.deletedVaultNames() == [name])
            // The same resource's next create purges it and makes the vault again.
            let again = try await world.provider.create(world.vault(reader: identity), token: "t4")
            #expect(again.id == vault.id)
            #expect(await vms.fake.deletedVaultNames().isEmpty)
        }
    }

    /// A Secret in a VM's env is never plain text to Azure: without a vault (or an identity to
    /// read it with) it is a validation error naming the key; with both the DSL wires them.
    @Test func theDSLWiresTheVaultAndRefusesASecretWithoutOne() async throws {
        try await AzureVMWorld.run { world in
            let placement = Placement.azure(subscription: AzureVMWorld.subscription, location: AzureVMWorld.region, zones: ["1"])
            let group = AzureLowering.resourceGroup(of: placement)
            func stack(vault: Bool) throws -> EvaluatedStack {
                var content = StackContent()
                let bucket = Bucket("stratum-secrets-ckpt", on: placement)
                let identity = Azure.NodeIdentity("node", bucket: bucket, resourceGroup: group, subscription: AzureVMWorld.subscription, location: AzureVMWorld.region)
                let keyVault = Azure.KeyVault("secrets", reader: identity, resourceGroup: group, subscription: AzureVMWorld.subscription, location: AzureVMWorld.region)
                bucket.declare(into: &content)
                identity.declare(into: &content)
                if vault { keyVault.declare(into: &content) }
                Azure.VirtualMachine(
                    "worker", resourceGroup: group,
                    Azure.VMSpec(
                        size: "Standard_NC4as_T4_v3", zones: ["1"], subnet: world.subnet, command: ["train"],
                        env: ["HF_TOKEN": Secret(AzureKeyVaultTests.secret), "MODE": "train"], identity: identity, keyVault: vault ? keyVault : nil),
                    subscription: AzureVMWorld.subscription, location: AzureVMWorld.region
                ).declare(into: &content)
                return try StackEvaluator.evaluate(content, name: "t", environment: "dev")
            }
            let planner = Planner(providers: ProviderRegistry([world.provider]))
            let error = try #require(throws: ValidationError.self) { try planner.validate(try stack(vault: false)) }
            let messages = error.diagnostics.map(\.description)
            #expect(messages.count == 1 && messages.first?.contains("azure_virtual_machine.worker") == true, "\(messages)")
            #expect(messages.first?.contains("env.HF_TOKEN holds a Secret") == true && messages.first?.contains("key_vault") == true, "\(messages)")
            #expect(!error.description.contains(AzureKeyVaultTests.secret))

            let wired = try stack(vault: true)
            try planner.validate(wired)
            let vm = try #require(wired.resources.first { $0.address.type == "azure_virtual_machine" })
            #expect(vm.inputs["key_vault"]?.references.map(\.address.description) == ["azure_key_vault.secrets"])
            let vault = try #require(wired.resources.first { $0.address.type == "azure_key_vault" })
            #expect(vault.inputs["reader"]?.references.map(\.description) == ["azure_node_identity.node.principal_id"], "\(vault.inputs)")
            #expect(vault.inputs["tenant_id"]?.references.map(\.description) == ["azure_node_identity.node.tenant_id"], "\(vault.inputs)")
        }
    }
}
