import Foundation

/// The addresses the GCP client talks to. Each is overridable so tests point the provider at
/// loopback servers.
public struct GCPEndpoints: Sendable, Equatable {
    /// Compute Engine v1 base, ending in `/compute/v1`.
    public var compute: URL
    /// Cloud Storage JSON API v1 base, ending in `/storage/v1`.
    public var storage: URL
    /// The IAM API root (`https://iam.googleapis.com`); paths start with `v1/`.
    public var iam: URL
    /// The Secret Manager API root (`https://secretmanager.googleapis.com`); paths start with `v1/`.
    public var secretManager: URL
    /// The OAuth2 token endpoint for `authorized_user` files, and for service-account keys when
    /// `tokenOverride` is set (a key names its own `token_uri` otherwise).
    public var token: URL
    /// Replaces the key's `token_uri` (tests, private endpoints).
    public var tokenOverride: Bool
    /// The GCE metadata server root (`http://metadata.google.internal`).
    public var metadata: URL

    public static let defaultCompute = URL(string: "https://compute.googleapis.com/compute/v1")!
    public static let defaultStorage = URL(string: "https://storage.googleapis.com/storage/v1")!
    public static let defaultIAM = URL(string: "https://iam.googleapis.com")!
    public static let defaultSecretManager = URL(string: "https://secretmanager.googleapis.com")!
    public static let defaultToken = URL(string: "https://oauth2.googleapis.com/token")!
    public static let defaultMetadata = URL(string: "http://metadata.google.internal")!

    public init(
        compute: URL = Self.defaultCompute, storage: URL = Self.defaultStorage, iam: URL = Self.defaultIAM, secretManager: URL = Self.defaultSecretManager,
        token: URL? = nil, metadata: URL = Self.defaultMetadata
    ) {
        self.compute = compute
        self.storage = storage
        self.iam = iam
        self.secretManager = secretManager
        self.token = token ?? Self.defaultToken
        self.tokenOverride = token != nil
        self.metadata = metadata
    }

    /// Cloud Storage's media uploads: the Storage base with `/upload` before `/storage/v1`.
    public var upload: URL {
        guard var components = URLComponents(url: storage, resolvingAgainstBaseURL: false) else { return storage }
        let path = components.percentEncodedPath
        components.percentEncodedPath = path.hasSuffix("/storage/v1") ? String(path.dropLast("/storage/v1".count)) + "/upload/storage/v1" : "/upload" + path
        return components.url ?? storage
    }

    /// Overrides from the environment: `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`,
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE`, `CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM` and
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER` (the Compute and Storage bases and the IAM
    /// and Secret Manager roots, as gcloud reads them), `STORAGE_EMULATOR_HOST` (host[:port] or a URL of a Cloud Storage emulator, whose JSON
    /// API is under `/storage/v1`, as Google's client libraries read it; gcloud's override wins),
    /// `GCE_METADATA_HOST` (host[:port] of the metadata server, as Google's client libraries read
    /// it) and `STRATUM_GCP_TOKEN_URI` (the OAuth2 token endpoint).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> GCPEndpoints {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        // gcloud's overrides end in a slash; paths are appended to a base without one.
        func base(_ text: String?) -> URL? {
            guard var text else { return nil }
            while text.hasSuffix("/") { text.removeLast() }
            return URL(string: text)
        }
        let compute = base(value("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE")) ?? defaultCompute
        let emulator = value("STORAGE_EMULATOR_HOST").flatMap { host in base(host.contains("://") ? host : "http://\(host)") }
        let storage = base(value("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE")) ?? emulator?.appendingPathComponent("storage/v1") ?? defaultStorage
        // gcloud's IAM and Secret Manager overrides may name the version (`…/v1/`); paths here carry it.
        func root(_ name: String) -> URL? {
            value(name).flatMap { text in
                var root = text
                while root.hasSuffix("/") { root.removeLast() }
                if root.hasSuffix("/v1") { root.removeLast(3) }
                return base(root)
            }
        }
        let iam = root("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM") ?? defaultIAM
        let secretManager = root("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER") ?? defaultSecretManager
        let metadata = value("GCE_METADATA_HOST").flatMap { URL(string: "http://\($0)") } ?? defaultMetadata
        return GCPEndpoints(compute: compute, storage: storage, iam: iam, secretManager: secretManager, token: value("STRATUM_GCP_TOKEN_URI").flatMap(URL.init(string:)), metadata: metadata)
    }
}
