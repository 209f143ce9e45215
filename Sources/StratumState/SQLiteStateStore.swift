import Foundation
import GRDB
import StratumCore

/// State in a SQLite file (WAL mode, mode 0600), through GRDB.
public final class SQLiteStateStore: StateStore {
    private let pool: any DatabaseWriter
    public let path: String
    private let codec: StateCodec
    /// Opened by `openForReading`: never writes, and reads a workspace that is not there as empty.
    public let isReadOnly: Bool
    /// The copy taken before the last schema migration, if one ran.
    public let migrationBackup: String?

    /// Opens (creating if needed) the state file at `path`. A file that is not Stratum state,
    /// is corrupt, is empty, or was written by a newer Stratum is refused untouched; before a
    /// schema migration the file is copied to `<path>.backup-<time>`.
    ///
    /// Safe to call from several processes at once on a path that does not exist yet: a new
    /// file appears complete (built beside it, then linked into place), and migrations of an
    /// existing file run inside one `BEGIN IMMEDIATE` transaction, so exactly one process
    /// migrates and the others wait on SQLite's lock and then find the file current.
    public convenience init(path: String, sealer: (any ValueSealer)? = nil) throws {
        try self.init(path: path, sealer: sealer, prepare: nil)
    }

    /// `prepare` runs on every connection (tests use it to cap the file's size).
    init(path: String, sealer: (any ValueSealer)?, prepare: (@Sendable (Database) throws -> Void)?) throws {
        self.path = path
        self.codec = StateCodec(sealer: sealer)
        self.isReadOnly = false
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "stratum-state"
        if let prepare { configuration.prepareDatabase(prepare) }
        do {
            if try Self.existingFile(at: path) {
                migrationBackup = try Self.migrateInPlace(path: path)
            } else {
                try Self.createFile(at: path)
                migrationBackup = nil
            }
            // Opening a pool switches the file to WAL: only now that it is known to be ours.
            pool = try Self.openPool(path: path, configuration: configuration)
        } catch let error as DatabaseError {
            throw Self.describe(error, path: path, doing: "open")
        }
    }

    private init(readingAt path: String, sealer: (any ValueSealer)?) throws {
        self.path = path
        self.codec = StateCodec(sealer: sealer)
        self.isReadOnly = true
        self.migrationBackup = nil
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        configuration.label = "stratum-state-read"
        do {
            pool = try Self.openReadOnly(path: path, configuration: configuration)
            let applied = try pool.read { try Self.inspect($0, path: path) }
            if applied != Self.knownMigrations {
                throw StateError("\(path) uses an older state schema (\(applied.sorted().joined(separator: ", "))); a read-only command does not migrate it. Run a command that writes state (e.g. `stratum refresh`) once to migrate it (a backup is taken first)")
            }
        } catch let error as DatabaseError {
            throw Self.describe(error, path: path, doing: "read")
        }
    }

    /// Opens the state at `path` for commands that only read it (`state list`, `output`,
    /// `plan --no-lock`, …): nothing is created or changed, not even a missing directory or
    /// file (a missing file reads as empty state), and a file or directory without write
    /// permission is read as it is.
    public static func openForReading(path: String, sealer: (any ValueSealer)? = nil) throws -> any StateStore {
        guard try existingFile(at: path) else { return InMemoryStateStore() }
        return try SQLiteStateStore(readingAt: path, sealer: sealer)
    }

    /// Whether a state file exists at `path`; throws for a directory or an empty file, which
    /// must not be mistaken for "no state yet".
    private static func existingFile(at path: String) throws -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return false }
            if errno == ENOTDIR {
                throw StateError("cannot use the state path \(path): \(blockingAncestor(of: path)) is a file, not a directory")
            }
            throw StateError("cannot open state file \(path): \(String(cString: strerror(errno)))")
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            throw StateError("the state path \(path) is a directory, not a state file: give the path of a file, e.g. \(URL(fileURLWithPath: path).appendingPathComponent("state.db").path)")
        }
        if info.st_size == 0 {
            throw StateError("state file \(path) is empty (0 bytes): it holds no state, and Stratum never leaves an empty state file behind, so it was probably truncated. Restore it from a backup (\(path).backup-*, or `stratum state import` of each resource); to start with no state, delete it and run again")
        }
        return true
    }

    /// The deepest existing path above `path`: what stands in the way of creating it.
    private static func blockingAncestor(of path: String) -> String {
        var current = URL(fileURLWithPath: path).deletingLastPathComponent()
        while current.path != "/", !FileManager.default.fileExists(atPath: current.path) {
            current.deleteLastPathComponent()
        }
        return current.path
    }

    /// A consistent read-only connection. Without write permission on the file or its
    /// directory nobody can be writing it, so it is opened immutable (no lock, no -wal or
    /// -shm file is created); otherwise SQLite's read-only locking applies.
    private static func openReadOnly(path: String, configuration: Configuration) throws -> DatabaseQueue {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let unwritable = !isWritable(path) || !isWritable(directory)
        if unwritable, !FileManager.default.fileExists(atPath: path + "-wal") {
            let escaped = path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "?", with: "%3f").replacingOccurrences(of: "#", with: "%23")
            // Builds of SQLite without URI filenames read "file:" literally and find no file.
            if let queue = try? DatabaseQueue(path: "file:\(escaped)?immutable=1", configuration: configuration) { return queue }
        }
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    /// Write permission by mode bits and by access(2): root passes access(2) on anything, but
    /// a file nobody may write is still treated as one nobody is writing.
    private static func isWritable(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        return info.st_mode & 0o222 != 0 && access(path, W_OK) == 0
    }

    /// Closes the file's connections now; the last one to close folds the WAL into the file.
    public func close() throws {
        try pool.close()
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

    private static let knownMigrations: Set<String> = Set(migrations.map(\.0))

    /// The tables and applied migrations; refuses a foreign file or one from a newer Stratum.
    private static func inspect(_ db: Database, path: String) throws -> Set<String> {
        let tables = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
        let applied = tables.contains("grdb_migrations") ? Set(try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")) : []
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

    /// Brings an existing file to the current schema. It is looked at read-only first (a
    /// foreign or current file is never opened for writing here); a migration runs inside one
    /// immediate transaction, after a backup, and a process that waited for another's
    /// migration finds nothing left to do.
    /// Opens the pool, which switches a rollback-journal file (one made by an older Stratum) to
    /// WAL. The switch needs every other connection off the file, and SQLite answers it BUSY at
    /// once rather than through the busy handler, so while another process is still reading or
    /// migrating the file the open is tried again, for as long as the busy timeout would wait.
    private static func openPool(path: String, configuration: Configuration) throws -> DatabasePool {
        let deadline = Date().addingTimeInterval(10)
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && Date() < deadline {
                usleep(5_000)
            }
        }
    }

    private static func migrateInPlace(path: String) throws -> String? {
        var readOnly = Configuration()
        readOnly.readonly = true
        readOnly.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: path, configuration: readOnly)
        let applied = try queue.read { try inspect($0, path: path) }
        try queue.close()
        guard applied != knownMigrations else { return nil }

        var writable = Configuration()
        writable.busyMode = .timeout(10)
        let writer = try DatabaseQueue(path: path, configuration: writable)
        defer { try? writer.close() }
        return try writer.writeWithoutTransaction { db in
            var backup: String?
            try db.inTransaction(.immediate) {
                let applied = try inspect(db, path: path)
                if !applied.isEmpty, applied != knownMigrations {
                    let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
                    let target = "\(path).backup-\(stamp)"
                    try backupFile(path, to: target)
                    backup = target
                }
                try runMigrations(db, applied: applied)
                return .commit
            }
            return backup
        }
    }

    /// Builds a complete new state file beside `path` and links it into place, so no process
    /// ever sees a half-made file; the loser of a race to create it uses the winner's.
    private static func createFile(at path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let fm = FileManager.default
        if !fm.fileExists(atPath: directory) {
            do {
                try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                let ancestor = blockingAncestor(of: path)
                var info = stat()
                let found = stat(ancestor, &info) == 0
                let why = found && info.st_mode & S_IFMT != S_IFDIR
                    ? "\(ancestor) is a file, not a directory"
                    : found && !isWritable(ancestor) ? "\(ancestor) is not writable" : "\(error.localizedDescription)"
                throw StateError("cannot create state directory \(directory): \(why)")
            }
        }
        let scratch = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).new-\(getpid())-\(UUID().uuidString.prefix(8))").path
        // SQLite gives the -wal and -shm files the database file's mode, so creating the file
        // 0600 up front keeps all three private.
        let fd = open(scratch, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateError("cannot create state file \(path): \(String(cString: strerror(errno))) (creating \(scratch))")
        }
        fchmod(fd, 0o600)
        _ = Foundation.close(fd)
        defer { unlink(scratch) }
        var configuration = Configuration()
        configuration.journalMode = .wal
        let queue = try DatabaseQueue(path: scratch, configuration: configuration)
        try queue.writeWithoutTransaction { db in
            try db.inTransaction(.immediate) {
                try runMigrations(db, applied: [])
                return .commit
            }
        }
        try queue.close()
        if link(scratch, path) != 0, errno != EEXIST {
            throw StateError("cannot create state file \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// A consistent copy through SQLite's backup API, mode 0600. Called while the migrating
    /// connection holds the write lock, so it reads through a connection of its own: readers
    /// still see the committed, not yet migrated, file.
    private static func backupFile(_ path: String, to target: String) throws {
        let fd = open(target, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateError("cannot create the pre-migration backup \(target): \(String(cString: strerror(errno))); the state was not migrated")
        }
        _ = Foundation.close(fd)
        var readOnly = Configuration()
        readOnly.readonly = true
        readOnly.busyMode = .timeout(10)
        let source = try DatabaseQueue(path: path, configuration: readOnly)
        defer { try? source.close() }
        let destination = try DatabaseQueue(path: target)
        try source.backup(to: destination)
        try destination.close()
    }

    /// Applies the migrations not yet in `applied`, in order, inside the caller's transaction,
    /// and records them where GRDB's migrator does (files from earlier builds stay readable).
    private static func runMigrations(_ db: Database, applied: Set<String>) throws {
        try db.execute(sql: "CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
        for (identifier, migrate) in migrations where !applied.contains(identifier) {
            try migrate(db)
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES (?)", arguments: [identifier])
        }
    }

    /// The same migrations as a GRDB migrator (tests use it to write files of older schemas).
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for (identifier, migrate) in migrations { migrator.registerMigration(identifier, migrate: migrate) }
        return migrator
    }

    /// The schema, oldest first. Never edit one that shipped: add a new one.
    static let migrations: [(String, @Sendable (Database) throws -> Void)] = [
        ("v1-initial", { db in
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
        }),
        ("v2-journal", { db in
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
        }),
        ("v3-operation-handle", { db in
            // The handle of a long-running cloud operation, written after the row, before the wait.
            try db.alter(table: "pending") { t in t.add(column: "handle", .text) }
        }),
    ]

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
        var handle: String?
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
        typealias Rows = (WorkspaceRecord?, [ResourceRecord], [OutputRecord])
        let fetch: @Sendable (Database) throws -> Rows = { db in
            (try WorkspaceRecord.fetchOne(db, key: workspace),
             try ResourceRecord.filter(Column("workspace") == workspace).fetchAll(db),
             try OutputRecord.filter(Column("workspace") == workspace).fetchAll(db))
        }
        var (found, rows, outputRows) = try await read(fetch)
        if found == nil, isReadOnly {
            // Never written: a new lineage, as a first write would create, but nothing stored.
            found = WorkspaceRecord(name: workspace, lineage: UUID().uuidString.lowercased(), serial: 0, createdAt: Date())
        } else if found == nil {
            (found, rows, outputRows) = try await write("read") { db in
                _ = try Self.ensureWorkspace(db, workspace)
                return try fetch(db)
            }
        }
        guard let record = found else { throw StateError("the workspace \(workspace) disappeared from \(path) while it was read") }
        let resources = try UndecodableResourcesError.decodeAll(rows) { try decodeResource($0) }
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
            try PendingRecord(workspace: workspace, id: operation.id, startedAt: operation.startedAt, operation: body, handle: operation.handle).insert(db)
        }
    }

    public func recordOperationHandle(workspace: String, id: String, handle: String) async throws {
        try await write("record an operation handle in") { db in
            try db.execute(sql: "UPDATE pending SET handle = ? WHERE workspace = ? AND id = ?", arguments: [handle, workspace, id])
        }
    }

    public func pendingOperations(workspace: String) async throws -> [PendingOperation] {
        let rows = try await read { db in
            try PendingRecord.filter(Column("workspace") == workspace).order(Column("startedAt"), Column("id")).fetchAll(db)
        }
        return try rows.map { row in
            var operation = try codec.decode(PendingOperation.self, from: row.operation)
            operation.handle = row.handle ?? operation.handle
            return operation
        }
    }

    public func settleOperations(workspace: String, ids: [String]) async throws {
        try await write("settle operations in") { db in
            for id in ids { _ = try PendingRecord.deleteOne(db, key: ["workspace": workspace, "id": id]) }
        }
    }
}
