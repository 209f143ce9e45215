import Foundation
import StratumCore

/// A loopback metadata service that hands out a node's identity token, as the two clouds
/// whose nodes federate into AWS do: the GCE metadata server's
/// `/computeMetadata/v1/instance/service-accounts/default/identity?audience=…` (with
/// `Metadata-Flavor: Google`; the body is the token) and Azure IMDS's
/// `/metadata/identity/oauth2/token?resource=…[&client_id=…]` (with `Metadata: true`; JSON with
/// `access_token`). Every request is recorded (cloud, audience, client id); one without its
/// cloud's header is refused with 403, as the services refuse them, and counted.
///
/// It also stands for Entra's token endpoint (`POST /{tenant}/oauth2/v2.0/token`, the
/// client-credentials grant with a JWT client assertion): an assertion that is the token it
/// handed out gets `entraAccessToken` for the requested scope; the client id and scope of each
/// are kept in `entraRequests` (cloud `entra`, audience the scope), anything else is refused
/// with 400 `invalid_client`.
public struct IdentityTokenFake: Sendable {
    public struct Request: Sendable, Hashable {
        public var cloud: String
        public var audience: String
        public var clientID: String?

        public init(cloud: String, audience: String, clientID: String?) {
            self.cloud = cloud
            self.audience = audience
            self.clientID = clientID
        }
    }

    /// The token every answer carries (a JWT's shape; nothing checks its signature).
    public static let token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJzdHJhdHVtLXRlc3QifQ.c2lnbmF0dXJl"
    public let server: LoopbackHTTPServer
    public let requests: LockedValue<[Request]>
    public let refused: LockedValue<Int>

    public var url: URL { server.url }
    /// `host:port`, as GCE_METADATA_HOST takes it.
    public var hostAndPort: String { String(server.url.absoluteString.dropFirst("http://".count)).trimmingCharacters(in: CharacterSet(charactersIn: "/")) }

    public static func start(entraAccessToken: @escaping @Sendable () async -> String = { "" }) async throws -> IdentityTokenFake {
        let requests = LockedValue<[Request]>([]), refused = LockedValue(0)
        let server = try await LoopbackHTTPServer.start { request in
            let parts = request.uri.split(separator: "?", maxSplits: 1).map(String.init)
            if request.method == "POST", parts[0].hasSuffix("/oauth2/v2.0/token") {
                let form = Dictionary(
                    (URLComponents(string: "?" + String(decoding: request.body, as: UTF8.self))?.queryItems ?? []).map { ($0.name, $0.value ?? "") }) { a, _ in a }
                guard form["grant_type"] == "client_credentials", form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    form["client_assertion"] == token, let client = form["client_id"], let scope = form["scope"]
                else {
                    refused.update { $0 += 1 }
                    return ProxyResponse(status: 400, body: Data(#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found"}"#.utf8))
                }
                requests.update { $0.append(Request(cloud: "entra", audience: scope, clientID: client)) }
                let body = #"{"token_type":"Bearer","expires_in":3599,"access_token":"\#(await entraAccessToken())"}"#
                return ProxyResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(body.utf8))
            }
            let query = Dictionary(
                (URLComponents(string: "?" + (parts.count > 1 ? parts[1] : ""))?.queryItems ?? []).map { ($0.name, $0.value ?? "") }) { a, _ in a }
            switch parts[0] {
            case "/computeMetadata/v1/instance/service-accounts/default/identity":
                guard request.header("Metadata-Flavor") == "Google" else {
                    refused.update { $0 += 1 }
                    return ProxyResponse(status: 403)
                }
                guard let audience = query["audience"], !audience.isEmpty else { return ProxyResponse(status: 400, body: Data("non-empty audience parameter required".utf8)) }
                requests.update { $0.append(Request(cloud: "gcp", audience: audience, clientID: nil)) }
                return ProxyResponse(status: 200, body: Data(token.utf8))
            case "/metadata/identity/oauth2/token":
                guard request.header("Metadata") == "true" else {
                    refused.update { $0 += 1 }
                    return ProxyResponse(status: 400, body: Data(#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#.utf8))
                }
                guard let resource = query["resource"], !resource.isEmpty else { return ProxyResponse(status: 400) }
                requests.update { $0.append(Request(cloud: "azure", audience: resource, clientID: query["client_id"])) }
                let body = #"{"access_token":"\#(token)","expires_in":"3599","token_type":"Bearer","resource":"\#(resource)"}"#
                return ProxyResponse(status: 200, body: Data(body.utf8))
            default:
                return ProxyResponse(status: 404)
            }
        }
        return IdentityTokenFake(server: server, requests: requests, refused: refused)
    }
}
