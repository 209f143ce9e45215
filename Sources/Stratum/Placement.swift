/// Where a portable resource lives: which provider manages it and in which region.
public struct Placement: Sendable, Hashable {
    /// The provider's name, which also prefixes its resource types (`local_bucket`).
    public var provider: String
    public var region: String
    /// Zones the provider may use, in order of preference (empty: the provider's default).
    public var zones: [String]

    public init(provider: String, region: String, zones: [String] = []) {
        self.provider = provider
        self.region = region
        self.zones = zones
    }

    /// The embedded default: nodes are local processes, buckets are directories.
    public static let local = Placement(provider: "local", region: "local")

    /// Where a provider's own type names differ from `<provider>_<kind>`.
    static let resourceTypes: [String: [String: String]] = ["aws": AWSLowering.resourceTypes]

    func address(kind: String, name: String, index: Int? = nil) -> ResourceAddress {
        ResourceAddress(type: Self.resourceTypes[provider]?[kind] ?? "\(provider)_\(kind)", name: name, index: index)
    }
}

/// Common to every resource declaration: an address and explicit dependencies.
public protocol Resource: Declaration {
    var address: ResourceAddress { get }
    /// Dependencies added with `dependsOn`, beyond those implied by references.
    var explicitDependencies: [ResourceAddress] { get set }
}

extension Resource {
    /// Makes this resource wait for `others` even though it refers to none of their attributes.
    public func dependsOn(_ others: any Resource...) -> Self {
        var copy = self
        copy.explicitDependencies += others.map(\.address)
        return copy
    }

    /// Refers to any attribute by name, for attributes without a typed accessor.
    public func attribute<T>(_ name: String, as type: T.Type = String.self) -> Ref<T> {
        Ref(address, name)
    }

    func nameDiagnostics(_ name: String, location: SourceLocation) -> [Diagnostic] {
        guard ResourceAddress.isName(name) else {
            return [Diagnostic(address: address, message: "invalid name '\(name)': use letters, digits, '-' and '_'", location: location)]
        }
        return []
    }
}
