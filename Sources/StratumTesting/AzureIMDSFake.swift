import Foundation
import StratumCore

/// A loopback Azure Instance Metadata Service: what a VM reads of itself at boot (its zone and
/// private IP) and tokens of its user-assigned managed identity for Blob Storage. Like IMDS, it
/// answers only requests with `Metadata: true` and an `api-version` (400 otherwise, counted in
/// `refused`); a token request naming another identity's `client_id` is refused as IMDS
/// refuses it, and one naming none gets the VM's only identity. The token is `token()`'s, so a
/// Blob fake that accepts only its own bearer token (`AzureBlobFake`) serves this identity.
/// Tokens for `api://AzureADTokenExchange` (what another cloud trusting the identity takes) are
/// `federationToken`, their requests' client ids kept in `federationRequests`.
/// Point `AZURE_POD_IDENTITY_AUTHORITY_HOST` at `url`.
public struct AzureIMDSFake: Sendable {
    public static let privateIP = "10.0.1.4"
    public let server: LoopbackHTTPServer
    /// The `client_id` of every token request, in order ("" where it named none).
    public let tokenRequests: LockedValue<[String]>
    public let refused: LockedValue<Int>
    /// The `client_id` of every request for a token for `api://AzureADTokenExchange`.
    public let federationRequests: LockedValue<[String]>
    public static let federationToken = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2xvZ2luLm1pY3Jvc29mdG9ubGluZS5jb20ifQ.c2lnbmF0dXJl"

    public var url: URL { server.url }

    public static func start(zone: String, clientID: String, token: @escaping @Sendable () async -> String) async throws -> AzureIMDSFake {
        let requests = LockedValue<[String]>([]), refused = LockedValue(0), federation = LockedValue<[String]>([])
        let server = try await LoopbackHTTPServer.start { request in
            let (path, query) = AzureBlobFake.split(request.uri)
            func refuse(_ status: Int, _ error: String, _ description: String) -> ProxyResponse {
                refused.update { $0 += 1 }
                let body = #"{"error":"\#(error)","error_description":"\#(description)"}"#
                return ProxyResponse(status: status, headers: [("Content-Type", "application/json")], body: Data(body.utf8))
            }
            guard request.header("Metadata") == "true" else { return refuse(400, "invalid_request", "Required metadata header not specified") }
            guard query["api-version"] != nil else { return refuse(400, "invalid_request", "Required query variable 'api-version' is missing") }
            func text(_ answer: String) -> ProxyResponse {
                query["format"] == "text" ? ProxyResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Data(answer.utf8))
                    : refuse(400, "invalid_request", "Only format=text is served by this fake for leaf values")
            }
            switch path {
            case "/metadata/instance/compute/zone": return text(zone)
            case "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress": return text(privateIP)
            case "/metadata/identity/oauth2/token" where query["resource"] == "api://AzureADTokenExchange":
                let named = query["client_id"] ?? ""
                guard named.isEmpty || named == clientID else { return refuse(400, "invalid_request", "Identity not found") }
                federation.update { $0.append(named) }
                let now = Int(Date().timeIntervalSince1970)
                let body = #"{"access_token":"\#(federationToken)","client_id":"\#(clientID)","expires_in":"3599","expires_on":"\#(now + 3599)","resource":"api://AzureADTokenExchange","token_type":"Bearer"}"#
                return ProxyResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(body.utf8))
            case "/metadata/identity/oauth2/token":
                guard query["resource"] == "https://storage.azure.com/" || query["resource"] == "https://storage.azure.com" else {
                    return refuse(400, "invalid_resource", "AADSTS500011: The resource principal named \(query["resource"] ?? "") was not found")
                }
                let named = query["client_id"] ?? ""
                guard named.isEmpty || named == clientID else { return refuse(400, "invalid_request", "Identity not found") }
                requests.update { $0.append(named) }
                let now = Int(Date().timeIntervalSince1970)
                let body = #"{"access_token":"\#(await token())","client_id":"\#(clientID)","expires_in":"3599","expires_on":"\#(now + 3599)","resource":"https://storage.azure.com/","token_type":"Bearer"}"#
                return ProxyResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(body.utf8))
            default:
                return ProxyResponse(status: 404)
            }
        }
        return AzureIMDSFake(server: server, tokenRequests: requests, refused: refused, federationRequests: federation)
    }
}
