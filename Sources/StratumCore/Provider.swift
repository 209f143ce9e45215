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

/// A cloud (or the local machine) that can create, read, update and delete resources.
///
/// Reads are batched: the engine calls `read` once per (type, region) with every resource of
/// that kind in state, and a provider answers with as few API calls as its cloud allows.
public protocol Provider: Sendable {
    /// The name resources refer to, e.g. `local`.
    var name: String { get }
    /// Schemas of the resource types this provider manages, keyed by type.
    var schemas: [String: ResourceSchema] { get }

    /// Provider-specific checks of inputs, run before any call to the cloud.
    func validate(_ resource: DesiredResource) -> [Diagnostic]

    /// Checks that need every resource of the stack placed on this provider at once (how many
    /// the machine or account can hold), run after the per-resource checks.
    func validate(stack resources: [DesiredResource]) -> [Diagnostic]

    /// Live state of `resources`, all of one type in one region: one element per input,
    /// `nil` where the resource no longer exists.
    func read(type: String, region: String, resources: [ResourceState]) async throws -> [ResourceState?]

    /// Creates the resource. `token` is unique to this create and stable across retries, so a
    /// retried create never makes a second resource.
    func create(_ resource: ResolvedResource, token: String) async throws -> ResourceState

    /// Changes attributes that do not force replacement.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState

    /// Deletes the resource; deleting one that is already gone succeeds.
    func delete(_ state: ResourceState) async throws

    /// Settles a create that was interrupted between the cloud call and the state commit: looks
    /// the resource up by `operation.token` (or by ownership tags naming `operation.address`) and
    /// returns its live state to adopt, or nil when the create never took effect. Called with the
    /// state lock held, before refresh. Must never create anything.
    func recover(_ operation: PendingOperation) async throws -> ResourceState?

    /// Live state of an existing resource by the provider's id, to adopt it into state
    /// (`stratum state import`); nil when no such resource exists.
    func importResource(type: String, region: String, id: String, address: ResourceAddress) async throws -> ResourceState?
}

extension Provider {
    public func validate(_ resource: DesiredResource) -> [Diagnostic] { [] }

    public func validate(stack resources: [DesiredResource]) -> [Diagnostic] { [] }

    public func importResource(type: String, region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        throw ProviderError(.permanent, "provider '\(name)' cannot import resources of type '\(type)'")
    }

    /// Schema-level checks every provider gets: known type, known attributes, required ones set.
    public func validateAgainstSchema(_ resource: DesiredResource) -> [Diagnostic] {
        guard let schema = schemas[resource.address.type] else {
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

    /// The schema for a type, whichever provider owns it.
    public func schema(provider: String, type: String) -> ResourceSchema? {
        providers[provider]?.schemas[type]
    }
}
