import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

/// The contract every StateStore backend must meet; each test runs against every backend.
@Suite("StateStore contract")
struct StateStoreContractTests {
    @Test(arguments: Backend.contract)
    func roundTripAndSerials(_ backend: Backend) async throws {
        try await backend.withStore { subject in
            let store = subject.store
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

            // Outputs are replaced whole, and an empty set clears them.
            try await store.commit(workspace: "s/dev", StateMutation(outputs: [:], changes: []), at: Date(timeIntervalSince1970: 300))
            #expect(try await store.read(workspace: "s/dev").outputs.isEmpty)

            let history = try await store.history(workspace: "s/dev")
            #expect(history.map(\.serial) == [1, 2, 3])
            #expect(history.map { $0.changes.first?.action } == ["create", "delete", nil])
            #expect(history.first?.time == Date(timeIntervalSince1970: 100))

            // Workspaces are independent.
            #expect(try await store.read(workspace: "s/prod").resources.isEmpty)
            #expect(try await store.read(workspace: "s/prod").lineage != empty.lineage)
            #expect(try await store.workspaces() == ["s/dev", "s/prod"])
        }
    }

    @Test(arguments: Backend.contract)
    func historyDeltasHoldBeforeAndAfter(_ backend: Backend) async throws {
        try await backend.withStore { subject in
            let store = subject.store
            let v1 = sampleResource("a", value: "one"), v2 = sampleResource("a", value: "two")
            let other = sampleResource("b")
            try await store.commit(workspace: "w", StateMutation(upserts: [v1, other], changes: [HistoryChange(address: "fake_thing.a", action: "create")]), at: testEpoch)
            try await store.commit(workspace: "w", StateMutation(upserts: [v2], changes: [HistoryChange(address: "fake_thing.a", action: "update")]), at: testEpoch.addingTimeInterval(1))
            try await store.commit(workspace: "w", StateMutation(removals: [v2.address], changes: [HistoryChange(address: "fake_thing.a", action: "delete")]), at: testEpoch.addingTimeInterval(2))

            let create = try #require(try await store.delta(workspace: "w", serial: 1))
            #expect(create.before.isEmpty)
            #expect(create.after == [v1.address: v1, other.address: other])
            #expect(create.changes == [HistoryChange(address: "fake_thing.a", action: "create")])
            #expect(create.time == testEpoch)

            let update = try #require(try await store.delta(workspace: "w", serial: 2))
            #expect(update.before == [v1.address: v1])
            #expect(update.after == [v2.address: v2])
            #expect(update.addresses == [v1.address])

            let delete = try #require(try await store.delta(workspace: "w", serial: 3))
            #expect(delete.before == [v2.address: v2])
            #expect(delete.after.isEmpty)
            #expect(delete.changes.map(\.action) == ["delete"])

            #expect(try await store.delta(workspace: "w", serial: 4) == nil)
            #expect(try await store.delta(workspace: "elsewhere", serial: 1) == nil)
        }
    }

    @Test(arguments: Backend.contract)
    func journalRowsAreListedInOrderAndSettled(_ backend: Backend) async throws {
        try await backend.withStore { subject in
            let store = subject.store
            let first = sampleOperation("a", startedAt: testEpoch)
            let second = sampleOperation("b", startedAt: testEpoch.addingTimeInterval(1), action: .update)
            let third = sampleOperation("c", startedAt: testEpoch.addingTimeInterval(2), action: .delete, inputs: [:])
            for operation in [first, second, third] { try await store.beginOperation(workspace: "w", operation) }
            try await store.beginOperation(workspace: "other", sampleOperation("z", startedAt: testEpoch))

            #expect(try await store.pendingOperations(workspace: "w") == [first, second, third])
            #expect(try await store.pendingOperations(workspace: "other").map(\.id) == ["op-z"])
            #expect(try await store.pendingOperations(workspace: "nothing-here").isEmpty)

            // Settling alone changes no state and bumps no serial; unknown ids are ignored.
            let serial = try await store.read(workspace: "w").serial
            try await store.settleOperations(workspace: "w", ids: [first.id, "op-unknown"])
            #expect(try await store.pendingOperations(workspace: "w") == [second, third])
            #expect(try await store.read(workspace: "w").serial == serial)

            // A commit settles its journal rows in the same transaction as the new state.
            let updated = sampleResource("b", value: "after")
            let committed = try await store.commit(
                workspace: "w", StateMutation(upserts: [updated], changes: [HistoryChange(address: "fake_thing.b", action: "update")], settles: [second.id]),
                at: testEpoch.addingTimeInterval(3))
            #expect(committed == serial + 1)
            #expect(try await store.pendingOperations(workspace: "w") == [third])
            #expect(try await store.read(workspace: "w").resources[updated.address] == updated)
            // Another workspace's row with the same id is not touched.
            try await store.settleOperations(workspace: "w", ids: ["op-z"])
            #expect(try await store.pendingOperations(workspace: "other").map(\.id) == ["op-z"])
        }
    }

    @Test(arguments: Backend.contract)
    func concurrentCommitsGetDistinctSerials(_ backend: Backend) async throws {
        try await backend.withStore { subject in
            let store = subject.store
            let count = 16
            let serials = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await store.commit(
                            workspace: "w", StateMutation(upserts: [sampleResource("r", index: index)], changes: [HistoryChange(address: "fake_thing.r[\(index)]", action: "create")]),
                            at: testEpoch)
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(serials.sorted() == Array(1...count))
            let snapshot = try await store.read(workspace: "w")
            #expect(snapshot.serial == count && snapshot.resources.count == count)
            #expect(try await store.history(workspace: "w").map(\.serial) == Array(1...count))
        }
    }

    @Test(arguments: Backend.contract)
    func severalStacksShareOneStoreIndependently(_ backend: Backend) async throws {
        try await backend.withStore(clock: { testEpoch }) { subject in
            let store = subject.store
            let stacks = ["network/prod", "training/prod", "training/dev"]
            for (number, stack) in stacks.enumerated() {
                for serial in 0...number {
                    try await store.commit(workspace: stack, StateMutation(upserts: [sampleResource("\(stack.replacingOccurrences(of: "/", with: "_"))_\(serial)")], changes: []), at: testEpoch)
                }
            }
            #expect(try await store.workspaces() == stacks.sorted())
            var lineages: Set<String> = []
            for (number, stack) in stacks.enumerated() {
                let snapshot = try await store.read(workspace: stack)
                #expect(snapshot.serial == number + 1)
                #expect(snapshot.resources.count == number + 1)
                #expect(snapshot.resources.values.allSatisfy { $0.address.name.hasPrefix(stack.replacingOccurrences(of: "/", with: "_")) })
                #expect(try await store.history(workspace: stack).count == number + 1)
                lineages.insert(snapshot.lineage)
            }
            #expect(lineages.count == stacks.count)

            // One stack's lock does not hold up another's.
            _ = try await store.lock(workspace: "training/prod", sampleLock("one", at: testEpoch), isAbandoned: { _ in false })
            _ = try await store.lock(workspace: "training/dev", sampleLock("two", at: testEpoch), isAbandoned: { _ in false })
            #expect(try await store.currentLock(workspace: "network/prod") == nil)
            #expect(try await store.lockEvents(workspace: "training/prod").map(\.lockID) == ["one"])
            try await store.unlock(workspace: "training/dev", id: "two")
            #expect(try await store.currentLock(workspace: "training/prod")?.id == "one")
        }
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
