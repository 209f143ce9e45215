import StratumCore

/// A kind built on another: whatever it does not implement itself goes to `inner`.
protocol ForwardingKind: ResourceKind {
    var inner: any ResourceKind { get }
}

extension ForwardingKind {
    var type: String { inner.type }
    var schema: ResourceSchema { inner.schema }
    func batchKey(_ state: ResourceState) -> String { inner.batchKey(state) }
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview { inner.review(prior, desired: desired) }
    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] { try await inner.read(resources) }
    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState { try await inner.create(resource, context: context) }
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState { try await inner.update(prior, to: desired) }
    func delete(_ state: ResourceState, context: OperationContext) async throws { try await inner.delete(state, context: context) }
    func recover(_ operation: PendingOperation) async throws -> ResourceState? { try await inner.recover(operation) }
}

/// A provider with another provider's kinds, where a test replaces what a create does.
struct InterceptingProvider: Provider {
    typealias Create = @Sendable (ResolvedResource, OperationContext, any ResourceKind) async throws -> ResourceState
    let name: String
    let kinds: [String: any ResourceKind]

    init(wrapping inner: any Provider, create: @escaping Create) {
        name = inner.name
        kinds = inner.kinds.mapValues { InterceptingKind(inner: $0, intercept: create) as any ResourceKind }
    }
}

/// Forwards everything to `inner` except create, which goes through `intercept`.
struct InterceptingKind: ForwardingKind {
    let inner: any ResourceKind
    let intercept: InterceptingProvider.Create

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await intercept(resource, context, inner)
    }
}
