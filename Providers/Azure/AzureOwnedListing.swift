import Foundation
import StratumCloud
import StratumCore

/// What the provider's subscription holds with Stratum's ownership tags, for `owned()`: one
/// "Resources - List" (`/subscriptions/{id}/resources?$filter=tagName eq 'stratum-lineage'`)
/// and one resource group list with the same filter, each paged by `nextLink`, shared by every
/// kind of the provider for a short while (`stratum sweep` asks each kind in turn). ARM refuses
/// a tag filter together with a `resourceType` one, so each kind picks its own type out of the
/// one listing. ARM leaves the tags out of a list filtered by tag name and value, and a listing
/// may be some seconds old: each kind reads every item of its type again (`getIfExists`)
/// before trusting its tags, so what was deleted meanwhile is not listed. Only the client's
/// subscription is searched, not others a stack's `subscription` input names.
actor AzureOwnedListing {
    /// Seconds one listing serves the kinds that ask after the first.
    static let freshness = 60.0

    let client: AzureClient
    private var lists: [String: (at: Double, task: Task<[CloudJSON], any Error>)] = [:]

    init(client: AzureClient) {
        self.client = client
    }

    /// Every top-level resource with the `stratum-lineage` tag (child resources, such as a
    /// network's subnets or an account's containers, are never in it).
    func resources() async throws -> [CloudJSON] {
        try await listed("/subscriptions/\(client.subscription)/resources", action: "resources.list")
    }

    /// The items of `resources()` of one ARM type.
    func resources(ofType type: String) async throws -> [CloudJSON] {
        try await resources().filter { $0["type"]?.string?.lowercased() == type.lowercased() }
    }

    /// Every resource group with the `stratum-lineage` tag.
    func resourceGroups() async throws -> [CloudJSON] {
        try await listed("/subscriptions/\(client.subscription)/resourcegroups", action: "resourceGroups.list")
    }

    private func listed(_ path: String, action: String) async throws -> [CloudJSON] {
        let now = client.clock.monotonic()
        if let cached = lists[path], now - cached.at < Self.freshness {
            return try await value(of: cached.task, at: path)
        }
        let client = client
        let task = Task { try await client.list(path, query: [("$filter", "tagName eq '\(AzureTags.lineage)'")], action: action) }
        lists[path] = (now, task)
        return try await value(of: task, at: path)
    }

    /// A failed listing is not kept: the next kind to ask lists again.
    private func value(of task: Task<[CloudJSON], any Error>, at path: String) async throws -> [CloudJSON] {
        do {
            return try await task.value
        } catch {
            if lists[path]?.task == task { lists[path] = nil }
            throw error
        }
    }
}

extension AzureTags {
    /// The address and ownership that tags (or a container's metadata) carry; nil without
    /// Stratum's address and lineage.
    static func owner(of tags: CloudJSON?, metadata: Bool = false) -> (address: ResourceAddress, ownership: Ownership)? {
        let entries = tags?.object ?? [:]
        func tag(_ name: String) -> String? {
            let wanted = metadata ? metadataName(name) : name
            return entries.first { $0.key.lowercased() == wanted }?.value.string
        }
        guard let text = tag(address), let parsed = ResourceAddress(parsing: text), let lineage = tag(lineage), !lineage.isEmpty else { return nil }
        let expiry = tag(expires).flatMap { Int($0) }.map { Date(timeIntervalSince1970: TimeInterval($0)) }
        return (parsed, Ownership(stack: tag(stack) ?? "", lineage: lineage, owner: tag(owner), expires: expiry))
    }

    /// Whether a list item's tags, when the list answered them, say it is not a resource of
    /// `type` (a VM's NIC and public IP carry the VM's address): it need not be read again.
    static func names(other type: String, in item: CloudJSON) -> Bool {
        guard let owner = owner(of: item["tags"]) else { return false }
        return owner.address.type != type
    }
}
