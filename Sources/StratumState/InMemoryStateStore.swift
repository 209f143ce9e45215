import Foundation
import StratumCore

/// State kept in memory: for tests and benchmarks.
public actor InMemoryStateStore: StateStore {
    private var snapshots: [String: StateSnapshot] = [:]
    private var histories: [String: [HistoryEntry]] = [:]
    private var deltas: [String: [Int: StateDelta]] = [:]
    private var locks: [String: LockInfo] = [:]
    private var events: [String: [LockEvent]] = [:]
    private var journal: [String: [PendingOperation]] = [:]

    public init() {}

    public func read(workspace: String) -> StateSnapshot {
        if let snapshot = snapshots[workspace] { return snapshot }
        let fresh = StateSnapshot(lineage: UUID().uuidString.lowercased(), serial: 0)
        snapshots[workspace] = fresh
        return fresh
    }

    public func commit(workspace: String, _ mutation: StateMutation, at time: Date) -> Int {
        var snapshot = read(workspace: workspace)
        var before: [ResourceAddress: ResourceState] = [:]
        var after: [ResourceAddress: ResourceState] = [:]
        for address in mutation.removals {
            if let prior = snapshot.resources.removeValue(forKey: address) { before[address] = prior }
        }
        for resource in mutation.upserts {
            if let prior = snapshot.resources[resource.address], before[resource.address] == nil { before[resource.address] = prior }
            snapshot.resources[resource.address] = resource
            after[resource.address] = resource
        }
        if let outputs = mutation.outputs { snapshot.outputs = outputs }
        snapshot.serial += 1
        snapshots[workspace] = snapshot
        histories[workspace, default: []].append(HistoryEntry(serial: snapshot.serial, time: time, changes: mutation.changes))
        deltas[workspace, default: [:]][snapshot.serial] = StateDelta(
            serial: snapshot.serial, time: time, changes: mutation.changes, before: before, after: after)
        let settled = Set(mutation.settles)
        journal[workspace]?.removeAll { settled.contains($0.id) }
        return snapshot.serial
    }

    public func history(workspace: String) -> [HistoryEntry] { histories[workspace] ?? [] }

    public func delta(workspace: String, serial: Int) -> StateDelta? { deltas[workspace]?[serial] }

    public func workspaces() -> [String] { snapshots.keys.sorted() }

    public func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) throws -> LockAcquisition {
        let held = locks[workspace]
        if let held, held.expiresAt > request.acquiredAt, !isAbandoned(held) {
            throw LockHeldError(lock: held)
        }
        locks[workspace] = request
        if let held {
            events[workspace, default: []].append(LockEvent(
                time: request.acquiredAt, kind: .takenOver, lockID: request.id, holder: request.holder,
                detail: LockEvent.takeoverDetail(replaced: held, at: request.acquiredAt)))
        } else {
            events[workspace, default: []].append(LockEvent(time: request.acquiredAt, kind: .acquired, lockID: request.id, holder: request.holder, detail: request.operation))
        }
        return LockAcquisition(lock: request, replaced: held)
    }

    public func renewLock(workspace: String, id: String, until: Date) throws {
        guard var held = locks[workspace], held.id == id else { throw StateError("lock \(id) is no longer held on \(workspace)") }
        held.expiresAt = until
        locks[workspace] = held
        events[workspace, default: []].append(LockEvent(time: Date(), kind: .renewed, lockID: id, holder: held.holder, detail: "until \(until.ISO8601Format())"))
    }

    public func unlock(workspace: String, id: String, forced: Bool) throws {
        guard let held = locks[workspace] else { return }
        guard held.id == id else { throw StateError("lock id \(id) does not match the held lock \(held.id)") }
        locks[workspace] = nil
        events[workspace, default: []].append(LockEvent(time: Date(), kind: forced ? .forceReleased : .released, lockID: id, holder: held.holder))
    }

    public func currentLock(workspace: String) -> LockInfo? { locks[workspace] }

    public func lockEvents(workspace: String) -> [LockEvent] { events[workspace] ?? [] }

    public func beginOperation(workspace: String, _ operation: PendingOperation) {
        _ = read(workspace: workspace)
        journal[workspace, default: []].append(operation)
    }

    public func recordOperationHandle(workspace: String, id: String, handle: String) {
        guard let index = journal[workspace]?.firstIndex(where: { $0.id == id }) else { return }
        journal[workspace]?[index].handle = handle
    }

    public func pendingOperations(workspace: String) -> [PendingOperation] { journal[workspace] ?? [] }

    public func settleOperations(workspace: String, ids: [String]) {
        let settled = Set(ids)
        journal[workspace]?.removeAll { settled.contains($0.id) }
    }
}
