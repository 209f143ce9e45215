import Foundation
import GRDB
import StratumCore

/// State in a SQLite file (WAL mode, mode 0600), through GRDB.
public final class SQLiteStateStore: StateStore {
    private let pool: DatabasePool
    public let path: String

    /// Opens (creating if needed) the state file at `path`.
    public init(path: String) throws {
        self.path = path
        try Self.prepareFile(at: path)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "stratum-state"
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw StateError("cannot open state file \(path): \(error.message ?? error.description)")
        }
    }

    // SQLite gives the -wal and -shm files the database file's mode, so creating the file
    // 0600 up front keeps all three private.
    private static func prepareFile(at path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let fm = FileManager.default
        if !fm.fileExists(atPath: directory) {
            do {
                try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw StateError("cannot create state directory \(directory): \(error.localizedDescription)")
            }
        }
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateError("cannot open state file \(path): \(String(cString: strerror(errno)))")
        }
        fchmod(fd, 0o600)
        close(fd)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial") { db in
            try db.create(table: "workspace") { t in
                t.primaryKey("name", .text)
                t.column("lineage", .text).notNull()
                t.column("serial", .integer).notNull()
                t.column("createdAt", .datetime).notNull()
            }
            try db.create(table: "resource") { t in
                t.column("workspace", .text).notNull().references("workspace", onDelete: .cascade)
                t.column("address", .text).notNull()
                t.column("provider", .text).notNull()
                t.column("region", .text).notNull()
                t.column("id", .text).notNull()
                t.column("attributes", .blob).notNull()
                t.column("dependencies", .blob).notNull()
                t.primaryKey(["workspace", "address"])
            }
            try db.create(table: "output") { t in
                t.column("workspace", .text).notNull().references("workspace", onDelete: .cascade)
                t.column("name", .text).notNull()
                t.column("value", .blob).notNull()
                t.primaryKey(["workspace", "name"])
            }
            try db.create(table: "history") { t in
                t.column("workspace", .text).notNull().references("workspace", onDelete: .cascade)
                t.column("serial", .integer).notNull()
                t.column("time", .datetime).notNull()
                t.column("changes", .blob).notNull()
                t.primaryKey(["workspace", "serial"])
            }
            try db.create(table: "lock") { t in
                t.primaryKey("workspace", .text)
                t.column("id", .text).notNull()
                t.column("holder", .text).notNull()
                t.column("operation", .text).notNull()
                t.column("pid", .integer).notNull()
                t.column("host", .text).notNull()
                t.column("acquiredAt", .datetime).notNull()
                t.column("expiresAt", .datetime).notNull()
            }
        }
        return migrator
    }

    // MARK: Records

    struct WorkspaceRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "workspace"
        var name: String
        var lineage: String
        var serial: Int
        var createdAt: Date
    }

    struct ResourceRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "resource"
        var workspace: String
        var address: String
        var provider: String
        var region: String
        var id: String
        var attributes: Data
        var dependencies: Data
    }

    struct OutputRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "output"
        var workspace: String
        var name: String
        var value: Data
    }

    struct HistoryRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "history"
        var workspace: String
        var serial: Int
        var time: Date
        var changes: Data
    }

    struct LockRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "lock"
        var workspace: String
        var id: String
        var holder: String
        var operation: String
        var pid: Int32
        var host: String
        var acquiredAt: Date
        var expiresAt: Date

        var info: LockInfo {
            LockInfo(id: id, holder: holder, operation: operation, pid: pid, host: host, acquiredAt: acquiredAt, expiresAt: expiresAt)
        }
    }

    // MARK: StateStore

    public func read(workspace: String) async throws -> StateSnapshot {
        try await pool.write { db in
            let record = try Self.ensureWorkspace(db, workspace)
            let decoder = JSONDecoder()
            var resources: [ResourceAddress: ResourceState] = [:]
            let rows = try ResourceRecord.filter(Column("workspace") == workspace).fetchAll(db)
            resources.reserveCapacity(rows.count)
            for row in rows {
                guard let address = ResourceAddress(parsing: row.address) else {
                    throw StateError("state holds an invalid address '\(row.address)'")
                }
                resources[address] = ResourceState(
                    address: address, provider: row.provider, region: row.region, id: row.id,
                    attributes: try decoder.decode([String: Value].self, from: row.attributes),
                    dependencies: try decoder.decode([ResourceAddress].self, from: row.dependencies))
            }
            var outputs: [String: Value] = [:]
            for row in try OutputRecord.filter(Column("workspace") == workspace).fetchAll(db) {
                outputs[row.name] = try decoder.decode(Value.self, from: row.value)
            }
            return StateSnapshot(lineage: record.lineage, serial: record.serial, resources: resources, outputs: outputs)
        }
    }

    private static func ensureWorkspace(_ db: Database, _ workspace: String) throws -> WorkspaceRecord {
        if let record = try WorkspaceRecord.fetchOne(db, key: workspace) { return record }
        let record = WorkspaceRecord(name: workspace, lineage: UUID().uuidString.lowercased(), serial: 0, createdAt: Date())
        try record.insert(db)
        return record
    }

    @discardableResult
    public func commit(workspace: String, _ mutation: StateMutation, at time: Date) async throws -> Int {
        try await pool.write { db in
            var record = try Self.ensureWorkspace(db, workspace)
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            for address in mutation.removals {
                _ = try ResourceRecord.deleteOne(db, key: ["workspace": workspace, "address": address.description])
            }
            for resource in mutation.upserts {
                try ResourceRecord(
                    workspace: workspace, address: resource.address.description, provider: resource.provider,
                    region: resource.region, id: resource.id,
                    attributes: try encoder.encode(resource.attributes),
                    dependencies: try encoder.encode(resource.dependencies)
                ).save(db)
            }
            if let outputs = mutation.outputs {
                try OutputRecord.filter(Column("workspace") == workspace).deleteAll(db)
                for (name, value) in outputs {
                    try OutputRecord(workspace: workspace, name: name, value: try encoder.encode(value)).insert(db)
                }
            }
            record.serial += 1
            try record.update(db)
            try HistoryRecord(workspace: workspace, serial: record.serial, time: time, changes: try encoder.encode(mutation.changes)).insert(db)
            return record.serial
        }
    }

    public func history(workspace: String) async throws -> [HistoryEntry] {
        try await pool.read { db in
            let decoder = JSONDecoder()
            return try HistoryRecord.filter(Column("workspace") == workspace).order(Column("serial")).fetchAll(db).map {
                HistoryEntry(serial: $0.serial, time: $0.time, changes: try decoder.decode([HistoryChange].self, from: $0.changes))
            }
        }
    }

    public func workspaces() async throws -> [String] {
        try await pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM workspace ORDER BY name") }
    }

    public func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) async throws -> LockInfo {
        // An immediate transaction makes check-then-insert atomic across processes.
        let held: LockInfo? = try await pool.writeWithoutTransaction { db in
            var held: LockInfo?
            try db.inTransaction(.immediate) {
                if let existing = try LockRecord.fetchOne(db, key: workspace)?.info,
                    existing.expiresAt > request.acquiredAt, !isAbandoned(existing)
                {
                    held = existing
                    return .rollback
                }
                try LockRecord(
                    workspace: workspace, id: request.id, holder: request.holder, operation: request.operation,
                    pid: request.pid, host: request.host, acquiredAt: request.acquiredAt, expiresAt: request.expiresAt
                ).save(db)
                return .commit
            }
            return held
        }
        if let held { throw LockHeldError(lock: held) }
        return request
    }

    public func renewLock(workspace: String, id: String, until: Date) async throws {
        try await pool.write { db in
            guard var record = try LockRecord.fetchOne(db, key: workspace), record.id == id else {
                throw StateError("lock \(id) is no longer held on \(workspace)")
            }
            record.expiresAt = until
            try record.update(db)
        }
    }

    public func unlock(workspace: String, id: String) async throws {
        try await pool.write { db in
            guard let record = try LockRecord.fetchOne(db, key: workspace) else { return }
            guard record.id == id else {
                throw StateError("lock id \(id) does not match the held lock \(record.id)")
            }
            try record.delete(db)
        }
    }

    public func currentLock(workspace: String) async throws -> LockInfo? {
        try await pool.read { db in try LockRecord.fetchOne(db, key: workspace)?.info }
    }
}
