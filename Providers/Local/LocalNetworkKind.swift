import Foundation
import StratumCore

/// A network is an allocation recorded in a file named after it, one per workspace, carrying
/// the create's token and ownership. It becomes a real network (a bridge, see
/// `LocalNetworking`) when its first node that carries a link starts; the record then also
/// holds the bridge's name and its nodes' addresses.
struct LocalNetworkKind: ResourceKind {
    let type = "local_network"
    let paths: LocalPaths

    let schema = ResourceSchema(type: "local_network", attributes: [
        "cidr": .input(forceNew: true, required: true),
        "id": .computed,
    ])

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        resources.map { state in
            guard let record = paths.networkRecord(named: state.address.name, id: state.id)?.record else { return nil }
            var fresh = state
            fresh.attributes["cidr"] = record.attributes["cidr"] ?? .null
            return fresh
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let token = context.token
        let file = paths.networkRecord(resource.address.name, workspace: resource.ownership.stack)
        var id = "net-" + token.prefix(8)
        if let existing = try? LocalRecord.load(file) {
            guard existing.token == token else {
                throw ProviderError(.permanent, "network '\(resource.address.name)' is already allocated by another stack (\(file.path))", address: resource.address)
            }
            id = existing.id
        } else {
            try LocalRecord(
                id: id, token: token, attributes: ["cidr": resource.inputs["cidr"] ?? .null], ownership: resource.ownership, address: resource.address
            ).save(file)
        }
        return resource.localState(id: id)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        prior.updated(to: desired)
    }

    /// Removes the bridge, then the record (so a failed removal is retried).
    func delete(_ state: ResourceState, context: OperationContext) async throws {
        guard let file = paths.networkRecord(named: state.address.name, id: state.id)?.file else { return }
        try LocalNetworking.removeBridge(of: file)
        try paths.removeIfPresent(file)
        // The workspace's folders go with their last record.
        var folder = file.deletingLastPathComponent()
        while folder.standardizedFileURL.path.count > paths.networks.standardizedFileURL.path.count,
            (try? FileManager.default.contentsOfDirectory(atPath: folder.path))?.isEmpty == true
        {
            try? FileManager.default.removeItem(at: folder)
            folder = folder.deletingLastPathComponent()
        }
    }

    /// The record carrying the create's token is what the create left.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        guard let record = try? LocalRecord.load(paths.networkRecord(resource.address.name, workspace: resource.ownership.stack)), record.token == operation.token
        else { return nil }
        return try await create(resource, context: OperationContext(token: operation.token))
    }

    /// Adopts an allocation by its name in the stack.
    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard let record = paths.networkRecord(named: address.name, id: id)?.record else { return nil }
        return state(of: record, address: address, region: region)
    }

    /// The state a record stands for, as import and the orphan search adopt it.
    func state(of record: LocalRecord, address: ResourceAddress, region: String) -> ResourceState {
        ResourceState(address: address, provider: "local", region: region, id: record.id, attributes: ["cidr": record.attributes["cidr"] ?? .null, "id": .string(record.id)])
    }

    /// Every allocation whose record names the create's ownership.
    func owned() async throws -> [OwnedResource]? {
        LocalRecord.owned(files: paths.networkRecords()).map { found in
            OwnedResource(state: state(of: found.record, address: found.address, region: "local"), ownership: found.ownership)
        }
    }
}
