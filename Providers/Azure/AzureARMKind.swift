import Foundation
import StratumCloud
import StratumCore

/// What distinguishes one ARM resource type that Stratum manages with PUT and DELETE: where it
/// lives, its inputs, its body and what is read back.
struct AzureARMSpec: Sendable {
    /// Where ownership is kept.
    enum Ownership: Sendable {
        /// In the resource's tags.
        case tags
        /// In `properties.metadata` (blob containers have no tags).
        case metadata
        /// Nowhere: the type has neither tags nor metadata (subnets). Recovery adopts what has
        /// the create's name and reads back the inputs asked for.
        case nowhere
    }

    var type: String
    /// The ARM type, as pinned in `AzureAPIVersions` (`Microsoft.Network/virtualNetworks`).
    var armType: String
    var inputs: [String: AttributeSchema]
    var computed: [String]
    var ownership: Ownership = .tags
    /// The collection a resource is in (the path its list goes to), from its inputs and
    /// subscription; a resource's id is this and `/{name}`.
    var collection: @Sendable (_ inputs: [String: Value], _ client: AzureClient, _ address: ResourceAddress) throws -> String
    /// Whether a name fits the type's rules, and the rule said when it does not.
    var nameRule: AzureNames.Rule
    /// The PUT body's fields for the inputs (without `tags`; with `location` where the type has one).
    var body: @Sendable (ResolvedResource, AzureClient) throws -> [String: CloudJSON]
    /// The inputs and computed attributes as the live resource has them.
    var attributes: @Sendable (CloudJSON) -> [String: Value]
    /// An input's value as `attributes` reads it back, for comparing the two; default: as it is.
    var canonical: @Sendable (_ key: String, _ value: Value) -> Value = { _, value in value }
}

/// One ARM resource type as the engine sees it: creates PUT by name with the ownership and the
/// create's token in tags, record the operation's handle in the journal before waiting, and
/// GET what was made; recovery resumes that handle, then adopts the resource only if it carries
/// the token. Refresh lists a collection (a resource group's networks, a network's subnets) once
/// for every resource of the type in it, following `nextLink`. Inputs that are not force-new
/// (`tags`, a security group's `rules`) change in place by PUT of the whole body again.
struct AzureARMKind: ResourceKind {
    let spec: AzureARMSpec
    let client: AzureClient
    let schema: ResourceSchema
    /// What the subscription holds with Stratum's tags, shared with the provider's other kinds.
    let listing: AzureOwnedListing

    init(spec: AzureARMSpec, client: AzureClient, listing: AzureOwnedListing? = nil) {
        self.spec = spec
        self.client = client
        self.listing = listing ?? AzureOwnedListing(client: client)
        var attributes = spec.inputs
        attributes["name"] = AttributeSchema(role: .optionalComputed, forceNew: true)
        attributes["subscription"] = .input(forceNew: true)
        attributes["id"] = .computed
        attributes["stratum_lineage"] = .computed
        for name in spec.computed { attributes[name] = .computed }
        self.schema = ResourceSchema(type: spec.type, attributes: attributes)
    }

    var type: String { spec.type }

    /// Everything of the type in one collection is listed at once.
    func batchKey(_ state: ResourceState) -> String { parent(of: state.id) }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [String] = []
        if let name = resource.inputs["name"]?.stringValue, let problem = spec.nameRule.problem(name) { problems.append(problem) }
        problems += AzureTags.problems(AzureTags.input(resource.inputs["tags"]))
        return problems.map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    // MARK: names and paths

    func name(of resource: ResolvedResource) -> String {
        resource.inputs["name"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            ?? AzureNames.derived(from: resource.address, lineage: resource.ownership.lineage, rule: spec.nameRule)
    }

    func path(of resource: ResolvedResource) throws -> String {
        "\(try spec.collection(resource.inputs, client.in(resource.inputs), resource.address))/\(name(of: resource))"
    }

    /// The collection an id is in: the id without its last segment.
    func parent(of id: String) -> String { String(id[..<(id.lastIndex(of: "/") ?? id.endIndex)]) }

    var action: String { spec.armType.split(separator: "/").dropFirst().joined(separator: "/") }

    // MARK: calls

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let collection = parent(of: first.id)
        let items: [CloudJSON]
        do {
            items = try await client.list(collection, action: "\(action).list", address: first.address)
        } catch let error as ProviderError where error.kind == .notFound {
            // The resource group or parent is gone, and with it everything in it.
            return resources.map { _ in nil }
        }
        var live: [String: CloudJSON] = [:]
        for item in items { if let id = item["id"]?.string { live[id.lowercased()] = item } }
        return resources.map { state in live[state.id.lowercased()].map { refreshed(state, from: $0) } }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let path = try path(of: resource)
        let client = client.in(resource.inputs)
        var body = try spec.body(resource, client)
        switch spec.ownership {
        case .tags:
            let tags = AzureTags.input(resource.inputs["tags"]).merging(AzureTags.ownership(for: resource, token: context.token)) { $1 }
            body["tags"] = .object(tags.mapValues(CloudJSON.string))
        case .metadata:
            var properties = body["properties"]?.object ?? [:]
            properties["metadata"] = .object(AzureTags.metadata(for: resource, token: context.token).mapValues(CloudJSON.string))
            body["properties"] = .object(properties)
        case .nowhere:
            break
        }
        let answer = try await client.put(path, body: .object(body), action: "\(action).put", address: resource.address, region: resource.region)
        if let operation = answer.operation {
            try await context.record(handle: operation.handle)
            try await client.wait(for: operation, action: "\(action).put", address: resource.address, region: resource.region, firstLookAfter: answer.retryAfter)
        }
        guard let item = try await client.getIfExists(path, action: "\(action).get", address: resource.address, region: resource.region) else {
            throw ProviderError(.transient, "Azure \(action).put finished but \(path) does not exist", address: resource.address)
        }
        return state(of: resource, from: item)
    }

    /// A change of inputs that are not force-new: the whole body again, with the ownership the
    /// live resource carries.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let client = client.in(desired.inputs)
        guard let live = try await client.getIfExists(prior.id, action: "\(action).get", address: desired.address, region: desired.region) else {
            throw ProviderError(.notFound, "\(prior.id) no longer exists", address: desired.address)
        }
        var body = try spec.body(desired, client)
        switch spec.ownership {
        case .tags:
            body["tags"] = .object(AzureTags.updated(live: live["tags"], wanted: AzureTags.input(desired.inputs["tags"])).mapValues(CloudJSON.string))
        case .metadata:
            var properties = body["properties"]?.object ?? [:]
            properties["metadata"] = live["properties"]?["metadata"]
            body["properties"] = .object(properties)
        case .nowhere:
            break
        }
        let answer = try await client.put(prior.id, body: .object(body), action: "\(action).put", address: desired.address, region: desired.region)
        _ = try await client.finish(answer, action: "\(action).put", address: desired.address, region: desired.region)
        guard let item = try await client.getIfExists(prior.id, action: "\(action).get", address: desired.address, region: desired.region) else {
            throw ProviderError(.transient, "Azure \(action).put finished but \(prior.id) does not exist", address: desired.address)
        }
        return state(of: desired, from: item)
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let answer = try await client.delete(state.id, action: "\(action).delete", address: state.address, region: state.region)
        guard let operation = answer.operation else { return }
        try await context.record(handle: operation.handle)
        do {
            try await client.wait(for: operation, action: "\(action).delete", address: state.address, region: state.region, firstLookAfter: answer.retryAfter)
        } catch let error as ProviderError where error.kind == .notFound {
            // Gone while the operation was looked at.
        }
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        if let handle = operation.handle, let started = AzureOperation(handle: handle) {
            // Resume the recorded operation; whether it made the resource shows in what exists below.
            do {
                try await client.in(resource.inputs).wait(for: started, action: "\(action).put", address: resource.address, region: resource.region)
            } catch let error as ProviderError where error.kind == .notFound || error.kind == .permanent {
                // ARM forgets old operations, and a failed one made nothing to adopt.
            }
        }
        return try await find(resource, token: operation.token)
    }

    /// What a create with `token` made: its name, carrying the token in its ownership.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let path = try path(of: resource)
        guard let item = try await client.getIfExists(path, action: "\(action).get", address: resource.address, region: resource.region) else { return nil }
        let owned: Bool
        switch spec.ownership {
        case .tags: owned = AzureTags.carry(token: token, in: item["tags"])
        case .metadata: owned = AzureTags.carry(token: token, in: item["properties"]?["metadata"], metadata: true)
        case .nowhere:
            let live = spec.attributes(item)
            owned = live.allSatisfy { key, value in
                AzureNames.sameReference(spec.canonical(key, resource.inputs[key] ?? .null), value)
            }
        }
        return owned ? state(of: resource, from: item) : nil
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        // A resource group may be named by its name; everything else by its ARM id.
        let path: String? = id.hasPrefix("/subscriptions/") ? id : spec.armType == "Microsoft.Resources/resourceGroups" ? client.resourceGroup(id) : nil
        guard let path, AzureAPIVersions.resourceType(ofPath: path)?.lowercased() == spec.armType.lowercased() else { return nil }
        guard let item = try await client.getIfExists(path, action: "\(action).get", address: address, region: region) else { return nil }
        return adopted(item, path: path, region: region, address: address)
    }

    /// The state of a live resource adopted as it is (import, and what `owned` lists).
    func adopted(_ item: CloudJSON, path: String, region: String, address: ResourceAddress) -> ResourceState {
        var attributes = spec.attributes(item)
        attributes["name"] = item["name"]?.string.map(Value.string)
        attributes["id"] = item["id"]?.string.map(Value.string) ?? .string(path)
        return ResourceState(address: address, provider: "azure", region: region, id: item["id"]?.string ?? path, attributes: attributes, dependencies: [])
    }

    // MARK: owned

    /// Resource groups and the tagged types, from the provider's shared listing; blob
    /// containers, from the containers of every storage account in it, by their metadata.
    /// Subnets and federated credentials carry no ownership (nil): each goes with its parent,
    /// the virtual network or the node identity, which is listed.
    func owned() async throws -> [OwnedResource]? {
        switch spec.ownership {
        case .nowhere:
            return nil
        case .metadata:
            return try await ownedContainers()
        case .tags:
            let items = spec.armType == AzureARMSpec.resourceGroup.armType ? try await listing.resourceGroups() : try await listing.resources(ofType: spec.armType)
            var owned: [OwnedResource] = []
            for item in items where !AzureTags.names(other: type, in: item) {
                guard let id = item["id"]?.string, let found = try await ownedItem(id, metadata: false) else { continue }
                let region = found.item["location"]?.string ?? item["location"]?.string ?? ""
                owned.append(OwnedResource(state: adopted(found.item, path: id, region: region, address: found.address), ownership: found.ownership))
            }
            return owned
        }
    }

    /// The containers of the storage accounts that carry Stratum's tags (whoever's they are)
    /// whose metadata names a container; each in its account's location. Containers in
    /// accounts Stratum did not make are not searched.
    func ownedContainers() async throws -> [OwnedResource] {
        var owned: [OwnedResource] = []
        for account in try await listing.resources(ofType: "Microsoft.Storage/storageAccounts") {
            guard let accountID = account["id"]?.string else { continue }
            let containers: [CloudJSON]
            do {
                containers = try await client.list("\(accountID)/blobServices/default/containers", action: "\(action).list")
            } catch let error as ProviderError where error.kind == .notFound {
                // The account was deleted since the listing.
                continue
            }
            for container in containers {
                // What a list answers of a container need not hold its metadata: each is read.
                guard let id = container["id"]?.string, let found = try await ownedItem(id, metadata: true) else { continue }
                let region = account["location"]?.string ?? ""
                owned.append(OwnedResource(state: adopted(found.item, path: id, region: region, address: found.address), ownership: found.ownership))
            }
        }
        return owned
    }

    /// The live resource at `id` when it still exists and its ownership names a resource of this type.
    func ownedItem(_ id: String, metadata: Bool) async throws -> (item: CloudJSON, address: ResourceAddress, ownership: Ownership)? {
        guard let item = try await client.in(subscriptionOf: id).getIfExists(id, action: "\(action).get"),
            let owner = AzureTags.owner(of: metadata ? item["properties"]?["metadata"] : item["tags"], metadata: metadata), owner.address.type == type
        else { return nil }
        return (item, owner.address, owner.ownership)
    }

    // MARK: state

    func state(of resource: ResolvedResource, from item: CloudJSON) -> ResourceState {
        let id = item["id"]?.string ?? ((try? path(of: resource)) ?? "")
        var attributes = resource.inputs
        attributes["name"] = .string(name(of: resource))
        attributes["id"] = .string(id)
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        let live = spec.attributes(item)
        for key in spec.computed { attributes[key] = live[key] }
        return ResourceState(address: resource.address, provider: "azure", region: resource.region, id: id, attributes: attributes, dependencies: resource.dependencies)
    }

    /// The recorded state with the live values of what the stack declared (an input kept in the
    /// form the stack wrote it when the live value says the same).
    func refreshed(_ prior: ResourceState, from item: CloudJSON) -> ResourceState {
        var state = prior
        var live = spec.attributes(item)
        if spec.ownership == .tags, prior.attributes["tags"] != nil {
            live["tags"] = .map(AzureTags.user(item["tags"]).mapValues(Value.string))
        }
        for (key, value) in live {
            if let recorded = prior.attributes[key], AzureNames.sameReference(spec.canonical(key, recorded), value) { continue }
            if prior.attributes[key] == nil, !spec.computed.contains(key) { continue }
            state.attributes[key] = value
        }
        return state
    }
}

/// Azure resource names: the rules per type, derived names, references by name or id.
enum AzureNames {
    /// A type's naming rule.
    struct Rule: Sendable {
        var minLength: Int
        var maxLength: Int
        /// Characters allowed besides ASCII letters and digits.
        var extra: String
        var lowercaseOnly = false
        /// Where a derived name's non-alphanumeric characters go ("-"; nothing for storage accounts).
        var separator = "-"
        var text: String

        func problem(_ name: String) -> String? {
            let fits = (minLength...maxLength).contains(name.count)
                && name.allSatisfy { $0.isASCII && ($0.isNumber || ($0.isLetter && (!lowercaseOnly || $0.isLowercase)) || extra.contains($0)) }
                && name.first.map { $0.isLetter || $0.isNumber } == true
            return fits ? nil : "name '\(name)' does not fit Azure's rule for this type: \(text)"
        }
    }

    static let general = Rule(minLength: 1, maxLength: 80, extra: "-_.", text: "1-80 letters, digits, '-', '_' and '.', starting with a letter or digit")
    static let resourceGroup = Rule(minLength: 1, maxLength: 90, extra: "-_.()", text: "1-90 letters, digits, '-', '_', '.', '(' and ')'")
    static let storageAccount = Rule(
        minLength: 3, maxLength: 24, extra: "", lowercaseOnly: true, separator: "", text: "3-24 lowercase letters and digits, unique across Azure")
    static let federatedCredential = Rule(minLength: 3, maxLength: 120, extra: "-_", text: "3-120 letters, digits, '-' and '_', starting with a letter or digit")
    static let container = Rule(
        minLength: 3, maxLength: 63, extra: "-", lowercaseOnly: true, text: "3-63 lowercase letters, digits and '-', starting with a letter or digit")

    /// A name for a resource whose stack names none: its address name (and index) within the
    /// rule, and the start of the lineage, so two states never pick the same one.
    static func derived(from address: ResourceAddress, lineage: String, rule: Rule) -> String {
        let named = address.index.map { "\(address.name)-\($0)" } ?? address.name
        let base = named.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? String($0) : rule.separator }.joined()
        let suffix = String(lineage.lowercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber) }.prefix(8))
        let room = rule.maxLength - suffix.count - rule.separator.count
        var trimmed = String(base.prefix(room)).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        if trimmed.isEmpty { trimmed = "r" }
        return suffix.isEmpty ? trimmed : trimmed + rule.separator + suffix
    }

    /// The name a reference means: the last segment of an ARM id, or the name itself.
    static func lastSegment(_ reference: String) -> String { String(reference.split(separator: "/").last ?? Substring(reference)) }

    /// A resource group named by its name or by its id (`/subscriptions/s/resourceGroups/rg`).
    static func resourceGroup(_ reference: String) -> String {
        let parts = reference.split(separator: "/").map(String.init)
        if let index = parts.firstIndex(where: { $0.lowercased() == "resourcegroups" }), index + 1 < parts.count { return parts[index + 1] }
        return reference
    }

    /// Two values naming the same thing: equal, ARM ids equal but for case, or an id and a name
    /// ending alike.
    static func sameReference(_ a: Value, _ b: Value) -> Bool {
        if a == b { return true }
        guard let x = a.stringValue, let y = b.stringValue else { return false }
        if x.lowercased() == y.lowercased() && (x.contains("/") || y.contains("/")) { return true }
        guard x.contains("/") != y.contains("/") else { return false }
        return lastSegment(x).lowercased() == lastSegment(y).lowercased()
    }
}

/// Reading inputs for a request body; a missing or malformed one fails before any call.
enum AzureInputs {
    static func string(_ inputs: [String: Value], _ key: String, _ address: ResourceAddress) throws -> String {
        guard let value = inputs[key]?.stringValue, !value.isEmpty else {
            throw ProviderError(.permanent, "input '\(key)' is required", address: address)
        }
        return value
    }

    /// A list of strings (a single string is a list of one; numbers are written as text).
    static func strings(_ value: Value?) -> [String]? {
        guard let value else { return nil }
        if let list = value.listValue { return list.compactMap { $0.stringValue ?? $0.intValue.map(String.init) } }
        return (value.stringValue ?? value.intValue.map(String.init)).map { [$0] }
    }

    static func oneOf(_ inputs: [String: Value], _ key: String, _ allowed: [String], _ address: ResourceAddress) throws {
        guard let value = inputs[key]?.stringValue, !allowed.contains(where: { $0.lowercased() == value.lowercased() }) else { return }
        throw ProviderError(.permanent, "input '\(key)' is '\(value)'; it must be one of \(allowed.joined(separator: ", "))", address: address)
    }

    /// A resource group's path in the client's subscription, from the `resource_group` input (a name or an id).
    static func group(_ inputs: [String: Value], _ client: AzureClient, _ address: ResourceAddress) throws -> String {
        client.resourceGroup(AzureNames.resourceGroup(try string(inputs, "resource_group", address)))
    }

    /// A live JSON value as a Stratum `Value` (whole numbers become ints).
    static func value(_ json: CloudJSON?) -> Value? {
        guard let json else { return nil }
        switch json {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        case .number(let number): return number == number.rounded() && abs(number) < 1e15 ? .int(Int(number)) : .double(number)
        case .string(let text): return .string(text)
        case .array(let items): return .list(items.compactMap { value($0) })
        case .object(let entries): return .map(entries.compactMapValues { value($0) })
        }
    }
}

extension AzureClient {
    /// This client calling into the `subscription` input's subscription (the client's when none
    /// is given); rate limits and metrics shared.
    func `in`(_ inputs: [String: Value]) -> AzureClient {
        guard let subscription = inputs["subscription"]?.stringValue, !subscription.isEmpty else { return self }
        var client = self
        client.subscription = subscription
        return client
    }

    /// DELETEs `path` and waits until it is gone; one already gone is fine.
    func deleteAndWait(_ path: String, action: String, address: ResourceAddress) async throws {
        do {
            let answer = try await delete(path, action: action, address: address)
            _ = try await finish(answer, action: action, address: address)
        } catch let error as ProviderError where error.kind == .notFound {
            // Already gone.
        }
    }
}
