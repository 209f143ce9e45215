/// Identifies one resource in a stack: `type.name` or `type.name[index]`, e.g. `local_node.workers[0]`.
public struct ResourceAddress: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The provider resource type, e.g. `local_bucket`.
    public var type: String
    /// The name given in the stack.
    public var name: String
    /// Position within a counted group (a node pool's nodes), if any.
    public var index: Int?

    public init(type: String, name: String, index: Int? = nil) {
        self.type = type
        self.name = name
        self.index = index
    }

    /// Parses `type.name` or `type.name[3]`; returns nil for anything else.
    public init?(parsing text: String) {
        guard let dot = text.firstIndex(of: ".") else { return nil }
        let type = String(text[..<dot])
        var rest = String(text[text.index(after: dot)...])
        var index: Int?
        if rest.hasSuffix("]"), let open = rest.lastIndex(of: "[") {
            guard let number = Int(rest[rest.index(after: open)..<rest.index(before: rest.endIndex)]), number >= 0 else {
                return nil
            }
            index = number
            rest = String(rest[..<open])
        }
        guard !type.isEmpty, !rest.isEmpty, Self.isIdentifier(type), Self.isName(rest) else { return nil }
        self.init(type: type, name: rest, index: index)
    }

    public var description: String {
        if let index { return "\(type).\(name)[\(index)]" }
        return "\(type).\(name)"
    }

    /// The address without its index: the group a counted resource belongs to.
    public var group: ResourceAddress { ResourceAddress(type: type, name: name) }

    public static func < (lhs: ResourceAddress, rhs: ResourceAddress) -> Bool {
        if lhs.type != rhs.type { return lhs.type < rhs.type }
        if lhs.name != rhs.name { return lhs.name < rhs.name }
        return (lhs.index ?? -1) < (rhs.index ?? -1)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = ResourceAddress(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid resource address '\(text)'"))
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    static func isIdentifier(_ text: String) -> Bool {
        text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// Names may also carry dashes, as bucket and pool names often do.
    public static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }
}
