import StratumCloud
import StratumCore

/// Builds the flattened parameter lists of EC2's Query API (`Filter.1.Name`, `TagSpecification.1.Tag.2.Key`, …).
struct EC2Parameters {
    var pairs: [(String, String)] = []

    mutating func add(_ name: String, _ value: String?) {
        if let value { pairs.append((name, value)) }
    }

    mutating func add(list name: String, _ values: [String]) {
        for (i, value) in values.enumerated() { pairs.append(("\(name).\(i + 1)", value)) }
    }

    /// `TagSpecification.N` for one resource type.
    mutating func add(tagSpecification resourceType: String, tags: [String: String], index: Int = 1) {
        pairs.append(("TagSpecification.\(index).ResourceType", resourceType))
        for (i, key) in tags.keys.sorted().enumerated() {
            pairs.append(("TagSpecification.\(index).Tag.\(i + 1).Key", key))
            pairs.append(("TagSpecification.\(index).Tag.\(i + 1).Value", tags[key] ?? ""))
        }
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    mutating func add(filters: [(String, [String])]) {
        for (i, filter) in filters.enumerated() {
            pairs.append(("Filter.\(i + 1).Name", filter.0))
            for (j, value) in filter.1.enumerated() { pairs.append(("Filter.\(i + 1).Value.\(j + 1)", value)) }
        }
    }

    /// `Tag.N.Key` / `Tag.N.Value` (CreateTags, DeleteTags).
    mutating func add(tags: [String: String]) {
        for (i, key) in tags.keys.sorted().enumerated() {
            pairs.append(("Tag.\(i + 1).Key", key))
            pairs.append(("Tag.\(i + 1).Value", tags[key] ?? ""))
        }
    }
}

/// The tags every resource Stratum creates carries, so refresh can find a stack's resources
/// with one filtered Describe and recovery can find what an interrupted create left.
enum OwnershipTags {
    static let stack = "stratum:stack"
    static let lineage = "stratum:lineage"
    static let address = "stratum:address"
    static let token = "stratum:token"
    static let owner = "stratum:owner"
    static let expires = "stratum:expires"

    static func tags(for resource: ResolvedResource, token: String) -> [String: String] {
        var tags = userTags(resource.inputs["tags"])
        tags[owner] = resource.ownership.owner
        tags[expires] = resource.ownership.expiresTag
        tags[stack] = resource.ownership.stack
        tags[lineage] = resource.ownership.lineage
        tags[address] = resource.address.description
        tags[Self.token] = token
        if tags["Name"] == nil {
            tags["Name"] = resource.ownership.stack.isEmpty ? resource.address.description : "\(resource.ownership.stack)/\(resource.address)"
        }
        return tags
    }

    /// The stack's own `tags` input as strings.
    static func userTags(_ value: Value?) -> [String: String] {
        guard case .map(let map)? = value else { return [:] }
        var tags: [String: String] = [:]
        for (key, value) in map {
            switch value {
            case .string(let s): tags[key] = s
            case .int(let i): tags[key] = String(i)
            case .bool(let b): tags[key] = b ? "true" : "false"
            default: tags[key] = value.description
            }
        }
        return tags
    }

    /// Reads `<tagSet><item><key/><value/></item></tagSet>`.
    static func parse(_ element: XMLTree) -> [String: String] {
        var tags: [String: String] = [:]
        for item in element.items("tagSet") {
            if let key = item.string("key") { tags[key] = item.string("value") ?? "" }
        }
        return tags
    }

    /// Tags a user set, without Stratum's own and without `Name` when Stratum chose it.
    static func visible(_ tags: [String: String], stack: String, address: String) -> [String: String] {
        var visible = tags.filter { !$0.key.hasPrefix("stratum:") }
        if visible["Name"] == (stack.isEmpty ? address : "\(stack)/\(address)") { visible["Name"] = nil }
        return visible
    }
}
