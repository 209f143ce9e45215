import Foundation

/// The addresses the GCP client talks to. Each is overridable so tests point the provider at
/// loopback servers.
public struct GCPEndpoints: Sendable, Equatable {
    /// Compute Engine v1 base, ending in `/compute/v1`.
    public var compute: URL
    /// The OAuth2 token endpoint for `authorized_user` files, and for service-account keys when
    /// `tokenOverride` is set (a key names its own `token_uri` otherwise).
    public var token: URL
    /// Replaces the key's `token_uri` (tests, private endpoints).
    public var tokenOverride: Bool
    /// The GCE metadata server root (`http://metadata.google.internal`).
    public var metadata: URL

    public static let defaultCompute = URL(string: "https://compute.googleapis.com/compute/v1")!
    public static let defaultToken = URL(string: "https://oauth2.googleapis.com/token")!
    public static let defaultMetadata = URL(string: "http://metadata.google.internal")!

    public init(compute: URL = Self.defaultCompute, token: URL? = nil, metadata: URL = Self.defaultMetadata) {
        self.compute = compute
        self.token = token ?? Self.defaultToken
        self.tokenOverride = token != nil
        self.metadata = metadata
    }

    /// Overrides from the environment: `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE` (the Compute
    /// base, as gcloud reads it), `GCE_METADATA_HOST` (host[:port] of the metadata server, as
    /// Google's client libraries read it) and `STRATUM_GCP_TOKEN_URI` (the OAuth2 token endpoint).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> GCPEndpoints {
        func url(_ name: String) -> URL? { environment[name].flatMap { $0.isEmpty ? nil : URL(string: $0) } }
        var compute = url("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE") ?? defaultCompute
        // gcloud's override ends in a slash; paths are appended to the base without one.
        if compute.absoluteString.hasSuffix("/"), let trimmed = URL(string: String(compute.absoluteString.dropLast())) { compute = trimmed }
        let metadata = environment["GCE_METADATA_HOST"].flatMap { $0.isEmpty ? nil : URL(string: "http://\($0)") } ?? defaultMetadata
        return GCPEndpoints(compute: compute, token: url("STRATUM_GCP_TOKEN_URI"), metadata: metadata)
    }
}
