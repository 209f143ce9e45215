import Foundation
import StratumCloud
import StratumCore

/// An S3 bucket with ownership tags and optional versioning.
///
/// S3 has no batch Describe: refresh lists every bucket of the account once (existence) and
/// reads versioning per bucket that still exists; stacks hold few buckets. Bucket names are
/// global to the account, so one batch holds the buckets of every region.
struct S3BucketKind: ResourceKind {
    static let typeName = "aws_s3_bucket"
    let type = Self.typeName
    let client: AWSClient
    let ledger: TokenLedger
    /// The region for calls that name none.
    let home: String

    let schema = ResourceSchema(type: Self.typeName, attributes: ownershipAttributes.merging([
        "name": .input(forceNew: true, required: true),
        "versioning": .input(),
        "force_destroy": .input(),
        "arn": .computed,
        "url": .computed,
        "path": .computed,
    ]) { $1 })

    func batchKey(_ state: ResourceState) -> String { "account" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems = AWSValidation.region(resource)
        if let name = resource.inputs["name"]?.stringValue, let why = S3BucketNames.problem(name) {
            problems.append(AWSValidation.problem(resource, "invalid S3 bucket name '\(name)': \(why)"))
        }
        return problems
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let token = context.token
        // A retried create (token seen before) adopts what the first attempt made.
        if await ledger.markSent(token), let existing = try await recover(PendingOperation(creating: resource, token: token)) { return existing }
        let tags = OwnershipTags.tags(for: resource, token: token)
        let name = try resource.requireString("name")
        var body = Data()
        if resource.region != "us-east-1" {
            body = Data("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(resource.region.xmlEscaped)</LocationConstraint></CreateBucketConfiguration>".utf8)
        }
        do {
            _ = try await client.s3("PUT", bucket: name, body: body, region: resource.region, action: "CreateBucket", idempotent: false, address: resource.address)
        } catch let error as ProviderError where error.message.contains("BucketAlreadyOwnedByYou") {
            // Ours already: a retry of this create is fine, anything else is a conflict.
            guard try await self.tags(of: name, region: resource.region, address: resource.address)[OwnershipTags.token] == token else {
                throw ProviderError(.permanent, "bucket '\(name)' already exists in this account and is not managed by this stack; import it or choose another name", address: resource.address)
            }
        } catch let error as ProviderError where error.message.contains("BucketAlreadyExists") {
            throw ProviderError(.permanent, "bucket name '\(name)' is taken (bucket names are global across all AWS accounts); choose another", address: resource.address)
        }
        try await putTags(tags, bucket: name, region: resource.region, address: resource.address)
        if resource.inputs["versioning"]?.boolValue == true {
            try await putVersioning(true, bucket: name, region: resource.region, address: resource.address)
        }
        return resource.state(id: name, computed: computed(name))
    }

    func computed(_ name: String) -> [String: Value] {
        ["arn": .string("arn:aws:s3:::\(name)"), "url": .string("s3://\(name)"), "path": .string("s3://\(name)")]
    }

    func putTags(_ tags: [String: String], bucket: String, region: String, address: ResourceAddress?) async throws {
        let set = tags.keys.sorted().map { "<Tag><Key>\($0.xmlEscaped)</Key><Value>\((tags[$0] ?? "").xmlEscaped)</Value></Tag>" }.joined()
        let body = Data("<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>\(set)</TagSet></Tagging>".utf8)
        _ = try await client.s3(
            "PUT", bucket: bucket, query: [("tagging", "")], headers: [("Content-MD5", SigV4Signer.md5Base64(body))], body: body,
            region: region, action: "PutBucketTagging", address: address)
    }

    func tags(of bucket: String, region: String, address: ResourceAddress?) async throws -> [String: String] {
        let response = try await client.s3("GET", bucket: bucket, query: [("tagging", "")], region: region, action: "GetBucketTagging", expect404: true, address: address)
        guard response.status != 404, let root = XMLTree.parse(response.body) else { return [:] }
        var tags: [String: String] = [:]
        for tag in root["TagSet"]?.all("Tag") ?? [] {
            if let key = tag.string("Key") { tags[key] = tag.string("Value") ?? "" }
        }
        return tags
    }

    func putVersioning(_ enabled: Bool, bucket: String, region: String, address: ResourceAddress?) async throws {
        let body = Data("<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>\(enabled ? "Enabled" : "Suspended")</Status></VersioningConfiguration>".utf8)
        _ = try await client.s3(
            "PUT", bucket: bucket, query: [("versioning", "")], headers: [("Content-MD5", SigV4Signer.md5Base64(body))], body: body,
            region: region, action: "PutBucketVersioning", address: address)
    }

    func versioning(of bucket: String, region: String, address: ResourceAddress?) async throws -> Bool? {
        let response = try await client.s3("GET", bucket: bucket, query: [("versioning", "")], region: region, action: "GetBucketVersioning", expect404: true, address: address)
        guard response.status != 404 else { return nil }
        return XMLTree.parse(response.body)?.string("Status") == "Enabled"
    }

    /// Names of every bucket the account owns (one paginated ListBuckets).
    func listBuckets(region: String) async throws -> Set<String> {
        var names = Set<String>()
        var continuation: String?
        repeat {
            var query: [(String, String)] = [("max-buckets", "1000")]
            if let continuation { query.append(("continuation-token", continuation)) }
            let response = try await client.s3("GET", bucket: nil, query: query, region: region, action: "ListBuckets")
            guard let root = XMLTree.parse(response.body) else { throw ProviderError(.transient, "ListBuckets returned a response that is not XML") }
            for bucket in root["Buckets"]?.all("Bucket") ?? [] { if let name = bucket.string("Name") { names.insert(name) } }
            continuation = root.string("ContinuationToken").flatMap { $0.isEmpty ? nil : $0 }
        } while continuation != nil
        return names
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let existing = try await listBuckets(region: first.region)
        var result: [ResourceState?] = []
        for prior in resources {
            guard existing.contains(prior.id), let versioning = try await versioning(of: prior.id, region: prior.region, address: prior.address) else {
                result.append(nil)
                continue
            }
            var state = prior
            if prior.attributes["versioning"]?.boolValue == true || versioning { state.attributes["versioning"] = .bool(versioning) }
            result.append(state)
        }
        return result
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        guard let name = operation.inputs["name"]?.stringValue else { return nil }
        let resource = operation.resolved
        guard let versioning = try await versioning(of: name, region: operation.region, address: operation.address) else { return nil }
        let tags = try await self.tags(of: name, region: operation.region, address: operation.address)
        if tags[OwnershipTags.token] == operation.token {
            var state = resource.state(id: name, computed: computed(name))
            state.attributes["versioning"] = .bool(versioning)
            return state
        }
        if tags.keys.contains(where: { $0.hasPrefix("stratum:") }) { return nil }
        // Killed between CreateBucket and tagging it: the bucket is ours only if it is empty and untagged;
        // finish what the create started.
        let objects = try await client.s3("GET", bucket: name, query: [("list-type", "2"), ("max-keys", "1")], region: operation.region, action: "ListObjectsV2", address: operation.address)
        guard XMLTree.parse(objects.body)?.string("KeyCount") == "0" else { return nil }
        try await putTags(OwnershipTags.tags(for: resource, token: operation.token), bucket: name, region: operation.region, address: operation.address)
        if operation.inputs["versioning"]?.boolValue == true, !versioning {
            try await putVersioning(true, bucket: name, region: operation.region, address: operation.address)
        }
        return resource.state(id: name, computed: computed(name))
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let wanted = desired.inputs["versioning"]?.boolValue ?? false
        if wanted != (prior.attributes["versioning"]?.boolValue ?? false) {
            try await putVersioning(wanted, bucket: prior.id, region: prior.region, address: prior.address)
        }
        if OwnershipTags.userTags(prior.attributes["tags"]) != OwnershipTags.userTags(desired.inputs["tags"]) {
            var tags = try await self.tags(of: prior.id, region: prior.region, address: prior.address).filter { $0.key.hasPrefix("stratum:") }
            for (key, value) in OwnershipTags.userTags(desired.inputs["tags"]) { tags[key] = value }
            try await putTags(tags, bucket: prior.id, region: prior.region, address: prior.address)
        }
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        if state.attributes["force_destroy"]?.boolValue == true { try await empty(state) }
        do {
            _ = try await client.s3("DELETE", bucket: state.id, region: state.region, action: "DeleteBucket", address: state.address)
        } catch let error as ProviderError where error.kind == .notFound {
            return
        } catch let error as ProviderError where error.message.contains("BucketNotEmpty") {
            throw ProviderError(.permanent, "bucket '\(state.id)' is not empty; empty it first or set force_destroy", address: state.address)
        }
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard let versioning = try await versioning(of: id, region: region, address: address) else { return nil }
        var attributes = computed(id)
        attributes["name"] = .string(id)
        attributes["versioning"] = .bool(versioning)
        attributes["id"] = .string(id)
        return ResourceState(address: address, provider: "aws", region: region, id: id, attributes: attributes)
    }

    /// Deletes every object version, for `force_destroy`.
    func empty(_ state: ResourceState) async throws {
        while true {
            let response = try await client.s3("GET", bucket: state.id, query: [("versions", "")], region: state.region, action: "ListObjectVersions", expect404: true, address: state.address)
            guard response.status != 404, let root = XMLTree.parse(response.body) else { return }
            let entries = root.all("Version") + root.all("DeleteMarker")
            if entries.isEmpty { return }
            for entry in entries {
                guard let key = entry.string("Key") else { continue }
                var query: [(String, String)] = []
                if let version = entry.string("VersionId"), version != "null" { query.append(("versionId", version)) }
                _ = try await client.s3("DELETE", bucket: state.id, key: key, query: query, region: state.region, action: "DeleteObject", address: state.address)
            }
        }
    }
}
