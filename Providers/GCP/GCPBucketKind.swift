import Foundation
import StratumCloud
import StratumCore

/// A Cloud Storage bucket (`gcp_bucket`), over the Storage JSON API v1.
///
/// Bucket names are global across Cloud Storage and a create carries no request id, so a create
/// is idempotent by name: a retried create that Storage refuses with 409 looks at the bucket
/// and adopts it when it carries this create's token label; a bucket of someone else, or one
/// without the token, is a permanent error naming the bucket. Ownership (stack, lineage,
/// address, token) is kept in labels, and the texts they hash also whole (`GCPLabels.wholeTexts`).
/// Storage cannot filter a bucket list by label, so refresh lists the project's buckets once
/// (paginated, narrowed by the names' common prefix) and matches them by name: one list per
/// project, not a read per bucket. Versioning, labels,
/// the storage class and uniform bucket-level access change in place (PATCH); the name,
/// project and location force a new bucket.
struct GCPBucketKind: ResourceKind {
    static let typeName = "gcp_bucket"
    let type = Self.typeName
    let client: GCPClient

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "project": .input(forceNew: true),
        "name": .input(forceNew: true, required: true),
        "location": AttributeSchema(role: .optionalComputed, forceNew: true),
        "versioning": .input(),
        // Anyone allowed to list the project's buckets reads their labels.
        "labels": .input(plainText: true),
        "storage_class": .input(),
        "uniform_access": .input(),
        "force_destroy": .input(),
        "id": .computed,
        "self_link": .computed,
        "url": .computed,
        "stratum_lineage": .computed,
    ])

    /// Cloud Storage's limit of labels on one bucket.
    static let maxLabels = 64

    static let storageClasses = ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL", "DURABLE_REDUCED_AVAILABILITY"]

    func project(_ inputs: [String: Value]) -> String { inputs["project"]?.stringValue ?? client.project }

    /// A project's buckets are listed at once.
    func batchKey(_ state: ResourceState) -> String { "projects/\(project(state.attributes))" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [String] = []
        if let name = resource.inputs["name"]?.stringValue, let why = GCSBucketNames.problem(name) {
            problems.append("invalid Cloud Storage bucket name '\(name)': \(why)")
        }
        if resource.inputs["labels"]?.mapValue != nil { problems += GCPLabels.problems(GCPLabels.input(resource.inputs["labels"])) }
        if let storageClass = resource.inputs["storage_class"]?.stringValue, !Self.storageClasses.contains(storageClass.uppercased()) {
            problems.append("storage_class '\(storageClass)' is not one of \(Self.storageClasses.joined(separator: ", "))")
        }
        return problems.map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    /// Storage answers locations upper-cased (`US-CENTRAL1`); one the stack wrote in another
    /// case is the same location. Label values are text: a stack's `5` is the live `"5"`.
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        var prior = prior
        if let wanted = desired["location"]?.stringValue, let live = prior.attributes["location"]?.stringValue, wanted.uppercased() == live.uppercased() {
            prior.attributes["location"] = .string(wanted)
        }
        if let wanted = desired["labels"], wanted.mapValue != nil, GCPLabels.input(wanted) == GCPLabels.input(prior.attributes["labels"]) {
            prior.attributes["labels"] = wanted
        }
        return PlanReview(prior: prior)
    }

    // MARK: calls

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let name = try GCPInputs.string(resource, "name")
        let project = project(resource.inputs)
        var body = fields(resource.inputs, location: location(of: resource))
        body["name"] = .string(name)
        var labels = GCPLabels.input(resource.inputs["labels"])
        let own = GCPLabels.ownership(for: resource, token: context.token).merging(GCPLabels.wholeTexts(for: resource)) { $1 }
        for (key, value) in own { labels[key] = value }
        if labels.count > Self.maxLabels {
            throw ProviderError(
                .permanent,
                "a bucket has at most \(Self.maxLabels) labels and Stratum's ownership takes \(own.count) of them here; set at most \(Self.maxLabels - own.count) (\(labels.count - own.count) are set)",
                address: resource.address)
        }
        body["labels"] = .object(labels.mapValues(GCPJSON.string))
        let (status, made) = try await client.storage(
            "POST", "b", query: [("project", project)], body: .object(body), action: "buckets.insert", project: project, address: resource.address,
            accepting: [409])
        if status == 409 { return try await adopt(resource, token: context.token) }
        guard let made else { throw ProviderError(.transient, "GCP buckets.insert answered no bucket", address: resource.address) }
        return state(of: resource, from: made)
    }

    /// A create Storage refused as conflicting: the bucket is this create's when it carries its token.
    func adopt(_ resource: ResolvedResource, token: String) async throws -> ResourceState {
        let name = try GCPInputs.string(resource, "name")
        let existing: GCPJSON?
        do {
            existing = try await bucket(name, project: project(resource.inputs), address: resource.address)
        } catch let error as ProviderError where error.kind == .auth {
            throw ProviderError(
                .permanent, "bucket name '\(name)' is taken by a bucket these credentials cannot see (bucket names are global across all of Cloud Storage); choose another",
                address: resource.address)
        }
        guard let existing else {
            throw ProviderError(.transient, "bucket name '\(name)' was in use when created and is gone now; the create can be tried again", address: resource.address)
        }
        guard GCPLabels.carry(token: token, in: existing["labels"]) else {
            throw ProviderError(
                .permanent, "bucket '\(name)' already exists and was not made by this create; import it (stratum state import) or choose another name",
                address: resource.address)
        }
        return state(of: resource, from: existing)
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let project = project(first.attributes)
        var query = [("project", project), ("maxResults", "1000")]
        let prefix = Self.commonPrefix(resources.map(\.id))
        if !prefix.isEmpty { query.append(("prefix", prefix)) }
        let pages = try await client.pages("b", query: query, api: .storage, action: "buckets.list")
        var live: [String: GCPJSON] = [:]
        for page in pages {
            for item in page["items"]?.array ?? [] { if let name = item["name"]?.string { live[name] = item } }
        }
        return resources.map { state in live[state.id].map { refreshed(state, from: $0) } }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var patch: [String: GCPJSON] = [:]
        let before = fields(prior.attributes, location: nil)
        for (key, value) in fields(desired.inputs, location: nil) where before[key] != value { patch[key] = value }
        let (oldLabels, newLabels) = (GCPLabels.input(prior.attributes["labels"]), GCPLabels.input(desired.inputs["labels"]))
        if oldLabels != newLabels {
            // PATCH merges labels: a key set to null is removed; Stratum's own are left as they are.
            var labels = newLabels.mapValues(GCPJSON.string)
            for key in oldLabels.keys where newLabels[key] == nil { labels[key] = .null }
            patch["labels"] = .object(labels)
        }
        var state = prior
        if !patch.isEmpty {
            let (_, answer) = try await client.storage(
                "PATCH", "b/\(Self.segment(prior.id))", body: .object(patch), action: "buckets.patch", project: project(prior.attributes), address: prior.address)
            if let answer { state = refreshed(state, from: answer) }
        }
        for (key, value) in desired.inputs { state.attributes[key] = value }
        for key in prior.attributes.keys where schema.attributes[key]?.role == .input && desired.inputs[key] == nil { state.attributes[key] = nil }
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let path = "b/\(Self.segment(state.id))"
        let project = project(state.attributes)
        if state.attributes["force_destroy"]?.boolValue == true { try await empty(state) }
        let (status, _) = try await client.storage("DELETE", path, action: "buckets.delete", project: project, address: state.address, accepting: [404, 409])
        if status == 409 {
            throw ProviderError(
                .permanent, "bucket '\(state.id)' is not empty; empty it first or set force_destroy = true (which deletes every object in it)",
                address: state.address)
        }
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        guard let name = resource.inputs["name"]?.stringValue else { return nil }
        let existing: GCPJSON?
        do {
            existing = try await bucket(name, project: project(resource.inputs), address: resource.address)
        } catch let error as ProviderError where error.kind == .auth {
            // A bucket these credentials cannot read is someone else's.
            return nil
        }
        guard let existing, GCPLabels.carry(token: operation.token, in: existing["labels"]) else { return nil }
        return state(of: resource, from: existing)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        let name = id.split(separator: "/").last.map(String.init) ?? id
        guard let item = try await bucket(name, project: client.project, address: address) else { return nil }
        return imported(item, region: region, address: address)
    }

    /// Every bucket of the client's project whose labels record Stratum's ownership with the
    /// whole stack and address (`GCPLabels.wholeTexts`), as imported, its region the bucket's
    /// location. Storage cannot filter a list by label: the project's buckets are listed
    /// (paginated) and picked by their labels. Buckets made before the whole texts were kept
    /// are not listed. Deleting a listed bucket that still holds objects fails: its state does
    /// not set `force_destroy`.
    func owned() async throws -> [OwnedResource]? {
        try await ownedBuckets().map { item, address, ownership in
            var state = imported(item, region: (item["location"]?.string ?? "").lowercased(), address: address)
            state.attributes["stratum_lineage"] = .string(ownership.lineage)
            return OwnedResource(state: state, ownership: ownership)
        }
    }

    /// The client's project's buckets with Stratum's ownership, with the address and ownership their labels record.
    func ownedBuckets() async throws -> [(item: GCPJSON, address: ResourceAddress, ownership: Ownership)] {
        let pages = try await client.pages("b", query: [("project", client.project), ("maxResults", "1000")], api: .storage, action: "buckets.list")
        return pages.flatMap { $0["items"]?.array ?? [] }.compactMap { item in
            GCPLabels.owned(in: item["labels"]).map { (item, $0.address, $0.ownership) }
        }
    }

    /// The state of a live bucket adopted as it is.
    func imported(_ item: GCPJSON, region: String, address: ResourceAddress) -> ResourceState {
        let name = item["name"]?.string ?? ""
        var attributes = attributes(of: item)
        attributes["name"] = .string(name)
        return ResourceState(address: address, provider: "gcp", region: region, id: name, attributes: attributes, dependencies: [])
    }

    // MARK: helpers

    /// The bucket named `name`, nil when there is none.
    func bucket(_ name: String, project: String, address: ResourceAddress?) async throws -> GCPJSON? {
        let (status, item) = try await client.storage("GET", "b/\(Self.segment(name))", action: "buckets.get", project: project, address: address, accepting: [404])
        return status == 404 ? nil : item
    }

    /// Deletes every object (every generation) in the bucket, for `force_destroy`.
    func empty(_ state: ResourceState) async throws {
        let bucket = Self.segment(state.id)
        let project = project(state.attributes)
        let pages: [GCPJSON]
        do {
            pages = try await client.pages("b/\(bucket)/o", query: [("versions", "true"), ("maxResults", "1000")], api: .storage, action: "objects.list", address: state.address)
        } catch let error as ProviderError where error.kind == .notFound {
            return
        }
        for item in pages.flatMap({ $0["items"]?.array ?? [] }) {
            guard let object = item["name"]?.string else { continue }
            let generation = item["generation"]?.string ?? item["generation"]?.number.map { String(Int64($0)) }
            _ = try await client.storage(
                "DELETE", "b/\(bucket)/o/\(Self.segment(object))", query: generation.map { [("generation", $0)] } ?? [], action: "objects.delete",
                project: project, address: state.address, accepting: [404])
        }
    }

    /// The location a create asks for: the input, else the resource's region; upper-cased as Storage answers it.
    func location(of resource: ResolvedResource) -> String {
        (resource.inputs["location"]?.stringValue ?? resource.region).uppercased()
    }

    /// The request fields the inputs set (all but the name and labels).
    func fields(_ inputs: [String: Value], location: String?) -> [String: GCPJSON] {
        var body: [String: GCPJSON] = [:]
        if let location { body["location"] = .string(location) }
        if let versioning = inputs["versioning"]?.boolValue { body["versioning"] = ["enabled": .bool(versioning)] }
        if let storageClass = inputs["storage_class"]?.stringValue { body["storageClass"] = .string(storageClass.uppercased()) }
        let uniform = inputs["uniform_access"]?.boolValue ?? true
        body["iamConfiguration"] = ["uniformBucketLevelAccess": ["enabled": .bool(uniform)]]
        return body
    }

    /// The inputs and computed attributes as the live bucket has them.
    func attributes(of item: GCPJSON) -> [String: Value] {
        var attributes: [String: Value] = [:]
        let name = item["name"]?.string ?? ""
        attributes["location"] = item["location"]?.string.map(Value.string)
        attributes["versioning"] = .bool(item["versioning"]?["enabled"] == .bool(true))
        attributes["labels"] = .map(GCPLabels.user(item["labels"]).mapValues(Value.string))
        attributes["storage_class"] = item["storageClass"]?.string.map(Value.string)
        attributes["uniform_access"] = .bool(item["iamConfiguration"]?["uniformBucketLevelAccess"]?["enabled"] == .bool(true))
        attributes["id"] = .string(item["id"]?.string ?? name)
        attributes["self_link"] = item["selfLink"]?.string.map(Value.string)
        attributes["url"] = .string("gs://\(name)")
        return attributes
    }

    static let computedAttributes: Set<String> = ["location", "id", "self_link", "url"]

    func state(of resource: ResolvedResource, from item: GCPJSON) -> ResourceState {
        var attributes = resource.inputs
        let live = self.attributes(of: item)
        for key in Self.computedAttributes { attributes[key] = live[key] }
        // The location as the stack wrote it, when it wrote one.
        if let wanted = resource.inputs["location"] { attributes["location"] = wanted }
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        let name = item["name"]?.string ?? resource.inputs["name"]?.stringValue ?? ""
        return ResourceState(address: resource.address, provider: "gcp", region: resource.region, id: name, attributes: attributes, dependencies: resource.dependencies)
    }

    /// The recorded state with the live values: computed ones always, inputs the stack set (or
    /// that the bucket has turned on since), so a stack that never named one sees no drift.
    func refreshed(_ prior: ResourceState, from item: GCPJSON) -> ResourceState {
        var state = prior
        for (key, value) in attributes(of: item) {
            let recorded = prior.attributes[key]
            if Self.computedAttributes.contains(key) {
                if key == "location", let recorded = recorded?.stringValue, recorded.uppercased() == value.stringValue?.uppercased() { continue }
                state.attributes[key] = value
                continue
            }
            switch key {
            case "versioning":
                if recorded != nil || value == .bool(true) { state.attributes[key] = value }
            case "labels":
                if recorded != nil || value != .map([:]) { state.attributes[key] = value }
            case "uniform_access":
                if recorded != nil || value == .bool(false) { state.attributes[key] = value }
            case "storage_class":
                if let recorded = recorded?.stringValue, recorded.uppercased() != value.stringValue?.uppercased() { state.attributes[key] = value }
            default:
                break
            }
        }
        return state
    }

    /// A path segment: object names may hold `/` and other characters a path cannot.
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")) ?? text
    }

    /// The longest prefix all of `names` share.
    static func commonPrefix(_ names: [String]) -> String {
        guard var prefix = names.first else { return "" }
        for name in names.dropFirst() {
            while !name.hasPrefix(prefix) { prefix.removeLast() }
        }
        return prefix
    }
}

/// Cloud Storage's bucket-name rules.
enum GCSBucketNames {
    /// Why `name` cannot be a bucket's name; nil when it can.
    static func problem(_ name: String) -> String? {
        let components = name.split(separator: ".", omittingEmptySubsequences: false)
        if name.count < 3 { return "names are at least 3 characters" }
        if components.count == 1, name.count > 63 { return "names without dots are at most 63 characters" }
        if name.count > 222 { return "names are at most 222 characters" }
        if components.contains(where: { $0.isEmpty || $0.count > 63 }) { return "each dot-separated part is 1-63 characters" }
        if !name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "-_.".contains($0)) }) {
            return "names hold only lowercase letters, digits, '-', '_' and '.'"
        }
        if !(name.first!.isLetter || name.first!.isNumber) || !(name.last!.isLetter || name.last!.isNumber) {
            return "names start and end with a letter or digit"
        }
        if components.count == 4, components.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { return "names cannot be IP addresses" }
        if name.hasPrefix("goog") { return "names cannot start with 'goog'" }
        if name.contains("google") || name.contains("g00gle") { return "names cannot contain 'google' or close misspellings of it" }
        return nil
    }
}
