import Foundation
import StratumCore

/// A loopback EC2 instance metadata service (IMDSv2): a session token for a PUT, then, for GETs
/// that carry it, the instance's region and zone and its role's name and keys. The keys
/// expire `expiresIn` seconds after each fetch. Calls without the token are counted and
/// refused, as IMDSv2 refuses them.
public struct IMDSv2Fake: Sendable {
    public static let secret = "imds-role-secret-7d1e"
    public static let role = "stratum-node-role"
    public static let privateIP = "10.20.0.10"
    public let server: LoopbackHTTPServer
    public let credentialFetches: LockedValue<Int>
    public let unauthorised: LockedValue<Int>

    public var url: URL { server.url }

    public static func start(expiresIn: Int, region: String = "us-east-1", zone: String = "us-east-1a") async throws -> IMDSv2Fake {
        let fetches = LockedValue(0), unauthorised = LockedValue(0)
        let session = "imds-session-\(UUID().uuidString)"
        let server = try await LoopbackHTTPServer.start { request in
            let path = String(request.uri.prefix { $0 != "?" })
            if request.method == "PUT", path == "/latest/api/token" {
                guard request.header("X-aws-ec2-metadata-token-ttl-seconds") != nil else { return ProxyResponse(status: 400) }
                return ProxyResponse(status: 200, body: Data(session.utf8))
            }
            guard request.header("X-aws-ec2-metadata-token") == session else {
                unauthorised.update { $0 += 1 }
                return ProxyResponse(status: 401)
            }
            switch path {
            case "/latest/meta-data/placement/region": return ProxyResponse(status: 200, body: Data(region.utf8))
            case "/latest/meta-data/placement/availability-zone": return ProxyResponse(status: 200, body: Data(zone.utf8))
            case "/latest/meta-data/local-ipv4": return ProxyResponse(status: 200, body: Data(privateIP.utf8))
            case "/latest/meta-data/iam/security-credentials/": return ProxyResponse(status: 200, body: Data(role.utf8))
            case "/latest/meta-data/iam/security-credentials/\(role)":
                let n = fetches.update { $0 += 1; return $0 }
                let formatter = ISO8601DateFormatter()
                let expiration = formatter.string(from: Date().addingTimeInterval(Double(expiresIn)))
                let body = """
                    {"Code": "Success", "LastUpdated": "\(formatter.string(from: Date()))", "Type": "AWS-HMAC",
                     "AccessKeyId": "ASIAROLE\(n)", "SecretAccessKey": "\(secret)", "Token": "role-session-token-\(n)", "Expiration": "\(expiration)"}
                    """
                return ProxyResponse(status: 200, body: Data(body.utf8))
            default:
                return ProxyResponse(status: 404)
            }
        }
        return IMDSv2Fake(server: server, credentialFetches: fetches, unauthorised: unauthorised)
    }
}
