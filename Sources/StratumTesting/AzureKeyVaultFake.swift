import Foundation
import StratumCore

/// A loopback fake of Key Vault's data plane over the vaults of an `AzureARMFake`, path-style
/// (`http://127.0.0.1:PORT/VAULT/secrets/NAME[/VERSION]?api-version=…`, what
/// `STRATUM_AZURE_KEYVAULT_ENDPOINT` points a node at), with the managed-identity route of the
/// instance metadata service (`/metadata/identity/oauth2/token`, header `Metadata: true`,
/// resource `https://vault.azure.net`, the identity named by `client_id`), so a node's secret
/// read runs against it end to end.
///
/// Get Secret answers only a bearer token the IMDS route handed out (401 otherwise), and only
/// to the token's principal holding Key Vault Secrets User (or Officer, or Administrator) on
/// that vault or a scope above it in the ARM fake's role assignments (403 `ForbiddenByRbac`
/// otherwise); a disabled secret is 403 `SecretDisabled`, a missing one 404. What it answers is
/// checked against azure-keyvault-secrets' `SecretBundle` (`violations`).
public actor AzureKeyVaultFake {
    public nonisolated let arm: AzureARMFake
    /// The api-versions Get Secret takes.
    public static let apiVersions: Set<String> = ["7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"]

    /// Secret reads answered with a value.
    public private(set) var served = 0
    /// Requests refused (401, 403).
    public private(set) var refused = 0
    /// What was wrong with what the fake answered, checked against the SDK.
    public private(set) var violations: [String] = []
    /// Principals by the tokens the IMDS route handed out.
    private var principals: [String: String] = [:]

    public init(arm: AzureARMFake) { self.arm = arm }

    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    /// The endpoint of `vault` on `server`: `STRATUM_AZURE_KEYVAULT_ENDPOINT` for a node reading it.
    public nonisolated func endpoint(_ server: LoopbackHTTPServer, vault: String) -> String { "http://127.0.0.1:\(server.port)/\(vault)" }

    func handle(_ request: ProxyRequest) async -> ProxyResponse {
        let (path, query) = DiscoveryValidator.split(uri: request.uri)
        if path == "/metadata/identity/oauth2/token" { return await token(request, query) }
        let segments = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard request.method == "GET", segments.count == 3 || segments.count == 4, segments[1] == "secrets" else {
            return Self.error(400, "BadParameter", "The request URI is not a Key Vault operation this fake serves.")
        }
        guard let version = query["api-version"]?.first, Self.apiVersions.contains(version) else {
            return Self.error(400, "BadParameter", "The specified version (\(query["api-version"]?.first ?? "")) is not recognized. Consider using the latest supported version.")
        }
        guard let auth = request.header("Authorization"), auth.hasPrefix("Bearer "), let principal = principals[String(auth.dropFirst("Bearer ".count))] else {
            refused += 1
            var response = Self.error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
            response.headers.append(("WWW-Authenticate", #"Bearer authorization="https://login.microsoftonline.com/\#(AzureARMFake.tenant)", resource="https://vault.azure.net""#))
            return response
        }
        let (vault, name) = (segments[0], segments[2])
        switch await arm.readSecret(vault: vault, name: name, principal: principal) {
        case .noVault:
            return Self.error(404, "VaultNotFound", "The vault '\(vault)' does not exist.")
        case .forbidden:
            refused += 1
            return Self.error(
                403, "Forbidden",
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: oid=\(principal)\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                inner: "ForbiddenByRbac")
        case .disabled:
            refused += 1
            return Self.error(403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner: "SecretDisabled")
        case .notFound:
            return Self.error(404, "SecretNotFound", "A secret with (name/id) \(name) was not found in this key vault.")
        case .value(let value, let current):
            if segments.count == 4, segments[3] != current {
                return Self.error(404, "SecretNotFound", "A secret with (name/id) \(name)/\(segments[3]) was not found in this key vault.")
            }
            served += 1
            let answer: Value = [
                "value": .string(value), "id": .string("https://\(vault.lowercased()).vault.azure.net/secrets/\(name)/\(current)"),
                "attributes": ["enabled": true, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 7],
            ]
            if let validator = try? AzureModelValidator.installedSDK() {
                for violation in validator.validate(answer, as: "SecretBundle", .response) { violations.append("secret \(name): \(violation)") }
            }
            return AzureARMFake.json(200, answer)
        }
    }

    /// IMDS's managed-identity token for Key Vault, for the user-assigned identity `client_id` names.
    private func token(_ request: ProxyRequest, _ query: [String: [String]]) async -> ProxyResponse {
        guard request.header("Metadata") == "true" else {
            return AzureARMFake.json(400, ["error": "invalid_request", "error_description": "Required metadata header not specified"])
        }
        guard let resource = query["resource"]?.first, resource == "https://vault.azure.net" || resource == "https://vault.azure.net/" else {
            return AzureARMFake.json(400, ["error": "invalid_resource", "error_description": "AADSTS500011: resource not found"])
        }
        guard let clientID = query["client_id"]?.first, let principal = await arm.principal(ofClientID: clientID) else {
            return AzureARMFake.json(400, ["error": "invalid_request", "error_description": "Identity not found"])
        }
        let token = "eyJ0eXAiOiJKV1Qi.stratum-kv-\(UUID().uuidString.lowercased())"
        principals[token] = principal
        let now = Int(Date().timeIntervalSince1970)
        return AzureARMFake.json(200, [
            "access_token": .string(token), "expires_in": "3599", "expires_on": .string("\(now + 3599)"), "resource": .string(resource), "token_type": "Bearer",
            "client_id": .string(clientID),
        ])
    }

    /// An error in Key Vault's shape: `{"error": {"code", "message", "innererror"?: {"code"}}}`.
    static func error(_ status: Int, _ code: String, _ message: String, inner: String? = nil) -> ProxyResponse {
        var error: [String: Value] = ["code": .string(code), "message": .string(message)]
        if let inner { error["innererror"] = ["code": .string(inner)] }
        return AzureARMFake.json(status, ["error": .map(error)])
    }
}
