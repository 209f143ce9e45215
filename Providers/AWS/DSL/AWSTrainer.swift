import Stratum
import StratumCore
import StratumTrainerArtifact

extension AWS {
    /// `aws_instance_role`: the identity a node reads and writes its cluster's bucket with (a
    /// role, its policy for that one bucket, an instance profile); pass `instanceProfile` to
    /// the nodes' launch spec.
    public struct InstanceRole: Resource {
        public let name: String
        public var bucket: Bucket
        public var region: String
        /// Nodes of other clouds that assume the role with their identity tokens instead of EC2
        /// instances (its trust then names only them).
        public var webIdentities: [WorkloadIdentity]
        /// The account's OIDC provider of each identity's issuer (`OIDCProvider.arn`); none for
        /// Google's, which IAM knows.
        public var providers: [Ref<String>?] = []
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, bucket: Bucket, region: String, webIdentities: [WorkloadIdentity] = [], fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.bucket = bucket
            self.region = region
            self.webIdentities = webIdentities
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_instance_role", name: name) }
        /// The instance profile's name, for `LaunchSpec.instanceProfile`.
        public var instanceProfile: Ref<String> { Ref(address, "instance_profile") }
        public var roleARN: Ref<String> { Ref(address, "role_arn") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = ["bucket": bucket.id.value]
            if !webIdentities.isEmpty {
                inputs["web_identities"] = .list(webIdentities.enumerated().map { i, identity in
                    var fields: [String: Value] = ["issuer": identity.issuer.value, "subject": identity.subject.value, "audience": .string(identity.audience)]
                    if i < providers.count, let provider = providers[i] { fields["provider_arn"] = provider.value }
                    return .map(fields)
                })
            }
            AWSDeclaration.declare(
                "aws_instance_role", name, region: region, inputs: inputs, tags: [:], dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_oidc_provider`: an OpenID Connect issuer IAM roles may trust (`url`), for tokens
    /// whose audience is one of `clientIDs`.
    public struct OIDCProvider: Resource {
        public let name: String
        public var url: any StringExpression
        public var clientIDs: [String]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, url: any StringExpression, clientIDs: [String], fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.url = url
            self.clientIDs = clientIDs
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_oidc_provider", name: name) }
        public var arn: Ref<String> { Ref(address, "arn") }

        public func declare(into content: inout StackContent) {
            AWSDeclaration.declare(
                "aws_oidc_provider", name, region: "us-east-1", inputs: ["url": url.value, "client_ids": .list(clientIDs.map(Value.string))], tags: [:],
                dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_s3_object`: the trainer this binary carries, as a zip archive named by its SHA-256
    /// in `bucket` (`stratum/trainer/<sha256>.zip`), for nodes to fetch and build at boot.
    public struct TrainerArchive: Resource {
        public let name: String
        public var bucket: Bucket
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String = "trainer", in bucket: Bucket, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.bucket = bucket
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_s3_object", name: name) }
        public var url: Ref<String> { Ref(address, "url") }

        /// `run` on nodes that fetch this archive.
        public func workload(_ run: TrainerRun = TrainerRun()) -> TrainerWorkload {
            TrainerWorkload(run: run, url: url, sha256: StratumTrainerArtifact.TrainerArchive.bundled.sha256)
        }

        public func declare(into content: inout StackContent) {
            var inputs = StratumTrainerArtifact.TrainerArchive.bundled.objectInputs.mapValues(Value.string)
            inputs["bucket"] = bucket.id.value
            AWSDeclaration.declare("aws_s3_object", name, region: region, inputs: inputs, tags: [:], dependsOn: explicitDependencies, location: location, into: &content)
        }
    }
}
