import Foundation
import StratumBootstrap
import StratumCloud
import StratumCore

/// The secrets of a node's `env` (a `gcp_instance`, or every member of a `gcp_instance_gang`),
/// delivered through Secret Manager: each is a secret
/// `projects/<project>/secrets/stratum-<node>-<lineage>-<NAME>` whose one accessor is the
/// node's service account (`roles/secretmanager.secretAccessor` on that secret alone), read at
/// every start of the workload into a root-only file. The value is in state (encrypted) and
/// in Secret Manager, never in the instance's metadata.
enum GCPNodeSecrets {
    static let accessor = "roles/secretmanager.secretAccessor"

    /// The secret of each env entry that holds a Secret, as a resource name.
    static func names(_ inputs: [String: Value], project: String, address: ResourceAddress, lineage: String) -> [String: String] {
        let node = NodeEnvSecrets.node(address, lineage: lineage)
        return Dictionary(uniqueKeysWithValues: NodeEnvSecrets.names(inputs).map { ($0, "projects/\(project)/secrets/stratum-\(node)-\($0)") })
    }

    /// Why the node's secrets cannot be delivered: it runs as no service account of its own.
    static func problem(_ inputs: [String: Value]) -> String? {
        // A reference (the stack's own account) or an email; not the project's default account.
        NodeEnvSecrets.problem(
            inputs, hasIdentity: inputs["service_account"].map { $0.stringValue != "default" } ?? false, store: "Secret Manager",
            hint: "give the instances a serviceAccount of their own (GCP.ServiceAccount)")
    }

    /// Makes each secret (a retry finds it there), adds the value as its newest version, and
    /// makes the node's service account its one accessor. Answers the names, for the node setup.
    static func put(_ resource: ResolvedResource, project: String, client: GCPClient) async throws -> [String: String] {
        let names = names(resource.inputs, project: project, address: resource.address, lineage: resource.ownership.lineage)
        guard !names.isEmpty else { return [:] }
        let values = NodeEnvSecrets.values(resource.inputs)
        let member = "serviceAccount:\(try GCPInputs.string(resource, "service_account"))"
        let labels = GCPLabels.ownership(for: resource, token: "").filter { $0.key != GCPLabels.token }
        for (key, name) in names.sorted(by: { $0.key < $1.key }) {
            let id = String(name.split(separator: "/").last ?? "")
            _ = try await client.call(
                .secretManager, "POST", "v1/projects/\(project)/secrets", query: [("secretId", id)],
                body: ["replication": ["automatic": [:]], "labels": .object(labels.mapValues(GCPJSON.string))], action: "secrets.create", project: project,
                address: resource.address, accepting: [409])
            _ = try await client.call(
                .secretManager, "POST", "v1/\(name):addVersion", body: ["payload": ["data": .string(Data((values[key] ?? "").utf8).base64EncodedString())]],
                action: "secrets.addVersion", project: project, address: resource.address)
            do {
                _ = try await client.call(
                    .secretManager, "POST", "v1/\(name):setIamPolicy", body: ["policy": ["bindings": [["role": .string(accessor), "members": [.string(member)]]]]],
                    action: "secrets.setIamPolicy", project: project, address: resource.address)
            } catch let error as ProviderError where error.kind == .permanent && error.message.contains("does not exist") {
                // IAM has not made a just-made service account visible to Secret Manager yet.
                throw ProviderError(.transient, error.message, address: resource.address)
            }
        }
        return names
    }

    /// Deletes the node's secrets (those already gone are fine).
    static func delete(_ state: ResourceState, project: String, client: GCPClient) async throws {
        let lineage = state.attributes["stratum_lineage"]?.stringValue ?? ""
        try await delete(names(state.attributes, project: project, address: state.address, lineage: lineage), project: project, client: client, address: state.address)
    }

    static func delete(_ names: [String: String], project: String, client: GCPClient, address: ResourceAddress) async throws {
        for name in names.values.sorted() {
            _ = try await client.call(.secretManager, "DELETE", "v1/\(name)", action: "secrets.delete", project: project, address: address, accepting: [404])
        }
    }

    /// Runs a create; when it fails for good (anything but throttling or a passing failure the
    /// engine retries), the secrets put for it are deleted, so nothing is left behind.
    static func removingOnFailure<T: Sendable>(
        _ resource: ResolvedResource, project: String, client: GCPClient, _ create: () async throws -> T
    ) async throws -> T {
        do {
            return try await create()
        } catch let error as ProviderError where error.kind != .transient && error.kind != .throttled {
            let names = names(resource.inputs, project: project, address: resource.address, lineage: resource.ownership.lineage)
            try? await delete(names, project: project, client: client, address: resource.address)
            throw error
        }
    }
}
