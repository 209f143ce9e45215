/// What a provider says about one resource type: its attributes and how changes to them behave.
public struct ResourceSchema: Sendable, Hashable {
    public var type: String
    public var attributes: [String: AttributeSchema]
    /// Whether a replacement may create the new resource before deleting the old one.
    public var createBeforeDestroy: Bool

    public init(type: String, attributes: [String: AttributeSchema], createBeforeDestroy: Bool = false) {
        self.type = type
        self.attributes = attributes
        self.createBeforeDestroy = createBeforeDestroy
    }

    /// Attributes a stack may set.
    public var inputs: [String] { attributes.filter { $0.value.role != .computed }.keys.sorted() }
    /// Attributes only the provider sets.
    public var computed: [String] { attributes.filter { $0.value.role != .input }.keys.sorted() }
    /// Whether any attribute holds a secret (encrypted in state, hidden in output).
    public var hasSensitiveAttributes: Bool { attributes.values.contains { $0.sensitive } }
}

/// One attribute of a resource type.
public struct AttributeSchema: Sendable, Hashable {
    public enum Role: Sendable, Hashable {
        /// Set by the stack.
        case input
        /// Set by the provider after apply.
        case computed
        /// Set by the stack or, when omitted, by the provider.
        case optionalComputed
    }

    public var role: Role
    /// Changing it replaces the resource instead of updating it in place.
    public var forceNew: Bool
    public var required: Bool
    public var sensitive: Bool

    public init(role: Role, forceNew: Bool = false, required: Bool = false, sensitive: Bool = false) {
        self.role = role
        self.forceNew = forceNew
        self.required = required
        self.sensitive = sensitive
    }

    public static let computed = AttributeSchema(role: .computed)
    public static func input(forceNew: Bool = false, required: Bool = false, sensitive: Bool = false) -> AttributeSchema {
        AttributeSchema(role: .input, forceNew: forceNew, required: required, sensitive: sensitive)
    }
    /// A value the provider sets that must stay secret (a generated password, a private key).
    public static let sensitiveComputed = AttributeSchema(role: .computed, sensitive: true)
}
