import Foundation
import StratumCloud
import StratumCore

/// The `api-version` every ARM call sends, pinned per resource type in one table, so an
/// upgrade is a deliberate change here and not a drift. A type missing from the table is a
/// programming error, refused before any call goes out.
public struct AzureAPIVersions: Sendable {
    /// Resource type (`Microsoft.Network/virtualNetworks/subnets`) → api-version.
    public var versions: [String: String]

    /// Each is the api-version whose models the installed Azure SDK packages describe (the
    /// ones the ARM fake checks bodies against; `.ci/run` pins the packages), which a test
    /// reads from the SDK's own request builders, so a body and its api-version cannot disagree.
    public static let pinned: [String: String] = [
        "Microsoft.Resources/resourceGroups": "2025-04-01",
        // The subscription's `resources` list (every type, filtered by tag).
        "Microsoft.Resources/resources": "2025-04-01",
        "Microsoft.Compute/virtualMachines": "2026-04-01",
        "Microsoft.Compute/proximityPlacementGroups": "2026-04-01",
        "Microsoft.Compute/locations/usages": "2026-04-01",
        "Microsoft.Compute/skus": "2021-07-01",
        "Microsoft.Network/virtualNetworks": "2026-03-01",
        "Microsoft.Network/virtualNetworks/subnets": "2026-03-01",
        "Microsoft.Network/networkSecurityGroups": "2026-03-01",
        "Microsoft.Network/networkSecurityGroups/securityRules": "2026-03-01",
        "Microsoft.Network/networkInterfaces": "2026-03-01",
        "Microsoft.Network/publicIPAddresses": "2026-03-01",
        "Microsoft.Storage/storageAccounts": "2026-09-01",
        "Microsoft.Storage/storageAccounts/blobServices/containers": "2026-09-01",
        "Microsoft.ManagedIdentity/userAssignedIdentities": "2024-11-30",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials": "2024-11-30",
        "Microsoft.Authorization/roleAssignments": "2022-04-01",
        "Microsoft.KeyVault/vaults": "2026-05-15",
        "Microsoft.KeyVault/vaults/secrets": "2026-05-15",
        "Microsoft.KeyVault/locations/deletedVaults": "2026-05-15",
    ]

    public init(_ versions: [String: String] = Self.pinned) {
        self.versions = versions
    }

    /// The api-version for a call to `path`; a permanent error when its type is not pinned.
    public func version(forPath path: String) throws -> String {
        guard let type = Self.resourceType(ofPath: path) else {
            throw ProviderError(.permanent, "cannot tell the Azure resource type of \(path)")
        }
        // ARM's names are case-insensitive. A POST of an action (`…/virtualMachines/vm/deallocate`)
        // goes at its resource type's version.
        func pinned(_ type: String) -> String? { versions.first { $0.key.lowercased() == type.lowercased() }?.value }
        let parent = type.split(separator: "/").dropLast().joined(separator: "/")
        guard let version = pinned(type) ?? (parent.contains("/") ? pinned(parent) : nil) else {
            throw ProviderError(.permanent, "no api-version is pinned for the Azure resource type \(type)")
        }
        return version
    }

    /// The resource type a path addresses, a resource or a list of them:
    /// `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/x`
    /// → `Microsoft.Network/virtualNetworks/subnets`; `/subscriptions/s/resourcegroups/rg` →
    /// `Microsoft.Resources/resourceGroups`; `/subscriptions/s/resources` → `Microsoft.Resources/resources`.
    public static func resourceType(ofPath path: String) -> String? {
        let parts = path.split(separator: "/").map(String.init)
        if let providers = parts.lastIndex(where: { $0.lowercased() == "providers" }), providers + 2 < parts.count {
            // The namespace, then every other segment from the type on (names in between).
            let types = stride(from: providers + 2, to: parts.count, by: 2).map { parts[$0] }
            return ([parts[providers + 1]] + types).joined(separator: "/")
        }
        guard parts.first?.lowercased() == "subscriptions" else { return nil }
        if parts.count >= 3, parts[2].lowercased() == "resourcegroups" { return "Microsoft.Resources/resourceGroups" }
        if parts.count == 3, parts[2].lowercased() == "resources" { return "Microsoft.Resources/resources" }
        return parts.count <= 2 ? "Microsoft.Resources/subscriptions" : nil
    }
}
