import Crypto
import Foundation
import StratumCore

/// Stratum's ownership of a GCP resource that has labels (instances, gangs, Cloud Storage
/// buckets), kept in the labels `stratum-stack`, `stratum-lineage`, `stratum-address` and `stratum-token`.
///
/// A label value is at most 63 of `a-z`, `0-9`, `_` and `-`. A value that already is one is
/// written as it is; any other as a readable part (lower-cased, other characters turned into
/// `-`) and 16 hex digits of its SHA-256, so the same text always gives the same label and two
/// texts that differ give different ones. Instances keep the whole texts in their description
/// (`GCPOwnership`); buckets, which have none, in `…-text` labels (`wholeTexts`).
enum GCPLabels {
    static let prefix = "stratum-"
    static let stack = "stratum-stack"
    static let lineage = "stratum-lineage"
    static let address = "stratum-address"
    static let token = "stratum-token"
    static let owner = "stratum-owner"
    static let expires = "stratum-expires"

    /// The ownership labels of what a create with `token` makes (with the owner and expiry of
    /// an ephemeral environment's resources).
    static func ownership(for resource: ResolvedResource, token: String) -> [String: String] {
        var labels = [
            stack: value(resource.ownership.stack), lineage: value(resource.ownership.lineage), address: value(resource.address.description),
            self.token: value(token),
        ]
        labels[owner] = resource.ownership.owner.map(value)
        labels[expires] = resource.ownership.expiresTag
        return labels
    }

    /// The labels that keep whole, for a resource without a description (a bucket), what the
    /// ownership labels may only hash: `stratum-stack-text` and `stratum-address-text` always
    /// (their presence says the record has them), the lineage's and owner's where their label
    /// is not the text itself. Text too long for one value goes on in `…-text-2`, `…-text-3`.
    static func wholeTexts(for resource: ResolvedResource) -> [String: String] {
        var labels: [String: String] = [:]
        func keep(_ key: String, _ text: String) {
            for (index, part) in chunks(escaped(text)).enumerated() { labels[textKey(key, part: index)] = part }
        }
        keep(stack, resource.ownership.stack)
        keep(address, resource.address.description)
        if value(resource.ownership.lineage) != resource.ownership.lineage { keep(lineage, resource.ownership.lineage) }
        if let owner = resource.ownership.owner, value(owner) != owner { keep(self.owner, owner) }
        return labels
    }

    /// The address and ownership a bucket's labels record; nil for labels without the whole
    /// texts of the stack and address (no record of Stratum's, or one made before they were kept).
    static func owned(in labels: GCPJSON?) -> (address: ResourceAddress, ownership: Ownership)? {
        guard let labels = labels?.object, labels[lineage] != nil else { return nil }
        func whole(_ key: String) -> String? {
            guard labels[textKey(key, part: 0)] != nil else { return labels[key]?.string }
            var text = ""
            var part = 0
            while let chunk = labels[textKey(key, part: part)]?.string {
                text += chunk
                part += 1
            }
            return unescaped(text)
        }
        guard labels[textKey(stack, part: 0)] != nil, labels[textKey(address, part: 0)] != nil, let workspace = whole(stack),
            let recorded = whole(address).flatMap(ResourceAddress.init(parsing:)), let state = whole(lineage)
        else { return nil }
        let expiry = labels[expires]?.string.flatMap { TimeInterval($0) }.map(Date.init(timeIntervalSince1970:))
        return (recorded, Ownership(stack: workspace, lineage: state, owner: whole(owner), expires: expiry))
    }

    /// The key of part `part` (from 0) of a whole text: `stratum-stack-text`, `stratum-stack-text-2`, ….
    static func textKey(_ key: String, part: Int) -> String { part == 0 ? "\(key)-text" : "\(key)-text-\(part + 1)" }

    /// `text` in label characters, reversibly: `a-z`, `0-9` and `-` as they are, every other
    /// UTF-8 byte as `_` and two hex digits (`demo/dev` is `demo_2fdev`).
    static func escaped(_ text: String) -> [String] {
        text.utf8.map { byte in
            let character = Character(Unicode.Scalar(byte))
            return byte < 0x80 && (character.isLowercase || character.isNumber || character == "-") ? String(character) : String(format: "_%02x", byte)
        }
    }

    /// Escaped units joined into values of at most 63 characters, none split.
    static func chunks(_ units: [String]) -> [String] {
        var chunks = [""]
        for unit in units {
            if chunks[chunks.count - 1].count + unit.count > 63 { chunks.append("") }
            chunks[chunks.count - 1] += unit
        }
        return chunks
    }

    /// The text `escaped` wrote; nil when `text` is not what it writes.
    static func unescaped(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var rest = Substring(text)
        while let first = rest.first {
            if first == "_" {
                guard let byte = UInt8(rest.dropFirst().prefix(2), radix: 16), rest.count >= 3 else { return nil }
                bytes.append(byte)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(contentsOf: Array(String(first).utf8))
                rest = rest.dropFirst()
            }
        }
        return String(bytes: bytes, encoding: .utf8)
    }

    /// `text` as a label value.
    static func value(_ text: String) -> String {
        if isValidValue(text) { return text }
        let readable = String(text.lowercased().map { isLabelCharacter($0) ? $0 : "-" }.prefix(40))
        let digest = SHA256.hash(data: Data(text.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return readable.isEmpty ? digest : "\(readable)-\(digest)"
    }

    /// Whether `labels` (as the API answers them) carry a create's token.
    static func carry(token: String, in labels: GCPJSON?) -> Bool {
        labels?[self.token]?.string == value(token)
    }

    /// The labels a stack set: all but Stratum's own.
    static func user(_ labels: GCPJSON?) -> [String: String] {
        (labels?.object ?? [:]).filter { !$0.key.hasPrefix(prefix) }.compactMapValues(\.string)
    }

    /// The `labels` input as strings; numbers and booleans are written as text.
    static func input(_ value: Value?) -> [String: String] {
        (value?.mapValue ?? [:]).compactMapValues { $0.stringValue ?? $0.intValue.map(String.init) ?? $0.boolValue.map { $0 ? "true" : "false" } }
    }

    /// What is wrong with a stack's labels, one sentence each; empty when nothing is.
    static func problems(_ labels: [String: String]) -> [String] {
        var problems: [String] = []
        if labels.count > 60 { problems.append("at most 60 labels may be set (\(labels.count) are); Stratum keeps the rest of the 64 for its own") }
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            if key.hasPrefix(prefix) { problems.append("label '\(key)': keys starting with '\(prefix)' are Stratum's own") }
            if !isValidKey(key) { problems.append("label key '\(key)' must be 1-63 of a-z, 0-9, '_' and '-', starting with a letter") }
            if !isValidValue(value) { problems.append("label '\(key)' has value '\(value)'; values are at most 63 of a-z, 0-9, '_' and '-'") }
        }
        return problems
    }

    /// A Compute list filter on one label (`labels.KEY = "VALUE"`).
    static func filter(_ key: String, _ value: String) -> String { "labels.\(key) = \"\(value)\"" }

    /// A Compute list filter on the presence of a label, whatever its value (`labels.KEY:*`).
    static func presence(_ key: String) -> String { "labels.\(key):*" }

    static func isValidKey(_ key: String) -> Bool {
        guard let first = key.first, first.isASCII, first.isLowercase, key.count <= 63 else { return false }
        return key.allSatisfy(isLabelCharacter)
    }

    static func isValidValue(_ value: String) -> Bool { value.count <= 63 && value.allSatisfy(isLabelCharacter) }

    static func isLabelCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isLowercase || character.isNumber || character == "_" || character == "-")
    }
}
