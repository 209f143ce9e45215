import Foundation
import StratumCore

/// An in-memory cloud with a fixed latency per API call and a call counter: for benchmarks
/// and engine tests. With `batchedReads` off, refresh costs one call per resource, as in
/// engines that read resources one at a time.
public final class SyntheticProvider: Provider, @unchecked Sendable {
    public let name: String
    public let latency: Duration
    public let batchedReads: Bool
    /// How many reads may be in flight at once when reads are not batched.
    public let readParallelism: Int
    let lock = NSLock()
    let readSlots: AsyncSemaphore
    var resources: [String: ResourceState] = [:]
    private var calls: [String: Int] = [:]
    public private(set) var kinds: [String: any ResourceKind] = [:]

    public init(name: String = "synthetic", latency: Duration = .zero, batchedReads: Bool = true, readParallelism: Int = 10) {
        self.name = name
        self.latency = latency
        self.batchedReads = batchedReads
        self.readParallelism = readParallelism
        self.readSlots = AsyncSemaphore(readParallelism)
        for type in ["\(name)_instance", "\(name)_disk", "\(name)_address"] {
            kinds[type] = SyntheticKind(type: type, cloud: self)
        }
    }

    /// Calls made so far, by operation (`read`, `create`, `update`, `delete`).
    public func callCounts() -> [String: Int] { lock.withLock { calls } }

    public func resetCounts() { lock.withLock { calls = [:] } }

    /// Puts resources straight into the cloud (as if created earlier).
    public func seed(_ states: [ResourceState]) {
        lock.withLock { for state in states { resources[state.id] = state } }
    }

    public func remove(id: String) { lock.withLock { _ = resources.removeValue(forKey: id) } }

    func call(_ operation: String) async throws {
        lock.withLock { calls[operation, default: 0] += 1 }
        if latency > .zero { try await Task.sleep(for: latency) }
    }
}

/// One of the synthetic cloud's types; every type behaves alike.
struct SyntheticKind: ResourceKind {
    let type: String
    let schema: ResourceSchema
    // The cloud owns its kinds; a kind only borrows it.
    unowned let cloud: SyntheticProvider

    init(type: String, cloud: SyntheticProvider) {
        self.type = type
        self.cloud = cloud
        self.schema = ResourceSchema(type: type, attributes: ["size": .input(forceNew: true), "value": .input(), "parent": .input(), "id": .computed])
    }

    func read(_ batch: [ResourceState]) async throws -> [ResourceState?] {
        let cloud = self.cloud
        if cloud.batchedReads {
            try await cloud.call("read")
            return cloud.lock.withLock { batch.map { cloud.resources[$0.id] } }
        }
        // One call per resource, at most `readParallelism` in flight across all batches.
        return try await withThrowingTaskGroup(of: (Int, ResourceState?).self) { group in
            for (index, state) in batch.enumerated() {
                group.addTask {
                    await cloud.readSlots.wait()
                    do {
                        try await cloud.call("read")
                    } catch {
                        await cloud.readSlots.signal()
                        throw error
                    }
                    await cloud.readSlots.signal()
                    return (index, cloud.lock.withLock { cloud.resources[state.id] })
                }
            }
            var result = [ResourceState?](repeating: nil, count: batch.count)
            for try await (index, state) in group { result[index] = state }
            return result
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await cloud.call("create")
        var attributes = resource.inputs
        let id = "\(resource.address.type)-\(context.token.prefix(13))"
        attributes["id"] = .string(id)
        let state = ResourceState(address: resource.address, provider: cloud.name, region: resource.region, id: id, attributes: attributes)
        cloud.lock.withLock { cloud.resources[id] = state }
        return state
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await cloud.call("recover")
        let id = "\(operation.type)-\(operation.token.prefix(13))"
        return cloud.lock.withLock { cloud.resources[id] }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await cloud.call("update")
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        cloud.lock.withLock { cloud.resources[state.id] = state }
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await cloud.call("delete")
        cloud.lock.withLock { _ = cloud.resources.removeValue(forKey: state.id) }
    }
}

/// Limits how many tasks proceed at once.
actor AsyncSemaphore {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { available = count }

    func wait() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func signal() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}
