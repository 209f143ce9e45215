import Foundation
import GRDB
import StratumCore
@testable import StratumState
import StratumTesting
import Testing

@Suite("SQLite state: first use, read-only, empty files, undecodable rows", .timeLimit(.minutes(3)))
struct SQLiteEdgeCaseTests {
    func listing(_ root: URL) -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: root.path)) ?? []).sorted()
    }

    /// Opens stores on `path` from `count` threads at once (plain threads: opening blocks on
    /// SQLite's lock), then reads the workspace through each; returns the lineages.
    func openTogether(_ path: String, count: Int) async throws -> [String] {
        let opened = LockedArray<Result<SQLiteStateStore, any Error>>(count: count)
        together(count) { index in
            opened[index] = Result { try SQLiteStateStore(path: path) }
        }
        let stores = try opened.values.map { try $0.get() }
        #expect(stores.count == count)
        return try await withThrowingTaskGroup(of: String.self) { group in
            for store in stores { group.addTask { try await store.read(workspace: "w").lineage } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test func manyFirstOpensOfANewFileAgreeOnOneState() async throws {
        for _ in 0..<5 {
            let dir = try TestSupport.temporaryDirectory("first-open")
            let path = dir.appendingPathComponent("a/b/state.db").path
            let lineages = try await openTogether(path, count: 8)
            #expect(lineages.count == 8)
            #expect(Set(lineages).count == 1, "every opener sees the one workspace")
            // Nothing half-made is left beside it.
            #expect(listing(dir.appendingPathComponent("a/b")).filter { !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") } == ["state.db"])
        }
    }

    @Test func concurrentOpensOfAnOldFileMigrateItOnce() async throws {
        let dir = try TestSupport.temporaryDirectory("migrate-race")
        let path = dir.appendingPathComponent("state.db").path
        let queue = try DatabaseQueue(path: path)
        try SQLiteStateStore.migrator.migrate(queue, upTo: "v1-initial")
        try await queue.write { try $0.execute(sql: "INSERT INTO workspace (name, lineage, serial, createdAt) VALUES ('w', 'lin-1', 3, '2026-01-01 00:00:00')") }
        try queue.close()

        let lineages = try await openTogether(path, count: 6)
        #expect(lineages == Array(repeating: "lin-1", count: 6))
        let backups = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".backup-") }
        #expect(backups.count == 1, "exactly one process migrated: \(backups)")
    }

    @Test func anEmptyFileIsReportedNotTreatedAsNew() async throws {
        let dir = try TestSupport.temporaryDirectory("empty")
        let path = dir.appendingPathComponent("state.db").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        #expect { try SQLiteStateStore(path: path) } throws: { "\($0)".contains("is empty (0 bytes)") }
        #expect { try SQLiteStateStore.openForReading(path: path) } throws: { "\($0)".contains("is empty (0 bytes)") }
        #expect(listing(dir) == ["state.db"])
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) == 0)
    }

    @Test func aDirectoryIsNotAStateFile() throws {
        let dir = try TestSupport.temporaryDirectory("dir-state")
        #expect { try SQLiteStateStore(path: dir.path) } throws: { "\($0)".contains("is a directory, not a state file") }
        #expect { try SQLiteStateStore.openForReading(path: dir.path) } throws: { "\($0)".contains("is a directory") }
        #expect(listing(dir).isEmpty)
        // Nor is a path below a file.
        let file = dir.appendingPathComponent("plain")
        #expect(FileManager.default.createFile(atPath: file.path, contents: Data("x".utf8)))
        for path in [file.appendingPathComponent("state.db").path, file.appendingPathComponent("a/state.db").path] {
            #expect { try SQLiteStateStore(path: path) } throws: { "\($0)".contains("\(file.path) is a file, not a directory") }
            #expect { try SQLiteStateStore.openForReading(path: path) } throws: { "\($0)".contains("\(file.path) is a file, not a directory") }
        }
        #expect(listing(dir) == ["plain"])
    }

    @Test func readingAMissingFileCreatesNothing() async throws {
        let dir = try TestSupport.temporaryDirectory("missing")
        let store = try SQLiteStateStore.openForReading(path: dir.appendingPathComponent("x/y/state.db").path)
        let snapshot = try await store.read(workspace: "w")
        #expect(snapshot.serial == 0 && snapshot.resources.isEmpty)
        #expect(listing(dir).isEmpty)
    }

    @Test func aReadOnlyFileInAReadOnlyDirectoryIsReadAndNothingIsCreated() async throws {
        let dir = try TestSupport.temporaryDirectory("read-only")
        let path = dir.appendingPathComponent("state.db").path
        do {
            let store = try SQLiteStateStore(path: path)
            try await store.commit(workspace: "w", StateMutation(upserts: [sampleResource("a")], outputs: ["o": "v"], changes: [HistoryChange(address: "fake_thing.a", action: "create")]), at: Date())
            try store.close()
        }
        #expect(listing(dir) == ["state.db"], "closing the last connection folds the WAL in")
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: dir.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir.path) }

        let store = try SQLiteStateStore.openForReading(path: path)
        let snapshot = try await store.read(workspace: "w")
        #expect(snapshot.serial == 1)
        #expect(snapshot.resources.keys.map(\.name) == ["a"])
        #expect(snapshot.outputs["o"] == "v")
        #expect(try await store.history(workspace: "w").count == 1)
        #expect(try await store.pendingOperations(workspace: "w").isEmpty)
        // A workspace never written reads as empty and is not added.
        #expect(try await store.read(workspace: "other").serial == 0)
        #expect(try await store.workspaces() == ["w"])
        #expect(listing(dir) == ["state.db"])
    }

    @Test func anUndecodableRowIsNamedAndCanStillBeRemoved() async throws {
        let dir = try TestSupport.temporaryDirectory("bad-row")
        let path = dir.appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        try await store.commit(workspace: "w", StateMutation(upserts: ["a", "b", "c"].map { sampleResource($0) }, changes: []), at: Date())
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "UPDATE resource SET attributes = CAST('[1, 2' AS BLOB) WHERE address = 'fake_thing.b'")
            try db.execute(sql: "UPDATE resource SET dependencies = CAST('{\"no\": 1}' AS BLOB) WHERE address = 'fake_thing.c'")
        }
        try queue.close()

        let error = try await #require(throws: UndecodableResourcesError.self) { try await store.read(workspace: "w") }
        #expect(error.addresses == ["fake_thing.b", "fake_thing.c"])
        #expect(error.description.contains("fake_thing.b (attributes: malformed"))
        #expect(error.description.contains("fake_thing.c (dependencies: expected"))
        #expect(error.description.contains("stratum state rm fake_thing.b"))

        // Removal needs no decoding of the row it removes.
        let address = try #require(ResourceAddress(parsing: "fake_thing.b"))
        let other = try #require(ResourceAddress(parsing: "fake_thing.c"))
        try await store.commit(workspace: "w", StateMutation(removals: [address, other], changes: [HistoryChange(address: "fake_thing.b", action: "rm")]), at: Date())
        let snapshot = try await store.read(workspace: "w")
        #expect(snapshot.resources.keys.map(\.name) == ["a"])
    }
}

/// Runs `body` on `count` threads of their own, released together; returns when all are done.
func together(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let line = StartLine(count: count)
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        Thread {
            line.wait()
            body(index)
            done.leave()
        }.start()
    }
    done.wait()
}

/// Holds threads until `count` have arrived, so they start their work together.
final class StartLine: @unchecked Sendable {
    private let condition = NSCondition()
    private var arrived = 0
    private let count: Int
    init(count: Int) { self.count = count }
    func wait() {
        condition.lock()
        defer { condition.unlock() }
        arrived += 1
        condition.broadcast()
        while arrived < count { condition.wait() }
    }
}

/// Results written from several threads, each into its own slot.
final class LockedArray<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [T?]
    init(count: Int) { storage = Array(repeating: nil, count: count) }
    subscript(index: Int) -> T? {
        get { lock.withLock { storage[index] } }
        set { lock.withLock { storage[index] = newValue } }
    }
    var values: [T] { lock.withLock { storage.compactMap { $0 } } }
}
