import Crypto
import Foundation
import StratumCloud
import StratumCore
import StratumTrainerArtifact

/// `azure_blob`: an artifact this binary carries (`source`: `stratum:trainer`, the trainer's
/// source archive) put as a block blob at `key` in a container (`container`: its ARM id), named
/// by its content (`sha256`). A new trainer is a new SHA-256, so a new blob and new VMs. Put
/// Blob is idempotent: a retried or recovered create writes the same bytes. Its `url` is
/// `az://{account}/{container}/{key}`. Requests are signed with the account's key
/// (`AzureBlobStorage`); the upload carries its Content-MD5, which the service checks.
/// `stratum sweep` cannot list blobs (`owned()` is nil): their metadata holds the address and
/// token but no stack or lineage. A blob goes with its container or storage account.
struct AzureBlobKind: ResourceKind {
    static let typeName = "azure_blob"
    let type = Self.typeName
    let client: AzureClient

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "id": .computed,
        "stratum_lineage": .computed,
        "container": .input(forceNew: true, required: true),
        "key": .input(forceNew: true, required: true),
        "source": .input(forceNew: true, required: true),
        "sha256": .input(forceNew: true, required: true),
        "url": .computed,
        "size": .computed,
    ])

    var storage: AzureBlobStorage { AzureBlobStorage(client: client) }

    /// A container's blobs are read with one key.
    func batchKey(_ state: ResourceState) -> String { state.attributes["container"]?.stringValue?.lowercased() ?? state.region }

    func validate(_ resource: DesiredResource) -> [Diagnostic] { BundledArtifact.diagnostics(resource) }

    func location(of inputs: [String: Value], address: ResourceAddress) throws -> AzureBlobStorage.Location {
        do {
            return try AzureBlobStorage.Location(containerID: try AzureInputs.string(inputs, "container", address), blob: try AzureInputs.string(inputs, "key", address))
        } catch var error as ProviderError {
            error.address = address
            throw error
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let location = try location(of: resource.inputs, address: resource.address)
        let data = try BundledArtifact.bytes(for: resource)
        let sha256 = try AzureInputs.string(resource.inputs, "sha256", resource.address)
        guard let key = try await storage.accountKey(location, address: resource.address) else {
            throw ProviderError(.notFound, "storage account \(location.account) does not exist", address: resource.address)
        }
        let metadata = [("sha256", sha256), ("address", resource.address.description), ("token", context.token)]
        let response = try await storage.send(
            "PUT", location, key: key,
            headers: [
                ("Content-Type", "application/zip"), ("Content-MD5", Data(Insecure.MD5.hash(data: data)).base64EncodedString()),
                ("x-ms-blob-type", "BlockBlob"),
            ] + metadata.map { ("x-ms-meta-stratum_\($0.0)", $0.1) },
            body: data, action: "PutBlob", address: resource.address)
        guard response.status == 201 else { throw AzureBlobStorage.failure(response, action: "Put Blob", location: location, address: resource.address) }
        return state(of: resource, location: location, size: data.count)
    }

    func state(of resource: ResolvedResource, location: AzureBlobStorage.Location, size: Int) -> ResourceState {
        var attributes = resource.inputs
        attributes["id"] = .string(location.url)
        attributes["url"] = .string(location.url)
        attributes["size"] = .int(size)
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        return ResourceState(
            address: resource.address, provider: "azure", region: resource.region, id: location.url, attributes: attributes, dependencies: resource.dependencies)
    }

    /// The blob's properties (a HEAD), or nil when it, its container or its account is gone.
    func properties(_ location: AzureBlobStorage.Location, key: SymmetricKey?, address: ResourceAddress) async throws -> HTTPResponseData? {
        guard let key else { return nil }
        let response = try await storage.send("HEAD", location, key: key, action: "GetBlobProperties", address: address)
        if response.status == 404 { return nil }
        guard response.status == 200 else { throw AzureBlobStorage.failure(response, action: "Get Blob Properties", location: location, address: address) }
        return response
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let key = try await storage.accountKey(try location(of: first.attributes, address: first.address), address: first.address)
        var refreshed: [ResourceState?] = []
        for state in resources {
            let found = try await properties(try location(of: state.attributes, address: state.address), key: key, address: state.address)
            // A blob whose bytes are not the planned ones is not this resource.
            let same = found?.header("x-ms-meta-stratum_sha256") == state.attributes["sha256"]?.stringValue
            refreshed.append(same ? state : nil)
        }
        return refreshed
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let location = try location(of: state.attributes, address: state.address)
        // The account gone: its blobs with it.
        guard let key = try await storage.accountKey(location, address: state.address) else { return }
        let response = try await storage.send("DELETE", location, key: key, action: "DeleteBlob", address: state.address)
        guard response.status == 202 || response.status == 404 else {
            throw AzureBlobStorage.failure(response, action: "Delete Blob", location: location, address: state.address)
        }
    }

    /// The blob this create wrote carries its token and the planned SHA-256; another create's
    /// blob of the same bytes is written again by this one's retry.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let location = try location(of: resource.inputs, address: resource.address)
        let key = try await storage.accountKey(location, address: operation.address)
        guard let found = try await properties(location, key: key, address: operation.address),
            found.header("x-ms-meta-stratum_sha256") == resource.inputs["sha256"]?.stringValue, found.header("x-ms-meta-stratum_token") == operation.token
        else { return nil }
        return state(of: resource, location: location, size: found.header("Content-Length").flatMap(Int.init) ?? 0)
    }
}
