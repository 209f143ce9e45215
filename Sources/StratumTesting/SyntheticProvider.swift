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
    private let lock = NSLock()
    private let readSlots: AsyncSemaphore
    private var resources: [String: ResourceState] = [:]
    private var calls: [String: Int] = [:]

    public init(name: String = "synthetic", latency: Duration = .zero, batchedReads: Bool = true, readParallelism: Int = 10) {
        self.name = name
        self.latency = latency
        self.batchedReads = batchedReads
        self.readParallelism = readParallelism
        self.readSlots = AsyncSemaphore(readParallelism)
    }

    public var schemas: [String: ResourceSchema] {
        var result: [String: ResourceSchema] = [:]
        for type in ["\(name)_instance", "\(name)_disk", "\(name)_address"] {
            result[type] = ResourceSchema(type: type, attributes: ["size": .input(forceNew: true), "value": .input(), "parent": .input(), "id": .computed])
        }
        return result
    }

    /// Calls made so far, by operation (`read`, `create`, `update`, `delete`).
    public func callCounts() -> [String: Int] { lock.withLock { calls } }

    public func resetCounts() { lock.withLock { calls = [:] } }

    /// Puts resources straight into the cloud (as if created earlier).
    public func seed(_ states: [ResourceState]) {
        lock.withLock { for state in states { resources[state.id] = state } }
    }

    public func remove(id: String) { lock.withLock { _ = resources.removeValue(forKey: id) } }

    private func call(_ operation: String) async throws {
        lock.withLock { calls[operation, default: 0] += 1 }
        if latency > .zero { try await Task.sleep(for: latency) }
    }

    public func read(type: String, region: String, resources batch: [ResourceState]) async throws -> [ResourceState?] {
        if batchedReads {
            try await call("read")
            return lock.withLock { batch.map { resources[$0.id] } }
        }
        // One call per resource, at most `readParallelism` in flight across all batches.
        return try await withThrowingTaskGroup(of: (Int, ResourceState?).self) { group in
            for (index, state) in batch.enumerated() {
                group.addTask {
                    await self.readSlots.wait()
                    do {
                        try await self.call("read")
                    } catch {
                        await self.readSlots.signal()
                        throw error
                    }
                    await self.readSlots.signal()
                    return (index, self.lock.withLock { self.resources[state.id] })
                }
            }
            var result = [ResourceState?](repeating: nil, count: batch.count)
            for try await (index, state) in group { result[index] = state }
            return result
        }
    }

    public func create(_ resource: ResolvedResource, token: String) async throws -> ResourceState {
        try await call("create")
        var attributes = resource.inputs
        let id = "\(resource.address.type)-\(token.prefix(13))"
        attributes["id"] = .string(id)
        let state = ResourceState(address: resource.address, provider: name, region: resource.region, id: id, attributes: attributes)
        lock.withLock { resources[id] = state }
        return state
    }

    public func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await call("recover")
        let id = "\(operation.type)-\(operation.token.prefix(13))"
        return lock.withLock { resources[id] }
    }

    public func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await call("update")
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        lock.withLock { resources[state.id] = state }
        return state
    }

    public func delete(_ state: ResourceState) async throws {
        try await call("delete")
        lock.withLock { _ = resources.removeValue(forKey: state.id) }
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
