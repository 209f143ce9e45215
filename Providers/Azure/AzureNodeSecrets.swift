import Crypto
import Foundation
import StratumBootstrap
import StratumCloud
import StratumCore

/// The secrets of a VM's `env`, delivered through the cluster's Key Vault (`key_vault`, an
/// `azure_key_vault`): each is a vault secret `<vm>-<NAME>-<hash>` PUT through ARM (the
/// management plane, so the deploying principal needs no data-plane role), which the node reads
/// with its user-assigned identity (Key Vault Secrets User on that vault alone) at every start
/// of the workload. User data lists `NAME <vault>/<secret>`; the value is in state (sealed) and
/// in the vault, never in user data.
///
/// ARM has no DELETE for a vault's secret (only the data plane does, which would need a
/// data-plane role for the deploying principal): deleting the VM disables its secrets, so no
/// node can read them any more, and destroying the vault purges them with it.
enum AzureNodeSecrets {
    static let secretType = "Microsoft.KeyVault/vaults/secrets"

    /// The vault's ARM id, when the VM names one.
    static func vault(_ inputs: [String: Value]) -> String? {
        inputs["key_vault"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The vault secret of `key` on the VM named `vm`: 1-127 letters, digits and '-', with a
    /// hash of the exact key (vault names ignore case, environment names do not).
    static func secretName(vm: String, key: String) -> String {
        func clean(_ text: String) -> String { String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" }) }
        let hash = SHA256.hash(data: Data(key.utf8)).prefix(3).map { String(format: "%02x", $0) }.joined()
        return String("\(clean(vm))-\(clean(key))".prefix(119)) + "-" + hash
    }

    /// The reference of each secret (by env name) that the node reads: `<vault name>/<secret name>`.
    static func references(_ inputs: [String: Value], vm: String) -> [String: String] {
        guard let vault = vault(inputs) else { return [:] }
        let name = AzureNames.lastSegment(vault)
        return Dictionary(uniqueKeysWithValues: NodeEnvSecrets.names(inputs).map { ($0, "\(name)/\(secretName(vm: vm, key: $0))") })
    }

    /// Why a VM with secrets cannot have them delivered (no vault, or no identity to read it with).
    static func problem(_ inputs: [String: Value]) -> String? {
        let names = NodeEnvSecrets.names(inputs)
        func given(_ key: String) -> Bool { inputs[key].map { $0 != .null && $0.stringValue != "" } ?? false }
        guard !names.isEmpty, !given("key_vault") || !given("identity") else { return nil }
        return names.map { "env.\($0) holds a Secret" }.joined(separator: ", ")
            + ": a node's secrets reach it through the cluster's Key Vault, read with its identity; give the VM a key_vault (Azure.KeyVault) and the user-assigned identity (Azure.NodeIdentity) the vault lets read, since customData is plain text anyone allowed to read the VM's model can see"
    }

    /// PUTs every secret of the VM (enabled; the same body again is a no-op); the references.
    static func put(_ resource: ResolvedResource, vm: String, tags: [String: String], client: AzureClient) async throws -> [String: String] {
        guard let vault = vault(resource.inputs) else { return [:] }
        let values = NodeEnvSecrets.values(resource.inputs)
        for key in values.keys.sorted() {
            let body: CloudJSON = [
                "tags": .object(tags.mapValues(CloudJSON.string)),
                "properties": ["value": .string(values[key] ?? ""), "attributes": ["enabled": true]],
            ]
            let path = "\(vault)/secrets/\(secretName(vm: vm, key: key))"
            let answer = try await client.put(path, body: body, action: "secrets.createOrUpdate", address: resource.address, region: resource.region)
            _ = try await client.finish(answer, action: "secrets.createOrUpdate", address: resource.address, region: resource.region)
        }
        return references(resource.inputs, vm: vm)
    }

    /// Disables the VM's secrets (a vault or secret already gone is fine).
    static func disable(_ state: ResourceState, vm: String, client: AzureClient) async throws {
        guard let vault = vault(state.attributes) else { return }
        for key in NodeEnvSecrets.names(state.attributes) {
            let path = "\(vault)/secrets/\(secretName(vm: vm, key: key))"
            do {
                let answer = try await client.patch(
                    path, body: ["properties": ["attributes": ["enabled": false]]], action: "secrets.update", address: state.address)
                _ = try await client.finish(answer, action: "secrets.update", address: state.address)
            } catch let error as ProviderError where error.kind == .notFound {
                continue
            }
        }
    }
}
