import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

@Suite(.timeLimit(.minutes(3))) struct GCPCredentialTests {
    /// A token endpoint that verifies the JWT bearer grant with the key's public half.
    static func tokenEndpoint(
        account: TestServiceAccount, received: ReceivedRequests, claims: LockedValue<[GCPJSON]>
    ) async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { request in
            received.append(request)
            let form = request.formFields
            guard form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer", let jwt = form["assertion"],
                let verified = account.verifiedClaims(jwt), verified.header["alg"] == "RS256"
            else { return jsonResponse(400, ["error": "invalid_grant", "error_description": "Invalid JWT Signature."]) }
            guard verified.header["kid"] == "key-1" else { return jsonResponse(400, ["error": "invalid_grant", "error_description": "no such key"]) }
            claims.update { $0.append(verified.claims) }
            let count = claims.get().count
            return jsonResponse(200, ["access_token": .string("ya29.token-\(count)"), "expires_in": 3599, "token_type": "Bearer"])
        }
    }

    @Test func serviceAccountKeyIsExchangedForATokenWithAVerifiedRS256JWT() async throws {
        let account = try TestServiceAccount()
        let (received, claims) = (ReceivedRequests(), LockedValue([GCPJSON]()))
        let server = try await Self.tokenEndpoint(account: account, received: received, claims: claims)
        defer { Task { await server.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let tokenURI = server.url.appendingPathComponent("token")
        let keyPath = try scratch.write("key.json", account.keyFile(tokenURI: tokenURI))
        let virtual = VirtualClock()
        let fetcher = GCPTokenFetcher(endpoints: GCPEndpoints(), transport: AsyncHTTPTransport(), clock: virtual.clock)

        let credentials = try await GCPCredentials.resolve(
            environment: ["GOOGLE_APPLICATION_CREDENTIALS": keyPath, "HOME": scratch.path], fetcher: fetcher)
        #expect(credentials.project == "example-project")
        #expect(try await credentials.tokens.token() == "ya29.token-1")

        let claim = try #require(claims.get().first)
        #expect(claim["iss"]?.string == TestServiceAccount.email)
        #expect(claim["aud"]?.string == tokenURI.absoluteString)
        #expect(claim["scope"]?.string == GCPCredentials.cloudPlatformScope)
        let issued = try #require(claim["iat"]?.number)
        #expect(issued == virtual.date.timeIntervalSince1970.rounded(.down))
        #expect(claim["exp"]?.number == issued + 3600)
        #expect(received.all.first.map(pathOf) == "/token")
    }

    @Test func tokenIsCachedUntilShortlyBeforeItExpires() async throws {
        let account = try TestServiceAccount()
        let (received, claims) = (ReceivedRequests(), LockedValue([GCPJSON]()))
        let server = try await Self.tokenEndpoint(account: account, received: received, claims: claims)
        defer { Task { await server.shutdown() } }
        let key = try GCPCredentialFile.parse(account.keyFile(tokenURI: server.url.appendingPathComponent("token")).data, source: "test key")
        guard case .serviceAccount(let serviceAccount) = key else { Issue.record("not a service account key"); return }
        let virtual = VirtualClock()
        let credentials = try GCPCredentials(
            source: .serviceAccount(serviceAccount), project: nil,
            fetcher: GCPTokenFetcher(endpoints: GCPEndpoints(), transport: AsyncHTTPTransport(), clock: virtual.clock))

        #expect(try await credentials.tokens.token() == "ya29.token-1")
        // expires_in 3599 s, refreshed 300 s early: still cached just before 3299 s.
        virtual.advance(.seconds(3298))
        #expect(try await credentials.tokens.token() == "ya29.token-1")
        #expect(received.all.count == 1)
        virtual.advance(.seconds(2))
        #expect(try await credentials.tokens.token() == "ya29.token-2")
        #expect(received.all.count == 2)
    }

    @Test func authorizedUserFileUsesTheRefreshTokenGrant() async throws {
        let received = ReceivedRequests()
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            let form = request.formFields
            guard form["grant_type"] == "refresh_token", form["client_id"] == "client-1.apps", form["client_secret"] == "client-secret-value",
                form["refresh_token"] == "1//refresh-token-value"
            else { return jsonResponse(400, ["error": "invalid_request"]) }
            return jsonResponse(200, ["access_token": "ya29.user-token", "expires_in": 3600])
        }
        defer { Task { await server.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        // gcloud's well-known ADC file, found through CLOUDSDK_CONFIG.
        _ = try scratch.write(
            "application_default_credentials.json",
            ["type": "authorized_user", "client_id": "client-1.apps", "client_secret": "client-secret-value", "refresh_token": "1//refresh-token-value"])
        let fetcher = GCPTokenFetcher(endpoints: GCPEndpoints(token: server.url.appendingPathComponent("token")), transport: AsyncHTTPTransport())

        let credentials = try await GCPCredentials.resolve(
            environment: ["CLOUDSDK_CONFIG": scratch.path, "GOOGLE_CLOUD_PROJECT": "env-project", "NO_GCE_CHECK": "true"], fetcher: fetcher)
        #expect(credentials.project == "env-project")
        #expect(try await credentials.tokens.token() == "ya29.user-token")
        #expect(received.all.count == 1)
        #expect(!"\(credentials.source)".contains("refresh-token-value"))
    }

    @Test func metadataServerGivesTheTokenAndTheProject() async throws {
        let received = ReceivedRequests()
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            // The real server refuses requests without the header.
            guard request.header("Metadata-Flavor") == "Google" else { return ProxyResponse(status: 403) }
            let flavor = [("Metadata-Flavor", "Google")]
            switch pathOf(request) {
            case "/computeMetadata/v1/project/project-id":
                return ProxyResponse(status: 200, headers: flavor, body: Data("metadata-project".utf8))
            case "/computeMetadata/v1/instance/service-accounts/default/token":
                return jsonResponse(200, ["access_token": "ya29.metadata-token", "expires_in": 1800, "token_type": "Bearer"], headers: flavor)
            default:
                return ProxyResponse(status: 404, headers: flavor)
            }
        }
        defer { Task { await server.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let endpoints = GCPEndpoints.fromEnvironment(["GCE_METADATA_HOST": "127.0.0.1:\(server.port)"])
        let fetcher = GCPTokenFetcher(endpoints: endpoints, transport: AsyncHTTPTransport())

        let credentials = try await GCPCredentials.resolve(environment: ["HOME": scratch.path], fetcher: fetcher)
        #expect(credentials.project == "metadata-project")
        #expect(try await credentials.tokens.token() == "ya29.metadata-token")
        let tokenRequest = try #require(received.all.first { pathOf($0).hasSuffix("/token") })
        #expect(queryOf(tokenRequest)["scopes"] == GCPCredentials.cloudPlatformScope)

        // A project given explicitly wins over the metadata server's.
        let explicit = try await GCPCredentials.resolve(environment: ["HOME": scratch.path], project: "stack-project", fetcher: fetcher)
        #expect(explicit.project == "stack-project")
    }

    @Test func withoutAnyCredentialsTheErrorSaysWhereTheyAreLookedFor() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let fetcher = GCPTokenFetcher(endpoints: GCPEndpoints(), transport: AsyncHTTPTransport())
        let error = await #expect(throws: ProviderError.self) {
            _ = try await GCPCredentials.resolve(environment: ["HOME": scratch.path, "NO_GCE_CHECK": "true"], fetcher: fetcher)
        }
        #expect(error?.kind == .auth)
        #expect(error?.message.contains("GOOGLE_APPLICATION_CREDENTIALS") == true)
    }

    @Test func secretsStayOutOfErrorsAndDescriptions() async throws {
        let account = try TestServiceAccount()
        let server = try await LoopbackHTTPServer.start { request in
            // An endpoint that echoes what it was sent, as a careless one might.
            let echoed = String(decoding: request.body, as: UTF8.self)
            return jsonResponse(400, ["error": "invalid_grant", "error_description": .string("bad request: \(echoed.removingPercentEncoding ?? echoed)")])
        }
        defer { Task { await server.shutdown() } }
        let fetcher = GCPTokenFetcher(endpoints: GCPEndpoints(token: server.url.appendingPathComponent("token")), transport: AsyncHTTPTransport())
        let user = GCPAuthorizedUser(clientId: "client-1", clientSecret: "client-secret-value", refreshToken: "1//refresh-token-value")
        let userCredentials = try GCPCredentials(source: .authorizedUser(user), project: "p", fetcher: fetcher)
        let userError = await #expect(throws: ProviderError.self) { _ = try await userCredentials.tokens.token() }
        #expect(userError?.kind == .auth)
        let userText = "\(userError.map(String.init(describing:)) ?? "")"
        #expect(userText.contains("invalid_grant"))
        #expect(!userText.contains("client-secret-value"))
        #expect(!userText.contains("refresh-token-value"))

        guard case .serviceAccount(let key) = try GCPCredentialFile.parse(account.keyFile(tokenURI: server.url).data, source: "key") else {
            Issue.record("not a service account key")
            return
        }
        let keyCredentials = try GCPCredentials(source: .serviceAccount(key), project: "p", fetcher: fetcher)
        let keyError = await #expect(throws: ProviderError.self) { _ = try await keyCredentials.tokens.token() }
        let keyText = "\(keyError.map(String.init(describing:)) ?? "")"
        // The signed assertion is as good as a token for its hour: it is masked too.
        #expect(!keyText.contains("eyJ"))
        #expect(!"\(key)".contains("PRIVATE KEY"))
        #expect(!"\(keyCredentials.source)".contains("PRIVATE KEY"))
    }
}
