import StratumCore
import StratumEngine
import StratumTesting
import Testing

/// Refresh batches by the key a kind gives, not by a fixed (type, region).
@Suite("Refresh batch keys")
struct BatchKeyTests {
    /// A synthetic kind whose cloud lists everything of an account in one call.
    struct AccountWide: ResourceKind {
        let inner: any ResourceKind
        var type: String { inner.type }
        var schema: ResourceSchema { inner.schema }
        func batchKey(_ state: ResourceState) -> String { "account" }
        func read(_ resources: [ResourceState]) async throws -> [ResourceState?] { try await inner.read(resources) }
        func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState { try await inner.create(resource, context: context) }
        func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState { try await inner.update(prior, to: desired) }
        func delete(_ state: ResourceState, context: OperationContext) async throws { try await inner.delete(state, context: context) }
        func recover(_ operation: PendingOperation) async throws -> ResourceState? { try await inner.recover(operation) }
    }

    /// The synthetic cloud with its disks listed per account.
    struct DisksPerAccount: Provider {
        let cloud: SyntheticProvider
        var name: String { cloud.name }
        var kinds: [String: any ResourceKind] {
            var kinds = cloud.kinds
            kinds["synthetic_disk"] = kinds["synthetic_disk"].map { AccountWide(inner: $0) }
            return kinds
        }
    }

    @Test func aKindsBatchKeyDecidesWhichResourcesShareARead() async throws {
        let cloud = SyntheticProvider(latency: .zero)
        var states: [ResourceAddress: ResourceState] = [:]
        for i in 0..<24 {
            let type = i % 2 == 0 ? "synthetic_instance" : "synthetic_disk"
            let address = ResourceAddress(type: type, name: "r", index: i)
            states[address] = ResourceState(address: address, provider: "synthetic", region: "region-\(i % 3)", id: "id-\(i)", attributes: [:])
        }
        cloud.seed(states.values.filter { $0.id != "id-5" })
        let result = try await Refresher(providers: ProviderRegistry([DisksPerAccount(cloud: cloud)])).refresh(states)
        // Instances: one read per region (3); disks: one for the whole account.
        #expect(result.readCalls == 4)
        #expect(cloud.callCounts()["read"] == 4)
        #expect(result.live.filter { $0.value == nil }.map(\.key) == [ResourceAddress(type: "synthetic_disk", name: "r", index: 5)])
        #expect(result.existing.count == 23)
    }
}
