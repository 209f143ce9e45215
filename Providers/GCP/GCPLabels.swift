import Crypto
import Foundation
import StratumCore

/// Stratum's ownership of a GCP resource that has labels (instances, gangs, Cloud Storage
/// buckets), kept in the labels `stratum-stack`, `stratum-lineage`, `stratum-address` and `stratum-token`.
///
/// A label value is at most 63 of `a-z`, `0-9`, `_` and `-`. A value that already is one is
/// written as it is; any other as a readable part (lower-cased, other characters turned into
/// `-`) and 16 hex digits of its SHA-256, so the same text always gives the same label and two
/// texts that differ give different ones.
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

    static func isValidKey(_ key: String) -> Bool {
        guard let first = key.first, first.isASCII, first.isLowercase, key.count <= 63 else { return false }
        return key.allSatisfy(isLabelCharacter)
    }

    static func isValidValue(_ value: String) -> Bool { value.count <= 63 && value.allSatisfy(isLabelCharacter) }

    static func isLabelCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isLowercase || character.isNumber || character == "_" || character == "-")
    }
}
