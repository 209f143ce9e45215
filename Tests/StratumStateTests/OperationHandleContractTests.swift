import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

/// The journal keeps the handle of a long-running cloud operation with its row, on every backend.
@Suite("StateStore contract: operation handles")
struct OperationHandleContractTests {
    @Test(arguments: Backend.contract)
    func aRecordedHandleIsReturnedWithItsRowAndSurvivesReopening(_ backend: Backend) async throws {
        try await backend.withStore { subject in
            let store = subject.store
            let first = sampleOperation("a", startedAt: testEpoch)
            let second = sampleOperation("b", startedAt: testEpoch.addingTimeInterval(1))
            try await store.beginOperation(workspace: "w", first)
            try await store.beginOperation(workspace: "w", second)
            #expect(try await store.pendingOperations(workspace: "w").map(\.handle) == [nil, nil])

            try await store.recordOperationHandle(workspace: "w", id: second.id, handle: "operations/op-123")
            // Another workspace's row of the same id is not touched.
            try await store.recordOperationHandle(workspace: "other", id: first.id, handle: "operations/elsewhere")
            var expected = second
            expected.handle = "operations/op-123"
            #expect(try await store.pendingOperations(workspace: "w") == [first, expected])

            if backend != .memory {
                let reopened = try await subject.reopen(sealer: nil)
                #expect(try await reopened.pendingOperations(workspace: "w").map(\.handle) == [nil, "operations/op-123"])
            }
            // Settling removes the row, handle and all.
            try await store.settleOperations(workspace: "w", ids: [second.id])
            #expect(try await store.pendingOperations(workspace: "w") == [first])
        }
    }
}
