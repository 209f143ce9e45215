import Foundation
import StratumCore
import Testing
@testable import StratumAzure

/// The ownership tags of an ephemeral environment's resources carry its owner and expiry, and
/// are Stratum's own (not the stack's tags).
@Suite("Azure ownership tags")
struct AzureOwnershipTagTests {
    @Test func anEnvironmentsResourcesCarryOwnerAndExpiry() {
        let resource = ResolvedResource(
            address: ResourceAddress(type: "azure_virtual_machine", name: "worker", index: 0), region: "eastus", inputs: [:], dependencies: [],
            ownership: Ownership(stack: "train/exp1", lineage: "lineage-1", owner: "alice", expires: Date(timeIntervalSince1970: 1_800_000_000)))
        let tags = AzureTags.ownership(for: resource, token: "t")
        #expect(tags["stratum-owner"] == "alice" && tags["stratum-expires"] == "1800000000")
        #expect(AzureTags.user(.object(tags.mapValues { .string($0) })).isEmpty)
    }
}
