import Foundation

/// A resource as recorded in state and as read back from its provider.
public struct ResourceState: Sendable, Hashable, Codable {
    public var address: ResourceAddress
    public var provider: String
    public var region: String
    /// The provider's own identifier for it (instance id, directory path, pid@start).
    public var id: String
    /// Inputs and computed attributes, all known.
    public var attributes: [String: Value]
    /// Resources it depended on when created; deletes run in reverse of these edges.
    public var dependencies: [ResourceAddress]

    public init(
        address: ResourceAddress, provider: String, region: String = "default", id: String,
        attributes: [String: Value], dependencies: [ResourceAddress] = []
    ) {
        self.address = address
        self.provider = provider
        self.region = region
        self.id = id
        self.attributes = attributes
        self.dependencies = dependencies
    }

    public var type: String { address.type }
}

extension ResourceState {
    /// The attribute a provider's `read` sets on a resource that still exists but has failed
    /// for good (a workload that exited with an error, a node whose processes were killed): a
    /// sentence saying what happened. The planner replaces such a resource.
    public static let failureAttribute = "failure"

    /// Why the resource needs replacing, when its provider reported it failed.
    public var failure: String? { attributes[Self.failureAttribute]?.stringValue }
}
