import Foundation
import StratumCore

/// Everything recorded about one workspace (a stack in one environment) at one serial.
public struct StateSnapshot: Sendable {
    /// Identifies this state's history; a plan from another lineage is never applied.
    public var lineage: String
    /// Bumped on every commit.
    public var serial: Int
    public var resources: [ResourceAddress: ResourceState]
    public var outputs: [String: Value]

    public init(lineage: String, serial: Int, resources: [ResourceAddress: ResourceState] = [:], outputs: [String: Value] = [:]) {
        self.lineage = lineage
        self.serial = serial
        self.resources = resources
        self.outputs = outputs
    }
}

/// One atomic change to state: resources written or removed, outputs replaced.
public struct StateMutation: Sendable {
    public var upserts: [ResourceState]
    public var removals: [ResourceAddress]
    /// New outputs; nil keeps the current ones.
    public var outputs: [String: Value]?
    /// What happened, per address, for history (`create`, `update`, `delete`, `rm`, `mv`, …).
    public var changes: [HistoryChange]
    /// Journal rows (operation ids) this commit settles: removed in the same transaction.
    public var settles: [String]

    public init(
        upserts: [ResourceState] = [], removals: [ResourceAddress] = [], outputs: [String: Value]? = nil,
        changes: [HistoryChange], settles: [String] = []
    ) {
        self.upserts = upserts
        self.removals = removals
        self.outputs = outputs
        self.changes = changes
        self.settles = settles
    }
}

public struct HistoryChange: Sendable, Codable, Hashable {
    public var address: String
    public var action: String
    public init(address: String, action: String) {
        self.address = address
        self.action = action
    }
}

/// One serial in a workspace's history.
public struct HistoryEntry: Sendable, Codable, Hashable {
    public var serial: Int
    public var time: Date
    public var changes: [HistoryChange]

    public init(serial: Int, time: Date, changes: [HistoryChange]) {
        self.serial = serial
        self.time = time
        self.changes = changes
    }
}

/// What one serial changed: each touched resource before and after (nil = absent).
public struct StateDelta: Sendable {
    public var serial: Int
    public var time: Date
    public var changes: [HistoryChange]
    public var before: [ResourceAddress: ResourceState]
    public var after: [ResourceAddress: ResourceState]

    public init(serial: Int, time: Date, changes: [HistoryChange], before: [ResourceAddress: ResourceState], after: [ResourceAddress: ResourceState]) {
        self.serial = serial
        self.time = time
        self.changes = changes
        self.before = before
        self.after = after
    }

    /// Every address the serial touched, sorted.
    public var addresses: [ResourceAddress] { Set(before.keys).union(after.keys).sorted() }
}

/// Something that happened to a workspace's lock; every one is kept in history.
public struct LockEvent: Sendable, Codable, Hashable {
    public enum Kind: String, Sendable, Codable {
        /// Taken while free.
        case acquired
        /// Lease extended by its holder's heartbeat.
        case renewed
        /// Released by its holder.
        case released
        /// Taken over from a holder whose lease expired or whose process is gone.
        case takenOver = "taken-over"
        /// Released by `force-unlock`.
        case forceReleased = "force-released"
    }

    public var time: Date
    public var kind: Kind
    public var lockID: String
    public var holder: String
    /// For a takeover: which lock was replaced and why.
    public var detail: String

    public init(time: Date, kind: Kind, lockID: String, holder: String, detail: String = "") {
        self.time = time
        self.kind = kind
        self.lockID = lockID
        self.holder = holder
        self.detail = detail
    }
}

/// The lock just taken, and the lease it replaced (expired or abandoned), if any.
public struct LockAcquisition: Sendable {
    public var lock: LockInfo
    public var replaced: LockInfo?
    public init(lock: LockInfo, replaced: LockInfo? = nil) {
        self.lock = lock
        self.replaced = replaced
    }
}

/// Who holds a workspace's lock and until when.
public struct LockInfo: Sendable, Codable, Hashable, CustomStringConvertible {
    public var id: String
    public var holder: String
    public var operation: String
    public var pid: Int32
    public var host: String
    public var acquiredAt: Date
    public var expiresAt: Date

    public init(id: String, holder: String, operation: String, pid: Int32, host: String, acquiredAt: Date, expiresAt: Date) {
        self.id = id
        self.holder = holder
        self.operation = operation
        self.pid = pid
        self.host = host
        self.acquiredAt = acquiredAt
        self.expiresAt = expiresAt
    }

    public var description: String {
        let formatter = ISO8601DateFormatter()
        return "lock \(id) held by \(holder) (pid \(pid) on \(host)) for \(operation) since \(formatter.string(from: acquiredAt)), lease until \(formatter.string(from: expiresAt))"
    }
}

/// The workspace is locked by someone else.
public struct LockHeldError: Error, Sendable, CustomStringConvertible {
    public var lock: LockInfo
    public init(lock: LockInfo) { self.lock = lock }
    public var description: String {
        "the state is locked: \(lock).\nWait for it to finish, or if it crashed run `stratum force-unlock \(lock.id)`."
    }
}

/// A problem with the state itself (not with a resource).
public struct StateError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Resource records in state that cannot be decoded (edited by hand, damaged, or written by
/// a build whose types differ). Every such address is named; the resources themselves are not
/// touched, and `stratum state rm ADDR` forgets a record without decoding it.
public struct UndecodableResourcesError: Error, Sendable, CustomStringConvertible {
    public struct Row: Sendable, Hashable {
        public var address: String
        public var reason: String
        public init(address: String, reason: String) {
            self.address = address
            self.reason = reason
        }
    }

    public var rows: [Row]
    public init(rows: [Row]) { self.rows = rows }

    public var addresses: [String] { rows.map(\.address) }

    public var description: String {
        let list = rows.map { "\($0.address) (\($0.reason))" }.joined(separator: "; ")
        let example = rows.first?.address ?? "ADDR"
        return "state holds \(rows.count) resource record\(rows.count == 1 ? "" : "s") that cannot be read: \(list). "
            + "The resource\(rows.count == 1 ? " itself was" : "s themselves were") not touched. Forget a record with `stratum state rm \(example)`, "
            + "then adopt the resource again with `stratum state import \(example) ID` if it still exists"
    }

    /// Decodes every record, so that all undecodable ones are named at once.
    public static func decodeAll<Record>(_ records: [Record], _ decode: (Record) throws -> ResourceState) throws -> [ResourceAddress: ResourceState] {
        var resources: [ResourceAddress: ResourceState] = [:]
        resources.reserveCapacity(records.count)
        var failed: [Row] = []
        for record in records {
            do {
                let resource = try decode(record)
                resources[resource.address] = resource
            } catch let error as UndecodableResourcesError {
                failed += error.rows
            }
        }
        if !failed.isEmpty { throw UndecodableResourcesError(rows: failed.sorted { $0.address < $1.address }) }
        return resources
    }

    /// A decoding error in words: where in the value, and what was wrong.
    public static func explain(_ error: DecodingError) -> String {
        func at(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return path.isEmpty ? "" : " at \(path)"
        }
        switch error {
        case .dataCorrupted(let context):
            return "malformed\(at(context)): \(context.debugDescription)"
        case .typeMismatch(let type, let context):
            return "expected \(type)\(at(context))"
        case .valueNotFound(let type, let context):
            return "missing value of type \(type)\(at(context))"
        case .keyNotFound(let key, let context):
            return "missing key '\(key.stringValue)'\(at(context))"
        @unknown default:
            return "\(error)"
        }
    }
}

/// Where state lives. Every backend passes the same contract test suite.
public protocol StateStore: Sendable {
    /// The workspace's current state; creates an empty one with a new lineage on first use.
    func read(workspace: String) async throws -> StateSnapshot
    /// Applies `mutation` atomically, bumps the serial and records history; returns the new serial.
    @discardableResult
    func commit(workspace: String, _ mutation: StateMutation, at time: Date) async throws -> Int
    /// Every serial recorded, oldest first.
    func history(workspace: String) async throws -> [HistoryEntry]
    /// Workspaces that have state.
    func workspaces() async throws -> [String]

    /// What `serial` changed, resource by resource; nil for a serial not in history.
    func delta(workspace: String, serial: Int) async throws -> StateDelta?

    /// Takes the lock, or throws `LockHeldError` while someone else's lease runs. A lease that
    /// has expired, or that `isAbandoned` judges dead (its process is gone), is taken over and
    /// returned as `replaced`. Records an `acquired` or `takenOver` event.
    func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) async throws -> LockAcquisition
    /// Extends a lease we hold; throws when it is no longer ours. Records a `renewed` event.
    func renewLock(workspace: String, id: String, until: Date) async throws
    /// Releases the lock if `id` holds it; throws if another lock is held. Records `released`,
    /// or `forceReleased` when `forced`.
    func unlock(workspace: String, id: String, forced: Bool) async throws
    func currentLock(workspace: String) async throws -> LockInfo?
    /// Every lock event, oldest first.
    func lockEvents(workspace: String) async throws -> [LockEvent]

    /// Writes a journal row, committed before the provider call it describes.
    func beginOperation(workspace: String, _ operation: PendingOperation) async throws
    /// Adds to a journal row the handle of the long-running cloud operation it started, durably,
    /// before the provider waits on it; `pendingOperations` returns it in `handle`.
    func recordOperationHandle(workspace: String, id: String, handle: String) async throws
    /// Journal rows not yet settled, oldest first.
    func pendingOperations(workspace: String) async throws -> [PendingOperation]
    /// Removes journal rows without changing state (the operation is known to have had no
    /// effect, or recovery found nothing); does not bump the serial.
    func settleOperations(workspace: String, ids: [String]) async throws
}

extension StateStore {
    public func unlock(workspace: String, id: String) async throws {
        try await unlock(workspace: workspace, id: id, forced: false)
    }
}

extension LockEvent {
    /// Why a lease was taken over, for the history line.
    public static func takeoverDetail(replaced: LockInfo, at time: Date) -> String {
        let why = replaced.expiresAt <= time ? "its lease expired at \(replaced.expiresAt.ISO8601Format())" : "its process (pid \(replaced.pid) on \(replaced.host)) is gone"
        return "replaced lock \(replaced.id) held by \(replaced.holder): \(why)"
    }
}
