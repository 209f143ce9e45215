import Foundation
import StratumCore

/// A loopback GCE metadata server: what an instance reads of itself at boot (its zone, name
/// and private IP), its default service account's access token, and its ID token for an
/// audience (what another cloud that trusts the account takes; the audiences asked for are
/// kept in `identityAudiences`). Like the metadata server,
/// it answers only requests with `Metadata-Flavor: Google` and without `X-Forwarded-For` (403
/// otherwise, counted in `refused`), and marks its answers with `Metadata-Flavor: Google`.
/// Point `GCE_METADATA_HOST` at `host`; a Storage fake that accepts only `token`
/// (`GCSBucketFake.require(bearer:)`) then serves just the instance's account.
public struct GCEMetadataFake: Sendable {
    public static let privateIP = "10.8.0.11"
    public static let projectNumber = "412907316358"
    public let server: LoopbackHTTPServer
    /// The access token the service account's route hands out.
    public let token: String
    public let tokenGrants: LockedValue<Int>
    public let refused: LockedValue<Int>
    /// The audience of each ID token handed out, in order.
    public let identityAudiences: LockedValue<[String]>
    /// The ID token the identity route hands out (a JWT's shape; nothing checks its signature).
    public static let identityToken = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2FjY291bnRzLmdvb2dsZS5jb20ifQ.c2lnbmF0dXJl"

    /// `host:port`, as `GCE_METADATA_HOST` takes it.
    public var host: String { "127.0.0.1:\(server.port)" }

    public static func start(zone: String, name: String, email: String) async throws -> GCEMetadataFake {
        let grants = LockedValue(0), refused = LockedValue(0), audiences = LockedValue<[String]>([])
        let token = "ya29.c.metadata-\(UInt32.random(in: 0...UInt32.max))"
        let answers = [
            "zone": "projects/\(projectNumber)/zones/\(zone)", "name": name, "hostname": "\(name).\(zone).c.stratum-test.internal",
            "network-interfaces/0/ip": privateIP, "service-accounts/default/email": email,
        ]
        let server = try await LoopbackHTTPServer.start { request in
            guard request.header("Metadata-Flavor") == "Google", request.header("X-Forwarded-For") == nil else {
                refused.update { $0 += 1 }
                return ProxyResponse(status: 403, headers: [("Content-Type", "text/html")], body: Data("Missing Metadata-Flavor:Google header.".utf8))
            }
            let path = String(request.uri.prefix { $0 != "?" })
            let prefix = "/computeMetadata/v1/instance/"
            guard path.hasPrefix(prefix) else { return ProxyResponse(status: 404) }
            let item = String(path.dropFirst(prefix.count))
            let headers = [("Metadata-Flavor", "Google")]
            if item == "service-accounts/default/token" {
                grants.update { $0 += 1 }
                let body = #"{"access_token":"\#(token)","expires_in":3599,"token_type":"Bearer"}"#
                return ProxyResponse(status: 200, headers: headers + [("Content-Type", "application/json")], body: Data(body.utf8))
            }
            if item == "service-accounts/default/identity" {
                let query = URLComponents(string: request.uri)?.queryItems ?? []
                guard let audience = query.first(where: { $0.name == "audience" })?.value, !audience.isEmpty else {
                    return ProxyResponse(status: 400, headers: headers, body: Data("non-empty audience parameter required".utf8))
                }
                audiences.update { $0.append(audience) }
                return ProxyResponse(status: 200, headers: headers + [("Content-Type", "text/html")], body: Data(identityToken.utf8))
            }
            guard let answer = answers[item] else { return ProxyResponse(status: 404, headers: headers) }
            return ProxyResponse(status: 200, headers: headers + [("Content-Type", "application/text")], body: Data(answer.utf8))
        }
        return GCEMetadataFake(server: server, token: token, tokenGrants: grants, refused: refused, identityAudiences: audiences)
    }
}
