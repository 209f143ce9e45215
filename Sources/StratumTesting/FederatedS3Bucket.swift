import Foundation
import StratumCloud
import StratumCore

/// A bucket in moto that a node setup test's trainer reaches through a web identity, as a node
/// of another cloud reaches its cluster's S3 bucket: made at `make`, with the trainer's config
/// line and the node environment that point there (the role, the token source and audience,
/// moto standing for STS; no keys).
public struct FederatedS3Bucket: Sendable {
    public let endpoint: String
    public let name: String

    public static func make(endpoint: String) async throws -> FederatedS3Bucket {
        let bucket = FederatedS3Bucket(endpoint: endpoint, name: "stratum-federated-\(UInt32.random(in: 0...UInt32.max))")
        let made = try await AsyncHTTPTransport().send(HTTPRequestData(method: "PUT", url: URL(string: "\(endpoint)/\(bucket.name)")!), timeout: .seconds(10))
        guard made.status == 200 else { throw ProviderError(.permanent, "moto did not make the bucket \(bucket.name): HTTP \(made.status)") }
        return bucket
    }

    public var checkpointURL: String { "s3://\(name)/run" }
    /// The trainer config's line that sends its S3 requests to moto.
    public var trainerConfig: String { "s3: {endpoint: \"\(endpoint)\"}\n" }

    /// The node environment of a node whose tokens come from `source` (`gcp`, `azure`) for `audience`.
    public func environment(source: String, audience: String) -> [String: Value] {
        [
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/stratum/stratum-train-1a2b3c4d5e", "STRATUM_WEB_IDENTITY": .string(source),
            "STRATUM_WEB_IDENTITY_AUDIENCE": .string(audience), "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": .string(endpoint),
            "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
        ]
    }

    /// Whether any object is under `prefix`.
    public func holds(prefix: String) async throws -> Bool {
        let listing = try await AsyncHTTPTransport().send(
            HTTPRequestData(method: "GET", url: URL(string: "\(endpoint)/\(name)?list-type=2&prefix=\(prefix)")!), timeout: .seconds(10))
        return String(decoding: listing.body, as: UTF8.self).contains("<Key>\(prefix)")
    }
}
