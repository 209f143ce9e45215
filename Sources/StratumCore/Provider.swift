import Foundation

/// A resource with every input resolved to a concrete value, ready for a provider call.
public struct ResolvedResource: Sendable, Hashable {
    public var address: ResourceAddress
    public var region: String
    public var inputs: [String: Value]
    public var dependencies: [ResourceAddress]
    /// Written by the provider on what it creates (tags, labels) so it can be found again.
    public var ownership: Ownership

    public init(
        address: ResourceAddress, region: String, inputs: [String: Value], dependencies: [ResourceAddress],
        ownership: Ownership = .unowned
    ) {
        self.address = address
        self.region = region
        self.inputs = inputs
        self.dependencies = dependencies
        self.ownership = ownership
    }
}

/// A cloud (or the local machine): a name and one `ResourceKind` per resource type it manages.
///
/// Everything type-specific lives in the kinds; the extension below dispatches to them, so
/// the engine calls a provider without knowing its types. Reads are batched: the engine calls
/// `read` once per type and batch key (see `ResourceKind.batchKey`) with every resource of
/// that batch in state.
public protocol Provider: Sendable {
    /// The name resources refer to, e.g. `local`.
    var name: String { get }
    /// The resource kinds this provider manages, keyed by type.
    var kinds: [String: any ResourceKind] { get }

    /// Checks that need every resource of the stack placed on this provider at once (how many
    /// the machine or account can hold), run after the per-resource checks.
    func validate(stack resources: [DesiredResource]) -> [Diagnostic]
}

extension Provider {
    public func validate(stack resources: [DesiredResource]) -> [Diagnostic] { [] }

    /// The schema of one type, nil when the provider has no such type.
    public func schema(for type: String) -> ResourceSchema? { kinds[type]?.schema }

    /// The kind managing `type`; a permanent error naming the provider when it has none.
    public func kind(_ type: String, address: ResourceAddress? = nil) throws -> any ResourceKind {
        guard let kind = kinds[type] else {
            throw ProviderError(.permanent, "provider '\(name)' has no resource type '\(type)'", address: address)
        }
        return kind
    }

    /// Provider-specific checks of inputs (the kind's), run before any call to the cloud.
    public func validate(_ resource: DesiredResource) -> [Diagnostic] {
        kinds[resource.address.type]?.validate(resource) ?? []
    }

    /// Live state of `resources`, all of one type and one batch key of its kind.
    public func read(type: String, resources: [ResourceState]) async throws -> [ResourceState?] {
        guard !resources.isEmpty else { return [] }
        return try await kind(type).read(resources)
    }

    public func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await kind(resource.address.type, address: resource.address).create(resource, context: context)
    }

    /// A create outside the journal (tests, tools): no handle is recorded.
    public func create(_ resource: ResolvedResource, token: String) async throws -> ResourceState {
        try await create(resource, context: OperationContext(token: token))
    }

    public func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await kind(prior.type, address: prior.address).update(prior, to: desired)
    }

    public func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await kind(state.type, address: state.address).delete(state, context: context)
    }

    /// A delete outside the engine's journal (tests, tools): a fresh token, so a cloud that
    /// de-duplicates by token never mistakes it for an earlier call.
    public func delete(_ state: ResourceState) async throws {
        try await delete(state, context: OperationContext(token: UUID().uuidString.lowercased()))
    }

    public func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await kind(operation.type, address: operation.address).recover(operation)
    }

    public func importResource(type: String, region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard let kind = kinds[type] else {
            throw ProviderError(.permanent, "provider '\(name)' cannot import resources of type '\(type)'", address: address)
        }
        return try await kind.importResource(region: region, id: id, address: address)
    }

    /// Schema-level checks every provider gets: known type, known attributes, required ones set.
    public func validateAgainstSchema(_ resource: DesiredResource) -> [Diagnostic] {
        guard let schema = schema(for: resource.address.type) else {
            return [Diagnostic(address: resource.address, message: "provider '\(name)' has no resource type '\(resource.address.type)'", location: resource.location)]
        }
        var problems: [Diagnostic] = []
        for key in resource.inputs.keys.sorted() {
            guard let attribute = schema.attributes[key] else {
                problems.append(Diagnostic(address: resource.address, message: "unknown attribute '\(key)'", location: resource.location))
                continue
            }
            if attribute.role == .computed {
                problems.append(Diagnostic(address: resource.address, message: "attribute '\(key)' is computed by the provider and cannot be set", location: resource.location))
            }
        }
        for message in schema.secretsInPlainText(resource.inputs) {
            problems.append(Diagnostic(address: resource.address, message: message, location: resource.location))
        }
        for (key, attribute) in schema.attributes.sorted(by: { $0.key < $1.key }) where attribute.required {
            if resource.inputs[key] == nil || resource.inputs[key] == .null {
                problems.append(Diagnostic(address: resource.address, message: "required attribute '\(key)' is not set", location: resource.location))
            }
        }
        return problems
    }
}

/// The providers a run can use, by name.
public struct ProviderRegistry: Sendable {
    public private(set) var providers: [String: any Provider]

    public init(_ providers: [any Provider] = []) {
        self.providers = [:]
        for provider in providers { self.providers[provider.name] = provider }
    }

    public mutating func register(_ provider: any Provider) {
        providers[provider.name] = provider
    }

    public subscript(name: String) -> (any Provider)? { providers[name] }

    /// The kind managing a type of a provider.
    public func kind(provider: String, type: String) -> (any ResourceKind)? {
        providers[provider]?.kinds[type]
    }

    /// The schema for a type, whichever provider owns it.
    public func schema(provider: String, type: String) -> ResourceSchema? {
        providers[provider]?.schema(for: type)
    }
}
