import Foundation
import GRDB
import StratumCore

/// State in a SQLite file (WAL mode, mode 0600), through GRDB.
public final class SQLiteStateStore: StateStore {
    private let pool: DatabasePool
    public let path: String
    private let codec: StateCodec
    /// The copy taken before the last schema migration, if one ran.
    public let migrationBackup: String?

    /// Opens (creating if needed) the state file at `path`. A file that is not Stratum state,
    /// is corrupt, or was written by a newer Stratum is refused untouched; before a schema
    /// migration the file is copied to `<path>.backup-<time>`.
    public convenience init(path: String, sealer: (any ValueSealer)? = nil) throws {
        try self.init(path: path, sealer: sealer, prepare: nil)
    }

    /// `prepare` runs on every connection (tests use it to cap the file's size).
    init(path: String, sealer: (any ValueSealer)?, prepare: (@Sendable (Database) throws -> Void)?) throws {
        self.path = path
        self.codec = StateCodec(sealer: sealer)
        try Self.prepareFile(at: path)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "stratum-state"
        if let prepare { configuration.prepareDatabase(prepare) }
        do {
            // Look before opening for writing: opening a pool switches the file to WAL, which
            // would already change a file that turns out not to be ours.
            let applied = try Self.inspect(path: path)
            pool = try DatabasePool(path: path, configuration: configuration)
            migrationBackup = try Self.migrate(pool, path: path, applied: applied)
        } catch let error as DatabaseError {
            throw Self.describe(error, path: path, doing: "open")
        }
    }

    /// A database error as a StateError that says what it means for the user's state.
    static func describe(_ error: DatabaseError, path: String, doing: String) -> StateError {
        switch error.resultCode {
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return StateError("\(path) is not a readable state file (corrupt or not SQLite); it was left untouched. Restore it from a backup or from `stratum state export` output")
        case .SQLITE_FULL:
            return StateError("the disk holding \(path) is full: nothing was written and the state is unchanged. Free space and run again")
        case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
            return StateError("cannot \(doing) state file \(path): it or its directory is not writable (\(error.message ?? "\(error.resultCode)"))")
        case .SQLITE_IOERR:
            return StateError("I/O error on \(path) during \(doing): \(error.message ?? "") — the last committed state is intact")
        default:
            return StateError("cannot \(doing) state file \(path): \(error.message ?? error.description)")
        }
    }

    private static let knownMigrations: Set<String> = ["v1-initial", "v2-journal"]

    /// Reads the file read-only and refuses foreign or newer ones; returns the migrations applied.
    private static func inspect(path: String) throws -> Set<String> {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size > 0 else { return [] }
        var readOnly = Configuration()
        readOnly.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: readOnly)
        defer { try? queue.close() }
        let (applied, tables) = try queue.read { db -> (Set<String>, Set<String>) in
            let tables = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
            let applied = tables.contains("grdb_migrations") ? Set(try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")) : []
            return (applied, tables)
        }
        let userTables = tables.filter { !$0.hasPrefix("sqlite_") }
        if !userTables.isEmpty, !(applied.contains("v1-initial") && tables.contains("workspace")) {
            throw StateError("\(path) is a SQLite file but not Stratum state (it has tables \(userTables.sorted().joined(separator: ", "))); it was left untouched")
        }
        let unknown = applied.subtracting(knownMigrations)
        if !unknown.isEmpty {
            throw StateError("\(path) was written by a newer Stratum (schema \(unknown.sorted().joined(separator: ", "))); upgrade Stratum to use it. The file was left untouched")
        }
        return applied
    }

    /// Backs up before migrating an existing file, then migrates.
    private static func migrate(_ pool: DatabasePool, path: String, applied: Set<String>) throws -> String? {
        var backup: String?
        if !applied.isEmpty, applied != knownMigrations {
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            let target = "\(path).backup-\(stamp)"
            try backupFile(pool, to: target)
            backup = target
        }
        try migrator.migrate(pool)
        return backup
    }

    /// A consistent copy through SQLite's backup API, mode 0600.
    private static func backupFile(_ pool: DatabasePool, to target: String) throws {
        let fd = open(target, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateError("cannot create the pre-migration backup \(target): \(String(cString: strerror(errno))); the state was not migrated")
        }
        close(fd)
        let destination = try DatabaseQueue(path: target)
        try pool.backup(to: destination)
        try destination.close()
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
        if fm.fileExists(atPath: path) {
            guard access(path, R_OK | W_OK) == 0 else {
                throw StateError("cannot open state file \(path): \(String(cString: strerror(errno)))")
            }
            return
        }
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { return }
            throw StateError("cannot create state file \(path): \(String(cString: strerror(errno)))")
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
        migrator.registerMigration("v2-journal") { db in
            // What each serial changed (before/after of every touched resource), for `history --diff`.
            try db.alter(table: "history") { t in t.add(column: "delta", .blob) }
            try db.create(table: "pending") { t in
                t.column("workspace", .text).notNull().references("workspace", onDelete: .cascade)
                t.column("id", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("operation", .blob).notNull()
                t.primaryKey(["workspace", "id"])
            }
            try db.create(table: "lock_event") { t in
                t.autoIncrementedPrimaryKey("seq")
                t.column("workspace", .text).notNull()
                t.column("time", .datetime).notNull()
                t.column("kind", .text).notNull()
                t.column("lockID", .text).notNull()
                t.column("holder", .text).notNull()
                t.column("detail", .text).notNull()
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
        var delta: Data?
    }

    struct PendingRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "pending"
        var workspace: String
        var id: String
        var startedAt: Date
        var operation: Data
    }

    struct LockEventRecord: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "lock_event"
        var seq: Int64?
        var workspace: String
        var time: Date
        var kind: String
        var lockID: String
        var holder: String
        var detail: String
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

    /// Runs a write transaction, turning database errors into ones that say what happened to state.
    private func write<T: Sendable>(_ doing: String, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(body)
        } catch let error as DatabaseError {
            throw Self.describe(error, path: path, doing: doing)
        }
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch let error as DatabaseError {
            throw Self.describe(error, path: path, doing: "read")
        }
    }

    func decodeResource(_ row: ResourceRecord) throws -> ResourceState {
        try codec.decodeResource(
            address: row.address, provider: row.provider, region: row.region, id: row.id,
            attributes: row.attributes, dependencies: row.dependencies)
    }

    private func record(_ resource: ResourceState, workspace: String) throws -> ResourceRecord {
        ResourceRecord(
            workspace: workspace, address: resource.address.description, provider: resource.provider,
            region: resource.region, id: resource.id,
            attributes: try codec.encode(resource.attributes),
            dependencies: try codec.encode(resource.dependencies))
    }

    public func read(workspace: String) async throws -> StateSnapshot {
        let (record, rows, outputRows) = try await write("read") { db in
            let record = try Self.ensureWorkspace(db, workspace)
            let rows = try ResourceRecord.filter(Column("workspace") == workspace).fetchAll(db)
            let outputs = try OutputRecord.filter(Column("workspace") == workspace).fetchAll(db)
            return (record, rows, outputs)
        }
        var resources: [ResourceAddress: ResourceState] = [:]
        resources.reserveCapacity(rows.count)
        for row in rows {
            let resource = try decodeResource(row)
            resources[resource.address] = resource
        }
        var outputs: [String: Value] = [:]
        for row in outputRows {
            outputs[row.name] = try codec.decode(Value.self, from: row.value)
        }
        return StateSnapshot(lineage: record.lineage, serial: record.serial, resources: resources, outputs: outputs)
    }

    private static func ensureWorkspace(_ db: Database, _ workspace: String) throws -> WorkspaceRecord {
        if let record = try WorkspaceRecord.fetchOne(db, key: workspace) { return record }
        let record = WorkspaceRecord(name: workspace, lineage: UUID().uuidString.lowercased(), serial: 0, createdAt: Date())
        try record.insert(db)
        return record
    }

    @discardableResult
    public func commit(workspace: String, _ mutation: StateMutation, at time: Date) async throws -> Int {
        // Encode (and seal) outside the transaction: an encoding failure writes nothing.
        let upserts = try mutation.upserts.map { try record($0, workspace: workspace) }
        let outputs = try mutation.outputs.map { try $0.map { OutputRecord(workspace: workspace, name: $0.key, value: try codec.encode($0.value)) } }
        let changes = try codec.encode(mutation.changes)
        let touched = Set(mutation.removals.map(\.description)).union(upserts.map(\.address))
        return try await write("commit to") { db in
            var record = try Self.ensureWorkspace(db, workspace)
            var prior: [RawResource] = []
            for address in touched.sorted() {
                if let row = try ResourceRecord.fetchOne(db, key: ["workspace": workspace, "address": address]) { prior.append(RawResource(row)) }
            }
            for address in mutation.removals {
                _ = try ResourceRecord.deleteOne(db, key: ["workspace": workspace, "address": address.description])
            }
            for row in upserts { try row.save(db) }
            if let outputs {
                try OutputRecord.filter(Column("workspace") == workspace).deleteAll(db)
                for row in outputs { try row.insert(db) }
            }
            for id in mutation.settles {
                _ = try PendingRecord.deleteOne(db, key: ["workspace": workspace, "id": id])
            }
            record.serial += 1
            try record.update(db)
            // The delta keeps rows as stored (secrets still sealed), for `history --diff`.
            let delta = try JSONEncoder().encode(RawDelta(before: prior, after: upserts.map(RawResource.init)))
            try HistoryRecord(workspace: workspace, serial: record.serial, time: time, changes: changes, delta: delta).insert(db)
            return record.serial
        }
    }

    /// A resource row as stored (attributes already sealed), for history deltas.
    struct RawResource: Codable {
        var address: String
        var provider: String
        var region: String
        var id: String
        var attributes: Data
        var dependencies: Data
        init(_ row: ResourceRecord) {
            address = row.address
            provider = row.provider
            region = row.region
            id = row.id
            attributes = row.attributes
            dependencies = row.dependencies
        }
        func record(workspace: String) -> ResourceRecord {
            ResourceRecord(workspace: workspace, address: address, provider: provider, region: region, id: id, attributes: attributes, dependencies: dependencies)
        }
    }

    struct RawDelta: Codable {
        var before: [RawResource]
        var after: [RawResource]
    }

    public func history(workspace: String) async throws -> [HistoryEntry] {
        let rows = try await read { db in
            try HistoryRecord.filter(Column("workspace") == workspace).order(Column("serial")).fetchAll(db)
        }
        return try rows.map {
            HistoryEntry(serial: $0.serial, time: $0.time, changes: try codec.decode([HistoryChange].self, from: $0.changes))
        }
    }

    public func delta(workspace: String, serial: Int) async throws -> StateDelta? {
        guard let row = try await read({ db in try HistoryRecord.fetchOne(db, key: ["workspace": workspace, "serial": serial]) }) else {
            return nil
        }
        let changes = try codec.decode([HistoryChange].self, from: row.changes)
        var before: [ResourceAddress: ResourceState] = [:]
        var after: [ResourceAddress: ResourceState] = [:]
        if let data = row.delta {
            let raw = try JSONDecoder().decode(RawDelta.self, from: data)
            for item in raw.before {
                let resource = try decodeResource(item.record(workspace: workspace))
                before[resource.address] = resource
            }
            for item in raw.after {
                let resource = try decodeResource(item.record(workspace: workspace))
                after[resource.address] = resource
            }
        }
        return StateDelta(serial: row.serial, time: row.time, changes: changes, before: before, after: after)
    }

    public func workspaces() async throws -> [String] {
        try await read { db in try String.fetchAll(db, sql: "SELECT name FROM workspace ORDER BY name") }
    }

    private static func record(_ event: LockEvent, workspace: String, in db: Database) throws {
        try LockEventRecord(
            seq: nil, workspace: workspace, time: event.time, kind: event.kind.rawValue, lockID: event.lockID,
            holder: event.holder, detail: event.detail
        ).insert(db)
    }

    public func lock(workspace: String, _ request: LockInfo, isAbandoned: @Sendable (LockInfo) -> Bool) async throws -> LockAcquisition {
        // An immediate transaction makes check-then-insert atomic across processes.
        let outcome: (held: LockInfo?, replaced: LockInfo?)
        do {
            outcome = try await pool.writeWithoutTransaction { db in
                var held: LockInfo?
                var replaced: LockInfo?
                try db.inTransaction(.immediate) {
                    if let existing = try LockRecord.fetchOne(db, key: workspace)?.info {
                        if existing.expiresAt > request.acquiredAt, !isAbandoned(existing) {
                            held = existing
                            return .rollback
                        }
                        replaced = existing
                    }
                    try LockRecord(
                        workspace: workspace, id: request.id, holder: request.holder, operation: request.operation,
                        pid: request.pid, host: request.host, acquiredAt: request.acquiredAt, expiresAt: request.expiresAt
                    ).save(db)
                    let event = replaced.map {
                        LockEvent(time: request.acquiredAt, kind: .takenOver, lockID: request.id, holder: request.holder,
                                  detail: LockEvent.takeoverDetail(replaced: $0, at: request.acquiredAt))
                    } ?? LockEvent(time: request.acquiredAt, kind: .acquired, lockID: request.id, holder: request.holder, detail: request.operation)
                    try Self.record(event, workspace: workspace, in: db)
                    return .commit
                }
                return (held, replaced)
            }
        } catch let error as DatabaseError {
            throw Self.describe(error, path: path, doing: "lock")
        }
        if let held = outcome.held { throw LockHeldError(lock: held) }
        return LockAcquisition(lock: request, replaced: outcome.replaced)
    }

    public func renewLock(workspace: String, id: String, until: Date) async throws {
        try await write("renew the lock in") { db in
            guard var record = try LockRecord.fetchOne(db, key: workspace), record.id == id else {
                throw StateError("lock \(id) is no longer held on \(workspace)")
            }
            record.expiresAt = until
            try record.update(db)
            try Self.record(LockEvent(time: Date(), kind: .renewed, lockID: id, holder: record.holder, detail: "until \(until.ISO8601Format())"), workspace: workspace, in: db)
        }
    }

    public func unlock(workspace: String, id: String, forced: Bool) async throws {
        try await write("unlock") { db in
            guard let record = try LockRecord.fetchOne(db, key: workspace) else { return }
            guard record.id == id else {
                throw StateError("lock id \(id) does not match the held lock \(record.id)")
            }
            try record.delete(db)
            try Self.record(LockEvent(time: Date(), kind: forced ? .forceReleased : .released, lockID: id, holder: record.holder), workspace: workspace, in: db)
        }
    }

    public func currentLock(workspace: String) async throws -> LockInfo? {
        try await read { db in try LockRecord.fetchOne(db, key: workspace)?.info }
    }

    public func lockEvents(workspace: String) async throws -> [LockEvent] {
        try await read { db in
            try LockEventRecord.filter(Column("workspace") == workspace).order(Column("seq")).fetchAll(db).map {
                LockEvent(time: $0.time, kind: LockEvent.Kind(rawValue: $0.kind) ?? .acquired, lockID: $0.lockID, holder: $0.holder, detail: $0.detail)
            }
        }
    }

    public func beginOperation(workspace: String, _ operation: PendingOperation) async throws {
        let body = try codec.encode(operation)
        try await write("journal an operation in") { db in
            _ = try Self.ensureWorkspace(db, workspace)
            try PendingRecord(workspace: workspace, id: operation.id, startedAt: operation.startedAt, operation: body).insert(db)
        }
    }

    public func pendingOperations(workspace: String) async throws -> [PendingOperation] {
        let rows = try await read { db in
            try PendingRecord.filter(Column("workspace") == workspace).order(Column("startedAt"), Column("id")).fetchAll(db)
        }
        return try rows.map { try codec.decode(PendingOperation.self, from: $0.operation) }
    }

    public func settleOperations(workspace: String, ids: [String]) async throws {
        try await write("settle operations in") { db in
            for id in ids { _ = try PendingRecord.deleteOne(db, key: ["workspace": workspace, "id": id]) }
        }
    }
}
