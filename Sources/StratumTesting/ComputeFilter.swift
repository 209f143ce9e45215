import Foundation
import StratumCore

/// The part of Compute Engine's list `filter` syntax the fake understands: one expression or
/// parenthesised expressions joined by (implicit or explicit) AND, each `field op value` with
/// `=`, `!=`, `:` (`:*` tests presence) or the regular-expression forms `eq` and `ne`. Fields
/// are dotted paths (`labels.stratum-stack`, `status`). Anything else (OR, nesting) is refused
/// rather than guessed at.
struct ComputeFilter: Sendable {
    struct Term: Sendable {
        var field: [String]
        var op: String
        var value: String
    }

    struct Unsupported: Error {}

    var terms: [Term]

    init(_ text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            terms = []
            return
        }
        var expressions: [String] = []
        if trimmed.hasPrefix("(") {
            var rest = Substring(trimmed)
            while !rest.isEmpty {
                guard rest.first == "(", let close = rest.firstIndex(of: ")") else { throw Unsupported() }
                expressions.append(String(rest[rest.index(after: rest.startIndex)..<close]))
                rest = rest[rest.index(after: close)...].drop { $0 == " " }
                if rest.hasPrefix("AND ") { rest = rest.dropFirst(4).drop { $0 == " " } }
            }
        } else {
            expressions = [trimmed]
        }
        terms = try expressions.map(Self.term)
    }

    private static func term(_ expression: String) throws -> Term {
        guard !expression.contains("("), !expression.contains(" OR ") else { throw Unsupported() }
        let pattern = #"^\s*([A-Za-z0-9_.\-]+)\s*(!=|=|:|\seq\s|\sne\s)\s*(.*?)\s*$"#
        guard let regex = try? NSRegularExpression(pattern: pattern),
            let found = regex.firstMatch(in: expression, range: NSRange(expression.startIndex..., in: expression)),
            let field = Range(found.range(at: 1), in: expression), let op = Range(found.range(at: 2), in: expression),
            let value = Range(found.range(at: 3), in: expression)
        else { throw Unsupported() }
        var text = String(expression[value])
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            text = String(text.dropFirst().dropLast())
        }
        return Term(
            field: expression[field].split(separator: ".").map(String.init),
            op: expression[op].trimmingCharacters(in: .whitespaces), value: text)
    }

    func matches(_ resource: Value) -> Bool {
        terms.allSatisfy { term in
            var current: Value? = resource
            for key in term.field { current = current?.mapValue?[key] }
            let actual: String?
            switch current {
            case .string(let text): actual = text
            case .bool(let flag): actual = flag ? "true" : "false"
            case .int(let number): actual = String(number)
            case .none, .null: actual = nil
            default: actual = current?.description
            }
            switch term.op {
            case ":" where term.value == "*": return actual != nil
            case "=", ":": return actual == term.value
            case "!=": return actual != term.value
            case "eq", "ne":
                let whole = (try? NSRegularExpression(pattern: "^(?:\(term.value))$")).map { regex in
                    actual.map { regex.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil } ?? false
                } ?? false
                return term.op == "eq" ? whole : !whole
            default: return false
            }
        }
    }
}
