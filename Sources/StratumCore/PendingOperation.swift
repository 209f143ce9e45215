import Foundation

/// Who owns a resource. Providers write it on everything they create (AWS tags, GCP labels,
/// Azure tags, a record file locally) so refresh can filter by stack and an interrupted create
/// can be found again.
public struct Ownership: Sendable, Hashable, Codable {
    /// The workspace, `<stack>/<environment>`.
    public var stack: String
    /// The state's lineage; two states never share one.
    public var lineage: String
    /// Who an ephemeral environment is for (`stratum up --owner`); nil otherwise.
    public var owner: String?
    /// When an ephemeral environment expires (`stratum up --ttl`); nil otherwise.
    public var expires: Date?

    public init(stack: String, lineage: String, owner: String? = nil, expires: Date? = nil) {
        self.stack = stack
        self.lineage = lineage
        self.owner = owner
        self.expires = expires
    }

    /// The expiry as tags and labels carry it: seconds since the epoch (a digit string every
    /// cloud's label rules accept).
    public var expiresTag: String? { expires.map { String(Int($0.timeIntervalSince1970)) } }

    /// For resources built outside a run (tests, imports before a lineage exists).
    public static let unowned = Ownership(stack: "", lineage: "")
}

/// A provider mutation that has started but whose result is not yet committed to state: the
/// journal row written before the cloud call and removed, in the same transaction as the new
/// state, after it. A row still present on the next run means the process died in between.
public struct PendingOperation: Sendable, Hashable, Codable {
    public enum Action: String, Sendable, Codable, CaseIterable {
        case create, update, delete
    }

    /// Unique per operation.
    public var id: String
    public var address: ResourceAddress
    public var action: Action
    public var provider: String
    public var region: String
    /// The idempotency token the provider received (AWS ClientToken, GCP requestId, …).
    public var token: String
    public var startedAt: Date
    public var ownership: Ownership
    /// What state recorded before the operation (update, delete); nil for a create.
    public var prior: ResourceState?
    /// The resolved inputs sent (create, update): what an adopted resource was asked to be.
    public var inputs: [String: Value]
    public var dependencies: [ResourceAddress]
    /// The handle of the long-running cloud operation the provider waits on (a GCP operation
    /// name, an Azure `Azure-AsyncOperation` URL), recorded in the journal row before the wait
    /// so recovery resumes that operation; nil when the provider recorded none.
    public var handle: String?

    public init(
        id: String = UUID().uuidString.lowercased(), address: ResourceAddress, action: Action, provider: String,
        region: String, token: String, startedAt: Date, ownership: Ownership, prior: ResourceState? = nil,
        inputs: [String: Value] = [:], dependencies: [ResourceAddress] = [], handle: String? = nil
    ) {
        self.handle = handle
        self.inputs = inputs
        self.dependencies = dependencies
        self.id = id
        self.address = address
        self.action = action
        self.provider = provider
        self.region = region
        self.token = token
        self.startedAt = startedAt
        self.ownership = ownership
        self.prior = prior
    }

    public var type: String { address.type }

    /// The row of a create of `resource` with `token`, started now.
    public init(creating resource: ResolvedResource, provider: String = "", token: String) {
        self.init(
            address: resource.address, action: .create, provider: provider, region: resource.region, token: token, startedAt: Date(),
            ownership: resource.ownership, inputs: resource.inputs, dependencies: resource.dependencies)
    }

    /// The resource the operation was asked to make, as providers receive it.
    public var resolved: ResolvedResource {
        ResolvedResource(address: address, region: region, inputs: inputs, dependencies: dependencies, ownership: ownership)
    }
}
