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
