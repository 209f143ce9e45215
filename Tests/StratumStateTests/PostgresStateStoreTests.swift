import Foundation
import StratumCore
import StratumPostgres
import StratumState
import Testing

/// What only the PostgreSQL backend has: a server to reach, credentials, a schema shared by a
/// team, and clients on machines whose clocks disagree. Skipped, saying why, without a server.
@Suite("PostgreSQL backend", .enabled(if: PostgresTestServer.url != nil, PostgresTestServer.skipReason))
struct PostgresStateStoreTests {
    var base: String { PostgresTestServer.url ?? "" }

    /// The server URL with its password replaced by `password`.
    func url(password: String?, database: String? = nil, port: Int? = nil) throws -> String {
        var components = try #require(URLComponents(string: PostgresTestServer.isolatedURL(base)))
        components.password = password
        if let database { components.path = "/" + database }
        if let port { components.port = port }
        return try #require(components.string)
    }

    var realPassword: String { URLComponents(string: base)?.password ?? "" }

    @Test func wrongPasswordIsReportedWithoutShowingAnyPassword() async throws {
        let wrong = "wrong-pass-Zq9x"
        let error = try await #require(throws: StateError.self) {
            try await PostgresStateStore.connect(url: try url(password: wrong), sealer: nil, environment: [:])
        }
        #expect(error.description.contains("refused the credentials"), "\(error)")
        #expect(error.description.contains("password authentication failed"), "\(error)")
        #expect(!error.description.contains(wrong))
        #expect(realPassword.isEmpty || !error.description.contains(realPassword))
        #expect(!"\(error)".contains(wrong) && !String(reflecting: error).contains(wrong))
    }

    @Test func unreachableServerIsReportedPlainly() async throws {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let error = try await #require(throws: StateUnavailableError.self) {
            try await PostgresStateStore.connect(url: try url(password: "sekrit-unreachable", port: 1), sealer: nil)
        }
        #expect(error.description.contains("cannot reach the PostgreSQL server"), "\(error)")
        #expect(error.description.contains(":1/"), "\(error)")
        #expect(!error.description.contains("sekrit-unreachable"))
    }

    @Test func missingDatabaseIsNamed() async throws {
        let error = try await #require(throws: StateError.self) {
            try await PostgresStateStore.connect(url: try url(password: realPassword, database: "stratum_no_such_db"), sealer: nil)
        }
        #expect(error.description.contains("stratum_no_such_db does not exist"), "\(error)")
    }

    @Test func migrationsAreRecordedByNameAndRunOnce() async throws {
        let url = PostgresTestServer.isolatedURL(base)
        let first = try await PostgresStateStore.connect(url: url, sealer: nil)
        #expect(first.appliedMigrations == ["v1-initial", "v2-journal", "v3-operation-handle"])
        let second = try await PostgresStateStore.connect(url: url, sealer: nil)
        #expect(second.appliedMigrations.isEmpty)
        await second.close()
        try await first.dropSchemaForTesting()
    }

    @Test func concurrentFirstConnectsMigrateOnce() async throws {
        let url = PostgresTestServer.isolatedURL(base)
        let stores = try await withThrowingTaskGroup(of: PostgresStateStore.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresStateStore.connect(url: url, sealer: nil) } }
            return try await group.reduce(into: [PostgresStateStore]()) { $0.append($1) }
        }
        #expect(stores.filter { !$0.appliedMigrations.isEmpty }.count == 1)
        for store in stores.dropFirst() { await store.close() }
        try await stores[0].dropSchemaForTesting()
    }

    @Test func aSchemaMigratedByANewerStratumIsRefusedUntouched() async throws {
        let url = PostgresTestServer.isolatedURL(base)
        let store = try await PostgresStateStore.connect(url: url, sealer: nil)
        try await store.commit(workspace: "w", StateMutation(upserts: [sampleResource("a")], changes: []), at: testEpoch)
        try await store.executeForTesting("INSERT INTO {schema}.schema_migrations (identifier) VALUES ('v9-from-the-future')")

        let error = try await #require(throws: StateError.self) { try await PostgresStateStore.connect(url: url, sealer: nil) }
        #expect(error.description.contains("newer Stratum"), "\(error)")
        #expect(error.description.contains("v9-from-the-future"))
        // The refused database still holds its state.
        #expect(try await store.read(workspace: "w").resources.count == 1)
        try await store.dropSchemaForTesting()
    }

    @Test func aSchemaHoldingOtherTablesIsRefused() async throws {
        let url = PostgresTestServer.isolatedURL(base)
        let schema = try #require(URLComponents(string: url)?.queryItems?.first { $0.name == "schema" }?.value)
        // A store on another schema creates the foreign one, as an application sharing the database would.
        let helper = try await PostgresStateStore.connect(url: PostgresTestServer.isolatedURL(base), sealer: nil)
        try await helper.executeForTesting("CREATE SCHEMA \(schema)")
        try await helper.executeForTesting("CREATE TABLE \(schema).customers (id int)")
        let error = try await #require(throws: StateError.self) { try await PostgresStateStore.connect(url: url, sealer: nil) }
        #expect(error.description.contains("not Stratum state") && error.description.contains("customers"), "\(error)")
        try await helper.executeForTesting("DROP SCHEMA \(schema) CASCADE")
        try await helper.dropSchemaForTesting()
    }

    /// Two machines, one an hour slow and one an hour fast. Judged on client clocks, the fast one
    /// would think the slow one's fresh lease long expired and both would hold the lock; judged on
    /// the server's clock, the lease runs its 60 seconds for everyone.
    @Test func leasesAreJudgedOnTheServerClockNotTheClients() async throws {
        try await Backend.postgres.withStore(clock: { Date().addingTimeInterval(-3600) }) { subject in
            let slow = subject.store
            let fast = try await subject.reopen(sealer: nil, clock: { Date().addingTimeInterval(3600) })
            let slowNow = Date().addingTimeInterval(-3600)
            _ = try await slow.lock(workspace: "w", sampleLock("slow", at: slowNow, lease: 60), isAbandoned: { _ in false })

            let fastNow = Date().addingTimeInterval(3600)
            let refused = try await #require(throws: LockHeldError.self) {
                try await fast.lock(workspace: "w", sampleLock("fast", at: fastNow, lease: 60), isAbandoned: { _ in false })
            }
            #expect(refused.lock.id == "slow")

            // The fast machine's lease is likewise a full lease, not one already over on the slow clock.
            try await slow.unlock(workspace: "w", id: "slow")
            _ = try await fast.lock(workspace: "w", sampleLock("fast", at: fastNow, lease: 60), isAbandoned: { _ in false })
            await #expect(throws: LockHeldError.self) {
                try await slow.lock(workspace: "w", sampleLock("slow-again", at: Date().addingTimeInterval(-3600), lease: 60), isAbandoned: { _ in false })
            }

            // A lease that has run out on the server's clock is taken over, whatever the clocks say.
            try await fast.renewLock(workspace: "w", id: "fast", until: Date().addingTimeInterval(3600 - 1))
            let takeover = try await slow.lock(workspace: "w", sampleLock("slow-later", at: Date().addingTimeInterval(-3600), lease: 60), isAbandoned: { _ in false })
            #expect(takeover.replaced?.id == "fast")
            let event = try #require(try await slow.lockEvents(workspace: "w").last)
            #expect(event.kind == .takenOver && event.detail.contains("lease expired"))
        }
    }

    /// The server ends a client's connection (a restart, a failover, an administrator): the
    /// client says so as a passing condition, not as a problem with the state, and reconnects.
    @Test func droppedConnectionsAreReportedAsUnavailableAndReplaced() async throws {
        try await Backend.postgres.withStore { subject in
            let store = try #require(subject.store as? PostgresStateStore)
            try await store.commit(workspace: "w", StateMutation(upserts: [sampleResource("a")], changes: []), at: testEpoch)
            // The connection running this statement is the one the server ends.
            let error = try await #require(throws: StateUnavailableError.self) {
                try await store.executeForTesting("SELECT pg_terminate_backend(pg_backend_pid())")
            }
            #expect(error.description.contains(store.location.redacted), "\(error)")
            #expect(try await store.read(workspace: "w").resources.count == 1)
        }
    }

    @Test func closeIsIdempotentAndLaterCallsFailClearly() async throws {
        let store = try await PostgresStateStore.connect(url: PostgresTestServer.isolatedURL(base), sealer: nil)
        _ = try await store.read(workspace: "w")
        try await store.executeForTesting("DROP SCHEMA {schema} CASCADE")
        await store.close()
        await store.close()
        let error = try await #require(throws: StateError.self) { try await store.read(workspace: "w") }
        #expect(error.description.contains("closed"))
    }
}

/// Parsing state URLs needs no server.
@Suite("PostgreSQL state URL")
struct PostgresLocationTests {
    @Test func fullURL() throws {
        let location = try PostgresLocation(url: "postgres://team:p%40ss@db.internal:6543/infra?schema=stacks&sslmode=require", environment: [:])
        #expect(location.user == "team" && location.password == "p@ss")
        #expect(location.host == "db.internal" && location.port == 6543 && location.database == "infra")
        #expect(location.schema == "stacks" && location.tls == .require)
    }

    @Test func defaultsAndPasswordFromEnvironment() throws {
        let location = try PostgresLocation(url: "postgresql://team@db/infra", environment: ["PGPASSWORD": "from-env"])
        #expect(location.port == 5432 && location.schema == "stratum" && location.tls == .prefer)
        #expect(location.password == "from-env")
        let socket = try PostgresLocation(url: "postgres://team@/infra?host=/var/run/postgresql", environment: [:])
        #expect(socket.socketDirectory == "/var/run/postgresql" && socket.tls == .disable)
    }

    @Test func thePasswordNeverShows() throws {
        let location = try PostgresLocation(url: "postgres://team:TopSecret1@db:5432/infra", environment: [:])
        var dumped = ""
        dump(location, to: &dumped)
        for text in [location.redacted, "\(location)", String(reflecting: location), dumped] {
            #expect(!text.contains("TopSecret1"), "\(text)")
        }
        #expect(location.redacted == "postgres://team@db:5432/infra (schema stratum)")
    }

    @Test func badURLsAreRefusedWithoutEchoingThePassword() throws {
        for (url, expected) in [
            ("mysql://team:TopSecret1@db/infra", "must look like"),
            ("postgres://team:TopSecret1@db", "names no database"),
            ("postgres://team:TopSecret1@db/infra?schema=drop;table", "not a plain identifier"),
            ("postgres://team:TopSecret1@db/infra?sslmode=sometimes", "sslmode=sometimes"),
            ("postgres://team:TopSecret1@db/infra?colour=blue", "unknown parameter 'colour'"),
        ] {
            let error = try #require(throws: StateError.self) { try PostgresLocation(url: url, environment: [:]) }
            #expect(error.description.contains(expected), "\(error)")
            #expect(!error.description.contains("TopSecret1"), "\(error)")
        }
    }

    /// CI must exercise the PostgreSQL backend: there a missing server is a failure, not a skip.
    @Test func ciRunsThePostgresBackend() {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            #expect(PostgresTestServer.url != nil, "CI must set STRATUM_TEST_POSTGRES_URL (.ci/run starts a server)")
        }
    }
}
