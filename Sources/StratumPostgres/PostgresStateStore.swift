import Foundation
import Logging
import PostgresNIO
import StratumCore
import StratumState
import Synchronization

/// State in a PostgreSQL database, shared by a team: every workspace (stack) in one schema, the
/// lock a lease judged on the server's clock, secrets sealed on the client before they are sent.
public final class PostgresStateStore: StateStore {
    /// Where the state lives (its description never shows the password).
    public let location: PostgresLocation
    /// Migrations this connection applied (empty when the schema was already current).
    public let appliedMigrations: [String]
    let client: PostgresClient
    private let runner: Task<Void, Never>
    let codec: StateCodec
    let logger: Logger
    /// The caller's clock. Times in requests (`LockInfo.acquiredAt`, `renewLock(until:)`) are read
    /// on it and turned into offsets from the server's `now()`, so clock skew between machines
    /// cancels out; tests inject it to move one client's time.
    let clock: @Sendable () -> Date
    /// The schema, quoted for SQL.
    let s: String
    private let closed = Mutex(false)

    private init(
        location: PostgresLocation, appliedMigrations: [String], codec: StateCodec, logger: Logger, clock: @escaping @Sendable () -> Date,
        client: PostgresClient, runner: Task<Void, Never>
    ) {
        self.location = location
        self.appliedMigrations = appliedMigrations
        self.codec = codec
        self.logger = logger
        self.clock = clock
        self.s = PostgresSchema.quoted(location.schema)
        self.client = client
        self.runner = runner
    }

    deinit {
        runner.cancel()
    }

    /// Connects to the state at `url` (`postgres://user:password@host:5432/database`, optional
    /// `?schema=`, `sslmode=`, `sslrootcert=`, `host=/socket/dir`), creating or migrating its
    /// schema. Fails at once, with a message that never shows the password, when the server is
    /// unreachable, refuses the credentials, or was migrated by a newer Stratum.
    public static func connect(
        url: String, sealer: (any ValueSealer)?, logger: Logger = Logger(label: "stratum.state.postgres"),
        environment: [String: String] = ProcessInfo.processInfo.environment,
        clock: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> PostgresStateStore {
        let location = try PostgresLocation(url: url, environment: environment)
        // The driver logs every query at debug level; keep it to warnings unless tracing.
        var driverLogger = logger
        if driverLogger.logLevel > .trace { driverLogger.logLevel = max(driverLogger.logLevel, .warning) }
        // One plain connection first: the pool retries a failing server for a minute and then
        // reports only that it gave up, while this says at once why (refused, wrong password).
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: try location.connectionConfiguration(), id: 1, logger: driverLogger)
        } catch {
            throw PostgresFailure.describe(error, at: location, doing: "connect to")
        }
        let applied: [String]
        do {
            applied = try await PostgresSchema.migrate(connection, location: location, logger: driverLogger)
        } catch {
            try? await connection.close()
            throw PostgresFailure.describe(error, at: location, doing: "prepare the schema in")
        }
        try? await connection.close()
        if !applied.isEmpty {
            logger.debug("migrated PostgreSQL state schema", metadata: ["location": "\(location.redacted)", "migrations": "\(applied.joined(separator: ", "))"])
        }
        let client = PostgresClient(configuration: location.clientConfiguration(), backgroundLogger: driverLogger)
        // The pool hands out no connection until run() has begun: return once its task is
        // under way (run() marks itself running before its first suspension).
        let (started, signal) = AsyncStream<Void>.makeStream()
        let runner = Task<Void, Never> {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
        return PostgresStateStore(
            location: location, appliedMigrations: applied, codec: StateCodec(sealer: sealer), logger: driverLogger, clock: clock,
            client: client, runner: runner)
    }

    /// Closes the pool's connections. Idempotent; waits at most a few seconds, so a wedged
    /// connection cannot hang the caller's exit.
    public func close() async {
        let wasClosed = closed.withLock { closed in
            defer { closed = true }
            return closed
        }
        guard !wasClosed else { return }
        runner.cancel()
        await Self.wait(for: runner, atMost: .seconds(5))
    }

    private static func wait(for task: Task<Void, Never>, atMost limit: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let gate = ResumeOnce(continuation)
            let timer = Task {
                try? await Task.sleep(for: limit)
                gate.resume()
            }
            Task {
                await task.value
                timer.cancel()
                gate.resume()
            }
        }
    }

    // MARK: Transactions

    /// Runs `body` in one transaction on a pooled connection, rolling back if it throws, and
    /// turns driver errors into ones that say what happened to the state. A pooled connection
    /// the server has dropped meanwhile is found before BEGIN, or fails at BEGIN, before anything
    /// of ours ran: the attempt is made again, a few times, on another connection.
    func transaction<T: Sendable>(
        _ doing: String, begin: String = "BEGIN", _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        guard !closed.withLock({ $0 }) else {
            throw StateError("cannot \(doing) \(location.redacted): the state store was closed")
        }
        let logger = self.logger
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await client.withConnection { connection in
                    // The pool may hand out a connection whose channel has just closed before it
                    // notices; a query written to it is dropped and would never complete.
                    guard !connection.isClosed else { throw BeginFailed(underlying: nil) }
                    do {
                        try await connection.query(PostgresQuery(unsafeSQL: begin), logger: logger)
                    } catch {
                        throw BeginFailed(underlying: error)
                    }
                    do {
                        let result = try await body(connection)
                        try await connection.query("COMMIT", logger: logger)
                        return result
                    } catch {
                        // After a dropped connection the server has already rolled back, and a
                        // ROLLBACK sent into the closing channel can wait forever.
                        if !connection.isClosed, !PostgresFailure.isConnectionLoss(error) {
                            _ = try? await connection.query("ROLLBACK", logger: logger)
                        }
                        throw error
                    }
                }
            } catch let failed as BeginFailed {
                let lost = failed.underlying.map(PostgresFailure.isConnectionLoss) ?? true
                if lost, attempt < 4 {
                    // Give the pool a moment to retire the dead connection.
                    try await Task.sleep(for: .milliseconds(20 * attempt))
                    continue
                }
                guard let underlying = failed.underlying else {
                    throw StateUnavailableError("the connections to \(location.redacted) keep closing; cannot \(doing) it. Run again")
                }
                throw PostgresFailure.describe(underlying, at: location, doing: doing)
            } catch {
                throw PostgresFailure.describe(error, at: location, doing: doing)
            }
        }
    }

    /// The transaction never began: nothing of it reached the server. nil: the connection was closed.
    private struct BeginFailed: Error {
        var underlying: (any Error)?
    }

    /// Every row `query` returns.
    func rows(_ connection: PostgresConnection, _ query: PostgresQuery) async throws -> [PostgresRow] {
        try await connection.query(query, logger: logger).collect()
    }

    func execute(_ connection: PostgresConnection, _ query: PostgresQuery) async throws {
        _ = try await connection.query(query, logger: logger).collect()
    }

    // MARK: State

    /// Creates the workspace row with a fresh lineage unless it exists.
    func ensureWorkspace(_ connection: PostgresConnection, _ workspace: String) async throws {
        try await execute(connection, """
            INSERT INTO \(unescaped: s).workspace (name, lineage, serial) VALUES (\(workspace), \(UUID().uuidString.lowercased()), 0)
            ON CONFLICT (name) DO NOTHING
            """)
    }

    public func read(workspace: String) async throws -> StateSnapshot {
        try await transaction("create the workspace in") { try await ensureWorkspace($0, workspace) }
        // One snapshot for the workspace row, resources and outputs: a commit landing between
        // the statements must not give a torn read.
        let (header, resourceRows, outputRows) = try await transaction("read", begin: "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY") { connection in
            let header = try await rows(connection, "SELECT lineage, serial FROM \(unescaped: s).workspace WHERE name = \(workspace)")
            let resources = try await rows(connection, """
                SELECT address, provider, region, id, attributes, dependencies FROM \(unescaped: s).resource WHERE workspace = \(workspace)
                """)
            let outputs = try await rows(connection, "SELECT name, value FROM \(unescaped: s).output WHERE workspace = \(workspace)")
            return (header, resources, outputs)
        }
        guard let first = header.first else {
            throw StateError("the workspace \(workspace) disappeared from \(location.redacted) while it was read")
        }
        let (lineage, serial) = try first.decode((String, Int).self)
        let resources = try UndecodableResourcesError.decodeAll(resourceRows) { try decodeResource(StoredResource($0)) }
        var outputs: [String: Value] = [:]
        for row in outputRows {
            let (name, value) = try row.decode((String, Data).self)
            outputs[name] = try codec.decode(Value.self, from: value)
        }
        return StateSnapshot(lineage: lineage, serial: serial, resources: resources, outputs: outputs)
    }

    @discardableResult
    public func commit(workspace: String, _ mutation: StateMutation, at time: Date) async throws -> Int {
        // Encode (and seal) before the transaction: an encoding failure writes nothing.
        var upserts: [String: StoredResource] = [:]
        for resource in mutation.upserts {
            upserts[resource.address.description] = try StoredResource(resource, codec: codec)
        }
        let written = upserts.values.sorted { $0.address < $1.address }
        let outputs = try mutation.outputs.map { try $0.sorted { $0.key < $1.key }.map { ($0.key, try codec.encode($0.value)) } }
        let changes = try codec.encode(mutation.changes)
        let removals = mutation.removals.map(\.description)
        let touched = Array(Set(removals).union(upserts.keys)).sorted()
        return try await transaction("commit to") { connection in
            try await ensureWorkspace(connection, workspace)
            // The row lock orders concurrent commits to one workspace: serials never collide.
            guard let serialRow = try await rows(connection, "SELECT serial FROM \(unescaped: s).workspace WHERE name = \(workspace) FOR UPDATE").first else {
                throw StateError("the workspace \(workspace) disappeared from \(location.redacted) during a commit")
            }
            let serial = try serialRow.decode(Int.self) + 1
            let prior = try await rows(connection, """
                SELECT address, provider, region, id, attributes, dependencies FROM \(unescaped: s).resource
                WHERE workspace = \(workspace) AND address = ANY(\(touched)) ORDER BY address
                """).map(StoredResource.init)
            if !removals.isEmpty {
                try await execute(connection, "DELETE FROM \(unescaped: s).resource WHERE workspace = \(workspace) AND address = ANY(\(removals))")
            }
            if !written.isEmpty {
                try await execute(connection, """
                    INSERT INTO \(unescaped: s).resource (workspace, address, provider, region, id, attributes, dependencies)
                    SELECT \(workspace), * FROM unnest(\(written.map(\.address))::text[], \(written.map(\.provider))::text[],
                        \(written.map(\.region))::text[], \(written.map(\.id))::text[],
                        \(written.map { ByteBuffer(bytes: $0.attributes) })::bytea[], \(written.map { ByteBuffer(bytes: $0.dependencies) })::bytea[])
                    ON CONFLICT (workspace, address) DO UPDATE SET provider = excluded.provider, region = excluded.region,
                        id = excluded.id, attributes = excluded.attributes, dependencies = excluded.dependencies
                    """)
            }
            if let outputs {
                try await execute(connection, "DELETE FROM \(unescaped: s).output WHERE workspace = \(workspace)")
                if !outputs.isEmpty {
                    try await execute(connection, """
                        INSERT INTO \(unescaped: s).output (workspace, name, value)
                        SELECT \(workspace), * FROM unnest(\(outputs.map(\.0))::text[], \(outputs.map { ByteBuffer(bytes: $0.1) })::bytea[])
                        """)
                }
            }
            if !mutation.settles.isEmpty {
                try await execute(connection, "DELETE FROM \(unescaped: s).pending_operation WHERE workspace = \(workspace) AND id = ANY(\(mutation.settles))")
            }
            try await execute(connection, "UPDATE \(unescaped: s).workspace SET serial = \(serial) WHERE name = \(workspace)")
            // The delta keeps rows as stored (secrets still sealed), for `history --diff`.
            let delta = try codec.encode(StoredDelta(before: prior, after: written))
            try await execute(connection, """
                INSERT INTO \(unescaped: s).history (workspace, serial, time, changes, delta)
                VALUES (\(workspace), \(serial), \(time), \(changes), \(delta))
                """)
            return serial
        }
    }

    public func history(workspace: String) async throws -> [HistoryEntry] {
        let found = try await transaction("read history from") { connection in
            try await rows(connection, "SELECT serial, time, changes FROM \(unescaped: s).history WHERE workspace = \(workspace) ORDER BY serial")
        }
        return try found.map { row in
            let (serial, time, changes) = try row.decode((Int, Date, Data).self)
            return HistoryEntry(serial: serial, time: time, changes: try codec.decode([HistoryChange].self, from: changes))
        }
    }

    public func delta(workspace: String, serial: Int) async throws -> StateDelta? {
        let found = try await transaction("read history from") { connection in
            try await rows(connection, "SELECT serial, time, changes, delta FROM \(unescaped: s).history WHERE workspace = \(workspace) AND serial = \(serial)")
        }
        guard let row = found.first else { return nil }
        let (number, time, changeData, deltaData) = try row.decode((Int, Date, Data, Data?).self)
        var before: [ResourceAddress: ResourceState] = [:]
        var after: [ResourceAddress: ResourceState] = [:]
        if let deltaData {
            let stored = try codec.decode(StoredDelta.self, from: deltaData)
            for item in stored.before {
                let resource = try decodeResource(item)
                before[resource.address] = resource
            }
            for item in stored.after {
                let resource = try decodeResource(item)
                after[resource.address] = resource
            }
        }
        return StateDelta(serial: number, time: time, changes: try codec.decode([HistoryChange].self, from: changeData), before: before, after: after)
    }

    public func workspaces() async throws -> [String] {
        let found = try await transaction("list workspaces in") { connection in
            try await rows(connection, "SELECT name FROM \(unescaped: s).workspace ORDER BY name COLLATE \"C\"")
        }
        return try found.map { try $0.decode(String.self) }
    }

    // MARK: Journal

    public func beginOperation(workspace: String, _ operation: PendingOperation) async throws {
        let body = try codec.encode(operation)
        try await transaction("journal an operation in") { connection in
            try await ensureWorkspace(connection, workspace)
            try await execute(connection, """
                INSERT INTO \(unescaped: s).pending_operation (workspace, id, started_at, operation, handle)
                VALUES (\(workspace), \(operation.id), \(operation.startedAt), \(body), \(operation.handle))
                """)
        }
    }

    public func recordOperationHandle(workspace: String, id: String, handle: String) async throws {
        try await transaction("record an operation handle in") { connection in
            try await execute(connection, "UPDATE \(unescaped: s).pending_operation SET handle = \(handle) WHERE workspace = \(workspace) AND id = \(id)")
        }
    }

    public func pendingOperations(workspace: String) async throws -> [PendingOperation] {
        let found = try await transaction("read the journal in") { connection in
            try await rows(connection, "SELECT operation, handle FROM \(unescaped: s).pending_operation WHERE workspace = \(workspace) ORDER BY started_at, id COLLATE \"C\"")
        }
        return try found.map { row in
            let (body, handle) = try row.decode((Data, String?).self)
            var operation = try codec.decode(PendingOperation.self, from: body)
            operation.handle = handle ?? operation.handle
            return operation
        }
    }

    public func settleOperations(workspace: String, ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await transaction("settle operations in") { connection in
            try await execute(connection, "DELETE FROM \(unescaped: s).pending_operation WHERE workspace = \(workspace) AND id = ANY(\(ids))")
        }
    }

    // MARK: Rows

    /// A resource row as stored: attributes and dependencies already encoded, secrets sealed.
    /// The same shape as the SQLite file's delta rows.
    struct StoredResource: Codable, Sendable {
        var address: String
        var provider: String
        var region: String
        var id: String
        var attributes: Data
        var dependencies: Data

        init(_ resource: ResourceState, codec: StateCodec) throws {
            address = resource.address.description
            provider = resource.provider
            region = resource.region
            id = resource.id
            attributes = try codec.encode(resource.attributes)
            dependencies = try codec.encode(resource.dependencies)
        }

        init(_ row: PostgresRow) throws {
            (address, provider, region, id, attributes, dependencies) = try row.decode((String, String, String, String, Data, Data).self)
        }
    }

    struct StoredDelta: Codable {
        var before: [StoredResource]
        var after: [StoredResource]
    }

    func decodeResource(_ row: StoredResource) throws -> ResourceState {
        try codec.decodeResource(
            address: row.address, provider: row.provider, region: row.region, id: row.id,
            attributes: row.attributes, dependencies: row.dependencies)
    }
}

/// Resumes a continuation once, from whichever of several tasks gets there first.
private final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>

    init(_ continuation: CheckedContinuation<Void, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume() {
        continuation.withLock { continuation in
            continuation?.resume()
            continuation = nil
        }
    }
}
