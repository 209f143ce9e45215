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

    public init(store: any StateStore, workspace: String, lease: Duration = .seconds(300)) {
        self.store = store
        self.workspace = workspace
        self.lease = lease
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

    public func run<T: Sendable>(operation: String, _ body: @Sendable (LockInfo) async throws -> T) async throws -> T {
        let lock = try await store.lock(workspace: workspace, Self.holder(operation: operation, lease: lease), isAbandoned: Self.isAbandoned)
        let store = self.store
        let workspace = self.workspace
        let lease = self.lease
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: lease / 3)
                if Task.isCancelled { break }
                try? await store.renewLock(workspace: workspace, id: lock.id, until: Date().addingTimeInterval(lease.seconds))
            }
        }
        do {
            let result = try await body(lock)
            heartbeat.cancel()
            try await store.unlock(workspace: workspace, id: lock.id)
            return result
        } catch {
            heartbeat.cancel()
            try? await store.unlock(workspace: workspace, id: lock.id)
            throw error
        }
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
