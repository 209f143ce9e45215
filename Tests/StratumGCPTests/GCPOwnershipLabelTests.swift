import Foundation
import StratumCore
import Testing
@testable import StratumGCP

/// The ownership labels of an ephemeral environment's resources: its owner and expiry, as
/// values GCP's label rules accept.
@Suite("GCP ownership labels")
struct GCPOwnershipLabelTests {
    @Test func anEnvironmentsResourcesCarryOwnerAndExpiry() {
        let resource = ResolvedResource(
            address: ResourceAddress(type: "gcp_instance", name: "worker", index: 0), region: "us-central1", inputs: [:], dependencies: [],
            ownership: Ownership(stack: "train/exp1", lineage: "lineage-1", owner: "Alice.Smith", expires: Date(timeIntervalSince1970: 1_800_000_000)))
        let labels = GCPLabels.ownership(for: resource, token: "t")
        #expect(labels["stratum-expires"] == "1800000000")
        let owner = labels["stratum-owner"]
        #expect(owner.map { GCPLabels.isValidValue($0) } == true && owner?.hasPrefix("alice-smith") == true, "\(labels)")
        let plain = GCPLabels.ownership(for: ResolvedResource(
            address: resource.address, region: "us-central1", inputs: [:], dependencies: [], ownership: Ownership(stack: "train/dev", lineage: "l")), token: "t")
        #expect(plain["stratum-owner"] == nil && plain["stratum-expires"] == nil)
    }
}
