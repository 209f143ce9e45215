import Foundation
import StratumCore

/// The embedded default provider: buckets are directories, networks are recorded
/// allocations, and each node is a detached local process. Needs no cloud account.
public struct LocalProvider: Provider {
    public let name = "local"
    /// Everything the provider makes lives under here (default `.stratum/local`).
    public let root: URL

    public init(root: URL) {
        self.root = root
    }

    public var schemas: [String: ResourceSchema] {
        [
            "local_network": ResourceSchema(type: "local_network", attributes: [
                "cidr": .input(forceNew: true, required: true),
                "id": .computed,
            ]),
            "local_bucket": ResourceSchema(type: "local_bucket", attributes: [
                "name": .input(forceNew: true, required: true),
                "versioning": .input(),
                "id": .computed, "path": .computed, "url": .computed,
            ]),
            // Nodes are replaced destroy-before-create: a worker's successor resumes from the
            // checkpoint the old one writes when it is stopped, and never runs beside it.
            "local_node": ResourceSchema(type: "local_node", attributes: [
                "pool": .input(forceNew: true, required: true),
                "index": .input(forceNew: true, required: true),
                // The pool's size and checkpoint location reach the node's environment.
                "count": .input(forceNew: true),
                "checkpoint_url": .input(forceNew: true),
                "image": .input(forceNew: true),
                "command": .input(forceNew: true, required: true),
                "env": .input(forceNew: true),
                "labels": .input(),
                "gpus": .input(forceNew: true),
                "gpu_class": .input(forceNew: true),
                "instance_type": .input(forceNew: true),
                "cpus": .input(forceNew: true),
                "memory_gib": .input(forceNew: true),
                "network_id": .input(forceNew: true),
                "id": .computed, "pid": .computed, "log_path": .computed, "started_at": .computed,
                // running, exited(0), failed(<status>) or lost; `failure` says why a node needs replacing.
                "status": .computed, "isolation": .computed, ResourceState.failureAttribute: .computed,
            ]),
        ]
    }

    public func validate(_ resource: DesiredResource) -> [Diagnostic] {
        guard resource.address.type == "local_node" else { return [] }
        var problems: [Diagnostic] = []
        if let gpus = resource.inputs["gpus"]?.intValue, gpus > 0 {
            problems.append(Diagnostic(address: resource.address, message: "the local provider runs CPU processes and cannot provide \(gpus) GPU(s); place this pool on a cloud or set gpus to 0", location: resource.location))
        }
        if case .list(let argv)? = resource.inputs["command"], let program = argv.first?.stringValue, program.hasPrefix("/"),
            !FileManager.default.isExecutableFile(atPath: program)
        {
            problems.append(Diagnostic(address: resource.address, message: "command '\(program)' is not an executable file", location: resource.location))
        }
        return problems
    }

    /// A stack may not ask for more local nodes than the machine holds (see `LocalCapacity`).
    public func validate(stack resources: [DesiredResource]) -> [Diagnostic] {
        let nodes = resources.filter { $0.address.type == "local_node" }
        guard !nodes.isEmpty else { return [] }
        let capacity: LocalCapacity
        switch LocalCapacity.current() {
        case .success(let found): capacity = found
        case .failure(let problem): return [Diagnostic(message: problem.message)]
        }
        guard nodes.count > capacity.nodes else { return [] }
        var pools: [String: Int] = [:]
        for node in nodes { pools[node.address.name, default: 0] += 1 }
        let counts = pools.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return [
            Diagnostic(
                address: nodes[capacity.nodes].address,
                message: "the stack asks the local provider for \(nodes.count) nodes (\(counts)), but this machine holds at most \(capacity.nodes) (\(capacity.explanation)). "
                    + "Set \(LocalCapacity.overrideVariable) to another limit, or place some node pools on a cloud",
                location: nodes[capacity.nodes].location)
        ]
    }

    var buckets: URL { root.appendingPathComponent("buckets") }
    var networks: URL { root.appendingPathComponent("networks") }
    var nodes: URL { root.appendingPathComponent("nodes") }

    // MARK: read

    public func read(type: String, region: String, resources: [ResourceState]) async throws -> [ResourceState?] {
        switch type {
        case "local_network": return resources.map(readNetwork)
        case "local_bucket": return resources.map(readBucket)
        case "local_node": return LocalProcesses.liveness(of: resources)
        default: throw ProviderError(.permanent, "local provider has no resource type '\(type)'")
        }
    }

    func readNetwork(_ state: ResourceState) -> ResourceState? {
        let file = networks.appendingPathComponent("\(state.address.name).json")
        guard let record = try? LocalRecord.load(file), record.id == state.id else { return nil }
        var fresh = state
        fresh.attributes["cidr"] = record.attributes["cidr"] ?? .null
        return fresh
    }

    func readBucket(_ state: ResourceState) -> ResourceState? {
        guard let path = state.attributes["path"]?.stringValue else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        var fresh = state
        if let record = try? LocalRecord.load(bucketRecord(state.attributes["name"]?.stringValue ?? state.address.name)) {
            fresh.attributes["versioning"] = record.attributes["versioning"] ?? .bool(false)
        }
        return fresh
    }

    // MARK: create / update / delete

    public func create(_ resource: ResolvedResource, token: String) async throws -> ResourceState {
        switch resource.address.type {
        case "local_network": return try createNetwork(resource, token: token)
        case "local_bucket": return try createBucket(resource, token: token)
        case "local_node": return try await LocalProcesses.start(resource, token: token, nodesDirectory: nodes)
        default: throw ProviderError(.permanent, "local provider has no resource type '\(resource.address.type)'", address: resource.address)
        }
    }

    // MARK: recovery

    /// Finds what an interrupted create left: the record carrying its token (networks,
    /// buckets), or the node directory named after its token (nodes).
    public func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        switch operation.type {
        case "local_network":
            let file = networks.appendingPathComponent("\(operation.address.name).json")
            guard let record = try? LocalRecord.load(file), record.token == operation.token else { return nil }
            return try createNetwork(resource, token: operation.token)
        case "local_bucket":
            // A create writes its record, carrying its token, before it makes the directory:
            // without that record nothing here is ours, and a directory is never removed.
            guard let bucket = operation.inputs["name"]?.stringValue,
                let record = try? LocalRecord.load(bucketRecord(bucket)), record.token == operation.token
            else { return nil }
            let directory = buckets.appendingPathComponent(bucket)
            guard FileManager.default.fileExists(atPath: directory.path) else {
                // Killed before the directory was made: the create never took effect.
                try removeIfPresent(bucketRecord(bucket))
                return nil
            }
            return try createBucket(resource, token: operation.token)
        case "local_node":
            return await LocalProcesses.recover(resource, token: operation.token, nodesDirectory: nodes)
        default:
            throw ProviderError(.permanent, "local provider has no resource type '\(operation.type)'", address: operation.address)
        }
    }

    /// Adopts an existing bucket (by name) or network allocation (by its name in the stack).
    /// Nodes are processes that die with their workload, so there is nothing to import.
    public func importResource(type: String, region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        switch type {
        case "local_bucket":
            guard ResourceAddress.isName(id) else { return nil }
            let directory = buckets.appendingPathComponent(id)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
            let versioning = (try? LocalRecord.load(bucketRecord(id)))?.attributes["versioning"] ?? .bool(false)
            if (try? LocalRecord.load(bucketRecord(id))) == nil {
                try LocalRecord(id: id, token: nil, attributes: ["versioning": versioning]).save(bucketRecord(id))
            }
            return ResourceState(address: address, provider: name, region: region, id: id, attributes: [
                "name": .string(id), "versioning": versioning, "id": .string(id),
                "path": .string(directory.path), "url": .string(directory.absoluteURL.absoluteString),
            ])
        case "local_network":
            let file = networks.appendingPathComponent("\(address.name).json")
            guard let record = try? LocalRecord.load(file), record.id == id else { return nil }
            return ResourceState(address: address, provider: name, region: region, id: id, attributes: ["cidr": record.attributes["cidr"] ?? .null, "id": .string(id)])
        default:
            throw ProviderError(.permanent, "local \(type) resources cannot be imported; let the stack create them", address: address)
        }
    }

    public func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        for (name, value) in desired.inputs { state.attributes[name] = value }
        switch prior.address.type {
        case "local_bucket":
            let name = prior.attributes["name"]?.stringValue ?? prior.address.name
            try LocalRecord(id: prior.id, token: nil, attributes: ["versioning": state.attributes["versioning"] ?? .bool(false)]).save(bucketRecord(name))
        case "local_node":
            try LocalProcesses.updateLabels(state)
        default:
            break
        }
        return state
    }

    public func delete(_ state: ResourceState) async throws {
        switch state.address.type {
        case "local_network":
            try removeIfPresent(networks.appendingPathComponent("\(state.address.name).json"))
        case "local_bucket":
            if let path = state.attributes["path"]?.stringValue { try removeIfPresent(URL(fileURLWithPath: path)) }
            try removeIfPresent(bucketRecord(state.attributes["name"]?.stringValue ?? state.address.name))
        case "local_node":
            try await LocalProcesses.stop(state)
        default:
            throw ProviderError(.permanent, "local provider has no resource type '\(state.address.type)'", address: state.address)
        }
    }

    func createNetwork(_ resource: ResolvedResource, token: String) throws -> ResourceState {
        let file = networks.appendingPathComponent("\(resource.address.name).json")
        let id = "net-" + token.prefix(8)
        if let existing = try? LocalRecord.load(file) {
            guard existing.token == token else {
                throw ProviderError(.permanent, "network '\(resource.address.name)' is already allocated by another stack (\(file.path))", address: resource.address)
            }
            return ResourceState(address: resource.address, provider: name, region: resource.region, id: existing.id, attributes: resource.inputs.merging(["id": .string(existing.id)]) { $1 })
        } else {
            try LocalRecord(id: id, token: token, attributes: ["cidr": resource.inputs["cidr"] ?? .null]).save(file)
        }
        var attributes = resource.inputs
        attributes["id"] = .string(id)
        return ResourceState(address: resource.address, provider: name, region: resource.region, id: id, attributes: attributes)
    }

    func bucketRecord(_ bucket: String) -> URL { buckets.appendingPathComponent(".records/\(bucket).json") }

    func createBucket(_ resource: ResolvedResource, token: String) throws -> ResourceState {
        guard let bucket = resource.inputs["name"]?.stringValue, ResourceAddress.isName(bucket) else {
            throw ProviderError(.permanent, "bucket name must use letters, digits, '-' and '_'", address: resource.address)
        }
        let directory = buckets.appendingPathComponent(bucket)
        let record = bucketRecord(bucket)
        let conflict = ProviderError(
            .permanent,
            "bucket directory \(directory.path) already exists and is not managed by this stack; it was left as it is (adopt it with `stratum state import \(resource.address) \(bucket)`, or choose another name)",
            address: resource.address)
        if FileManager.default.fileExists(atPath: directory.path) {
            // A retried create finds its own bucket; anyone else's is a conflict.
            guard (try? LocalRecord.load(record))?.token == token else { throw conflict }
        } else {
            // The record first: it is what tells recovery the directory is ours.
            try LocalRecord(id: bucket, token: token, attributes: ["versioning": resource.inputs["versioning"] ?? .bool(false)]).save(record)
            do {
                try FileManager.default.createDirectory(at: buckets, withIntermediateDirectories: true)
                // Not intermediate: fails if someone else made the directory meanwhile.
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
            } catch {
                try? FileManager.default.removeItem(at: record)
                if FileManager.default.fileExists(atPath: directory.path) { throw conflict }
                throw ProviderError(.permanent, "cannot create \(directory.path): \(error.localizedDescription)", address: resource.address)
            }
        }
        var attributes = resource.inputs
        attributes["id"] = .string(bucket)
        attributes["path"] = .string(directory.path)
        attributes["url"] = .string(directory.absoluteURL.absoluteString)
        return ResourceState(address: resource.address, provider: name, region: resource.region, id: bucket, attributes: attributes)
    }

    func removeIfPresent(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            throw ProviderError(.transient, "cannot remove \(url.path): \(error.localizedDescription)")
        }
    }
}

/// A small JSON file the provider keeps beside what it manages.
struct LocalRecord: Codable {
    var id: String
    var token: String?
    var attributes: [String: Value]

    static func load(_ url: URL) throws -> LocalRecord {
        try JSONDecoder().decode(LocalRecord.self, from: Data(contentsOf: url))
    }

    func save(_ url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(self).write(to: url, options: .atomic)
        } catch {
            throw ProviderError(.transient, "cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
