import Foundation
import StratumCore
import StratumState

/// Holds a workspace's state lock for the length of an operation, renewing the lease while it
/// runs, and releasing it at the end (also when the operation throws).
public struct StateLock: Sendable {
    public var store: any StateStore
    public var workspace: String
    /// How long a lease lasts without renewal; a crashed holder blocks others at most this long.
    public var lease: Duration
    /// The clock leases are measured on and the heartbeat waits on: injected by tests.
    public var clock: StratumClock
    /// Told when the lock was taken over from an expired or abandoned holder.
    public var onTakeover: @Sendable (LockInfo) -> Void

    public init(
        store: any StateStore, workspace: String, lease: Duration = .seconds(300),
        clock: StratumClock = .system,
        onTakeover: @escaping @Sendable (LockInfo) -> Void = { _ in }
    ) {
        self.store = store
        self.workspace = workspace
        self.lease = lease
        self.clock = clock
        self.onTakeover = onTakeover
    }

    /// This process, as recorded in the lock.
    public static func holder(operation: String, lease: Duration, now: Date = Date()) -> LockInfo {
        let user = ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        let host = ProcessInfo.processInfo.hostName
        return LockInfo(
            id: UUID().uuidString.lowercased(), holder: "\(user)@\(host)", operation: operation, pid: getpid(), host: host,
            acquiredAt: now, expiresAt: now.addingTimeInterval(lease.seconds))
    }

    /// A lock whose process is gone (on this host) is abandoned: a crash must not wedge the
    /// state until the lease runs out.
    public static func isAbandoned(_ lock: LockInfo) -> Bool {
        guard lock.host == ProcessInfo.processInfo.hostName else { return false }
        return kill(lock.pid, 0) != 0 && errno == ESRCH
    }

    /// Runs `body` holding the lock. A heartbeat renews the lease every third of it; if a
    /// renewal finds the lock gone (force-unlocked, or taken over after the lease lapsed), the
    /// body is cancelled and `LockLostError` is thrown, so no step starts without the lock.
    public func run<T: Sendable>(operation: String, _ body: @escaping @Sendable (LockInfo) async throws -> T) async throws -> T {
        let acquisition = try await store.lock(workspace: workspace, Self.holder(operation: operation, lease: lease, now: clock.date()), isAbandoned: Self.isAbandoned)
        if let replaced = acquisition.replaced { onTakeover(replaced) }
        let lock = acquisition.lock
        let (store, workspace, lease, clock) = (self.store, self.workspace, self.lease, self.clock)
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body(lock) }
                group.addTask {
                    var leaseEnds = lock.expiresAt
                    while true {
                        try await clock.sleep(lease / 3)
                        try Task.checkCancellation()
                        let until = clock.date().addingTimeInterval(lease.seconds)
                        do {
                            try await store.renewLock(workspace: workspace, id: lock.id, until: until)
                            leaseEnds = until
                        } catch let error as StateError {
                            throw LockLostError(workspace: workspace, lockID: lock.id, reason: error.message)
                        } catch {
                            // The store could not be reached. Keep trying while the lease still
                            // runs; once the next beat would come after it ends, someone else
                            // may take the lock over, so stop here.
                            if clock.date().addingTimeInterval((lease / 3).seconds) >= leaseEnds {
                                throw LockLostError(
                                    workspace: workspace, lockID: lock.id,
                                    reason: "the lease could not be renewed before it ran out (\(error))")
                            }
                        }
                    }
                }
                defer { group.cancelAll() }
                while let next = try await group.next() {
                    if let value = next { return value }
                }
                throw CancellationError()
            }
            try await store.unlock(workspace: workspace, id: lock.id)
            return result
        } catch let error as LockLostError {
            throw error
        } catch {
            try? await store.unlock(workspace: workspace, id: lock.id)
            throw error
        }
    }
}

/// The lease ran out from under a running operation (force-unlocked or taken over).
public struct LockLostError: Error, Sendable, CustomStringConvertible {
    public var workspace: String
    public var lockID: String
    public var reason: String
    public var description: String {
        "lost the state lock \(lockID) on \(workspace) while running (\(reason)); stopped before starting more changes. Run `stratum state pending` and plan again"
    }
}
