import Foundation
import StratumCore
import StratumState
import Testing

/// Secrets at rest, on every backend that keeps state at rest (memory encodes nothing).
@Suite("StateStore contract: sealed secrets")
struct SealingContractTests {
    static let marker = "hunter2-plaintext-marker"
    static let teamKey = StateKey(.material("team key shared through the secret manager"))

    /// A resource, an output and a journal row, each carrying the marker as a secret.
    static func writeSecrets(to store: any StateStore) async throws -> (ResourceState, PendingOperation) {
        var resource = sampleResource("db")
        resource.attributes["password"] = .sensitive(.string(marker))
        resource.attributes["nested"] = ["token": .sensitive(.string(marker + "-nested")), "plain": "visible"]
        try await store.commit(
            workspace: "w", StateMutation(upserts: [resource], outputs: ["dsn": .sensitive(.string("postgres://app:\(marker)@db"))], changes: [HistoryChange(address: "fake_thing.db", action: "create")]),
            at: testEpoch)
        let operation = sampleOperation("db", startedAt: testEpoch, action: .update, inputs: ["password": .sensitive(.string(marker))])
        try await store.beginOperation(workspace: "w", operation)
        return (resource, operation)
    }

    @Test(arguments: Backend.persistent)
    func secretsRoundTripAndAreNeverStoredInPlainText(_ backend: Backend) async throws {
        try await backend.withStore(sealer: Self.teamKey) { subject in
            let store = subject.store
            let (resource, operation) = try await Self.writeSecrets(to: store)
            // Updated once more so the history delta holds the secret both before and after.
            var updated = resource
            updated.attributes["size"] = 2
            try await store.commit(workspace: "w", StateMutation(upserts: [updated], changes: [HistoryChange(address: "fake_thing.db", action: "update")]), at: testEpoch)

            let snapshot = try await store.read(workspace: "w")
            #expect(snapshot.resources[resource.address] == updated)
            #expect(snapshot.outputs["dsn"] == .sensitive(.string("postgres://app:\(Self.marker)@db")))
            #expect(try await store.pendingOperations(workspace: "w") == [operation])
            let delta = try #require(try await store.delta(workspace: "w", serial: 2))
            #expect(delta.before[resource.address] == resource && delta.after[resource.address] == updated)

            let stored = try #require(try await subject.storedBytes())
            #expect(stored.count > 0)
            #expect(stored.range(of: Data(Self.marker.utf8)) == nil, "a secret is stored in plain text")
            #expect(stored.range(of: Data("$stratum.sealed".utf8)) != nil, "no sealed value found at rest")
            #expect(stored.range(of: Data("visible".utf8)) != nil, "plain values are stored as they are")
        }
    }

    @Test(arguments: Backend.persistent)
    func aWrongOrMissingKeyGivesAClearError(_ backend: Backend) async throws {
        try await backend.withStore(sealer: Self.teamKey) { subject in
            _ = try await Self.writeSecrets(to: subject.store)

            let wrong = try await subject.reopen(sealer: StateKey(.material("someone else's key")))
            let readError = try await #require(throws: StateError.self) { try await wrong.read(workspace: "w") }
            #expect(readError.description.contains("wrong key"))
            #expect(readError.description.contains("STRATUM_STATE_KEY"))
            await #expect(throws: StateError.self) { try await wrong.pendingOperations(workspace: "w") }
            await #expect(throws: StateError.self) { try await wrong.delta(workspace: "w", serial: 1) }

            let keyless = try await subject.reopen(sealer: nil)
            let keylessError = try await #require(throws: StateError.self) { try await keyless.read(workspace: "w") }
            #expect(keylessError.description.contains("state key"))

            // Nor can a secret be written without a key: the commit is refused and changes nothing.
            var secret = sampleResource("other")
            secret.attributes["password"] = .sensitive("x")
            let serial = try await subject.store.read(workspace: "w").serial
            await #expect(throws: StateError.self) {
                try await keyless.commit(workspace: "w", StateMutation(upserts: [secret], changes: []), at: testEpoch)
            }
            #expect(try await subject.store.read(workspace: "w").serial == serial)
        }
    }
}
