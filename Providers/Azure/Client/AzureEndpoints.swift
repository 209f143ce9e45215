import Foundation

/// The addresses the Azure client talks to. Each is overridable so tests point the provider at
/// loopback servers.
public struct AzureEndpoints: Sendable, Equatable {
    /// Azure Resource Manager (`https://management.azure.com`).
    public var resourceManager: URL
    /// The Microsoft Entra authority host (`https://login.microsoftonline.com`); tokens are asked
    /// for at `{authority}/{tenant}/oauth2/v2.0/token`.
    public var authority: URL
    /// The Azure Instance Metadata Service root (`http://169.254.169.254`), for managed identity.
    public var instanceMetadata: URL
    /// Blob Storage, path-style (`{storage}/{account}/{container}/{blob}`, as storage emulators
    /// serve it); nil: each account's own `https://{account}.blob.core.windows.net`.
    public var storage: URL?

    public static let defaultResourceManager = URL(string: "https://management.azure.com")!
    public static let defaultAuthority = URL(string: "https://login.microsoftonline.com")!
    public static let defaultInstanceMetadata = URL(string: "http://169.254.169.254")!

    public init(
        resourceManager: URL = Self.defaultResourceManager, authority: URL = Self.defaultAuthority, instanceMetadata: URL = Self.defaultInstanceMetadata,
        storage: URL? = nil
    ) {
        self.resourceManager = resourceManager
        self.authority = authority
        self.instanceMetadata = instanceMetadata
        self.storage = storage
    }

    /// Overrides from the environment: `AZURE_AUTHORITY_HOST` (as Azure's SDKs read it; a host
    /// name alone means `https://`), `AZURE_POD_IDENTITY_AUTHORITY_HOST` (the IMDS root, as
    /// Azure's SDKs read it), `STRATUM_AZURE_RESOURCE_MANAGER_ENDPOINT` (the ARM base) and
    /// `STRATUM_AZURE_STORAGE_ENDPOINT` (path-style Blob Storage).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> AzureEndpoints {
        func base(_ name: String, scheme: String = "https") -> URL? {
            guard var text = environment[name], !text.isEmpty else { return nil }
            while text.hasSuffix("/") { text.removeLast() }
            return URL(string: text.contains("://") ? text : "\(scheme)://\(text)")
        }
        return AzureEndpoints(
            resourceManager: base("STRATUM_AZURE_RESOURCE_MANAGER_ENDPOINT") ?? defaultResourceManager,
            authority: base("AZURE_AUTHORITY_HOST") ?? defaultAuthority,
            instanceMetadata: base("AZURE_POD_IDENTITY_AUTHORITY_HOST", scheme: "http") ?? defaultInstanceMetadata,
            storage: base("STRATUM_AZURE_STORAGE_ENDPOINT"))
    }

    /// The Entra token endpoint of a tenant.
    public func token(tenant: String) -> URL {
        authority.appendingPathComponent(tenant).appendingPathComponent("oauth2/v2.0/token")
    }
}
