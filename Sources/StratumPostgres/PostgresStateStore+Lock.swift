import Foundation
import PostgresNIO
import StratumCore
import StratumState

// The lock is a lease shared by machines whose clocks disagree. Two rules keep it safe:
//
// 1. Expiry is judged on the server's clock. A request's times are read on the caller's clock
//    and sent as offsets from it (`request.expiresAt - clock()`), which the server adds to its
//    own `now()`; the lease end it stores (`lease_expires_at`) and the comparison that decides a
//    takeover both use `now()`. A client whose clock runs an hour slow or fast therefore neither
//    steals a running lease nor holds one longer than asked. (`acquired_at`/`expires_at` keep
//    the holder's own readings, for people.)
// 2. Check-then-take is atomic. The lock row may not exist yet, so `SELECT … FOR UPDATE` would
//    have nothing to hold and two first-comers could both insert. A transaction-scoped advisory
//    lock on the workspace serialises every taker on the server instead; it needs no row, is
//    released by COMMIT or ROLLBACK, and the server drops it when a client dies mid-way. The
//    `isAbandoned` check (does the holder's process still exist?) runs inside it too.
extension PostgresStateStore {
    private func lockKey(_ workspace: String) -> String { "stratum-lock:\(location.schema):\(workspace)" }

    private enum LockOutcome: Sendable {
        case taken(replaced: LockInfo?)
        case held(LockInfo)
    }

    public func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) async throws -> LockAcquisition {
        let now = clock()
        let offset = request.acquiredAt.timeIntervalSince(now)
        let lease = request.expiresAt.timeIntervalSince(now)
        let outcome = try await transaction("lock") { connection -> LockOutcome in
            try await execute(connection, "SELECT pg_advisory_xact_lock(hashtextextended(\(lockKey(workspace)), 0))")
            let existing = try await rows(connection, """
                SELECT id, holder, operation, pid, host, acquired_at, expires_at,
                    lease_expires_at <= now() + \(offset) * interval '1 second'
                FROM \(unescaped: s).state_lock WHERE workspace = \(workspace)
                """)
            var replaced: (lock: LockInfo, expired: Bool)?
            if let row = existing.first {
                let (id, holder, operation, pid, host, acquiredAt, expiresAt, expired) = try row.decode(
                    (String, String, String, Int32, String, Date, Date, Bool).self)
                let held = LockInfo(id: id, holder: holder, operation: operation, pid: pid, host: host, acquiredAt: acquiredAt, expiresAt: expiresAt)
                if !expired, !isAbandoned(held) { return .held(held) }
                replaced = (held, expired)
            }
            try await execute(connection, """
                INSERT INTO \(unescaped: s).state_lock (workspace, id, holder, operation, pid, host, acquired_at, expires_at, lease_expires_at)
                VALUES (\(workspace), \(request.id), \(request.holder), \(request.operation), \(request.pid), \(request.host),
                    \(request.acquiredAt), \(request.expiresAt), now() + \(lease) * interval '1 second')
                ON CONFLICT (workspace) DO UPDATE SET id = excluded.id, holder = excluded.holder, operation = excluded.operation,
                    pid = excluded.pid, host = excluded.host, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at,
                    lease_expires_at = excluded.lease_expires_at
                """)
            let event = replaced.map {
                LockEvent(time: request.acquiredAt, kind: .takenOver, lockID: request.id, holder: request.holder,
                          detail: Self.takeoverDetail(replaced: $0.lock, expired: $0.expired))
            } ?? LockEvent(time: request.acquiredAt, kind: .acquired, lockID: request.id, holder: request.holder, detail: request.operation)
            try await record(event, workspace: workspace, on: connection)
            return .taken(replaced: replaced?.lock)
        }
        switch outcome {
        case .held(let held): throw LockHeldError(lock: held)
        case .taken(let replaced): return LockAcquisition(lock: request, replaced: replaced)
        }
    }

    /// The history line of a takeover, as `LockEvent.takeoverDetail` words it, but with the
    /// server's verdict on expiry rather than a comparison of client times.
    static func takeoverDetail(replaced: LockInfo, expired: Bool) -> String {
        let why = expired ? "its lease expired at \(replaced.expiresAt.ISO8601Format())" : "its process (pid \(replaced.pid) on \(replaced.host)) is gone"
        return "replaced lock \(replaced.id) held by \(replaced.holder): \(why)"
    }

    public func renewLock(workspace: String, id: String, until: Date) async throws {
        let now = clock()
        let lease = until.timeIntervalSince(now)
        try await transaction("renew the lock in") { connection in
            let renewed = try await rows(connection, """
                UPDATE \(unescaped: s).state_lock SET expires_at = \(until), lease_expires_at = now() + \(lease) * interval '1 second'
                WHERE workspace = \(workspace) AND id = \(id) RETURNING holder
                """)
            guard let row = renewed.first else { throw StateError("lock \(id) is no longer held on \(workspace)") }
            let holder = try row.decode(String.self)
            try await record(LockEvent(time: now, kind: .renewed, lockID: id, holder: holder, detail: "until \(until.ISO8601Format())"), workspace: workspace, on: connection)
        }
    }

    public func unlock(workspace: String, id: String, forced: Bool) async throws {
        let now = clock()
        try await transaction("unlock") { connection in
            let released = try await rows(connection, "DELETE FROM \(unescaped: s).state_lock WHERE workspace = \(workspace) AND id = \(id) RETURNING holder")
            if let row = released.first {
                let holder = try row.decode(String.self)
                try await record(LockEvent(time: now, kind: forced ? .forceReleased : .released, lockID: id, holder: holder), workspace: workspace, on: connection)
                return
            }
            if let other = try await rows(connection, "SELECT id FROM \(unescaped: s).state_lock WHERE workspace = \(workspace)").first {
                throw StateError("lock id \(id) does not match the held lock \(try other.decode(String.self))")
            }
        }
    }

    public func currentLock(workspace: String) async throws -> LockInfo? {
        let found = try await transaction("read the lock in") { connection in
            try await rows(connection, """
                SELECT id, holder, operation, pid, host, acquired_at, expires_at FROM \(unescaped: s).state_lock WHERE workspace = \(workspace)
                """)
        }
        guard let row = found.first else { return nil }
        let (id, holder, operation, pid, host, acquiredAt, expiresAt) = try row.decode((String, String, String, Int32, String, Date, Date).self)
        return LockInfo(id: id, holder: holder, operation: operation, pid: pid, host: host, acquiredAt: acquiredAt, expiresAt: expiresAt)
    }

    public func lockEvents(workspace: String) async throws -> [LockEvent] {
        let found = try await transaction("read lock events in") { connection in
            try await rows(connection, "SELECT time, kind, lock_id, holder, detail FROM \(unescaped: s).lock_event WHERE workspace = \(workspace) ORDER BY seq")
        }
        return try found.map { row in
            let (time, kind, lockID, holder, detail) = try row.decode((Date, String, String, String, String).self)
            return LockEvent(time: time, kind: LockEvent.Kind(rawValue: kind) ?? .acquired, lockID: lockID, holder: holder, detail: detail)
        }
    }

    private func record(_ event: LockEvent, workspace: String, on connection: PostgresConnection) async throws {
        try await execute(connection, """
            INSERT INTO \(unescaped: s).lock_event (workspace, time, kind, lock_id, holder, detail)
            VALUES (\(workspace), \(event.time), \(event.kind.rawValue), \(event.lockID), \(event.holder), \(event.detail))
            """)
    }
}
