import Foundation
import Stratum
import StratumCore

/// A cloud whose creates are long-running operations, as GCP's and Azure's are: a create
/// starts an operation, records its handle in the journal, then waits for the operation to
/// finish. The test decides when an operation finishes (`finish`), so it can kill the run
/// while the create waits and check that recovery resumes the same operation instead of
/// starting another. Kept in a directory, so a killed CLI and its rerun see the same cloud.
/// Type `lro_thing`.
public struct LongRunningProvider: Provider {
    public let name = "lro"
    public let root: URL
    public let kinds: [String: any ResourceKind]

    public init(root: URL) {
        self.root = root
        kinds = [LongRunningKind.typeName: LongRunningKind(cloud: LongRunningCloud(root: root))]
    }

    var cloud: LongRunningCloud { LongRunningCloud(root: root) }

    /// Handles of every operation started, sorted.
    public var startedOperations: [String] { cloud.operations().map(\.handle).sorted() }

    /// Lets operation `handle` finish: its resource exists from now on.
    public func finish(_ handle: String) throws { try cloud.finish(handle) }

    /// The id of the resource operation `handle` makes.
    public static func thingID(_ handle: String) -> String { "lro-" + handle.suffix(12) }
}

/// The files of the long-running cloud: `operations/<n>.json` and `things/<id>.json`.
struct LongRunningCloud: Sendable {
    let root: URL

    struct Operation: Codable {
        var handle: String
        var token: String
        var address: ResourceAddress
        var region: String
        var inputs: [String: Value]
        var done = false
    }

    var operationsDirectory: URL { root.appendingPathComponent("operations") }
    var thingsDirectory: URL { root.appendingPathComponent("things") }

    func file(of handle: String) -> URL { operationsDirectory.appendingPathComponent("\(handle.suffix(12)).json") }

    func operations() -> [Operation] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: operationsDirectory.path)) ?? []
        return files.compactMap { try? JSONDecoder().decode(Operation.self, from: Data(contentsOf: operationsDirectory.appendingPathComponent($0))) }
    }

    func start(_ resource: ResolvedResource, token: String) throws -> String {
        let handle = "operations/" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try save(Operation(handle: handle, token: token, address: resource.address, region: resource.region, inputs: resource.inputs), to: file(of: handle))
        return handle
    }

    func finish(_ handle: String) throws {
        guard var operation = try? JSONDecoder().decode(Operation.self, from: Data(contentsOf: file(of: handle))), !operation.done else { return }
        var attributes = operation.inputs
        let id = LongRunningProvider.thingID(handle)
        attributes["id"] = .string(id)
        try save(ResourceState(address: operation.address, provider: "lro", region: operation.region, id: id, attributes: attributes), to: thing(id))
        operation.done = true
        try save(operation, to: file(of: handle))
    }

    func thing(_ id: String) -> URL { thingsDirectory.appendingPathComponent("\(id).json") }

    func load(thing id: String) -> ResourceState? {
        try? JSONDecoder().decode(ResourceState.self, from: Data(contentsOf: thing(id)))
    }

    /// The resource operation `handle` made; nil while it runs; throws when there is no such operation.
    func result(of handle: String, address: ResourceAddress) throws -> ResourceState? {
        guard let operation = try? JSONDecoder().decode(Operation.self, from: Data(contentsOf: file(of: handle))) else {
            throw ProviderError(.notFound, "no operation \(handle)", address: address)
        }
        return operation.done ? load(thing: LongRunningProvider.thingID(handle)) : nil
    }

    func save(_ value: some Encodable, to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(value).write(to: url, options: .atomic)
    }
}

/// `lro_thing`: create = start an operation, record its handle, poll until it is done.
struct LongRunningKind: ResourceKind {
    static let typeName = "lro_thing"
    let type = Self.typeName
    let cloud: LongRunningCloud
    let schema = ResourceSchema(type: Self.typeName, attributes: ["value": .input(), "id": .computed])

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        resources.map { prior in cloud.load(thing: prior.id).map { _ in prior } }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let handle = try cloud.operations().first { $0.token == context.token }?.handle ?? cloud.start(resource, token: context.token)
        try await context.record(handle: handle)
        return try await wait(handle, address: resource.address)
    }

    /// Polls until the operation finishes; cancellation (the process stopping) ends the wait.
    func wait(_ handle: String, address: ResourceAddress) async throws -> ResourceState {
        while true {
            if let done = try cloud.result(of: handle, address: address) { return done }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        try cloud.save(state, to: cloud.thing(prior.id))
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try? FileManager.default.removeItem(at: cloud.thing(state.id))
    }

    /// With a handle, resumes waiting on that operation; without one, the create died before
    /// it recorded one: look for an operation started with the token.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        guard let handle = operation.handle ?? cloud.operations().first(where: { $0.token == operation.token })?.handle else { return nil }
        return try await wait(handle, address: operation.address)
    }
}

/// One `lro_thing`, for tests that kill an apply while its create waits.
public struct LongRunningStack: Stack {
    public static let name = "lro"
    public static let summary = "One lro_thing whose create waits on a long-running operation (tests)"

    public struct Config: StackConfiguration {
        public init() {}
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        CustomResource("lro_thing", "slow", provider: "lro", inputs: ["value": "v1"])
    }
}
