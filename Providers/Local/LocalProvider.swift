import Foundation
import StratumCore

/// The embedded default provider: buckets are directories, networks are recorded
/// allocations, and each node is a detached local process. Needs no cloud account.
public struct LocalProvider: Provider {
    public let name = "local"
    /// Everything the provider makes lives under here (default `.stratum/local`).
    public let root: URL
    public let kinds: [String: any ResourceKind]

    public init(root: URL) {
        self.root = root
        let paths = LocalPaths(root: root)
        let kinds: [any ResourceKind] = [LocalNetworkKind(paths: paths), LocalBucketKind(paths: paths), LocalNodeKind(paths: paths)]
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
    }

    /// A stack may not ask for more local nodes than the machine holds (see `LocalCapacity`).
    public func validate(stack resources: [DesiredResource]) -> [Diagnostic] {
        let nodes = resources.filter { $0.address.type == LocalNodeKind.typeName }
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

    func bucketRecord(_ bucket: String) -> URL { LocalPaths(root: root).bucketRecord(bucket) }
}

/// Where the local provider keeps what it makes.
struct LocalPaths: Sendable {
    let root: URL

    var buckets: URL { root.appendingPathComponent("buckets") }
    var networks: URL { root.appendingPathComponent("networks") }
    var nodes: URL { root.appendingPathComponent("nodes") }

    func bucketRecord(_ bucket: String) -> URL { buckets.appendingPathComponent(".records/\(bucket).json") }
    func networkRecord(_ name: String) -> URL { networks.appendingPathComponent("\(name).json") }

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
