import Foundation
import StratumCore

/// The embedded default provider: buckets are directories, networks are recorded
/// allocations (real bridged networks once their nodes carry links), and each node is a
/// detached local process. Needs no cloud account.
public struct LocalProvider: Provider {
    public let name = "local"
    /// Everything the provider makes lives under here (default `.stratum/local`).
    public let root: URL
    public let kinds: [String: any ResourceKind]
    let networking: LocalNetworking

    /// `namespaces: .unavailable(why)` keeps every node on the host network, as on a machine
    /// that forbids network namespaces.
    public init(root: URL, namespaces: LocalNamespaces = .automatic) {
        self.root = root
        let paths = LocalPaths(root: root)
        let networking = LocalNetworking(paths: paths, policy: namespaces)
        self.networking = networking
        let kinds: [any ResourceKind] = [
            LocalNetworkKind(paths: paths), LocalBucketKind(paths: paths), LocalNodeKind(paths: paths, networking: networking),
        ]
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
    }

    /// A stack may not ask for more local nodes than the machine holds (see `LocalCapacity`),
    /// nor for links the provider cannot hold (see `LocalNetworkPlan`).
    public func validate(stack resources: [DesiredResource]) -> [Diagnostic] {
        let nodes = resources.filter { $0.address.type == LocalNodeKind.typeName }
        guard !nodes.isEmpty else { return [] }
        return LocalNetworkPlan(resources: resources, networking: networking).problems + capacityProblems(nodes)
    }

    /// What plan and apply should warn about: nodes whose link this machine or stack leaves
    /// unapplied (they run on the host network, as nodes without a link do).
    public func warnings(stack resources: [DesiredResource]) -> [String] {
        LocalNetworkPlan(resources: resources, networking: networking).warnings
    }

    /// What plan and apply say besides: which Local networks are real networks, with the
    /// links their nodes are held to.
    public func notes(stack resources: [DesiredResource]) -> [String] {
        LocalNetworkPlan(resources: resources, networking: networking).notes
    }

    /// Stops the node `state` records as the loss of its machine would: its whole process tree
    /// killed at once with SIGKILL, nothing given a chance to clean up or checkpoint, its files
    /// left. Refresh then reports it lost and the plan replaces it (`stratum chaos churn`).
    public func loseNode(_ state: ResourceState) async throws {
        guard state.address.type == LocalNodeKind.typeName else {
            throw ProviderError(.permanent, "\(state.address) is not a Local node", address: state.address)
        }
        try await LocalProcesses.lose(state)
    }

    func capacityProblems(_ nodes: [DesiredResource]) -> [Diagnostic] {
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

    func bucketRecord(_ bucket: String) -> URL { LocalPaths(root: root).bucketRecord(bucket) }
}

/// Where the local provider keeps what it makes.
struct LocalPaths: Sendable {
    let root: URL

    var buckets: URL { root.appendingPathComponent("buckets") }
    var networks: URL { root.appendingPathComponent("networks") }
    var nodes: URL { root.appendingPathComponent("nodes") }

    func bucketRecord(_ bucket: String) -> URL { buckets.appendingPathComponent(".records/\(bucket).json") }
    /// A network's allocation: one per workspace and name, so a stack's environments each hold
    /// their own (records of older versions, and of no workspace, lie directly under `networks/`).
    func networkRecord(_ name: String, workspace: String) -> URL {
        workspace.isEmpty ? networks.appendingPathComponent("\(name).json") : networks.appendingPathComponent(workspace).appendingPathComponent("\(name).json")
    }

    /// Every network record file there is, old layout and new.
    func networkRecords() -> [URL] {
        guard let walker = FileManager.default.enumerator(at: networks, includingPropertiesForKeys: nil) else { return [] }
        return walker.compactMap { $0 as? URL }.filter { $0.pathExtension == "json" }.sorted { $0.path < $1.path }
    }

    /// The record of the network named `name` whose id is `id`, wherever it lies.
    func networkRecord(named name: String, id: String) -> (record: LocalRecord, file: URL)? {
        networkRecords().lazy.filter { $0.lastPathComponent == "\(name).json" }.compactMap { file in
            (try? LocalRecord.load(file)).flatMap { $0.id == id ? ($0, file) : nil }
        }.first
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
    /// The ownership and address of the create that wrote it (absent in records of older
    /// versions and of imports): what `stratum sweep` compares with every state.
    var ownership: Ownership?
    var address: String?

    init(id: String, token: String?, attributes: [String: Value], ownership: Ownership? = nil, address: ResourceAddress? = nil) {
        self.id = id
        self.token = token
        self.attributes = attributes
        self.ownership = ownership.flatMap { $0.lineage.isEmpty ? nil : $0 }
        self.address = address?.description
    }

    /// Every record in `directory` that names its ownership and address, with its file.
    static func owned(in directory: URL) -> [(record: LocalRecord, ownership: Ownership, address: ResourceAddress, file: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return owned(files: names.filter { $0.hasSuffix(".json") }.sorted().map { directory.appendingPathComponent($0) })
    }

    /// Those of `files` that are records naming their ownership and address.
    static func owned(files: [URL]) -> [(record: LocalRecord, ownership: Ownership, address: ResourceAddress, file: URL)] {
        files.compactMap { file in
            guard let record = try? load(file), let ownership = record.ownership, let address = record.address.flatMap(ResourceAddress.init(parsing:)) else { return nil }
            return (record, ownership, address, file)
        }
    }

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

extension ResolvedResource {
    /// The state a local create hands back: its inputs, id and what the provider adds.
    func localState(id: String, _ computed: [String: Value] = [:]) -> ResourceState {
        var attributes = inputs
        attributes["id"] = .string(id)
        for (key, value) in computed { attributes[key] = value }
        return ResourceState(address: address, provider: "local", region: region, id: id, attributes: attributes)
    }
}

extension ResourceState {
    /// This state with `desired`'s inputs applied.
    func updated(to desired: ResolvedResource) -> ResourceState {
        var state = self
        for (name, value) in desired.inputs { state.attributes[name] = value }
        return state
    }
}
