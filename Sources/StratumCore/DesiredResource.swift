/// A resource as the stack declares it, after the DSL has lowered it for its provider.
public struct DesiredResource: Sendable, Hashable {
    public var address: ResourceAddress
    /// The provider that manages it, e.g. `local`.
    public var provider: String
    /// The region it lives in; refresh batches by (type, region).
    public var region: String
    /// Input attributes; values may hold references to other resources' attributes.
    public var inputs: [String: Value]
    /// Explicit dependencies beyond those implied by references.
    public var dependsOn: [ResourceAddress]
    public var location: SourceLocation?

    public init(
        address: ResourceAddress, provider: String, region: String = "default", inputs: [String: Value],
        dependsOn: [ResourceAddress] = [], location: SourceLocation? = nil
    ) {
        self.address = address
        self.provider = provider
        self.region = region
        self.inputs = inputs
        self.dependsOn = dependsOn
        self.location = location
    }

    /// Every resource this one needs to exist first: referenced ones and explicit ones.
    public var dependencies: [ResourceAddress] {
        var seen = Set<ResourceAddress>()
        var result: [ResourceAddress] = []
        let referenced = inputs.keys.sorted().flatMap { inputs[$0]?.references.map(\.address) ?? [] }
        for address in referenced + dependsOn where seen.insert(address).inserted {
            result.append(address)
        }
        return result
    }
}
