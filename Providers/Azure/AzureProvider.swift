import Foundation
import StratumCore

/// Microsoft Azure, over Azure Resource Manager (`AzureClient`): resource groups, virtual
/// networks, subnets, network security groups, public IPs and proximity placement groups
/// (`AzureNetworkKinds.swift`), storage accounts and blob containers (`AzureStorageKinds.swift`),
/// each an `AzureARMKind` over its spec; virtual machines, each with a NIC of its own
/// (`AzureVirtualMachineKind.swift`); the nodes' managed identity with its role on their
/// container (`AzureNodeIdentityKind.swift`); the Key Vault of the nodes' secrets, which that
/// identity may read (`AzureKeyVaultKind.swift`, `AzureNodeSecrets.swift`); and blobs of what
/// this binary carries, the trainer's archive (`AzureBlobKind.swift`).
///
/// Names are deterministic (the `name` input, else derived from the address and lineage), so a
/// create is an idempotent PUT by name; Stratum's ownership and the create's token are in the
/// resource's tags (`AzureTags`), and the operation's handle is journaled before the wait.
/// What carries those tags is listed for `stratum sweep` (`owned()`, `AzureOwnedListing`).
public struct AzureProvider: Provider {
    public let name = "azure"
    public let client: AzureClient
    public let kinds: [String: any ResourceKind]

    public init(client: AzureClient) {
        self.client = client
        let arm: [AzureARMSpec] = [
            .resourceGroup, .virtualNetwork, .subnet, .networkSecurityGroup, .publicIP, .proximityPlacementGroup, .storageAccount, .blobContainer,
            .federatedCredential,
        ]
        // One listing of what the subscription holds with Stratum's tags serves every kind's `owned()`.
        let listing = AzureOwnedListing(client: client)
        let kinds: [any ResourceKind] = arm.map { AzureARMKind(spec: $0, client: client, listing: listing) } + [
            AzureVirtualMachineKind(client: client, listing: listing), AzureNodeIdentityKind(client: client, listing: listing),
            AzureKeyVaultKind(client: client, listing: listing), AzureBlobKind(client: client),
        ]
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
    }
}
