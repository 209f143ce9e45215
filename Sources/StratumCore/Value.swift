/// An attribute value in desired configuration, state or a plan.
///
/// `unknown` stands for a value that will only be known after apply (an id the cloud assigns,
/// or an input that refers to such a value). `reference` appears only in desired configuration
/// before the planner resolves it against state.
public indirect enum Value: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case map([String: Value])
    case unknown
    case reference(AttributeReference)

    /// True when the value, or anything inside it, is unknown or an unresolved reference.
    public var containsUnknown: Bool {
        switch self {
        case .unknown, .reference: return true
        case .list(let items): return items.contains { $0.containsUnknown }
        case .map(let entries): return entries.values.contains { $0.containsUnknown }
        default: return false
        }
    }

    /// Every reference inside the value.
    public var references: [AttributeReference] {
        switch self {
        case .reference(let ref): return [ref]
        case .list(let items): return items.flatMap(\.references)
        case .map(let entries): return entries.keys.sorted().flatMap { entries[$0]?.references ?? [] }
        default: return []
        }
    }

    /// Replaces every reference with what `resolve` returns for it.
    public func resolvingReferences(_ resolve: (AttributeReference) -> Value) -> Value {
        switch self {
        case .reference(let ref): return resolve(ref)
        case .list(let items): return .list(items.map { $0.resolvingReferences(resolve) })
        case .map(let entries): return .map(entries.mapValues { $0.resolvingReferences(resolve) })
        default: return self
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var intValue: Int? { if case .int(let i) = self { return i } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var listValue: [Value]? { if case .list(let l) = self { return l } else { return nil } }
    public var mapValue: [String: Value]? { if case .map(let m) = self { return m } else { return nil } }
}

/// A reference from one resource's input to another resource's attribute, e.g. `bucket.path`.
public struct AttributeReference: Hashable, Sendable, Codable, CustomStringConvertible {
    public var address: ResourceAddress
    public var attribute: String

    public init(address: ResourceAddress, attribute: String) {
        self.address = address
        self.attribute = attribute
    }

    public var description: String { "\(address).\(attribute)" }
}

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: Value...) { self = .list(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) {
        self = .map(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}

extension Value: Codable {
    // State and plan files store values as plain JSON; unknowns and references are tagged
    // objects so they can never be mistaken for user data.
    private static let unknownTag = "$stratum.unknown"
    private static let referenceTag = "$stratum.ref"

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        if let b = try? container.decode(Bool.self) { self = .bool(b); return }
        if let i = try? container.decode(Int.self) { self = .int(i); return }
        if let d = try? container.decode(Double.self) { self = .double(d); return }
        if let s = try? container.decode(String.self) { self = .string(s); return }
        if let l = try? container.decode([Value].self) { self = .list(l); return }
        let m = try container.decode([String: Value].self)
        if m.count == 1, m[Self.unknownTag] == .bool(true) { self = .unknown; return }
        if m.count == 1, let ref = m[Self.referenceTag]?.stringValue {
            guard let lastDot = ref.lastIndex(of: "."), let address = ResourceAddress(parsing: String(ref[..<lastDot])) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "invalid reference '\(ref)'")
            }
            self = .reference(AttributeReference(address: address, attribute: String(ref[ref.index(after: lastDot)...])))
            return
        }
        self = .map(m)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .list(let l): try container.encode(l)
        case .map(let m): try container.encode(m)
        case .unknown: try container.encode([Self.unknownTag: true])
        case .reference(let ref): try container.encode([Self.referenceTag: ref.description])
        }
    }
}

extension Value: CustomStringConvertible {
    /// The rendering used in human plan output.
    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return quoted(s)
        case .list(let l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        case .map(let m): return "{" + m.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value.description)" }.joined(separator: ", ") + "}"
        case .unknown: return "(known after apply)"
        case .reference(let ref): return "\(ref)"
        }
    }

    private func quoted(_ s: String) -> String {
        var out = "\""
        for ch in s {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.append(ch)
            }
        }
        return out + "\""
    }
}
