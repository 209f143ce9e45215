import StratumCore
import StratumEngine
import StratumTesting
import Testing

/// Refresh batches by the key a kind gives, not by a fixed (type, region).
@Suite("Refresh batch keys")
struct BatchKeyTests {
    /// A synthetic kind whose cloud lists everything of an account in one call.
    struct AccountWide: ForwardingKind {
        let inner: any ResourceKind
        func batchKey(_ state: ResourceState) -> String { "account" }
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
        let states = alternatingStates(24, regions: 3)
        cloud.seed(states.values.filter { $0.id != "id-5" })
        let result = try await Refresher(providers: ProviderRegistry([DisksPerAccount(cloud: cloud)])).refresh(states)
        // Instances: one read per region (3); disks: one for the whole account.
        #expect(result.readCalls == 4)
        #expect(cloud.callCounts()["read"] == 4)
        #expect(result.live.filter { $0.value == nil }.map(\.key) == [ResourceAddress(type: "synthetic_disk", name: "r", index: 5)])
        #expect(result.existing.count == 23)
    }
}

/// `count` synthetic resources in state, instances and disks by turns, spread over `regions`
/// regions in turn; resource `i` has id `id-i`.
func alternatingStates(_ count: Int, regions: Int) -> [ResourceAddress: ResourceState] {
    var states: [ResourceAddress: ResourceState] = [:]
    for i in 0..<count {
        let type = i % 2 == 0 ? "synthetic_instance" : "synthetic_disk"
        let address = ResourceAddress(type: type, name: "r", index: i)
        states[address] = ResourceState(address: address, provider: "synthetic", region: "region-\(i % regions)", id: "id-\(i)", attributes: [:])
    }
    return states
}
