import Foundation
import StratumCloud
import StratumCore

/// Stratum's ownership of an Azure resource, kept in its tags `stratum-stack`,
/// `stratum-lineage`, `stratum-address` and `stratum-token` (a tag value holds 256 characters;
/// longer texts are cut there). Blob containers have no tags: the same four are kept in the
/// container's metadata, under `stratum_stack`, … (metadata names are identifiers).
enum AzureTags {
    static let prefix = "stratum-"
    static let stack = "stratum-stack"
    static let lineage = "stratum-lineage"
    static let address = "stratum-address"
    static let token = "stratum-token"
    static let owner = "stratum-owner"
    static let expires = "stratum-expires"

    /// The ownership tags of what a create with `token` makes (with the owner and expiry of an
    /// ephemeral environment's resources).
    static func ownership(for resource: ResolvedResource, token: String) -> [String: String] {
        var tags = [
            stack: value(resource.ownership.stack), lineage: value(resource.ownership.lineage), address: value(resource.address.description),
            self.token: value(token),
        ]
        tags[owner] = resource.ownership.owner.map(value)
        tags[expires] = resource.ownership.expiresTag
        return tags
    }

    /// The same, as container metadata names.
    static func metadata(for resource: ResolvedResource, token: String) -> [String: String] {
        Dictionary(uniqueKeysWithValues: ownership(for: resource, token: token).map { (metadataName($0.key), $0.value) })
    }

    static func metadataName(_ tag: String) -> String { tag.replacingOccurrences(of: "-", with: "_") }

    static func value(_ text: String) -> String { String(text.prefix(256)) }

    /// Whether `tags` (as ARM answers them; names are case-insensitive) carry a create's token.
    static func carry(token: String, in tags: CloudJSON?, metadata: Bool = false) -> Bool {
        let name = metadata ? metadataName(self.token) : self.token
        let found = (tags?.object ?? [:]).first { $0.key.lowercased() == name }?.value.string
        return !token.isEmpty && found == value(token)
    }

    /// The tags a stack set: all but Stratum's own.
    /// The tags an update sends: Stratum's own as the live resource has them, and the stack's
    /// `wanted` ones instead of whatever user tags it had.
    static func updated(live tags: CloudJSON?, wanted: [String: String]) -> [String: String] {
        (tags?.object ?? [:]).filter { $0.key.lowercased().hasPrefix(prefix) }.compactMapValues(\.string).merging(wanted) { $1 }
    }

    static func user(_ tags: CloudJSON?) -> [String: String] {
        (tags?.object ?? [:]).filter { !$0.key.lowercased().hasPrefix(prefix) }.compactMapValues(\.string)
    }

    /// The `tags` input as strings; numbers and booleans are written as text.
    static func input(_ value: Value?) -> [String: String] {
        (value?.mapValue ?? [:]).compactMapValues { $0.stringValue ?? $0.intValue.map(String.init) ?? $0.boolValue.map { $0 ? "true" : "false" } }
    }

    /// What is wrong with a stack's tags, one sentence each; empty when nothing is.
    static func problems(_ tags: [String: String]) -> [String] {
        var problems: [String] = []
        if tags.count > 46 { problems.append("at most 46 tags may be set (\(tags.count) are); Stratum keeps 4 of Azure's 50 for its own") }
        for (key, value) in tags.sorted(by: { $0.key < $1.key }) {
            if key.lowercased().hasPrefix(prefix) { problems.append("tag '\(key)': names starting with '\(prefix)' are Stratum's own") }
            if key.isEmpty || key.count > 512 || key.contains(where: { "<>%&\\?/".contains($0) }) {
                problems.append("tag name '\(key)' must be 1-512 characters without < > % & \\ ? /")
            }
            if value.count > 256 { problems.append("tag '\(key)' has a value longer than 256 characters") }
        }
        return problems
    }
}
