import Foundation
import StratumCore

/// Microsoft Azure, over Azure Resource Manager (`AzureClient`). It manages no resource
/// types yet: the client, its credentials and its long-running operations come first.
public struct AzureProvider: Provider {
    public let name = "azure"
    public let client: AzureClient
    public let kinds: [String: any ResourceKind] = [:]

    public init(client: AzureClient) {
        self.client = client
    }
}
