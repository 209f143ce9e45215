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

    /// The secrets in `inputs` that would land in a plain-text attribute, as `key` or
    /// `key.entry`, each with a sentence saying why that is refused. Checked at validation and
    /// again, on resolved values, just before a create or update.
    public func secretsInPlainText(_ inputs: [String: Value]) -> [String] {
        var paths: [String] = []
        for key in inputs.keys.sorted() where attributes[key]?.plainText == true {
            guard let value = inputs[key], value.containsSensitive else { continue }
            if case .map(let entries) = value {
                paths += entries.keys.sorted().filter { entries[$0]?.containsSensitive == true }.map { "\(key).\($0)" }
            } else {
                paths.append(key)
            }
        }
        return paths.map {
            "\($0) holds a Secret, but \(type) keeps it in plain text that anyone allowed to describe the resource can read; "
                + "Stratum does not put secrets there. Let the node get the credential through its cloud identity, or pass a reference (such as a secret's name) that the workload resolves"
        }
    }
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
    /// The cloud keeps this input where others can read it in plain text (a machine's boot
    /// script or metadata), so a secret must never be put in it.
    public var plainText: Bool
    /// The provider delivers the secrets in this input through the cloud's secret store: it
    /// receives them still marked sensitive (every other input arrives revealed) and must
    /// never write them anywhere in plain text.
    public var deliversSecrets: Bool

    public init(
        role: Role, forceNew: Bool = false, required: Bool = false, sensitive: Bool = false, plainText: Bool = false, deliversSecrets: Bool = false
    ) {
        self.deliversSecrets = deliversSecrets
        self.role = role
        self.forceNew = forceNew
        self.required = required
        self.sensitive = sensitive
        self.plainText = plainText
    }

    public static let computed = AttributeSchema(role: .computed)
    public static func input(
        forceNew: Bool = false, required: Bool = false, sensitive: Bool = false, plainText: Bool = false, deliversSecrets: Bool = false
    ) -> AttributeSchema {
        AttributeSchema(role: .input, forceNew: forceNew, required: required, sensitive: sensitive, plainText: plainText, deliversSecrets: deliversSecrets)
    }
    /// A value the provider sets that must stay secret (a generated password, a private key).
    public static let sensitiveComputed = AttributeSchema(role: .computed, sensitive: true)
}
