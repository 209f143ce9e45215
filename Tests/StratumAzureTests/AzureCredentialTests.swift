import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

@Suite(.timeLimit(.minutes(3))) struct AzureCredentialTests {
    /// A Microsoft Entra token endpoint that hands out numbered tokens to a client-secret grant.
    static func secretEndpoint(_ received: RecordedRequests) async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { request in
            received.append(request)
            let form = request.formFields
            guard form["grant_type"] == "client_credentials", form["client_secret"] == "client-secret-value" else {
                return jsonAnswer(401, ["error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."])
            }
            let count = received.all.count
            return jsonAnswer(200, ["access_token": .string("arm-token-\(count)"), "expires_in": 3599, "token_type": "Bearer"])
        }
    }

    static let servicePrincipal = ["AZURE_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "client-1", "AZURE_SUBSCRIPTION_ID": "sub-env"]

    @Test func clientSecretIsExchangedAtTheTenantsTokenEndpointForTheResourceManagerScope() async throws {
        let received = RecordedRequests()
        let server = try await Self.secretEndpoint(received)
        defer { Task { await server.shutdown() } }
        let environment = Self.servicePrincipal.merging(["AZURE_CLIENT_SECRET": "client-secret-value", "AZURE_AUTHORITY_HOST": server.url.absoluteString]) { $1 }
        let fetcher = AzureTokenFetcher(endpoints: .fromEnvironment(environment), transport: AsyncHTTPTransport())

        let credentials = try AzureCredentials.resolve(environment: environment, fetcher: fetcher)
        #expect(credentials.subscription == "sub-env")
        #expect(try await credentials.tokens.token() == "arm-token-1")
        let request = try #require(received.all.first)
        #expect(request.method == "POST")
        #expect(pathOf(request) == "/tenant-1/oauth2/v2.0/token")
        #expect(request.formFields["client_id"] == "client-1")
        #expect(request.formFields["scope"] == "https://management.azure.com/.default")
        // A subscription named by the stack wins over the environment's.
        #expect(try AzureCredentials.resolve(environment: environment, subscription: "sub-stack", fetcher: fetcher).subscription == "sub-stack")
    }

    @Test func certificateSignsAClientAssertionThatVerifiesWithItsPublicKeyAndThumbprint() async throws {
        let certificate = try TestCertificate()
        defer { certificate.remove() }
        let received = RecordedRequests()
        let assertions = LockedValue([(header: CloudJSON, claims: CloudJSON)]())
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            let form = request.formFields
            guard form["grant_type"] == "client_credentials", form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                let jwt = form["client_assertion"], let verified = certificate.verified(jwt)
            else { return jsonAnswer(401, ["error": "invalid_client", "error_description": "AADSTS700027: signature verification failed"]) }
            assertions.update { $0.append(verified) }
            return jsonAnswer(200, ["access_token": "arm-token-cert", "expires_in": 3599])
        }
        defer { Task { await server.shutdown() } }
        let environment = Self.servicePrincipal.merging(
            ["AZURE_CLIENT_CERTIFICATE_PATH": certificate.pemPath, "AZURE_AUTHORITY_HOST": server.url.absoluteString]) { $1 }
        let virtual = VirtualClock()
        let fetcher = AzureTokenFetcher(endpoints: .fromEnvironment(environment), transport: AsyncHTTPTransport(), clock: virtual.clock)

        let credentials = try AzureCredentials.resolve(environment: environment, fetcher: fetcher)
        #expect(try await credentials.tokens.token() == "arm-token-cert")
        let (header, claims) = try #require(assertions.get().first)
        #expect(header["alg"]?.string == "RS256")
        // x5t: base64url of the SHA-1 of the certificate's DER, as openssl computes the fingerprint.
        #expect(header["x5t"]?.string.flatMap { decodeBase64URL($0) } == certificate.sha1)
        #expect(certificate.sha1.count == 20)
        #expect(claims["aud"]?.string == server.url.absoluteString + "/tenant-1/oauth2/v2.0/token")
        #expect(claims["iss"]?.string == "client-1")
        #expect(claims["sub"]?.string == "client-1")
        #expect(claims["jti"]?.string?.isEmpty == false)
        let issued = try #require(claims["nbf"]?.number)
        #expect(issued == virtual.date.timeIntervalSince1970.rounded(.down))
        #expect(claims["exp"]?.number == issued + 600)
        #expect(received.all.first?.formFields["scope"] == "https://management.azure.com/.default")
        #expect(!"\(credentials.source)".contains("PRIVATE KEY"))

        // A tampered certificate file is refused before any call, naming the file.
        let scratch = certificate.directory + "/broken.pem"
        try String(contentsOfFile: certificate.directory + "/cert.pem", encoding: .utf8).write(toFile: scratch, atomically: true, encoding: .utf8)
        let error = #expect(throws: ProviderError.self) {
            _ = try AzureCredentials.resolve(environment: environment.merging(["AZURE_CLIENT_CERTIFICATE_PATH": scratch]) { $1 }, fetcher: fetcher)
        }
        #expect(error?.kind == .auth)
        #expect(error?.message.contains("no PRIVATE KEY") == true)
    }

    @Test func tokenIsCachedUntilShortlyBeforeItExpires() async throws {
        let received = RecordedRequests()
        let server = try await Self.secretEndpoint(received)
        defer { Task { await server.shutdown() } }
        let virtual = VirtualClock()
        let fetcher = AzureTokenFetcher(endpoints: AzureEndpoints(authority: server.url), transport: AsyncHTTPTransport(), clock: virtual.clock)
        let credentials = AzureCredentials(
            source: .clientSecret(tenant: "tenant-1", clientId: "client-1", secret: "client-secret-value"), subscription: "sub-1", fetcher: fetcher)

        #expect(try await credentials.tokens.token() == "arm-token-1")
        // expires_in 3599 s, refreshed 300 s early: still cached just before 3299 s.
        virtual.advance(.seconds(3298))
        #expect(try await credentials.tokens.token() == "arm-token-1")
        #expect(received.all.count == 1)
        virtual.advance(.seconds(2))
        #expect(try await credentials.tokens.token() == "arm-token-2")
        #expect(received.all.count == 2)
    }

    @Test func managedIdentityAsksTheInstanceMetadataServiceWithTheMetadataHeader() async throws {
        let received = RecordedRequests()
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            // IMDS refuses requests without the header.
            guard request.header("Metadata") == "true" else { return jsonAnswer(400, ["error": "invalid_request", "error_description": "Required metadata header not specified"]) }
            guard pathOf(request) == "/metadata/identity/oauth2/token" else { return ProxyResponse(status: 404) }
            let id = queryOf(request)["client_id"] ?? "system"
            // IMDS sends expires_in as a string.
            return jsonAnswer(200, ["access_token": .string("mi-token-\(id)"), "expires_in": "86399", "resource": "https://management.azure.com"])
        }
        defer { Task { await server.shutdown() } }
        let virtual = VirtualClock()
        let environment = ["AZURE_POD_IDENTITY_AUTHORITY_HOST": server.url.absoluteString, "AZURE_SUBSCRIPTION_ID": "sub-1"]
        let fetcher = AzureTokenFetcher(endpoints: .fromEnvironment(environment), transport: AsyncHTTPTransport(), clock: virtual.clock)

        let system = try AzureCredentials.resolve(environment: environment, fetcher: fetcher)
        #expect("\(system.source)" == "the system-assigned managed identity")
        #expect(try await system.tokens.token() == "mi-token-system")
        let query = try #require(received.all.first.map(queryOf))
        #expect(query["api-version"] == "2018-02-01")
        #expect(query["resource"] == "https://management.azure.com")
        #expect(query["client_id"] == nil)
        // The 86399 s lifetime was read from the string: no second fetch an hour later.
        virtual.advance(.seconds(3600))
        #expect(try await system.tokens.token() == "mi-token-system")
        #expect(received.all.count == 1)

        // AZURE_CLIENT_ID without a tenant names a user-assigned identity.
        let user = try AzureCredentials.resolve(environment: environment.merging(["AZURE_CLIENT_ID": "uami-1"]) { $1 }, fetcher: fetcher)
        #expect(try await user.tokens.token() == "mi-token-uami-1")
        #expect(received.all.last.map(queryOf)?["client_id"] == "uami-1")
    }

    @Test func withNoCredentialsAndNoMetadataServiceTheErrorSaysWhatToSet() async throws {
        // A port nothing listens on any more.
        let server = try await LoopbackHTTPServer.start { _ in ProxyResponse(status: 500) }
        let url = server.url
        await server.shutdown()
        let fetcher = AzureTokenFetcher(endpoints: AzureEndpoints(instanceMetadata: url), transport: AsyncHTTPTransport(), instanceMetadataTimeout: .seconds(1))
        let credentials = try AzureCredentials.resolve(environment: [:], fetcher: fetcher)
        let error = await #expect(throws: ProviderError.self) { _ = try await credentials.tokens.token() }
        #expect(error?.kind == .auth)
        #expect(error?.message.contains("AZURE_CLIENT_SECRET") == true)
    }

    @Test func secretsStayOutOfErrorsAndDescriptions() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            // An endpoint that echoes what it was sent, as a careless one might.
            let echoed = String(decoding: request.body, as: UTF8.self)
            return jsonAnswer(401, ["error": "invalid_client", "error_description": .string("bad request: \(echoed)")])
        }
        defer { Task { await server.shutdown() } }
        let fetcher = AzureTokenFetcher(endpoints: AzureEndpoints(authority: server.url), transport: AsyncHTTPTransport())
        let credentials = AzureCredentials(
            source: .clientSecret(tenant: "tenant-1", clientId: "client-1", secret: "very-secret-value"), subscription: "sub-1", fetcher: fetcher)
        #expect(!"\(credentials.source)".contains("very-secret-value"))
        let error = await #expect(throws: ProviderError.self) { _ = try await credentials.tokens.token() }
        #expect(error?.kind == .auth)
        #expect(error?.message.contains("invalid_client") == true)
        #expect(error?.message.contains("very-secret-value") == false)
        #expect(error?.message.contains(Redaction.mask) == true)
    }
}
