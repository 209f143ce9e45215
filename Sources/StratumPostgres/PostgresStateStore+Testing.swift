import Foundation
import PostgresNIO
import StratumState

// Hooks for the contract tests (same package only): they look at what is stored byte for byte,
// plant a future migration, and drop their private schema.
extension PostgresStateStore {
    /// Every value column as the server stores it: the bytea columns raw, the rest as text.
    package func storedBytesForTesting() async throws -> [Data] {
        try await transaction("read raw rows from") { connection in
            var found: [Data] = []
            let binary = [("resource", "attributes"), ("resource", "dependencies"), ("output", "value"), ("history", "changes"),
                          ("history", "delta"), ("pending_operation", "operation")]
            for (table, column) in binary {
                for row in try await rows(connection, PostgresQuery(unsafeSQL: "SELECT \(column) FROM \(s).\(table) WHERE \(column) IS NOT NULL")) {
                    found.append(try row.decode(Data.self))
                }
            }
            for table in ["workspace", "resource", "output", "history", "state_lock", "pending_operation", "lock_event"] {
                for row in try await rows(connection, PostgresQuery(unsafeSQL: "SELECT t::text FROM \(s).\(table) t")) {
                    found.append(Data(try row.decode(String.self).utf8))
                }
            }
            return found
        }
    }

    /// Runs `sql` with `{schema}` replaced by the quoted schema name.
    package func executeForTesting(_ sql: String) async throws {
        let statement = sql.replacingOccurrences(of: "{schema}", with: s)
        try await transaction("run a test statement in") { connection in
            try await execute(connection, PostgresQuery(unsafeSQL: statement))
        }
    }

    /// Drops this store's schema and everything in it, then closes the store.
    package func dropSchemaForTesting() async throws {
        try await executeForTesting("DROP SCHEMA IF EXISTS {schema} CASCADE")
        await close()
    }
}
