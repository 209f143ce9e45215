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

    public init(upserts: [ResourceState] = [], removals: [ResourceAddress] = [], outputs: [String: Value]? = nil, changes: [HistoryChange]) {
        self.upserts = upserts
        self.removals = removals
        self.outputs = outputs
        self.changes = changes
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

    /// Takes the lock, or throws `LockHeldError` while someone else's lease runs. A held lease
    /// that `isAbandoned` judges dead (its process is gone) is taken over.
    func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) async throws -> LockInfo
    /// Extends a lease we hold.
    func renewLock(workspace: String, id: String, until: Date) async throws
    /// Releases the lock if `id` holds it; throws if another lock is held.
    func unlock(workspace: String, id: String) async throws
    func currentLock(workspace: String) async throws -> LockInfo?
}
