import StratumCore

/// A cloud provider of a `stratum` binary whose kinds' schemas and checks are there at once,
/// while its client (credentials, project or subscription) is made at the first call that
/// reaches the cloud, once: commands that never reach it never look for credentials, and
/// missing ones fail that call with the error making the client gave.
public struct DeferredProvider: Provider {
    public let name: String
    public let kinds: [String: any ResourceKind]
    /// The provider the schemas and checks come from, with a client that never calls the
    /// cloud; the error instead when even that could not be made.
    let offline: Result<any Provider, any Error>
    /// The cloud's name in messages (`GCP`, `Azure`).
    let cloud: String

    /// `offline` is made at once; `live` at the first call, again after a failure (credentials
    /// that were missing may be there on the next try).
    public init(name: String, cloud: String, offline: () throws -> any Provider, live: @escaping @Sendable () async throws -> any Provider) {
        self.name = name
        self.cloud = cloud
        let made = Result { try offline() }
        self.offline = made
        let source = DeferredProviderSource(make: live)
        kinds = ((try? made.get())?.kinds ?? [:]).mapValues { DeferredKind(offline: $0, source: source) }
    }

    public func validate(stack resources: [DesiredResource]) -> [Diagnostic] {
        switch offline {
        case .success(let provider): return provider.validate(stack: resources)
        case .failure(let error): return [Diagnostic(message: "the \(cloud) provider could not be set up: \(error)")]
        }
    }
}

/// Makes the real provider once.
actor DeferredProviderSource {
    let make: @Sendable () async throws -> any Provider
    private var pending: Task<any Provider, any Error>?

    init(make: @escaping @Sendable () async throws -> any Provider) {
        self.make = make
    }

    func provider() async throws -> any Provider {
        let task = pending ?? Task { [make] in try await make() }
        pending = task
        do {
            return try await task.value
        } catch {
            pending = nil
            throw error
        }
    }
}

/// One kind of a `DeferredProvider`: schema and checks from the offline kind, calls by the
/// real provider's kind.
struct DeferredKind: ResourceKind {
    let offline: any ResourceKind
    let source: DeferredProviderSource

    var type: String { offline.type }
    var schema: ResourceSchema { offline.schema }

    func batchKey(_ state: ResourceState) -> String { offline.batchKey(state) }
    func validate(_ resource: DesiredResource) -> [Diagnostic] { offline.validate(resource) }
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview { offline.review(prior, desired: desired) }

    func live(_ address: ResourceAddress? = nil) async throws -> any ResourceKind {
        try await source.provider().kind(type, address: address)
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        try await live().read(resources)
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await live(resource.address).create(resource, context: context)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await live(prior.address).update(prior, to: desired)
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await live(state.address).delete(state, context: context)
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await live(operation.address).recover(operation)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        try await live(address).importResource(region: region, id: id, address: address)
    }

    /// The offline kind answers nil at once when its kind cannot list; one that can would call
    /// the cloud (and fails offline), so the real kind lists. A cloud whose client cannot be
    /// made here (no credentials, no subscription) throws that: `stratum sweep` names the
    /// provider as not searched, with the reason, and fails only where a state uses it.
    func owned() async throws -> [OwnedResource]? {
        do {
            if try await offline.owned() == nil { return nil }
        } catch {
            // It lists by calling the cloud.
        }
        return try await live().owned()
    }
}
