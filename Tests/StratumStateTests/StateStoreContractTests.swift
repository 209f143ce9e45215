import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

/// The contract every StateStore backend must meet; each test runs against every backend.
enum Backend: String, CaseIterable, CustomTestStringConvertible {
    case memory, sqlite
    var testDescription: String { rawValue }

    func make() throws -> any StateStore {
        switch self {
        case .memory: return InMemoryStateStore()
        case .sqlite: return try SQLiteStateStore(path: try TestSupport.temporaryDirectory("state").appendingPathComponent("nested/state.db").path)
        }
    }
}

func sampleResource(_ name: String, index: Int? = nil, value: Value = "v") -> ResourceState {
    ResourceState(
        address: ResourceAddress(type: "fake_thing", name: name, index: index), provider: "fake", region: "r1", id: "id-\(name)-\(index ?? -1)",
        attributes: ["value": value, "nested": ["list": [1, 2], "flag": true]], dependencies: [ResourceAddress(type: "fake_thing", name: "root")])
}

@Suite("StateStore contract")
struct StateStoreContractTests {
    @Test(arguments: Backend.allCases)
    func roundTripAndSerials(_ backend: Backend) async throws {
        let store = try backend.make()
        let empty = try await store.read(workspace: "s/dev")
        #expect(empty.serial == 0 && empty.resources.isEmpty)
        #expect(try await store.read(workspace: "s/dev").lineage == empty.lineage)

        let a = sampleResource("a"), b = sampleResource("b", index: 2)
        let serial = try await store.commit(workspace: "s/dev", StateMutation(upserts: [a, b], outputs: ["url": "file:///x"], changes: [HistoryChange(address: "fake_thing.a", action: "create")]), at: Date(timeIntervalSince1970: 100))
        #expect(serial == 1)
        let after = try await store.read(workspace: "s/dev")
        #expect(after.lineage == empty.lineage)
        #expect(after.resources[a.address] == a)
        #expect(after.resources[b.address] == b)
        #expect(after.outputs == ["url": "file:///x"])

        try await store.commit(workspace: "s/dev", StateMutation(removals: [a.address], changes: [HistoryChange(address: "fake_thing.a", action: "delete")]), at: Date(timeIntervalSince1970: 200))
        let final = try await store.read(workspace: "s/dev")
        #expect(final.serial == 2)
        #expect(final.resources.keys.map(\.description) == ["fake_thing.b[2]"])
        #expect(final.outputs == ["url": "file:///x"])

        let history = try await store.history(workspace: "s/dev")
        #expect(history.map(\.serial) == [1, 2])
        #expect(history.map { $0.changes.first?.action } == ["create", "delete"])
        #expect(history.first?.time == Date(timeIntervalSince1970: 100))

        // Workspaces are independent.
        #expect(try await store.read(workspace: "s/prod").resources.isEmpty)
        #expect(try await store.read(workspace: "s/prod").lineage != empty.lineage)
        #expect(try await store.workspaces() == ["s/dev", "s/prod"])
    }

    @Test(arguments: Backend.allCases)
    func lockIsExclusiveUntilReleasedOrExpired(_ backend: Backend) async throws {
        let store = try backend.make()
        let now = Date()
        let first = LockInfo(id: "one", holder: "a@h", operation: "apply", pid: 1, host: "h", acquiredAt: now, expiresAt: now.addingTimeInterval(60))
        let second = LockInfo(id: "two", holder: "b@h", operation: "apply", pid: 2, host: "h", acquiredAt: now, expiresAt: now.addingTimeInterval(60))
        _ = try await store.lock(workspace: "w", first, isAbandoned: { _ in false })
        let error = try await #require(throws: LockHeldError.self) { try await store.lock(workspace: "w", second, isAbandoned: { _ in false }) }
        #expect(error.lock.id == "one")
        #expect(error.description.contains("a@h") && error.description.contains("force-unlock one"))

        // The wrong id cannot release it.
        await #expect(throws: StateError.self) { try await store.unlock(workspace: "w", id: "two") }

        // An abandoned holder (its process died) is taken over.
        _ = try await store.lock(workspace: "w", second, isAbandoned: { $0.id == "one" })
        #expect(try await store.currentLock(workspace: "w")?.id == "two")

        // An expired lease is taken over too.
        let later = now.addingTimeInterval(120)
        let third = LockInfo(id: "three", holder: "c@h", operation: "plan", pid: 3, host: "h", acquiredAt: later, expiresAt: later.addingTimeInterval(60))
        _ = try await store.lock(workspace: "w", third, isAbandoned: { _ in false })
        try await store.renewLock(workspace: "w", id: "three", until: later.addingTimeInterval(600))
        let renewed = try #require(try await store.currentLock(workspace: "w"))
        #expect(abs(renewed.expiresAt.timeIntervalSince(later.addingTimeInterval(600))) < 0.01)
        try await store.unlock(workspace: "w", id: "three")
        #expect(try await store.currentLock(workspace: "w") == nil)
    }
}

@Suite("SQLite state file")
struct SQLiteFileTests {
    @Test func fileIsPrivateAndSurvivesReopen() async throws {
        let path = try TestSupport.temporaryDirectory("state").appendingPathComponent("state.db").path
        let lineage: String
        do {
            let store = try SQLiteStateStore(path: path)
            lineage = try await store.read(workspace: "w").lineage
            try await store.commit(workspace: "w", StateMutation(upserts: [sampleResource("a")], changes: []), at: Date())
        }
        let mode = try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode & 0o777 == 0o600)
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            let sidecar = try #require(FileManager.default.attributesOfItem(atPath: path + suffix)[.posixPermissions] as? Int)
            #expect(sidecar & 0o077 == 0)
        }
        let reopened = try SQLiteStateStore(path: path)
        let snapshot = try await reopened.read(workspace: "w")
        #expect(snapshot.lineage == lineage)
        #expect(snapshot.serial == 1)
        #expect(snapshot.resources.count == 1)
    }

    @Test func unreadableFileGivesAClearError() throws {
        let dir = try TestSupport.temporaryDirectory("state")
        let path = dir.appendingPathComponent("state.db").path
        try Data("this is not a database at all, just text that goes on for a while...".utf8).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: StateError.self) { try SQLiteStateStore(path: path) }
        #expect(error.description.contains(path))
    }
}
