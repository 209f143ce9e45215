import Foundation
import StratumCloud

/// Credentials of the instance's IAM role from the EC2 instance metadata service, using
/// IMDSv2: a session token from `PUT /latest/api/token`, then the role name and its keys.
/// The endpoint is injectable so a loopback server can play IMDS in tests.
public struct InstanceMetadataCredentials: Sendable {
    public static let defaultEndpoint = URL(string: "http://169.254.169.254")!

    public var endpoint: URL
    public var transport: any HTTPTransport
    /// IMDS answers in microseconds on EC2; off EC2 the address is a black hole, so give up fast.
    public var timeout: Duration

    public init(endpoint: URL = Self.defaultEndpoint, transport: any HTTPTransport, timeout: Duration = .seconds(1)) {
        self.endpoint = endpoint
        self.transport = transport
        self.timeout = timeout
    }

    /// The role's credentials; nil when no metadata service answers (not on EC2) or no role is attached.
    public func fetch() async throws -> AWSCredentials? {
        let tokenResponse: HTTPResponseData
        do {
            tokenResponse = try await transport.send(
                HTTPRequestData(method: "PUT", url: endpoint.appendingPathComponent("latest/api/token"), headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")]),
                timeout: timeout)
        } catch {
            return nil
        }
        guard tokenResponse.status == 200, let token = String(data: tokenResponse.body, encoding: .utf8), !token.isEmpty else { return nil }
        let headers = [("X-aws-ec2-metadata-token", token)]
        let base = endpoint.appendingPathComponent("latest/meta-data/iam/security-credentials/")
        let roles = try await transport.send(HTTPRequestData(method: "GET", url: base, headers: headers), timeout: timeout)
        guard roles.status == 200, let role = String(data: roles.body, encoding: .utf8)?.split(whereSeparator: \.isNewline).first.map(String.init) else {
            return nil
        }
        let keys = try await transport.send(HTTPRequestData(method: "GET", url: base.appendingPathComponent(role), headers: headers), timeout: timeout)
        guard keys.status == 200 else {
            throw AWSCredentialsError("the instance metadata service answered HTTP \(keys.status) for the credentials of role '\(role)'")
        }
        struct Document: Decodable {
            var AccessKeyId: String
            var SecretAccessKey: String
            var Token: String?
            var Expiration: String?
        }
        guard let document = try? JSONDecoder().decode(Document.self, from: keys.body) else {
            throw AWSCredentialsError("the instance metadata service returned credentials for role '\(role)' in an unexpected shape")
        }
        let expiration = document.Expiration.flatMap { ISO8601DateFormatter().date(from: $0) }
        return AWSCredentials(
            accessKeyId: document.AccessKeyId, secretAccessKey: document.SecretAccessKey, sessionToken: document.Token,
            expiration: expiration, source: "instance metadata (role \(role))")
    }
}
