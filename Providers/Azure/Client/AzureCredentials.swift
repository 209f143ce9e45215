import Foundation
import StratumCloud
import StratumCore

/// Where an Azure Resource Manager token comes from, and the subscription calls go to.
///
/// Found the way Azure's SDKs' environment and managed-identity credentials find them: a
/// service principal with a secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
/// `AZURE_CLIENT_SECRET`), else one with a certificate (`AZURE_CLIENT_CERTIFICATE_PATH`
/// instead of the secret), else the managed identity of the machine through the Instance
/// Metadata Service (a user-assigned one when `AZURE_CLIENT_ID` names it). Tokens are fetched
/// through a `BearerTokenCache`, so they are cached and fetched again shortly before they expire.
public struct AzureCredentials: Sendable {
    public enum Source: Sendable, CustomStringConvertible {
        case clientSecret(tenant: String, clientId: String, secret: String)
        case clientCertificate(tenant: String, clientId: String, certificate: AzureClientCertificate)
        /// The system-assigned identity, or the user-assigned one with this client id.
        case managedIdentity(clientId: String?)

        public var description: String {
            switch self {
            case .clientSecret(let tenant, let clientId, _):
                return "service principal \(clientId) in tenant \(tenant) (client secret \(Redaction.mask))"
            case .clientCertificate(let tenant, let clientId, let certificate):
                return "service principal \(clientId) in tenant \(tenant) (\(certificate))"
            case .managedIdentity(let clientId):
                return clientId.map { "the user-assigned managed identity \($0)" } ?? "the system-assigned managed identity"
            }
        }
    }

    /// The scope a Resource Manager client asks for.
    public static let resourceManagerScope = "https://management.azure.com/.default"

    public let source: Source
    /// The subscription: given explicitly, or `AZURE_SUBSCRIPTION_ID`.
    public let subscription: String?
    public let tokens: BearerTokenCache

    public init(source: Source, subscription: String?, tokens: BearerTokenCache) {
        self.source = source
        self.subscription = subscription
        self.tokens = tokens
    }

    /// Credentials from `source`, tokens fetched by `fetcher` and cached on its clock.
    public init(source: Source, subscription: String?, fetcher: AzureTokenFetcher, refreshMargin: Duration = .seconds(300)) {
        let fetch: BearerTokenCache.Fetch
        switch source {
        case .clientSecret(let tenant, let clientId, let secret):
            fetch = { try await fetcher.clientSecretToken(tenant: tenant, clientId: clientId, secret: secret) }
        case .clientCertificate(let tenant, let clientId, let certificate):
            fetch = { try await fetcher.clientCertificateToken(tenant: tenant, clientId: clientId, certificate: certificate) }
        case .managedIdentity(let clientId):
            fetch = { try await fetcher.managedIdentityToken(clientId: clientId) }
        }
        self.init(source: source, subscription: subscription, tokens: BearerTokenCache(refreshMargin: refreshMargin, clock: fetcher.clock, fetch: fetch))
    }

    /// Finds credentials as described above. `subscription` (from the stack or configuration)
    /// wins over `AZURE_SUBSCRIPTION_ID`.
    public static func resolve(
        environment: [String: String] = ProcessInfo.processInfo.environment, subscription explicit: String? = nil, fetcher: AzureTokenFetcher
    ) throws -> AzureCredentials {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let subscription = explicit ?? value("AZURE_SUBSCRIPTION_ID")
        let clientId = value("AZURE_CLIENT_ID")
        if let tenant = value("AZURE_TENANT_ID"), let clientId {
            if let secret = value("AZURE_CLIENT_SECRET") {
                return AzureCredentials(source: .clientSecret(tenant: tenant, clientId: clientId, secret: secret), subscription: subscription, fetcher: fetcher)
            }
            if let path = value("AZURE_CLIENT_CERTIFICATE_PATH") {
                let certificate = try AzureClientCertificate.load(path)
                return AzureCredentials(
                    source: .clientCertificate(tenant: tenant, clientId: clientId, certificate: certificate), subscription: subscription, fetcher: fetcher)
            }
        }
        return AzureCredentials(source: .managedIdentity(clientId: clientId), subscription: subscription, fetcher: fetcher)
    }
}

/// Fetches Resource Manager tokens over HTTP: Microsoft Entra's client-credentials grant
/// with a secret or a signed client assertion, and the Instance Metadata Service's
/// managed-identity token.
public struct AzureTokenFetcher: Sendable {
    public var endpoints: AzureEndpoints
    public var transport: any HTTPTransport
    public var clock: StratumClock
    public var scope: String
    public var timeout: Duration
    /// IMDS answers at once on Azure; elsewhere its address is a black hole.
    public var instanceMetadataTimeout: Duration

    public init(
        endpoints: AzureEndpoints, transport: any HTTPTransport, clock: StratumClock = .system, scope: String = AzureCredentials.resourceManagerScope,
        timeout: Duration = .seconds(30), instanceMetadataTimeout: Duration = .seconds(5)
    ) {
        self.endpoints = endpoints
        self.transport = transport
        self.clock = clock
        self.scope = scope
        self.timeout = timeout
        self.instanceMetadataTimeout = instanceMetadataTimeout
    }

    /// The IMDS `resource` for the scope: the scope without `/.default`.
    public var resource: String {
        scope.hasSuffix("/.default") ? String(scope.dropLast("/.default".count)) : scope
    }

    func clientSecretToken(tenant: String, clientId: String, secret: String) async throws -> BearerToken {
        try await exchange(
            tenant: tenant,
            form: [("grant_type", "client_credentials"), ("client_id", clientId), ("scope", scope), ("client_secret", secret)],
            secrets: [secret], what: "service principal \(clientId)")
    }

    func clientCertificateToken(tenant: String, clientId: String, certificate: AzureClientCertificate) async throws -> BearerToken {
        let endpoint = endpoints.token(tenant: tenant)
        let assertion = try certificate.assertion(clientId: clientId, audience: endpoint.absoluteString, now: clock.date())
        return try await exchange(
            tenant: tenant,
            form: [
                ("grant_type", "client_credentials"), ("client_id", clientId), ("scope", scope),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion),
            ],
            secrets: [assertion], what: "service principal \(clientId)")
    }

    func managedIdentityToken(clientId: String?) async throws -> BearerToken {
        let url = endpoints.instanceMetadata.appendingPathComponent("metadata/identity/oauth2/token")
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        components?.queryItems = [URLQueryItem(name: "api-version", value: "2018-02-01"), URLQueryItem(name: "resource", value: resource)]
            + (clientId.map { [URLQueryItem(name: "client_id", value: $0)] } ?? [])
        let request = HTTPRequestData(method: "GET", url: components?.url ?? url, headers: [("Metadata", "true")])
        let response: HTTPResponseData
        do {
            response = try await transport.send(request, timeout: instanceMetadataTimeout)
        } catch let error as HTTPConnectionError {
            throw ProviderError(
                .auth,
                "no Azure credentials: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), or run on Azure with a managed identity (the Instance Metadata Service did not answer: \(error))")
        }
        guard response.status == 200 else { throw BearerToken.failure(response, from: "the Azure Instance Metadata Service (managed identity)", secrets: []) }
        return try BearerToken.parse(response.body)
    }

    func exchange(tenant: String, form: [(String, String)], secrets: [String], what: String) async throws -> BearerToken {
        let endpoint = endpoints.token(tenant: tenant)
        return try await BearerToken.exchange(
            form, at: endpoint, transport: transport, timeout: timeout, what: "Microsoft Entra at \(Redaction.standard.url(endpoint)) (for \(what))",
            secrets: secrets)
    }
}
