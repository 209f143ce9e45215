import Stratum
import StratumCore
import StratumTrainerArtifact

extension GCP {
    /// `gcp_service_account`: the identity a node reads and writes its cluster's bucket with (a
    /// service account bound to `roles/storage.objectAdmin` on that one bucket); pass `email` to
    /// the nodes' instance spec as `serviceAccount`.
    public struct ServiceAccount: Resource {
        public let name: String
        /// The bucket's name (a reference to a `Bucket`'s or `GCP.Bucket`'s id); nil for an
        /// account that uses a bucket of another cloud (which trusts its ID tokens).
        public var bucket: Ref<String>?
        /// The account id (6-30 of a-z, 0-9 and '-'); nil: derived from the address and the state's lineage.
        public var accountID: String?
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, bucket: Stratum.Bucket, accountID: String? = nil, project: String? = nil, region: String, fileID: String = #fileID,
            line: Int = #line
        ) {
            self.init(name, bucketID: bucket.id, accountID: accountID, project: project, region: region, fileID: fileID, line: line)
        }

        public init(
            _ name: String, bucket: GCP.Bucket, accountID: String? = nil, project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.init(name, bucketID: bucket.id, accountID: accountID, project: project, region: region, fileID: fileID, line: line)
        }

        /// An account bound to no bucket of GCP: the identity of nodes whose bucket is on
        /// another cloud, which trusts its ID tokens (`uniqueID`).
        public init(_ name: String, accountID: String? = nil, project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line) {
            self.init(name, bucketID: nil, accountID: accountID, project: project, region: region, fileID: fileID, line: line)
        }

        init(_ name: String, bucketID: Ref<String>?, accountID: String?, project: String?, region: String, fileID: String, line: Int) {
            self.name = name
            self.bucket = bucketID
            self.accountID = accountID
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_service_account", name: name) }
        /// The account's email, for `InstanceSpec.serviceAccount`.
        public var email: Ref<String> { Ref(address, "email") }
        /// The account's numeric unique id: the subject of its ID tokens.
        public var uniqueID: Ref<String> { Ref(address, "unique_id") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = [:]
            if let bucket { inputs["bucket"] = bucket.value }
            if let accountID { inputs["account_id"] = .string(accountID) }
            GCPDeclaration.declare(
                "gcp_service_account", name, project: project, region: region, inputs: inputs, dependsOn: explicitDependencies, location: location,
                into: &content)
        }
    }

    /// `gcp_storage_object`: the trainer this binary carries, as a zip archive named by its
    /// SHA-256 in `bucket` (`stratum/trainer/<sha256>.zip`), for nodes to fetch and build at boot.
    public struct TrainerArchive: Resource {
        public let name: String
        /// The bucket's name (a reference to a `Bucket`'s or `GCP.Bucket`'s id).
        public var bucket: Ref<String>
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String = "trainer", in bucket: Stratum.Bucket, project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.init(name, bucketID: bucket.id, project: project, region: region, fileID: fileID, line: line)
        }

        public init(_ name: String = "trainer", in bucket: GCP.Bucket, project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line) {
            self.init(name, bucketID: bucket.id, project: project, region: region, fileID: fileID, line: line)
        }

        init(_ name: String, bucketID: Ref<String>, project: String?, region: String, fileID: String, line: Int) {
            self.name = name
            self.bucket = bucketID
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_storage_object", name: name) }
        public var url: Ref<String> { Ref(address, "url") }

        /// `run` on nodes that fetch this archive.
        public func workload(_ run: TrainerRun = TrainerRun()) -> TrainerWorkload {
            TrainerWorkload(run: run, url: url, sha256: StratumTrainerArtifact.TrainerArchive.bundled.sha256)
        }

        public func declare(into content: inout StackContent) {
            // The object's name is the archive's key.
            var inputs = StratumTrainerArtifact.TrainerArchive.bundled.objectInputs.mapValues(Value.string)
            inputs["name"] = inputs.removeValue(forKey: "key")
            inputs["bucket"] = bucket.value
            GCPDeclaration.declare(
                "gcp_storage_object", name, project: project, region: region, inputs: inputs, dependsOn: explicitDependencies, location: location,
                into: &content)
        }
    }
}
