import Crypto
import Foundation
import GRDB
import StratumCore
@testable import StratumState
import StratumTesting
import Testing

@Suite("SQLite state: bad, foreign and full files")
struct SQLiteBadStateTests {
    func digest(_ path: String) -> String {
        SHA256.hash(data: FileManager.default.contents(atPath: path) ?? Data()).description
    }

    func resource(_ name: String, blob: Int = 10) -> ResourceState {
        ResourceState(address: ResourceAddress(type: "fake_thing", name: name), provider: "fake", id: "id-\(name)", attributes: ["blob": .string(String(repeating: "x", count: blob))])
    }

    @Test func aCorruptFileIsRefusedUntouched() throws {
        let path = try TestSupport.temporaryDirectory("corrupt").appendingPathComponent("state.db").path
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: path))
        let before = digest(path)
        #expect { try SQLiteStateStore(path: path) } throws: { "\($0)".contains("not a readable state file") }
        #expect(digest(path) == before)
    }

    @Test func aForeignSQLiteFileIsRefusedUntouched() throws {
        let path = try TestSupport.temporaryDirectory("foreign").appendingPathComponent("app.db").path
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada')") }
        try queue.close()
        let before = digest(path)
        #expect { try SQLiteStateStore(path: path) } throws: { "\($0)".contains("not Stratum state") && "\($0)".contains("users") }
        #expect(digest(path) == before)
    }

    @Test func stateFromANewerStratumIsRefusedUntouched() async throws {
        let path = try TestSupport.temporaryDirectory("newer").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        try await store.commit(workspace: "w", StateMutation(upserts: [resource("a")], changes: []), at: Date())
        let queue = try DatabaseQueue(path: path)
        try await queue.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9-from-the-future')") }
        try queue.close()
        let before = digest(path)
        #expect { try SQLiteStateStore(path: path) } throws: { "\($0)".contains("newer Stratum") }
        #expect(digest(path) == before)
    }

    @Test func aMigrationIsPrecededByABackup() async throws {
        let dir = try TestSupport.temporaryDirectory("migrate")
        let path = dir.appendingPathComponent("state.db").path
        // A state file as the first schema wrote it.
        let queue = try DatabaseQueue(path: path)
        try SQLiteStateStore.migrator.migrate(queue, upTo: "v1-initial")
        try await queue.write { db in
            try db.execute(sql: "INSERT INTO workspace (name, lineage, serial, createdAt) VALUES ('w', 'lin-1', 3, '2026-01-01 00:00:00')")
            try db.execute(sql: "INSERT INTO resource VALUES ('w', 'fake_thing.a', 'fake', 'default', 'id-a', CAST('{}' AS BLOB), CAST('[]' AS BLOB))")
        }
        try queue.close()

        let store = try SQLiteStateStore(path: path)
        let backup = try #require(store.migrationBackup)
        #expect(FileManager.default.fileExists(atPath: backup))
        let mode = try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // The backup is the old schema with the old data; the store has both migrated.
        let old = try DatabaseQueue(path: backup)
        #expect(try await old.read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations") } == ["v1-initial"])
        #expect(try await old.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM resource") } == 1)
        let snapshot = try await store.read(workspace: "w")
        #expect(snapshot.lineage == "lin-1")
        #expect(snapshot.serial == 3)
        #expect(snapshot.resources.keys.map(\.description) == ["fake_thing.a"])
        // Opening again migrates nothing and takes no second backup.
        #expect(try SQLiteStateStore(path: path).migrationBackup == nil)
    }

    @Test func aFullDiskDuringCommitLosesNothing() async throws {
        let path = try TestSupport.temporaryDirectory("full").appendingPathComponent("state.db").path
        // The file may not grow past its size after the first commits: the disk is "full".
        let setup = try SQLiteStateStore(path: path)
        try await setup.commit(workspace: "w", StateMutation(upserts: [resource("a"), resource("b")], changes: []), at: Date())
        let store = try SQLiteStateStore(path: path, sealer: nil, prepare: { db in
            let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            try db.execute(sql: "PRAGMA max_page_count = \(pages + 2)")
        })
        let big = (0..<50).map { resource("big\($0)", blob: 20_000) }
        await #expect { try await store.commit(workspace: "w", StateMutation(upserts: big, changes: []), at: Date()) } throws: { error in
            "\(error)".contains("is full") && "\(error)".contains("unchanged")
        }
        let snapshot = try await SQLiteStateStore(path: path).read(workspace: "w")
        #expect(snapshot.serial == 1)
        #expect(Set(snapshot.resources.keys.map(\.name)) == ["a", "b"])
    }
}
