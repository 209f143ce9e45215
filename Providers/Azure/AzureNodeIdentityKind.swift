import Crypto
import Foundation
import StratumCloud
import StratumCore

/// `azure_node_identity`: how a VM reaches its cluster's container with no key in its
/// customData. One resource, two ARM objects: a user-assigned managed identity in the resource
/// group (ownership in its tags), and a role assignment of Storage Blob Data Contributor to its
/// principal at `scope` (the container's ARM id), made before any VM names the identity, so a
/// node reads its bucket at first boot. VMs take the identity's `id` and `client_id`
/// (`AZURE_CLIENT_ID` on the node, which IMDS is asked for tokens of).
///
/// Without `scope` there is no assignment: the identity of nodes whose bucket is on another
/// cloud, which trusts the identity's Entra tokens (`issuer`, subject `principal_id`).
///
/// The assignment's name is a GUID derived from the scope, the principal and the role, so a
/// retried create PUTs the same assignment again. Delete removes the assignment, then the
/// identity (an identity deleted first would leave its assignment behind, orphaned). Refresh
/// lists the resource group's identities once and reads each assignment: an assignment deleted
/// out of band is drift of `scope`, which the next apply makes again.
struct AzureNodeIdentityKind: ResourceKind {
    static let typeName = "azure_node_identity"
    static let identityType = "Microsoft.ManagedIdentity/userAssignedIdentities"
    static let assignmentType = "Microsoft.Authorization/roleAssignments"
    /// The built-in role Storage Blob Data Contributor: read, write and delete blobs and containers.
    static let blobDataContributor = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    static let nameRule = AzureNames.Rule(
        minLength: 3, maxLength: 128, extra: "-_", text: "3-128 letters, digits, '-' and '_', starting with a letter or digit")

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
        // What the identity may read and write: a container's (or storage account's) ARM id. A
        // change moves the role assignment; the identity, and so the VMs, stay. None: an
        // identity whose bucket is on another cloud, which trusts its tokens (`issuer`).
        "scope": .input(),
        "tags": .input(),
        "id": .computed, "client_id": .computed, "principal_id": .computed, "tenant_id": .computed, "role_assignment_id": .computed,
        // The issuer of the identity's Entra tokens, as another cloud registers it.
        "issuer": .computed,
        "stratum_lineage": .computed,
    ])

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [String] = []
        if let name = resource.inputs["name"]?.stringValue, let problem = Self.nameRule.problem(name) { problems.append(problem) }
        if let scope = resource.inputs["scope"]?.stringValue, !scope.hasPrefix("/subscriptions/") {
            problems.append("scope '\(scope)' is not an ARM id (/subscriptions/…): name the container or storage account the nodes use")
        }
        problems += AzureTags.problems(AzureTags.input(resource.inputs["tags"]))
        return problems.map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    /// The identities of one subscription and resource group are listed together.
    func batchKey(_ state: ResourceState) -> String { parent(of: state.id).lowercased() }

    func parent(of id: String) -> String { String(id[..<(id.lastIndex(of: "/") ?? id.endIndex)]) }

    // MARK: names

    func name(of resource: ResolvedResource) -> String {
        resource.inputs["name"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            ?? AzureNames.derived(from: resource.address, lineage: resource.ownership.lineage, rule: Self.nameRule)
    }

    func path(of resource: ResolvedResource, client: AzureClient) throws -> String {
        "\(try AzureInputs.group(resource.inputs, client, resource.address))/providers/\(Self.identityType)/\(name(of: resource))"
    }

    /// Storage Blob Data Contributor's definition id in the scope's subscription.
    static func roleDefinition(scope: String, client: AzureClient) -> String {
        AzureRoleAssignment.definition(blobDataContributor, scope: scope, client: client)
    }

    static func assignmentID(scope: String, principal: String, role: String) -> String {
        AzureRoleAssignment.id(scope: scope, principal: principal, role: role)
    }

    // MARK: create

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let client = client.in(resource.inputs)
        let path = try path(of: resource, client: client)
        if let existing = try await client.getIfExists(path, action: "userAssignedIdentities.get", address: resource.address),
            !AzureTags.carry(token: context.token, in: existing["tags"])
        {
            throw ProviderError(
                .permanent, "a managed identity named \(name(of: resource)) already exists in that resource group and this create did not make it; name another",
                address: resource.address)
        }
        let tags = AzureTags.input(resource.inputs["tags"]).merging(AzureTags.ownership(for: resource, token: context.token)) { $1 }
        let identity = try await putIdentity(path, tags: tags, resource: resource, client: client)
        return try await complete(resource, identity: identity, client: client)
    }

    func putIdentity(_ path: String, tags: [String: String], resource: ResolvedResource, client: AzureClient) async throws -> CloudJSON {
        let body: CloudJSON = ["location": .string(resource.region), "tags": .object(tags.mapValues(CloudJSON.string))]
        let answer = try await client.put(path, body: body, action: "userAssignedIdentities.put", address: resource.address, region: resource.region)
        _ = try await client.finish(answer, action: "userAssignedIdentities.put", address: resource.address, region: resource.region)
        guard let identity = try await client.getIfExists(path, action: "userAssignedIdentities.get", address: resource.address) else {
            throw ProviderError(.transient, "Azure userAssignedIdentities.put finished but \(path) does not exist", address: resource.address)
        }
        return identity
    }

    /// The role assignment of `identity` at the desired scope (a no-op when it exists), and the state.
    func complete(_ resource: ResolvedResource, identity: CloudJSON, client: AzureClient) async throws -> ResourceState {
        var assignment: String?
        if let scope = resource.inputs["scope"]?.stringValue { assignment = try await assign(identity: identity, scope: scope, resource: resource, client: client) }
        var attributes = resource.inputs
        attributes["name"] = .string(name(of: resource))
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        attributes.merge(Self.computed(identity)) { $1 }
        attributes["role_assignment_id"] = assignment.map(Value.string)
        let id = try identity["id"]?.string ?? path(of: resource, client: client)
        return ResourceState(address: resource.address, provider: "azure", region: resource.region, id: id, attributes: attributes, dependencies: resource.dependencies)
    }

    /// PUTs the assignment of Storage Blob Data Contributor at `scope` to the identity's principal; its id.
    func assign(identity: CloudJSON, scope: String, resource: ResolvedResource, client: AzureClient) async throws -> String {
        guard let principal = identity["properties"]?["principalId"]?.string else {
            throw ProviderError(.transient, "the managed identity \(identity["id"]?.string ?? "") has no principal yet", address: resource.address)
        }
        return try await AzureRoleAssignment.put(
            Self.blobDataContributor, to: principal, at: scope, what: "nodes of \(resource.ownership.stack.isEmpty ? "" : resource.ownership.stack + " ")\(resource.address) read and write this",
            address: resource.address, client: client)
    }

    static func computed(_ identity: CloudJSON) -> [String: Value] {
        var attributes: [String: Value] = [:]
        attributes["id"] = identity["id"]?.string.map(Value.string)
        for (key, field) in [("client_id", "clientId"), ("principal_id", "principalId"), ("tenant_id", "tenantId")] {
            attributes[key] = identity["properties"]?[field]?.string.map(Value.string)
        }
        attributes["issuer"] = identity["properties"]?["tenantId"]?.string.map { .string("https://login.microsoftonline.com/\($0)/v2.0") }
        return attributes
    }

    // MARK: read, update, delete, recover

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let client = client.in(subscriptionOf: first.id)
        let items: [CloudJSON]
        do {
            items = try await client.list(parent(of: first.id), action: "userAssignedIdentities.list", address: first.address)
        } catch let error as ProviderError where error.kind == .notFound {
            // The resource group is gone, and its identities with it.
            return resources.map { _ in nil }
        }
        var live: [String: CloudJSON] = [:]
        for item in items { if let id = item["id"]?.string { live[id.lowercased()] = item } }
        var refreshed: [ResourceState?] = []
        for state in resources {
            guard let identity = live[state.id.lowercased()] else {
                refreshed.append(nil)
                continue
            }
            // The assignment gone (or never made): the identity may no longer use its scope.
            var current = try await AzureRoleAssignment.refreshed(state, live: identity, granting: "scope", client: client)
            current.attributes.merge(Self.computed(identity)) { $1 }
            refreshed.append(current)
        }
        return refreshed
    }

    /// New tags on the identity; a new (or lost) scope's assignment made, and the old one removed.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let client = client.in(desired.inputs)
        return try await AzureRoleAssignment.updateHolder(
            prior, to: desired, action: "userAssignedIdentities.get", client: client,
            put: { try await putIdentity(prior.id, tags: $0, resource: desired, client: client) },
            complete: { try await complete(desired, identity: $0, client: client) })
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let client = client.in(subscriptionOf: state.id)
        try await AzureRoleAssignment.delete(of: state, client: client)
        try await client.deleteAndWait(state.id, action: "userAssignedIdentities.delete", address: state.address)
    }

    /// A create whose answer was lost: the identity carries the create's token, and its
    /// assignment is made (again: the same name).
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let client = client.in(resource.inputs)
        return try await AzureRoleAssignment.recoverHolder(
            operation, path: try path(of: resource, client: client), action: "userAssignedIdentities.get", client: client,
            complete: { try await complete(resource, identity: $0, client: client) })
    }
    /// The identities that carry Stratum's tags, from the provider's shared listing, each with
    /// its Storage Blob Data Contributor assignment found by its principal in the subscription,
    /// so that deleting one removes the assignment first (one in another subscription is not
    /// found). Its federated credentials are deleted with it.
    func owned() async throws -> [OwnedResource]? {
        var owned: [OwnedResource] = []
        for item in try await listing.resources(ofType: Self.identityType) where !AzureTags.names(other: type, in: item) {
            guard let id = item["id"]?.string else { continue }
            let client = client.in(subscriptionOf: id)
            guard let identity = try await client.getIfExists(id, action: "userAssignedIdentities.get"), let owner = AzureTags.owner(of: identity["tags"]),
                owner.address.type == type
            else { continue }
            var attributes = Self.computed(identity)
            attributes["id"] = .string(identity["id"]?.string ?? id)
            attributes["name"] = identity["name"]?.string.map(Value.string)
            if let principal = identity["properties"]?["principalId"]?.string {
                attributes["role_assignment_id"] = try await AzureRoleAssignment.find(Self.blobDataContributor, to: principal, client: client).map(Value.string)
            }
            let region = identity["location"]?.string ?? item["location"]?.string ?? ""
            let state = ResourceState(address: owner.address, provider: "azure", region: region, id: identity["id"]?.string ?? id, attributes: attributes, dependencies: [])
            owned.append(OwnedResource(state: state, ownership: owner.ownership))
        }
        return owned
    }
}

/// The role assignments Stratum makes (a node identity's on its container, on its key vault):
/// each named by a GUID derived from the scope, the principal and the role, so a retried create
/// PUTs the same assignment again.
enum AzureRoleAssignment {
    static let type = "Microsoft.Authorization/roleAssignments"
    /// The namespace of the assignment names (a fixed UUID of Stratum's).
    static let namespace = UUID(uuidString: "6f1c2a3e-5b7d-4e0f-9a8b-73c0d2e1f4a5")!

    /// A built-in role's definition id in the scope's subscription.
    static func definition(_ role: String, scope: String, client: AzureClient) -> String {
        "/subscriptions/\(AzureVMInputs.subscription(ofID: scope) ?? client.subscription)/providers/Microsoft.Authorization/roleDefinitions/\(role)"
    }

    /// The assignment's id: a name-based (version 5) UUID of the scope, principal and role, so
    /// the same assignment always has the same name.
    static func id(scope: String, principal: String, role: String) -> String {
        let space = withUnsafeBytes(of: namespace.uuid) { Data($0) }
        var digest = Array(Insecure.SHA1.hash(data: space + Data("\(scope.lowercased())|\(principal.lowercased())|\(role.lowercased())".utf8)).prefix(16))
        digest[6] = (digest[6] & 0x0f) | 0x50
        digest[8] = (digest[8] & 0x3f) | 0x80
        let hex = digest.map { String(format: "%02x", $0) }.joined()
        let guid = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)].joined(separator: "-")
        return "\(scope)/providers/\(type)/\(guid)"
    }

    /// PUTs the assignment of the built-in `role` at `scope` to `principal` (a service
    /// principal: a managed identity's); its id. `what` says why, in its description.
    static func put(_ role: String, to principal: String, at scope: String, what: String, address: ResourceAddress, client: AzureClient) async throws -> String {
        let definition = definition(role, scope: scope, client: client)
        let id = id(scope: scope, principal: principal, role: definition)
        let body: CloudJSON = [
            "properties": [
                "roleDefinitionId": .string(definition), "principalId": .string(principal),
                // Named, so ARM takes a principal the directory has not replicated yet.
                "principalType": "ServicePrincipal", "description": .string("Stratum: \(what)"),
            ],
        ]
        do {
            let answer = try await client.put(id, body: body, action: "roleAssignments.create", address: address)
            _ = try await client.finish(answer, action: "roleAssignments.create", address: address)
        } catch let error as ProviderError where error.message.contains("PrincipalNotFound") {
            // A new identity's principal reaches the directory's replicas after a while.
            throw ProviderError(.transient, "the directory does not know the principal \(principal) yet: \(error.message)", address: address)
        }
        return id
    }

    /// `state` as refreshed from `live` (the resource holding the assignment in
    /// `role_assignment_id`): its tags, and, when the assignment is gone (or was never made),
    /// the input that `granting` names unset with it, so the next apply makes it again.
    static func refreshed(_ state: ResourceState, live: CloudJSON, granting input: String, client: AzureClient) async throws -> ResourceState {
        var current = state
        let tags = AzureTags.user(live["tags"])
        if tags != AzureTags.input(state.attributes["tags"]) { current.attributes["tags"] = tags.isEmpty ? nil : .map(tags.mapValues(Value.string)) }
        let assignment = state.attributes["role_assignment_id"]?.stringValue ?? ""
        let assigned = assignment.isEmpty ? nil : try await client.getIfExists(assignment, action: "roleAssignments.get", address: state.address)
        if assigned == nil {
            current.attributes[input] = nil
            current.attributes["role_assignment_id"] = nil
        }
        return current
    }

    /// The update of a resource holding an assignment (an identity, a vault): its tags PUT again
    /// (`put`, Stratum's own kept) where the stack changed them; then `complete` makes the
    /// assignment the desired inputs name, and one the update replaced is removed.
    static func updateHolder(
        _ prior: ResourceState, to desired: ResolvedResource, action: String, client: AzureClient,
        put: (_ tags: [String: String]) async throws -> CloudJSON, complete: (_ live: CloudJSON) async throws -> ResourceState
    ) async throws -> ResourceState {
        guard var live = try await client.getIfExists(prior.id, action: action, address: desired.address) else {
            throw ProviderError(.notFound, "\(prior.id) no longer exists", address: desired.address)
        }
        let tags = AzureTags.input(desired.inputs["tags"])
        if tags != AzureTags.input(prior.attributes["tags"]) { live = try await put(AzureTags.updated(live: live["tags"], wanted: tags)) }
        var state = try await complete(live)
        try await dropReplaced(prior, by: state, client: client)
        state.id = prior.id
        return state
    }

    /// The recovery of a holder's create whose answer was lost: the resource at `path` is this
    /// create's when it carries its token, and `complete` makes its assignment (again: the same name).
    static func recoverHolder(
        _ operation: PendingOperation, path: String, action: String, client: AzureClient, complete: (_ live: CloudJSON) async throws -> ResourceState
    ) async throws -> ResourceState? {
        guard let live = try await client.getIfExists(path, action: action, address: operation.address), AzureTags.carry(token: operation.token, in: live["tags"])
        else { return nil }
        return try await complete(live)
    }

    /// Deletes `prior`'s assignment when `state` (its update) holds another.
    static func dropReplaced(_ prior: ResourceState, by state: ResourceState, client: AzureClient) async throws {
        guard let old = prior.attributes["role_assignment_id"]?.stringValue, !old.isEmpty,
            old.lowercased() != state.attributes["role_assignment_id"]?.stringValue?.lowercased()
        else { return }
        try await client.deleteAndWait(old, action: "roleAssignments.delete", address: state.address)
    }

    /// The id of the assignment of the built-in `role` to `principal` at any scope of the
    /// client's subscription (List For Subscription, `$filter=principalId eq '…'`); nil when none.
    static func find(_ role: String, to principal: String, client: AzureClient) async throws -> String? {
        let items = try await client.list(
            "/subscriptions/\(client.subscription)/providers/\(type)", query: [("$filter", "principalId eq '\(principal)'")], action: "roleAssignments.list")
        return items.first { grants(role, $0) }?["id"]?.string
    }

    /// The id of the assignment of the built-in `role` at `scope` itself (List For Scope also
    /// answers those above and below it); nil when none.
    static func find(_ role: String, at scope: String, client: AzureClient) async throws -> String? {
        let items = try await client.list("\(scope)/providers/\(type)", action: "roleAssignments.listForScope")
        return items.first { grants(role, $0) && $0["properties"]?["scope"]?.string?.lowercased() == scope.lowercased() }?["id"]?.string
    }

    static func grants(_ role: String, _ assignment: CloudJSON) -> Bool {
        assignment["properties"]?["roleDefinitionId"]?.string?.lowercased().hasSuffix("/roledefinitions/\(role.lowercased())") == true
    }

    /// Deletes the assignment of `state`, if it has one (one already gone is fine).
    static func delete(of state: ResourceState, client: AzureClient) async throws {
        guard let assignment = state.attributes["role_assignment_id"]?.stringValue, !assignment.isEmpty else { return }
        try await client.deleteAndWait(assignment, action: "roleAssignments.delete", address: state.address)
    }
}
