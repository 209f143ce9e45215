import Foundation
import StratumCore

/// State kept in memory: for tests and benchmarks.
public actor InMemoryStateStore: StateStore {
    private var snapshots: [String: StateSnapshot] = [:]
    private var histories: [String: [HistoryEntry]] = [:]
    private var locks: [String: LockInfo] = [:]

    public init() {}

    public func read(workspace: String) -> StateSnapshot {
        if let snapshot = snapshots[workspace] { return snapshot }
        let fresh = StateSnapshot(lineage: UUID().uuidString.lowercased(), serial: 0)
        snapshots[workspace] = fresh
        return fresh
    }

    public func commit(workspace: String, _ mutation: StateMutation, at time: Date) -> Int {
        var snapshot = read(workspace: workspace)
        for address in mutation.removals { snapshot.resources[address] = nil }
        for resource in mutation.upserts { snapshot.resources[resource.address] = resource }
        if let outputs = mutation.outputs { snapshot.outputs = outputs }
        snapshot.serial += 1
        snapshots[workspace] = snapshot
        histories[workspace, default: []].append(HistoryEntry(serial: snapshot.serial, time: time, changes: mutation.changes))
        return snapshot.serial
    }

    public func history(workspace: String) -> [HistoryEntry] { histories[workspace] ?? [] }

    public func workspaces() -> [String] { snapshots.keys.sorted() }

    public func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) throws -> LockInfo {
        if let held = locks[workspace], held.expiresAt > request.acquiredAt, !isAbandoned(held) {
            throw LockHeldError(lock: held)
        }
        locks[workspace] = request
        return request
    }

    public func renewLock(workspace: String, id: String, until: Date) throws {
        guard var held = locks[workspace], held.id == id else { throw StateError("lock \(id) is not held") }
        held.expiresAt = until
        locks[workspace] = held
    }

    public func unlock(workspace: String, id: String) throws {
        guard let held = locks[workspace] else { return }
        guard held.id == id else { throw StateError("lock \(id) is not the held lock (\(held.id))") }
        locks[workspace] = nil
    }

    public func currentLock(workspace: String) -> LockInfo? { locks[workspace] }
}
