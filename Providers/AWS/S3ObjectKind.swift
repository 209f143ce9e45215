import Foundation
import StratumCloud
import StratumCore
import StratumTrainerArtifact

/// `aws_s3_object`: an artifact this binary carries (`source`: `stratum:trainer`, the trainer's
/// source archive) put in a bucket under `key`, named by its content (`sha256`). A new trainer
/// is a new SHA-256, so a new object and new nodes. PUT is idempotent: a retried or recovered
/// create writes the same bytes. Refresh lists the bucket's `stratum/` prefix once per bucket.
struct S3ObjectKind: ResourceKind {
    static let typeName = "aws_s3_object"
    let type = Self.typeName
    let client: AWSClient
    /// For the account's bucket list and each bucket's region, when searching for orphans.
    let buckets: S3BucketKind

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "id": .computed,
        "stratum_lineage": .computed,
        "bucket": .input(forceNew: true, required: true),
        "key": .input(forceNew: true, required: true),
        "source": .input(forceNew: true, required: true),
        "sha256": .input(forceNew: true, required: true),
        "url": .computed,
        "size": .computed,
    ])

    func batchKey(_ state: ResourceState) -> String { state.attributes["bucket"]?.stringValue ?? state.region }

    func validate(_ resource: DesiredResource) -> [Diagnostic] { BundledArtifact.diagnostics(resource) }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let bucket = try resource.requireString("bucket"), key = try resource.requireString("key")
        let data = try BundledArtifact.bytes(for: resource)
        let sha256 = try resource.requireString("sha256")
        _ = try await client.s3(
            "PUT", bucket: bucket, key: key,
            headers: [
                ("Content-Type", "application/zip"), ("x-amz-meta-stratum-sha256", sha256),
                ("x-amz-meta-stratum-address", resource.address.description),
                ("x-amz-meta-stratum-token", context.token),
            ] + Self.ownershipMetadata(resource.ownership),
            body: data, region: resource.region, action: "PutObject", address: resource.address)
        return resource.state(id: "\(bucket)/\(key)", computed: ["url": .string("s3://\(bucket)/\(key)"), "size": .int(data.count)])
    }

    /// The stack, lineage, owner and expiry as object metadata (objects carry no tags here), so
    /// `stratum sweep` can tell whose an object is.
    static func ownershipMetadata(_ ownership: Ownership) -> [(String, String)] {
        var headers: [(String, String)] = []
        if !ownership.lineage.isEmpty {
            headers += [("x-amz-meta-stratum-stack", ownership.stack), ("x-amz-meta-stratum-lineage", ownership.lineage)]
        }
        if let owner = ownership.owner { headers.append(("x-amz-meta-stratum-owner", owner)) }
        if let expires = ownership.expiresTag { headers.append(("x-amz-meta-stratum-expires", expires)) }
        return headers
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first, let bucket = first.attributes["bucket"]?.stringValue else { return resources.map { _ in nil } }
        // The bucket is gone, and its objects with it.
        guard let keys = try await keys(in: bucket, region: first.region) else { return resources.map { _ in nil } }
        return resources.map { keys.contains($0.attributes["key"]?.stringValue ?? "") ? $0 : nil }
    }

    /// The keys under `stratum/` in `bucket`; nil when the bucket does not exist.
    func keys(in bucket: String, region: String) async throws -> Set<String>? {
        var keys = Set<String>()
        var continuation: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", "stratum/")]
            if let continuation { query.append(("continuation-token", continuation)) }
            let response = try await client.s3("GET", bucket: bucket, query: query, region: region, action: "ListObjectsV2", expect404: true)
            if response.status == 404 { return nil }
            let root = XMLTree.parse(response.body)
            for item in root?.all("Contents") ?? [] { if let key = item.string("Key") { keys.insert(key) } }
            continuation = root?.string("IsTruncated") == "true" ? root?.string("NextContinuationToken") : nil
        } while continuation != nil
        return keys
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        state.dependencies = desired.dependencies
        return state
    }

    /// Deletes every version of the key (a versioned bucket keeps them, and a bucket must be
    /// empty of versions before it can go), delete markers included.
    func delete(_ state: ResourceState, context: OperationContext) async throws {
        guard let bucket = state.attributes["bucket"]?.stringValue, let key = state.attributes["key"]?.stringValue else { return }
        let response = try await client.s3(
            "GET", bucket: bucket, query: [("prefix", key), ("versions", "")], region: state.region, action: "ListObjectVersions", expect404: true,
            address: state.address)
        if response.status == 404 { return }
        let root = XMLTree.parse(response.body)
        let versions = ((root?.all("Version") ?? []) + (root?.all("DeleteMarker") ?? [])).filter { $0.string("Key") == key }.compactMap { $0.string("VersionId") }
        for version in versions.isEmpty ? ["null"] : versions {
            _ = try await client.s3(
                "DELETE", bucket: bucket, key: key, query: [("versionId", version)], region: state.region, action: "DeleteObject", expect404: true,
                address: state.address)
        }
    }

    /// The object this create wrote carries its token (and the planned SHA-256); another
    /// create's object of the same bytes is written again by this one's retry.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let bucket = try resource.requireString("bucket"), key = try resource.requireString("key")
        let response = try await client.s3("HEAD", bucket: bucket, key: key, region: resource.region, action: "HeadObject", expect404: true, address: operation.address)
        guard response.status != 404, response.header("x-amz-meta-stratum-sha256") == resource.inputs["sha256"]?.stringValue,
            response.header("x-amz-meta-stratum-token") == operation.token
        else { return nil }
        let size = response.header("Content-Length").flatMap(Int.init) ?? 0
        return resource.state(id: "\(bucket)/\(key)", computed: ["url": .string("s3://\(bucket)/\(key)"), "size": .int(size)])
    }
}
