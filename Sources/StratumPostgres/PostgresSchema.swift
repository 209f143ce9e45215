import Foundation
import Logging
import PostgresNIO
import StratumState

/// Stratum's tables in one PostgreSQL schema, created by named migrations applied in order and
/// recorded in `schema_migrations` (the same names as the SQLite file's). PostgreSQL DDL is
/// transactional, so a migration either applies whole or not at all.
enum PostgresSchema {
    struct Migration {
        var identifier: String
        var statements: [String]
    }

    /// Every migration this version knows, oldest first. `s` is the quoted schema name.
    static func migrations(_ s: String) -> [Migration] {
        [
            Migration(identifier: "v1-initial", statements: [
                """
                CREATE TABLE \(s).workspace (
                    name text PRIMARY KEY,
                    lineage text NOT NULL,
                    serial bigint NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now())
                """,
                """
                CREATE TABLE \(s).resource (
                    workspace text NOT NULL REFERENCES \(s).workspace (name) ON DELETE CASCADE,
                    address text NOT NULL,
                    provider text NOT NULL,
                    region text NOT NULL,
                    id text NOT NULL,
                    attributes bytea NOT NULL,
                    dependencies bytea NOT NULL,
                    PRIMARY KEY (workspace, address))
                """,
                """
                CREATE TABLE \(s).output (
                    workspace text NOT NULL REFERENCES \(s).workspace (name) ON DELETE CASCADE,
                    name text NOT NULL,
                    value bytea NOT NULL,
                    PRIMARY KEY (workspace, name))
                """,
                """
                CREATE TABLE \(s).history (
                    workspace text NOT NULL REFERENCES \(s).workspace (name) ON DELETE CASCADE,
                    serial bigint NOT NULL,
                    time timestamptz NOT NULL,
                    changes bytea NOT NULL,
                    PRIMARY KEY (workspace, serial))
                """,
                // acquired_at/expires_at are the holder's own clock, shown to people;
                // lease_expires_at is the server's clock, the only one takeovers are judged on.
                """
                CREATE TABLE \(s).state_lock (
                    workspace text PRIMARY KEY,
                    id text NOT NULL,
                    holder text NOT NULL,
                    operation text NOT NULL,
                    pid integer NOT NULL,
                    host text NOT NULL,
                    acquired_at timestamptz NOT NULL,
                    expires_at timestamptz NOT NULL,
                    lease_expires_at timestamptz NOT NULL)
                """,
            ]),
            Migration(identifier: "v2-journal", statements: [
                // What each serial changed (rows as stored, secrets still sealed), for `history --diff`.
                "ALTER TABLE \(s).history ADD COLUMN delta bytea",
                """
                CREATE TABLE \(s).pending_operation (
                    workspace text NOT NULL REFERENCES \(s).workspace (name) ON DELETE CASCADE,
                    id text NOT NULL,
                    started_at timestamptz NOT NULL,
                    operation bytea NOT NULL,
                    PRIMARY KEY (workspace, id))
                """,
                """
                CREATE TABLE \(s).lock_event (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    workspace text NOT NULL,
                    time timestamptz NOT NULL,
                    kind text NOT NULL,
                    lock_id text NOT NULL,
                    holder text NOT NULL,
                    detail text NOT NULL,
                    recorded_at timestamptz NOT NULL DEFAULT now())
                """,
                "CREATE INDEX lock_event_by_workspace ON \(s).lock_event (workspace, seq)",
            ]),
            Migration(identifier: "v3-operation-handle", statements: [
                // The handle of a long-running cloud operation, written after the row, before the wait.
                "ALTER TABLE \(s).pending_operation ADD COLUMN handle text",
            ]),
        ]
    }

    /// Refuses a schema that holds something other than Stratum state or was migrated by a newer
    /// Stratum, then applies the missing migrations. Runs in one transaction under an advisory
    /// lock, so several team members starting at once migrate exactly once.
    static func migrate(_ connection: PostgresConnection, location: PostgresLocation, logger: Logger) async throws -> [String] {
        let name = location.schema
        let s = quoted(name)
        let all = migrations(s)
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\("stratum-migrate:" + name), 0))", logger: logger)
            var schemaExists = false
            for try await _ in try await connection.query("SELECT 1 FROM pg_namespace WHERE nspname = \(name)", logger: logger) {
                schemaExists = true
            }
            var tables: Set<String> = []
            for try await table in try await connection.query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = \(name)", logger: logger
            ).decode(String.self) {
                tables.insert(table)
            }
            var applied: Set<String> = []
            if tables.contains("schema_migrations") {
                for try await identifier in try await connection.query("SELECT identifier FROM \(unescaped: s).schema_migrations", logger: logger).decode(String.self) {
                    applied.insert(identifier)
                }
            }
            if !tables.isEmpty, !(applied.contains("v1-initial") && tables.contains("workspace")) {
                throw StateError(
                    "the schema \(name) in \(location.redacted) holds tables that are not Stratum state (\(tables.sorted().joined(separator: ", "))); "
                        + "it was left untouched. Choose another schema with ?schema=name in the state URL")
            }
            let unknown = applied.subtracting(all.map(\.identifier))
            if !unknown.isEmpty {
                throw StateError(
                    "\(location.redacted) was migrated by a newer Stratum (schema \(unknown.sorted().joined(separator: ", "))); "
                        + "upgrade Stratum to use it. The database was left untouched")
            }
            if !schemaExists {
                try await connection.query("CREATE SCHEMA \(unescaped: s)", logger: logger)
            }
            if !tables.contains("schema_migrations") {
                try await connection.query(
                    "CREATE TABLE \(unescaped: s).schema_migrations (identifier text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                    logger: logger)
            }
            var ran: [String] = []
            for migration in all where !applied.contains(migration.identifier) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO \(unescaped: s).schema_migrations (identifier) VALUES (\(migration.identifier))", logger: logger)
                ran.append(migration.identifier)
            }
            try await connection.query("COMMIT", logger: logger)
            return ran
        } catch {
            if !connection.isClosed, !PostgresFailure.isConnectionLoss(error) {
                _ = try? await connection.query("ROLLBACK", logger: logger)
            }
            throw error
        }
    }

    /// A schema name as an SQL identifier; `PostgresLocation` admits only plain identifiers.
    static func quoted(_ name: String) -> String { "\"\(name)\"" }
}
