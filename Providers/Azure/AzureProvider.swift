import Foundation
import StratumCore

/// Microsoft Azure, over Azure Resource Manager (`AzureClient`).
public struct AzureProvider: Provider {
    public let name = "azure"
    public let client: AzureClient
    public let kinds: [String: any ResourceKind]

    public init(client: AzureClient) {
        self.client = client
        let kinds: [any ResourceKind] = [
            AzureVirtualMachineKind(client: client),
        ]
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
    }
}
