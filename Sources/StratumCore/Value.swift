import Foundation

/// An attribute value in desired configuration, state or a plan.
///
/// `unknown` stands for a value that will only be known after apply (an id the cloud assigns,
/// or an input that refers to such a value). `reference` appears only in desired configuration
/// before the planner resolves it against state. `sensitive` wraps a secret: it is shown as
/// `(sensitive)`, never logged, and sealed (encrypted) whenever it is encoded for storage.
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
    case sensitive(Value)

    /// True when the value, or anything inside it, is unknown or an unresolved reference.
    public var containsUnknown: Bool {
        switch self {
        case .unknown, .reference: return true
        case .sensitive(let inner): return inner.containsUnknown
        case .list(let items): return items.contains { $0.containsUnknown }
        case .map(let entries): return entries.values.contains { $0.containsUnknown }
        default: return false
        }
    }

    /// Every reference inside the value.
    public var references: [AttributeReference] {
        switch self {
        case .reference(let ref): return [ref]
        case .sensitive(let inner): return inner.references
        case .list(let items): return items.flatMap(\.references)
        case .map(let entries): return entries.keys.sorted().flatMap { entries[$0]?.references ?? [] }
        default: return []
        }
    }

    /// Replaces every reference with what `resolve` returns for it.
    public func resolvingReferences(_ resolve: (AttributeReference) -> Value) -> Value {
        switch self {
        case .reference(let ref): return resolve(ref)
        case .sensitive(let inner): return inner.resolvingReferences(resolve).markedSensitive
        case .list(let items): return .list(items.map { $0.resolvingReferences(resolve) })
        case .map(let entries): return .map(entries.mapValues { $0.resolvingReferences(resolve) })
        default: return self
        }
    }

    /// True when the value, or anything inside it, is sensitive.
    public var containsSensitive: Bool {
        switch self {
        case .sensitive: return true
        case .list(let items): return items.contains { $0.containsSensitive }
        case .map(let entries): return entries.values.contains { $0.containsSensitive }
        default: return false
        }
    }

    /// The value with every sensitive wrapper removed: what a provider call needs.
    public var revealed: Value {
        switch self {
        case .sensitive(let inner): return inner.revealed
        case .list(let items): return .list(items.map(\.revealed))
        case .map(let entries): return .map(entries.mapValues(\.revealed))
        default: return self
        }
    }

    /// The value with every secret replaced by the text `(sensitive)`: for display and JSON output.
    public var redacted: Value {
        switch self {
        case .sensitive: return .string("(sensitive)")
        case .list(let items): return .list(items.map(\.redacted))
        case .map(let entries): return .map(entries.mapValues(\.redacted))
        default: return self
        }
    }

    /// The value wrapped as sensitive (once; null and unknown stay as they are).
    public var markedSensitive: Value {
        switch self {
        case .sensitive, .null, .unknown: return self
        default: return .sensitive(revealed)
        }
    }

    /// This value with the sensitivity of `template` carried over: where `template` (a prior or
    /// desired value of the same attribute) is sensitive, so is the result.
    public func carryingSensitivity(of template: Value?) -> Value {
        guard let template, template.containsSensitive else { return self }
        switch (template, self) {
        case (.sensitive, _): return markedSensitive
        case (.map(let t), .map(let m)):
            return .map(Dictionary(uniqueKeysWithValues: m.map { ($0.key, $0.value.carryingSensitivity(of: t[$0.key])) }))
        case (.list(let t), .list(let l)) where t.count == l.count: return .list(zip(l, t).map { $0.carryingSensitivity(of: $1) })
        default: return markedSensitive
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
    private static let sealedTag = "$stratum.sealed"

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
        if m.count == 1, let sealed = m[Self.sealedTag]?.stringValue {
            guard let sealer = decoder.userInfo[.stratumSealer] as? any ValueSealer else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "an encrypted value cannot be read without the state key")
            }
            let plain = try sealer.open(sealed)
            self = .sensitive(try JSONDecoder().decode(Value.self, from: plain))
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
        case .sensitive(let inner):
            // A secret is only ever written sealed; an encoder without a sealer refuses it
            // rather than writing plain text.
            guard let sealer = encoder.userInfo[.stratumSealer] as? any ValueSealer else {
                throw EncodingError.invalidValue(
                    self, .init(codingPath: encoder.codingPath, debugDescription: "a sensitive value cannot be stored without an encryption key"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            try container.encode([Self.sealedTag: try sealer.seal(try encoder.encode(inner.revealed))])
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
        case .sensitive: return "(sensitive)"
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

/// Encrypts and decrypts sensitive values for storage. Put one in an encoder's or decoder's
/// `userInfo[.stratumSealer]`; without it, sensitive values refuse to encode.
public protocol ValueSealer: Sendable {
    /// Ciphertext for `plaintext`, as text safe to embed in JSON.
    func seal(_ plaintext: Data) throws -> String
    func open(_ sealed: String) throws -> Data
}

extension CodingUserInfoKey {
    /// The `ValueSealer` that encodes and decodes `Value.sensitive`.
    public static let stratumSealer = CodingUserInfoKey(rawValue: "stratum.sealer")!
}
