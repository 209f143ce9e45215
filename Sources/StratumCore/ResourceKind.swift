/// One resource type of a provider: its schema and how to read, create, update, delete,
/// recover and import it. A provider is its kinds; dispatch by type is written once, in the
/// `Provider` extension, so neither the engine nor a provider switches on type names.
public protocol ResourceKind: Sendable {
    /// The type resources declare, e.g. `local_bucket`.
    var type: String { get }
    var schema: ResourceSchema { get }

    /// Resources with equal keys are read in one `read` call. Default: the region. A kind whose
    /// cloud lists everything of an account or project at once returns that scope instead.
    func batchKey(_ state: ResourceState) -> String

    /// Checks of one resource's inputs beyond the schema, run before any call to the cloud.
    func validate(_ resource: DesiredResource) -> [Diagnostic]

    /// A look at the live state before the planner diffs it against the desired inputs: lets a
    /// kind normalise what its cloud reports (a machine type returned as a URL, say) and ask
    /// for replacement when an input change forces it only under some conditions.
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview

    /// Live state of `resources`, all of this type and one batch key: one element per input,
    /// `nil` where the resource no longer exists.
    func read(_ resources: [ResourceState]) async throws -> [ResourceState?]

    /// Creates the resource. `context.token` is unique to this create and stable across
    /// retries, so a retried create never makes a second resource. A create that waits on a
    /// long-running cloud operation records its handle first (`context.record(handle:)`).
    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState

    /// Changes attributes that do not force replacement.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState

    /// Deletes the resource; deleting one that is already gone succeeds.
    func delete(_ state: ResourceState, context: OperationContext) async throws

    /// Settles a create that was interrupted between the cloud call and the state commit: when
    /// `operation.handle` is set, resumes waiting on that cloud operation; otherwise looks the
    /// resource up by `operation.token` (or by ownership naming `operation.address`). Returns
    /// its live state to adopt, or nil when the create never took effect. Never creates anything.
    func recover(_ operation: PendingOperation) async throws -> ResourceState?

    /// Live state of an existing resource by the provider's id, to adopt it into state
    /// (`stratum state import`); nil when no such resource exists.
    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState?

    /// How the resource is billed, read from its attributes (desired inputs or recorded state):
    /// machines of a type, priced from the offer catalog; nil (the default) for what is not a
    /// machine. Plans price machines only.
    func billing(_ attributes: [String: Value], region: String) -> Billing?

    /// Everything of this type the cloud holds that carries Stratum's ownership (tags, labels,
    /// records): each as a state with its `ownership` (workspace and lineage). nil where the
    /// kind cannot list them; `stratum sweep` then says so instead of calling nothing orphaned.
    func owned() async throws -> [OwnedResource]?
}

/// A resource the cloud holds with Stratum's ownership on it.
public struct OwnedResource: Sendable {
    public var state: ResourceState
    public var ownership: Ownership

    public init(state: ResourceState, ownership: Ownership) {
        self.state = state
        self.ownership = ownership
    }
}

extension ResourceKind {
    public func batchKey(_ state: ResourceState) -> String { state.region }

    public func owned() async throws -> [OwnedResource]? { nil }

    public func validate(_ resource: DesiredResource) -> [Diagnostic] { [] }

    public func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview { PlanReview(prior: prior) }

    public func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        throw ProviderError(.permanent, "resources of type '\(type)' cannot be imported; let the stack create them", address: address)
    }
}

/// What a kind's plan hook makes of the live state before the diff.
public struct PlanReview: Sendable {
    /// The live state, normalised to the form the stack declares.
    public var prior: ResourceState
    /// Set when the resource must be replaced although no force-new input changed: why.
    public var replacement: String?

    public init(prior: ResourceState, replacement: String? = nil) {
        self.prior = prior
        self.replacement = replacement
    }
}

/// What a create or delete gets besides the resource: the idempotency token and a way to
/// record the handle of a long-running cloud operation in the journal before waiting on it.
public struct OperationContext: Sendable {
    /// Unique to this operation and stable across retries.
    public var token: String
    private let recorder: @Sendable (String) async throws -> Void

    public init(token: String, recorder: @escaping @Sendable (String) async throws -> Void = { _ in }) {
        self.token = token
        self.recorder = recorder
    }

    /// Writes `handle` (a cloud operation's name or URL) into the operation's journal row, so
    /// recovery after a crash resumes that operation instead of starting another. Returns once
    /// the row is durable.
    public func record(handle: String) async throws {
        try await recorder(handle)
    }
}
