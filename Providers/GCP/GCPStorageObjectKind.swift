import Crypto
import Foundation
import StratumCloud
import StratumCore
import StratumTrainerArtifact

/// `gcp_storage_object`: an artifact this binary carries (`source`: `stratum:trainer`, the
/// trainer's source archive) stored in a Cloud Storage bucket as object `name`, which is named
/// by its content (`sha256`). A new trainer is a new SHA-256, so a new object and new nodes.
///
/// A create is one multipart upload (the bytes with metadata naming the SHA-256, the create's
/// token and Stratum's ownership: address, stack, lineage, owner and expiry) on the condition that no object of the name exists
/// (`ifGenerationMatch=0`). A create that finds the object there adopts it when its MD5 is
/// the carried bytes' (the same archive, put by an earlier try or another stack); recovery
/// adopts only an object that carries the create's token. Refresh lists the bucket's
/// `stratum/` prefix once per bucket; an object whose bytes are not the carried ones any more
/// is gone, and made again.
struct GCPStorageObjectKind: ResourceKind {
    static let typeName = "gcp_storage_object"
    let type = Self.typeName
    let client: GCPClient

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "id": .computed,
        "stratum_lineage": .computed,
        "project": .input(forceNew: true),
        "bucket": .input(forceNew: true, required: true),
        "name": .input(forceNew: true, required: true),
        "source": .input(forceNew: true, required: true),
        "sha256": .input(forceNew: true, required: true),
        "url": .computed,
        "size": .computed,
        "generation": .computed,
    ])

    func batchKey(_ state: ResourceState) -> String { state.attributes["bucket"]?.stringValue ?? "" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] { BundledArtifact.diagnostics(resource) }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let (bucket, name) = (try GCPInputs.string(resource, "bucket"), try GCPInputs.string(resource, "name"))
        let data = try BundledArtifact.bytes(for: resource)
        let project = resource.inputs["project"]?.stringValue
        var custom: [String: GCPJSON] = [
            "stratum-sha256": .string(try GCPInputs.string(resource, "sha256")), GCPLabels.address: .string(resource.address.description),
            GCPLabels.token: .string(context.token), GCPLabels.stack: .string(resource.ownership.stack), GCPLabels.lineage: .string(resource.ownership.lineage),
        ]
        custom[GCPLabels.owner] = resource.ownership.owner.map(GCPJSON.string)
        custom[GCPLabels.expires] = resource.ownership.expiresTag.map(GCPJSON.string)
        let metadata: GCPJSON = ["name": .string(name), "contentType": "application/zip", "metadata": .object(custom)]
        let (status, answer) = try await client.upload(
            data, metadata: metadata, bucket: bucket, query: [("ifGenerationMatch", "0")], action: "objects.insert", project: project,
            address: resource.address, accepting: [412])
        if status == 412 {
            // The object is there already: this create's earlier try, or the same bytes put by another stack.
            guard let existing = try await object(bucket: bucket, name: name, project: project, address: resource.address), Self.holds(data, existing) else {
                throw ProviderError(
                    .permanent, "gs://\(bucket)/\(name) already exists with other contents than the archive Stratum carries; delete it and apply again",
                    address: resource.address)
            }
            return state(of: resource, from: existing)
        }
        guard let answer else { throw ProviderError(.transient, "GCP objects.insert answered no object", address: resource.address) }
        return state(of: resource, from: answer)
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first, let bucket = first.attributes["bucket"]?.stringValue else { return resources.map { _ in nil } }
        let pages: [GCPJSON]
        do {
            pages = try await client.pages(
                "b/\(GCPBucketKind.segment(bucket))/o", query: [("prefix", "stratum/"), ("maxResults", "1000")], api: .storage, action: "objects.list")
        } catch let error as ProviderError where error.kind == .notFound {
            // The bucket is gone, and its objects with it.
            return resources.map { _ in nil }
        }
        var live: [String: GCPJSON] = [:]
        for item in pages.flatMap({ $0["items"]?.array ?? [] }) { if let name = item["name"]?.string { live[name] = item } }
        return resources.map { state in
            guard let name = state.attributes["name"]?.stringValue, let item = live[name] else { return nil }
            // Other bytes under the name are not this object (known where this binary carries the recorded archive).
            if let source = state.attributes["source"]?.stringValue, let artifact = BundledArtifact.contents(of: source),
                artifact.sha256 == state.attributes["sha256"]?.stringValue, !Self.holds(artifact.data, item)
            {
                return nil
            }
            var refreshed = state
            refreshed.attributes["generation"] = item["generation"]?.string.map(Value.string)
            return refreshed
        }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        state.dependencies = desired.dependencies
        return state
    }

    /// Deletes every generation of the object: a versioned bucket keeps noncurrent ones, and a
    /// bucket must be empty of them before it can go.
    func delete(_ state: ResourceState, context: OperationContext) async throws {
        guard let bucket = state.attributes["bucket"]?.stringValue, let name = state.attributes["name"]?.stringValue else { return }
        let project = state.attributes["project"]?.stringValue
        let pages: [GCPJSON]
        do {
            pages = try await client.pages(
                "b/\(GCPBucketKind.segment(bucket))/o", query: [("prefix", name), ("versions", "true")], api: .storage, action: "objects.list",
                address: state.address)
        } catch let error as ProviderError where error.kind == .notFound {
            return
        }
        for item in pages.flatMap({ $0["items"]?.array ?? [] }) where item["name"]?.string == name {
            let generation = item["generation"]?.string ?? item["generation"]?.number.map { String(Int64($0)) }
            _ = try await client.storage(
                "DELETE", "b/\(GCPBucketKind.segment(bucket))/o/\(GCPBucketKind.segment(name))", query: generation.map { [("generation", $0)] } ?? [],
                action: "objects.delete", project: project, address: state.address, accepting: [404])
        }
    }

    /// An upload that was sent and not answered: the object is this create's when it carries its token.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let (bucket, name) = (try GCPInputs.string(resource, "bucket"), try GCPInputs.string(resource, "name"))
        guard let existing = try await object(bucket: bucket, name: name, project: resource.inputs["project"]?.stringValue, address: resource.address),
            existing["metadata"]?["stratum-token"]?.string == operation.token
        else { return nil }
        return state(of: resource, from: existing)
    }

    /// An object by `bucket/name`, adopted as the archive it holds (its recorded SHA-256).
    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard let slash = id.firstIndex(of: "/") else { return nil }
        let (bucket, name) = (String(id[..<slash]), String(id[id.index(after: slash)...]))
        guard let item = try await object(bucket: bucket, name: name, project: nil, address: address) else { return nil }
        return imported(item, bucket: bucket, name: name, region: region, address: address)
    }

    /// The objects under `stratum/` in the buckets of the client's project that carry Stratum's
    /// ownership (`GCPBucketKind.owned`), whose metadata records it (objects made before it
    /// recorded the stack and lineage are not listed), as imported; the region is the bucket's
    /// location. Listed because a bucket cannot be deleted while it holds one, and an orphaned
    /// bucket's objects are orphans too. Objects in buckets without Stratum's labels are not searched.
    func owned() async throws -> [OwnedResource]? {
        var owned: [OwnedResource] = []
        for (bucket, _, _) in try await GCPBucketKind(client: client).ownedBuckets() {
            guard let name = bucket["name"]?.string else { continue }
            let pages: [GCPJSON]
            do {
                pages = try await client.pages(
                    "b/\(GCPBucketKind.segment(name))/o", query: [("prefix", "stratum/"), ("maxResults", "1000")], api: .storage, action: "objects.list")
            } catch let error as ProviderError where error.kind == .notFound {
                continue  // Deleted since it was listed.
            }
            for item in pages.flatMap({ $0["items"]?.array ?? [] }) {
                guard let object = item["name"]?.string, let (address, ownership) = Self.ownership(in: item["metadata"]), address.type == type else { continue }
                var state = imported(item, bucket: name, name: object, region: (bucket["location"]?.string ?? "").lowercased(), address: address)
                state.attributes["stratum_lineage"] = .string(ownership.lineage)
                owned.append(OwnedResource(state: state, ownership: ownership))
            }
        }
        return owned
    }

    /// The address and ownership an object's custom metadata records; nil without a stack and lineage.
    static func ownership(in metadata: GCPJSON?) -> (address: ResourceAddress, ownership: Ownership)? {
        guard let address = metadata?[GCPLabels.address]?.string.flatMap(ResourceAddress.init(parsing:)), let stack = metadata?[GCPLabels.stack]?.string,
            let lineage = metadata?[GCPLabels.lineage]?.string
        else { return nil }
        let expires = metadata?[GCPLabels.expires]?.string.flatMap { TimeInterval($0) }.map(Date.init(timeIntervalSince1970:))
        return (address, Ownership(stack: stack, lineage: lineage, owner: metadata?[GCPLabels.owner]?.string, expires: expires))
    }

    /// The state of a live object adopted as the archive it holds (its recorded SHA-256).
    func imported(_ item: GCPJSON, bucket: String, name: String, region: String, address: ResourceAddress) -> ResourceState {
        let id = "\(bucket)/\(name)"
        var attributes: [String: Value] = ["bucket": .string(bucket), "name": .string(name), "source": .string(BundledArtifact.trainer)]
        attributes["sha256"] = item["metadata"]?["stratum-sha256"]?.string.map(Value.string)
        attributes["id"] = .string(id)
        attributes["url"] = .string("gs://\(id)")
        attributes["size"] = (item["size"]?.string).flatMap(Int.init).map(Value.int)
        attributes["generation"] = item["generation"]?.string.map(Value.string)
        return ResourceState(address: address, provider: "gcp", region: region, id: id, attributes: attributes, dependencies: [])
    }

    // MARK: helpers

    /// Whether the object's metadata (its base64 `md5Hash`) says it holds `data`.
    static func holds(_ data: Data, _ object: GCPJSON) -> Bool {
        object["md5Hash"]?.string == Data(Insecure.MD5.hash(data: data)).base64EncodedString()
    }

    func object(bucket: String, name: String, project: String?, address: ResourceAddress) async throws -> GCPJSON? {
        let (status, item) = try await client.storage(
            "GET", "b/\(GCPBucketKind.segment(bucket))/o/\(GCPBucketKind.segment(name))", action: "objects.get", project: project, address: address,
            accepting: [404])
        return status == 404 ? nil : item
    }

    func state(of resource: ResolvedResource, from item: GCPJSON) -> ResourceState {
        let bucket = resource.inputs["bucket"]?.stringValue ?? "", name = resource.inputs["name"]?.stringValue ?? ""
        var attributes = resource.inputs
        attributes["id"] = .string("\(bucket)/\(name)")
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        attributes["url"] = .string("gs://\(bucket)/\(name)")
        attributes["size"] = (item["size"]?.string).flatMap(Int.init).map(Value.int)
        attributes["generation"] = item["generation"]?.string.map(Value.string)
        return ResourceState(
            address: resource.address, provider: "gcp", region: resource.region, id: "\(bucket)/\(name)", attributes: attributes,
            dependencies: resource.dependencies)
    }
}
