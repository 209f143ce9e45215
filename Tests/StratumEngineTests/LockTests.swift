import Foundation
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

@Suite("State lock leases", .timeLimit(.minutes(3)))
struct LockTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    func lock(_ store: any StateStore, _ clock: VirtualClock, onTakeover: @escaping @Sendable (LockInfo) -> Void = { _ in }) -> StateLock {
        StateLock(store: store, workspace: "w", lease: .seconds(300), clock: clock.clock, onTakeover: onTakeover)
    }

    @Test func aLongRunRenewsItsLeaseAndEveryEventIsRecorded() async throws {
        let dir = try TestSupport.temporaryDirectory("lock")
        let store = try SQLiteStateStore(path: dir.appendingPathComponent("state.db").path)
        let clock = VirtualClock(start: start)
        try await lock(store, clock).run(operation: "apply") { held in
            // The run outlives its first lease several times over; the heartbeat keeps it.
            // The suite's time limit cancels the test if the heartbeat never renews.
            while try await store.lockEvents(workspace: "w").filter({ $0.kind == .renewed }).count < 4 {
                try Task.checkCancellation()
                await Task.yield()
            }
            let current = try #require(try await store.currentLock(workspace: "w"))
            #expect(current.id == held.id)
            #expect(current.expiresAt > start.addingTimeInterval(300 + 100 * 3))
        }
        #expect(try await store.currentLock(workspace: "w") == nil)
        let kinds = try await store.lockEvents(workspace: "w").map(\.kind)
        #expect(kinds.first == .acquired)
        #expect(kinds.last == .released)
        #expect(kinds.filter { $0 == .renewed }.count >= 4)
    }

    @Test func anExpiredLeaseIsTakenOverWithAWarning() async throws {
        let store = InMemoryStateStore()
        let stale = LockInfo(id: "old", holder: "ci@elsewhere", operation: "apply", pid: 1, host: "elsewhere", acquiredAt: start, expiresAt: start.addingTimeInterval(300))
        _ = try await store.lock(workspace: "w", stale, isAbandoned: { _ in false })

        // While the lease runs, the lock is refused.
        let early = VirtualClock(start: start.addingTimeInterval(100))
        await #expect(throws: LockHeldError.self) { try await lock(store, early).run(operation: "plan") { _ in } }

        let later = VirtualClock(start: start.addingTimeInterval(301))
        let warned = Warned()
        try await lock(store, later, onTakeover: { warned.add($0.id) }).run(operation: "plan") { _ in }
        #expect(warned.ids == ["old"])
        let takeover = try #require(await store.lockEvents(workspace: "w").first { $0.kind == .takenOver })
        #expect(takeover.detail.contains("lease expired"))
        #expect(takeover.detail.contains("old"))
    }

    @Test func losingTheLockMidRunStopsTheRun() async throws {
        let store = InMemoryStateStore()
        let clock = VirtualClock(start: start)
        await #expect(throws: LockLostError.self) {
            try await lock(store, clock).run(operation: "apply") { held in
                // Someone force-unlocks while we run.
                try await store.unlock(workspace: "w", id: held.id, forced: true)
                while !Task.isCancelled { await Task.yield() }
                throw CancellationError()
            }
        }
        let kinds = await store.lockEvents(workspace: "w").map(\.kind)
        #expect(kinds.contains(.forceReleased))
    }
}

final class Warned: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String] = []
    func add(_ id: String) { lock.withLock { seen.append(id) } }
    var ids: [String] { lock.withLock { seen } }
}

/// A store whose lease renewals fail as if the server were unreachable.
struct UnreachableRenewals: StateStore {
    let inner = InMemoryStateStore()
    struct Unreachable: Error {}
    func read(workspace: String) async throws -> StateSnapshot { await inner.read(workspace: workspace) }
    func commit(workspace: String, _ mutation: StateMutation, at time: Date) async throws -> Int { await inner.commit(workspace: workspace, mutation, at: time) }
    func history(workspace: String) async throws -> [HistoryEntry] { await inner.history(workspace: workspace) }
    func delta(workspace: String, serial: Int) async throws -> StateDelta? { await inner.delta(workspace: workspace, serial: serial) }
    func workspaces() async throws -> [String] { await inner.workspaces() }
    func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) async throws -> LockAcquisition {
        try await inner.lock(workspace: workspace, request, isAbandoned: isAbandoned)
    }
    func renewLock(workspace: String, id: String, until: Date) async throws { throw Unreachable() }
    func unlock(workspace: String, id: String, forced: Bool) async throws { try await inner.unlock(workspace: workspace, id: id, forced: forced) }
    func currentLock(workspace: String) async throws -> LockInfo? { await inner.currentLock(workspace: workspace) }
    func lockEvents(workspace: String) async throws -> [LockEvent] { await inner.lockEvents(workspace: workspace) }
    func beginOperation(workspace: String, _ operation: PendingOperation) async throws { await inner.beginOperation(workspace: workspace, operation) }
    func recordOperationHandle(workspace: String, id: String, handle: String) async throws {
        await inner.recordOperationHandle(workspace: workspace, id: id, handle: handle)
    }
    func pendingOperations(workspace: String) async throws -> [PendingOperation] { await inner.pendingOperations(workspace: workspace) }
    func settleOperations(workspace: String, ids: [String]) async throws { await inner.settleOperations(workspace: workspace, ids: ids) }
}

@Suite("State lock when the store is unreachable", .timeLimit(.minutes(3)))
struct UnreachableLockTests {
    @Test func aRunStopsBeforeItsUnrenewedLeaseRunsOut() async throws {
        let clock = VirtualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let store = UnreachableRenewals()
        let lock = StateLock(store: store, workspace: "w", lease: .seconds(300), clock: clock.clock)
        let error = await #expect(throws: LockLostError.self) {
            try await lock.run(operation: "apply") { _ in
                while !Task.isCancelled { await Task.yield() }
                throw CancellationError()
            }
        }
        #expect(error?.reason.contains("could not be renewed before it ran out") == true)
        // It gave up after the second failed beat (200 s in), before the lease (300 s) ended.
        #expect(clock.date.timeIntervalSince1970 - 1_800_000_000 < 300)
    }
}
