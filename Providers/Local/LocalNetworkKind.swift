import Foundation
import StratumCore

/// A network is an allocation recorded in a file named after it, carrying the create's token.
struct LocalNetworkKind: ResourceKind {
    let type = "local_network"
    let paths: LocalPaths

    let schema = ResourceSchema(type: "local_network", attributes: [
        "cidr": .input(forceNew: true, required: true),
        "id": .computed,
    ])

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        resources.map { state in
            guard let record = try? LocalRecord.load(paths.networkRecord(state.address.name)), record.id == state.id else { return nil }
            var fresh = state
            fresh.attributes["cidr"] = record.attributes["cidr"] ?? .null
            return fresh
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let token = context.token
        let file = paths.networkRecord(resource.address.name)
        var id = "net-" + token.prefix(8)
        if let existing = try? LocalRecord.load(file) {
            guard existing.token == token else {
                throw ProviderError(.permanent, "network '\(resource.address.name)' is already allocated by another stack (\(file.path))", address: resource.address)
            }
            id = existing.id
        } else {
            try LocalRecord(id: id, token: token, attributes: ["cidr": resource.inputs["cidr"] ?? .null]).save(file)
        }
        return resource.localState(id: id)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        prior.updated(to: desired)
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try paths.removeIfPresent(paths.networkRecord(state.address.name))
    }

    /// The record carrying the create's token is what the create left.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        guard let record = try? LocalRecord.load(paths.networkRecord(operation.address.name)), record.token == operation.token else { return nil }
        return try await create(operation.resolved, context: OperationContext(token: operation.token))
    }

    /// Adopts an allocation by its name in the stack.
    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard let record = try? LocalRecord.load(paths.networkRecord(address.name)), record.id == id else { return nil }
        return ResourceState(address: address, provider: "local", region: region, id: id, attributes: ["cidr": record.attributes["cidr"] ?? .null, "id": .string(id)])
    }
}
