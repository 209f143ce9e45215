import Foundation
import StratumCore

/// A cloud whose creates are long-running operations, as GCP's and Azure's are: a create
/// starts an operation, records its handle in the journal, then waits for the operation to
/// finish. The test decides when an operation finishes (`finish`), so it can kill the run
/// while the create waits and check that recovery resumes the same operation instead of
/// starting another. Type `lro_thing`.
public final class LongRunningProvider: Provider, @unchecked Sendable {
    public let name = "lro"
    public private(set) var kinds: [String: any ResourceKind] = [:]
    let lock = NSLock()
    var operations: [String: Operation] = [:]
    var things: [String: ResourceState] = [:]

    struct Operation {
        var token: String
        var resource: ResolvedResource
        var done = false
    }

    public init() {
        kinds = [LongRunningKind.typeName: LongRunningKind(cloud: self)]
    }

    /// Handles of every operation started, in no particular order.
    public var startedOperations: [String] { lock.withLock { Array(operations.keys) } }

    /// Lets operation `handle` finish: its resource exists from now on.
    public func finish(_ handle: String) {
        lock.withLock {
            guard var operation = operations[handle], !operation.done else { return }
            operation.done = true
            operations[handle] = operation
            let id = Self.thingID(handle)
            things[id] = operation.resource.stateOf(id: id, provider: name)
        }
    }

    /// The id of the resource operation `handle` makes.
    public static func thingID(_ handle: String) -> String { "lro-" + handle.suffix(12) }

    func start(_ resource: ResolvedResource, token: String) -> String {
        let handle = "operations/" + UUID().uuidString.lowercased()
        lock.withLock { operations[handle] = Operation(token: token, resource: resource) }
        return handle
    }

    /// The resource operation `handle` made; nil while it runs; throws when there is no such operation.
    func result(of handle: String, address: ResourceAddress) throws -> ResourceState? {
        try lock.withLock {
            guard let operation = operations[handle] else { throw ProviderError(.notFound, "no operation \(handle)", address: address) }
            return operation.done ? things[Self.thingID(handle)] : nil
        }
    }

    /// The handle of the operation a create with `token` started, if any.
    func operation(token: String) -> String? {
        lock.withLock { operations.first { $0.value.token == token }?.key }
    }
}

/// `lro_thing`: create = start an operation, record its handle, poll until it is done.
struct LongRunningKind: ResourceKind {
    static let typeName = "lro_thing"
    let type = Self.typeName
    unowned let cloud: LongRunningProvider
    let schema = ResourceSchema(type: Self.typeName, attributes: ["value": .input(), "id": .computed])

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        cloud.lock.withLock { resources.map { cloud.things[$0.id] } }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let handle = cloud.operation(token: context.token) ?? cloud.start(resource, token: context.token)
        try await context.record(handle: handle)
        return try await wait(handle, address: resource.address)
    }

    /// Polls until the operation finishes; cancellation (the process killed) ends the wait.
    func wait(_ handle: String, address: ResourceAddress) async throws -> ResourceState {
        while true {
            if let done = try cloud.result(of: handle, address: address) { return done }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        cloud.lock.withLock { cloud.things[state.id] = state }
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        cloud.lock.withLock { _ = cloud.things.removeValue(forKey: state.id) }
    }

    /// With a handle, resumes waiting on that operation; without one, the create never started
    /// an operation (or died before recording it): look it up by token.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        guard let handle = operation.handle ?? cloud.operation(token: operation.token) else { return nil }
        return try await wait(handle, address: operation.address)
    }
}

extension ResolvedResource {
    /// The state a create of this resource with `id` hands back: its inputs and the id.
    func stateOf(id: String, provider: String) -> ResourceState {
        var attributes = inputs
        attributes["id"] = .string(id)
        return ResourceState(address: address, provider: provider, region: region, id: id, attributes: attributes)
    }
}
