import Foundation
import StratumCore

/// A bucket is a directory under `buckets/`, with a record (carrying the create's token and
/// versioning) under `buckets/.records/`.
struct LocalBucketKind: ResourceKind {
    let type = "local_bucket"
    let paths: LocalPaths

    let schema = ResourceSchema(type: "local_bucket", attributes: [
        "name": .input(forceNew: true, required: true),
        "versioning": .input(),
        "id": .computed, "path": .computed, "url": .computed,
    ])

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        resources.map { state in
            guard let path = state.attributes["path"]?.stringValue, isDirectory(URL(fileURLWithPath: path)) else { return nil }
            var fresh = state
            if let record = try? LocalRecord.load(paths.bucketRecord(state.attributes["name"]?.stringValue ?? state.address.name)) {
                fresh.attributes["versioning"] = record.attributes["versioning"] ?? .bool(false)
            }
            return fresh
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        guard let bucket = resource.inputs["name"]?.stringValue, ResourceAddress.isName(bucket) else {
            throw ProviderError(.permanent, "bucket name must use letters, digits, '-' and '_'", address: resource.address)
        }
        let directory = paths.buckets.appendingPathComponent(bucket)
        let record = paths.bucketRecord(bucket)
        let conflict = ProviderError(
            .permanent,
            "bucket directory \(directory.path) already exists and is not managed by this stack; it was left as it is (adopt it with `stratum state import \(resource.address) \(bucket)`, or choose another name)",
            address: resource.address)
        if FileManager.default.fileExists(atPath: directory.path) {
            // A retried create finds its own bucket; anyone else's is a conflict.
            guard (try? LocalRecord.load(record))?.token == context.token else { throw conflict }
        } else {
            // The record first: it is what tells recovery the directory is ours.
            try LocalRecord(
                id: bucket, token: context.token, attributes: ["versioning": resource.inputs["versioning"] ?? .bool(false)], ownership: resource.ownership,
                address: resource.address
            ).save(record)
            do {
                try FileManager.default.createDirectory(at: paths.buckets, withIntermediateDirectories: true)
                // Not intermediate: fails if someone else made the directory meanwhile.
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
            } catch {
                try? FileManager.default.removeItem(at: record)
                if FileManager.default.fileExists(atPath: directory.path) { throw conflict }
                throw ProviderError(.permanent, "cannot create \(directory.path): \(error.localizedDescription)", address: resource.address)
            }
        }
        return resource.localState(id: bucket, locations(directory))
    }

    func locations(_ directory: URL) -> [String: Value] {
        ["path": .string(directory.path), "url": .string(directory.absoluteURL.absoluteString)]
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let state = prior.updated(to: desired)
        let name = prior.attributes["name"]?.stringValue ?? prior.address.name
        var record = (try? LocalRecord.load(paths.bucketRecord(name))) ?? LocalRecord(id: prior.id, token: nil, attributes: [:])
        record.attributes["versioning"] = state.attributes["versioning"] ?? .bool(false)
        try record.save(paths.bucketRecord(name))
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        if let path = state.attributes["path"]?.stringValue { try paths.removeIfPresent(URL(fileURLWithPath: path)) }
        try paths.removeIfPresent(paths.bucketRecord(state.attributes["name"]?.stringValue ?? state.address.name))
    }

    /// A create writes its record, carrying its token, before it makes the directory: without
    /// that record nothing here is ours, and a directory is never removed.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        guard let bucket = operation.inputs["name"]?.stringValue,
            let record = try? LocalRecord.load(paths.bucketRecord(bucket)), record.token == operation.token
        else { return nil }
        guard FileManager.default.fileExists(atPath: paths.buckets.appendingPathComponent(bucket).path) else {
            // Killed before the directory was made: the create never took effect.
            try paths.removeIfPresent(paths.bucketRecord(bucket))
            return nil
        }
        return try await create(operation.resolved, context: OperationContext(token: operation.token))
    }

    /// Adopts an existing directory by its name.
    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard ResourceAddress.isName(id) else { return nil }
        let directory = paths.buckets.appendingPathComponent(id)
        guard isDirectory(directory) else { return nil }
        let existing = try? LocalRecord.load(paths.bucketRecord(id))
        let versioning = existing?.attributes["versioning"] ?? .bool(false)
        if existing == nil {
            try LocalRecord(id: id, token: nil, attributes: ["versioning": versioning]).save(paths.bucketRecord(id))
        }
        var attributes = locations(directory)
        attributes["name"] = .string(id)
        attributes["versioning"] = versioning
        attributes["id"] = .string(id)
        return ResourceState(address: address, provider: "local", region: region, id: id, attributes: attributes)
    }

    /// Every bucket whose record names the create's ownership. Deleting one removes its
    /// directory and everything in it, as destroying it in its stack would.
    func owned() async throws -> [OwnedResource]? {
        LocalRecord.owned(in: paths.buckets.appendingPathComponent(".records")).compactMap { found in
            let directory = paths.buckets.appendingPathComponent(found.record.id)
            guard isDirectory(directory) else { return nil }
            var attributes = locations(directory)
            attributes["name"] = .string(found.record.id)
            attributes["versioning"] = found.record.attributes["versioning"] ?? .bool(false)
            attributes["id"] = .string(found.record.id)
            let state = ResourceState(address: found.address, provider: "local", region: "local", id: found.record.id, attributes: attributes)
            return OwnedResource(state: state, ownership: found.ownership)
        }
    }

    func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
