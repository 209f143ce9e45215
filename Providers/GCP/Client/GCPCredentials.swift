import Foundation
import StratumCloud
import StratumCore

/// Where a GCP access token comes from, and the project calls go to when a stack names none.
///
/// Found the way Google's client libraries find Application Default Credentials: the file
/// named by `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known ADC file, then the GCE
/// metadata server. Tokens are fetched through a `BearerTokenCache`, so they are cached and
/// fetched again shortly before they expire.
public struct GCPCredentials: Sendable {
    public enum Source: Sendable, CustomStringConvertible {
        case serviceAccount(GCPServiceAccountKey)
        case authorizedUser(GCPAuthorizedUser)
        case metadataServer

        public var description: String {
            switch self {
            case .serviceAccount(let key): return key.description
            case .authorizedUser(let user): return user.description
            case .metadataServer: return "the GCE metadata server's default service account"
            }
        }
    }

    /// The scope a Compute client asks for.
    public static let cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

    public let source: Source
    /// The project: given explicitly, `GOOGLE_CLOUD_PROJECT`, the key's, or the metadata server's.
    public let project: String?
    public let tokens: BearerTokenCache

    /// The project calls are billed to and counted against when it is not the one they act on:
    /// the `quota_project_id` of an `authorized_user` file (a user's own credentials belong to
    /// no project). Sent as `x-goog-user-project`.
    public var quotaProject: String? {
        if case .authorizedUser(let user) = source, let project = user.quotaProjectId, !project.isEmpty { return project }
        return nil
    }

    public init(source: Source, project: String?, tokens: BearerTokenCache) {
        self.source = source
        self.project = project
        self.tokens = tokens
    }

    /// Credentials from `source`, tokens fetched by `fetcher` and cached on its clock.
    public init(source: Source, project: String?, fetcher: GCPTokenFetcher, refreshMargin: Duration = .seconds(300)) throws {
        let fetch: BearerTokenCache.Fetch
        switch source {
        case .serviceAccount(let key):
            let signer = try GCPJWTSigner(serviceAccount: key)
            fetch = { try await fetcher.serviceAccountToken(key: key, signer: signer) }
        case .authorizedUser(let user):
            fetch = { try await fetcher.refreshToken(user: user) }
        case .metadataServer:
            fetch = { try await fetcher.metadataToken() }
        }
        self.init(source: source, project: project, tokens: BearerTokenCache(refreshMargin: refreshMargin, clock: fetcher.clock, fetch: fetch))
    }

    /// Finds credentials and the project as described above. `project` (from the stack or
    /// configuration) wins over every other source of the project.
    public static func resolve(
        environment: [String: String] = ProcessInfo.processInfo.environment, project explicit: String? = nil,
        fetcher: GCPTokenFetcher
    ) async throws -> GCPCredentials {
        let environmentProject = environment["GOOGLE_CLOUD_PROJECT"].flatMap { $0.isEmpty ? nil : $0 }
        let named = explicit ?? environmentProject
        if let path = environment["GOOGLE_APPLICATION_CREDENTIALS"], !path.isEmpty {
            return try fromFile(path, project: named, fetcher: fetcher)
        }
        let wellKnown = wellKnownFile(environment)
        if FileManager.default.fileExists(atPath: wellKnown) {
            return try fromFile(wellKnown, project: named, fetcher: fetcher)
        }
        if environment["NO_GCE_CHECK"]?.lowercased() != "true", let metadataProject = await fetcher.metadataProject() {
            return try GCPCredentials(source: .metadataServer, project: named ?? metadataProject, fetcher: fetcher)
        }
        throw ProviderError(
            .auth,
            "no GCP credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run 'gcloud auth application-default login', or run on GCP with a service account attached")
    }

    static func fromFile(_ path: String, project: String?, fetcher: GCPTokenFetcher) throws -> GCPCredentials {
        switch try GCPCredentialFile.load(path) {
        case .serviceAccount(let key): return try GCPCredentials(source: .serviceAccount(key), project: project ?? key.projectId, fetcher: fetcher)
        case .authorizedUser(let user): return try GCPCredentials(source: .authorizedUser(user), project: project ?? user.quotaProjectId, fetcher: fetcher)
        }
    }

    /// gcloud's ADC file: `$CLOUDSDK_CONFIG/application_default_credentials.json`, by default
    /// under `~/.config/gcloud`.
    static func wellKnownFile(_ environment: [String: String]) -> String {
        let directory = environment["CLOUDSDK_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.config/gcloud")
        return directory + "/application_default_credentials.json"
    }
}

/// Fetches access tokens over HTTP: the JWT bearer grant for a service-account key, the
/// refresh-token grant for an `authorized_user` file, the metadata server's token.
public struct GCPTokenFetcher: Sendable {
    public var endpoints: GCPEndpoints
    public var transport: any HTTPTransport
    public var clock: StratumClock
    public var scopes: [String]
    public var timeout: Duration
    /// The metadata server answers at once on GCP; elsewhere its address is a black hole.
    public var metadataTimeout: Duration

    public init(
        endpoints: GCPEndpoints, transport: any HTTPTransport, clock: StratumClock = .system, scopes: [String] = [GCPCredentials.cloudPlatformScope],
        timeout: Duration = .seconds(30), metadataTimeout: Duration = .seconds(1)
    ) {
        self.endpoints = endpoints
        self.transport = transport
        self.clock = clock
        self.scopes = scopes
        self.timeout = timeout
        self.metadataTimeout = metadataTimeout
    }

    /// The token endpoint a key is exchanged at: the override, else the key's `token_uri`.
    public func tokenEndpoint(for key: GCPServiceAccountKey) -> URL {
        if endpoints.tokenOverride { return endpoints.token }
        return key.tokenURI.flatMap(URL.init(string:)) ?? endpoints.token
    }

    func serviceAccountToken(key: GCPServiceAccountKey, signer: GCPJWTSigner) async throws -> BearerToken {
        let endpoint = tokenEndpoint(for: key)
        let assertion = try signer.assertion(scopes: scopes, audience: endpoint.absoluteString, now: clock.date())
        return try await exchange(
            at: endpoint, form: [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)],
            secrets: [assertion], what: key.description)
    }

    func refreshToken(user: GCPAuthorizedUser) async throws -> BearerToken {
        try await exchange(
            at: endpoints.token,
            form: [("grant_type", "refresh_token"), ("client_id", user.clientId), ("client_secret", user.clientSecret), ("refresh_token", user.refreshToken)],
            secrets: [user.clientSecret, user.refreshToken], what: user.description)
    }

    func metadataToken() async throws -> BearerToken {
        var url = endpoints.metadata.appendingPathComponent("computeMetadata/v1/instance/service-accounts/default/token")
        if var components = URLComponents(url: url, resolvingAgainstBaseURL: false) {
            components.queryItems = [URLQueryItem(name: "scopes", value: scopes.joined(separator: ","))]
            url = components.url ?? url
        }
        let response = try await send(HTTPRequestData(method: "GET", url: url, headers: [("Metadata-Flavor", "Google")]), timeout: timeout, what: "the GCE metadata server")
        guard response.status == 200 else { throw BearerToken.failure(response, from: "the GCE metadata server", secrets: []) }
        return try BearerToken.parse(response.body)
    }

    /// The metadata server's project; nil when no metadata server answers (not on GCP).
    public func metadataProject() async -> String? {
        let url = endpoints.metadata.appendingPathComponent("computeMetadata/v1/project/project-id")
        guard let response = try? await transport.send(HTTPRequestData(method: "GET", url: url, headers: [("Metadata-Flavor", "Google")]), timeout: metadataTimeout),
            response.status == 200, response.header("Metadata-Flavor") == "Google"
        else { return nil }
        let project = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return project.isEmpty ? nil : project
    }

    func exchange(at endpoint: URL, form: [(String, String)], secrets: [String], what: String) async throws -> BearerToken {
        try await BearerToken.exchange(
            form, at: endpoint, transport: transport, timeout: timeout, what: "the token endpoint \(Redaction.standard.url(endpoint)) (for \(what))",
            secrets: secrets)
    }

    func send(_ request: HTTPRequestData, timeout: Duration, what: String) async throws -> HTTPResponseData {
        do {
            return try await transport.send(request, timeout: timeout)
        } catch let error as HTTPConnectionError {
            throw ProviderError(.transient, "cannot get a GCP access token from \(what): \(error)")
        }
    }
}
