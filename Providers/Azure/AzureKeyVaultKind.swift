import Foundation
import StratumCloud
import StratumCore

/// `azure_key_vault`: the Key Vault a cluster's node secrets are kept in (`AzureNodeSecrets`),
/// with Azure RBAC as its authorization (no access policies), and the role Key Vault Secrets
/// User on the vault alone for `reader` (the node identity's principal), so a node reads its own
/// cluster's secrets and no other vault's. The assignment's name is derived from scope,
/// principal and role (`AzureRoleAssignment`), so a retried create makes one.
///
/// Azure keeps every deleted vault, soft-deleted, for its retention (7 days here, the least
/// Azure allows), and its name stays taken meanwhile: delete therefore purges the vault after
/// deleting it (purge protection is left off, which Azure allows and cannot undo once on), so a
/// destroy removes the secrets for good and a later apply can take the same name. A create that
/// finds a deleted vault of its name purges it first only when its tags say it was this
/// resource's (the same address and lineage); any other is refused, naming it.
struct AzureKeyVaultKind: ResourceKind {
    static let typeName = "azure_key_vault"
    static let vaultType = "Microsoft.KeyVault/vaults"
    /// The built-in role Key Vault Secrets User: read secrets' contents.
    static let secretsUser = "4633458b-17de-408a-b874-0445c86b69e6"
    /// Days a deleted vault is kept before Azure purges it on its own (Azure's least).
    static let retentionDays = 7
    static let nameRule = AzureNames.Rule(
        minLength: 3, maxLength: 24, extra: "-", lowercaseOnly: true,
        text: "3-24 letters, digits and '-', starting with a letter, ending with a letter or digit, no '--'; unique across Azure")

    let client: AzureClient
    /// What the subscription holds with Stratum's tags, shared with the provider's other kinds.
    let listing: AzureOwnedListing
    let type = Self.typeName

    init(client: AzureClient, listing: AzureOwnedListing? = nil) {
        self.client = client
        self.listing = listing ?? AzureOwnedListing(client: client)
    }

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "subscription": .input(forceNew: true),
        "resource_group": .input(forceNew: true, required: true),
        "name": AttributeSchema(role: .optionalComputed, forceNew: true),
        // The directory the vault trusts for its tokens: the node identity's tenant.
        "tenant_id": .input(forceNew: true, required: true),
        // The principal that may read the secrets (the node identity's); a change moves the assignment.
        "reader": .input(required: true),
        "tags": .input(),
        "id": .computed, "uri": .computed, "role_assignment_id": .computed, "stratum_lineage": .computed,
    ])

    /// Why `name` cannot be a vault's.
    static func problem(name: String) -> String? {
        if let problem = nameRule.problem(name.lowercased()) { return problem }
        guard name.first?.isLetter == true, name.last?.isLetter == true || name.last?.isNumber == true, !name.contains("--") else {
            return "name '\(name)' does not fit Azure's rule for a key vault: \(nameRule.text)"
        }
        return nil
    }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [String] = []
        if let name = resource.inputs["name"]?.stringValue, let problem = Self.problem(name: name) { problems.append(problem) }
        problems += AzureTags.problems(AzureTags.input(resource.inputs["tags"]))
        return problems.map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    // MARK: names

    func name(of resource: ResolvedResource) -> String {
        if let name = resource.inputs["name"]?.stringValue, !name.isEmpty { return name }
        var derived = AzureNames.derived(from: resource.address, lineage: resource.ownership.lineage, rule: Self.nameRule)
        while derived.contains("--") { derived = derived.replacingOccurrences(of: "--", with: "-") }
        return derived.first?.isLetter == true ? derived : "v" + derived.prefix(Self.nameRule.maxLength - 1)
    }

    func path(of resource: ResolvedResource, client: AzureClient) throws -> String {
        "\(try AzureInputs.group(resource.inputs, client, resource.address))/providers/\(Self.vaultType)/\(name(of: resource))"
    }

    /// Where a deleted vault of `name` in `location` is kept (GET), and purged (POST `/purge`).
    static func deletedPath(name: String, location: String, client: AzureClient) -> String {
        "/subscriptions/\(client.subscription)/providers/Microsoft.KeyVault/locations/\(location)/deletedVaults/\(name)"
    }

    // MARK: create

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let client = client.in(resource.inputs)
        let path = try path(of: resource, client: client)
        let name = name(of: resource)
        if let existing = try await client.getIfExists(path, action: "vaults.get", address: resource.address) {
            guard AzureTags.carry(token: context.token, in: existing["tags"]) else {
                throw ProviderError(
                    .permanent, "a key vault named \(name) already exists in that resource group and this create did not make it; name another",
                    address: resource.address)
            }
        } else {
            try await purgeLeftover(name: name, resource: resource, client: client)
        }
        let tags = AzureTags.input(resource.inputs["tags"]).merging(AzureTags.ownership(for: resource, token: context.token)) { $1 }
        let vault = try await putVault(path, tags: tags, resource: resource, client: client)
        return try await complete(resource, vault: vault, client: client)
    }

    /// Purges a deleted vault of this name left by this resource (an earlier destroy whose
    /// purge did not finish); refuses one of anything else.
    func purgeLeftover(name: String, resource: ResolvedResource, client: AzureClient) async throws {
        let deleted = Self.deletedPath(name: name, location: resource.region, client: client)
        guard let leftover = try await client.getIfExists(deleted, action: "vaults.getDeleted", address: resource.address) else { return }
        let tags = (leftover["properties"]?["tags"]?.object ?? [:]).compactMapValues(\.string)
        func tag(_ key: String) -> String? { tags.first { $0.key.lowercased() == key }?.value }
        guard tag(AzureTags.address) == AzureTags.value(resource.address.description), tag(AzureTags.lineage) == AzureTags.value(resource.ownership.lineage) else {
            let until = leftover["properties"]?["scheduledPurgeDate"]?.string.map { " until \($0)" } ?? ""
            throw ProviderError(
                .permanent, "a deleted key vault named \(name) is kept by Azure's soft delete\(until), and it is not this resource's to purge; name another",
                address: resource.address)
        }
        try await purge(deleted, address: resource.address, client: client)
    }

    func purge(_ deleted: String, address: ResourceAddress, client: AzureClient) async throws {
        do {
            let answer = try await client.post("\(deleted)/purge", action: "vaults.purgeDeleted", address: address)
            _ = try await client.finish(answer, action: "vaults.purgeDeleted", address: address)
        } catch let error as ProviderError where error.kind == .notFound {
            // Purged already.
        }
    }

    func putVault(_ path: String, tags: [String: String], resource: ResolvedResource, client: AzureClient) async throws -> CloudJSON {
        let tenant = try AzureInputs.string(resource.inputs, "tenant_id", resource.address)
        let body: CloudJSON = [
            "location": .string(resource.region), "tags": .object(tags.mapValues(CloudJSON.string)),
            "properties": [
                "tenantId": .string(tenant), "sku": ["family": "A", "name": "standard"],
                // Roles (Azure RBAC) decide who reads what; no access policies.
                "enableRbacAuthorization": true,
                "enableSoftDelete": true, "softDeleteRetentionInDays": .number(Double(Self.retentionDays)),
            ],
        ]
        let answer = try await client.put(path, body: body, action: "vaults.createOrUpdate", address: resource.address, region: resource.region)
        _ = try await client.finish(answer, action: "vaults.createOrUpdate", address: resource.address, region: resource.region)
        guard let vault = try await client.getIfExists(path, action: "vaults.get", address: resource.address) else {
            throw ProviderError(.transient, "Azure vaults.createOrUpdate finished but \(path) does not exist", address: resource.address)
        }
        return vault
    }

    /// The reader's assignment on the vault (a no-op when it exists), and the state.
    func complete(_ resource: ResolvedResource, vault: CloudJSON, client: AzureClient) async throws -> ResourceState {
        let id = try vault["id"]?.string ?? path(of: resource, client: client)
        let reader = try AzureInputs.string(resource.inputs, "reader", resource.address)
        let assignment = try await AzureRoleAssignment.put(
            Self.secretsUser, to: reader, at: id, what: "nodes of \(resource.ownership.stack.isEmpty ? "" : resource.ownership.stack + " ")\(resource.address) read their secrets",
            address: resource.address, client: client)
        var attributes = resource.inputs
        attributes["name"] = .string(name(of: resource))
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        attributes["id"] = .string(id)
        attributes["uri"] = vault["properties"]?["vaultUri"]?.string.map(Value.string)
        attributes["role_assignment_id"] = .string(assignment)
        return ResourceState(address: resource.address, provider: "azure", region: resource.region, id: id, attributes: attributes, dependencies: resource.dependencies)
    }

    // MARK: read, update, delete, recover

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        var refreshed: [ResourceState?] = []
        for state in resources {
            let client = client.in(subscriptionOf: state.id)
            guard let vault = try await client.getIfExists(state.id, action: "vaults.get", address: state.address) else {
                refreshed.append(nil)
                continue
            }
            // The assignment gone: the nodes may no longer read the vault; the next apply makes it again.
            var current = try await AzureRoleAssignment.refreshed(state, live: vault, granting: "reader", client: client)
            current.attributes["uri"] = vault["properties"]?["vaultUri"]?.string.map(Value.string)
            refreshed.append(current)
        }
        return refreshed
    }

    /// New tags on the vault (its body again, Stratum's tags kept); a new (or lost) reader's
    /// assignment made, and the old one removed.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let client = client.in(desired.inputs)
        return try await AzureRoleAssignment.updateHolder(
            prior, to: desired, action: "vaults.get", client: client,
            put: { try await putVault(prior.id, tags: $0, resource: desired, client: client) },
            complete: { try await complete(desired, vault: $0, client: client) })
    }

    /// Removes the assignment, deletes the vault (its secrets with it), then purges it.
    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let client = client.in(subscriptionOf: state.id)
        try await AzureRoleAssignment.delete(of: state, client: client)
        try await client.deleteAndWait(state.id, action: "vaults.delete", address: state.address)
        let name = AzureNames.lastSegment(state.id)
        try await purge(Self.deletedPath(name: name, location: state.region, client: client), address: state.address, client: client)
    }

    /// The vaults that carry Stratum's tags, from the provider's shared listing, each with its
    /// reader's assignment at the vault, so that deleting one removes it, then deletes and
    /// purges the vault with its secrets. A vault deleted but not purged is not listed (Azure
    /// purges it at the end of its retention).
    func owned() async throws -> [OwnedResource]? {
        var owned: [OwnedResource] = []
        for item in try await listing.resources(ofType: Self.vaultType) where !AzureTags.names(other: type, in: item) {
            guard let id = item["id"]?.string else { continue }
            let client = client.in(subscriptionOf: id)
            guard let vault = try await client.getIfExists(id, action: "vaults.get"), let owner = AzureTags.owner(of: vault["tags"]), owner.address.type == type
            else { continue }
            let vaultID = vault["id"]?.string ?? id
            var attributes: [String: Value] = ["id": .string(vaultID)]
            attributes["name"] = vault["name"]?.string.map(Value.string)
            attributes["uri"] = vault["properties"]?["vaultUri"]?.string.map(Value.string)
            attributes["tenant_id"] = vault["properties"]?["tenantId"]?.string.map(Value.string)
            attributes["role_assignment_id"] = try await AzureRoleAssignment.find(Self.secretsUser, at: vaultID, client: client).map(Value.string)
            let region = vault["location"]?.string ?? item["location"]?.string ?? ""
            let state = ResourceState(address: owner.address, provider: "azure", region: region, id: vaultID, attributes: attributes, dependencies: [])
            owned.append(OwnedResource(state: state, ownership: owner.ownership))
        }
        return owned
    }

    /// A create whose answer was lost: the vault carries the create's token, and its
    /// assignment is made (again: the same name).
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let client = client.in(resource.inputs)
        return try await AzureRoleAssignment.recoverHolder(
            operation, path: try path(of: resource, client: client), action: "vaults.get", client: client,
            complete: { try await complete(resource, vault: $0, client: client) })
    }
}
