import Foundation
import StratumCloud
import StratumCore

/// Google Cloud: VPC networking (custom-mode networks, subnetworks, firewalls), compact
/// placement policies, instances and instance gangs over the Compute Engine v1 REST API, and
/// Cloud Storage buckets (`GCPBucketKind`) over the Storage JSON API.
/// Instances carry Stratum's ownership in labels instead (see `GCPInstanceSupport.swift`).
///
/// Every insert and delete carries the journal's token as `requestId`, so a repeated call is
/// answered with the first call's operation; the operation's handle is recorded in the journal
/// before the wait, so recovery resumes that operation. Networks, subnetworks and firewalls
/// have no labels in Compute v1: Stratum's ownership (stack, lineage, address, token) is
/// written into their `description`, and recovery finds what a create left by its name and the
/// token there. Refresh lists a project's resources of a type with a name filter (subnetworks
/// with one `aggregatedList` across regions).
public struct GCPProvider: Provider {
    public let name = "gcp"
    public let client: GCPClient
    public let kinds: [String: any ResourceKind]

    public init(client: GCPClient) {
        self.client = client
        let compute = [GCPComputeSpec.network, .subnetwork, .firewall, .resourcePolicy].map { GCPComputeKind(spec: $0, client: client) as any ResourceKind }
        let others: [any ResourceKind] = [
            GCPInstanceKind(client: client), GCPInstanceGangKind(client: client), GCPBucketKind(client: client), GCPStorageObjectKind(client: client),
            GCPServiceAccountKind(client: client),
        ]
        self.kinds = Dictionary(uniqueKeysWithValues: (compute + others).map { ($0.type, $0) })
    }
}

/// What distinguishes one Compute resource type: its collection, scope, inputs and how they
/// map to and from the API's fields.
struct GCPComputeSpec: Sendable {
    var type: String
    /// The collection name in paths and method ids (`networks`).
    var collection: String
    /// Regional (`regions/{region}/…`) rather than global.
    var regional: Bool
    /// Inputs besides `name`; Compute changes none of these in place here, so each forces a new resource.
    var inputs: [String: AttributeSchema]
    var computed: [String]
    /// The insert body's fields for the inputs (without `name` and `description`).
    var body: @Sendable (ResolvedResource, _ project: String) throws -> [String: GCPJSON]
    /// The inputs and computed attributes as the live resource has them.
    var attributes: @Sendable (GCPJSON) -> [String: Value]
}

/// One Compute resource type as the engine sees it.
struct GCPComputeKind: ResourceKind {
    let spec: GCPComputeSpec
    let client: GCPClient
    let schema: ResourceSchema

    init(spec: GCPComputeSpec, client: GCPClient) {
        self.spec = spec
        self.client = client
        var attributes = spec.inputs
        attributes["name"] = AttributeSchema(role: .optionalComputed, forceNew: true)
        attributes["project"] = .input(forceNew: true)
        attributes["id"] = .computed
        attributes["self_link"] = .computed
        attributes["stratum_lineage"] = .computed
        for name in spec.computed { attributes[name] = .computed }
        self.schema = ResourceSchema(type: spec.type, attributes: attributes)
    }

    var type: String { spec.type }

    /// Everything of a type in a project is listed at once (subnetworks across regions too).
    func batchKey(_ state: ResourceState) -> String { "projects/\(client.project(of: state))" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        guard let name = resource.inputs["name"]?.stringValue, !GCPNames.isValid(name) else { return [] }
        let message = "name '\(name)' is not a Compute name: 1-63 of a-z, 0-9 and '-', starting with a letter, not ending in '-'"
        return [Diagnostic(address: resource.address, message: message, location: resource.location)]
    }

    // MARK: paths

    func collectionPath(region: String, project: String) -> String {
        spec.regional ? "projects/\(project)/regions/\(region)/\(spec.collection)" : "projects/\(project)/global/\(spec.collection)"
    }

    func name(of resource: ResolvedResource) -> String {
        resource.inputs["name"]?.stringValue ?? GCPNames.derived(from: resource.address, lineage: resource.ownership.lineage)
    }

    func name(of state: ResourceState) -> String {
        state.attributes["name"]?.stringValue ?? String(state.id.split(separator: "/").last ?? "")
    }

    func regionScope(_ region: String) -> String? { spec.regional ? region : nil }

    // MARK: calls

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let project = client.project(of: first)
        var live: [String: GCPJSON] = [:]
        let names = Set(resources.map { name(of: $0) }).sorted()
        // `eq` takes an RE2 expression the whole name must match; names are [-a-z0-9], so an
        // alternation of them needs no escaping. Chunks keep URLs short.
        for start in stride(from: 0, to: names.count, by: 50) {
            let filter = "name eq '\(names[start..<min(names.count, start + 50)].joined(separator: "|"))'"
            let path = spec.regional ? "projects/\(project)/aggregated/\(spec.collection)" : collectionPath(region: "", project: project)
            let pages = try await client.pages(path, query: [("filter", filter), ("maxResults", "500")], action: "\(spec.collection).list")
            for item in pages.flatMap({ items(of: $0) }) {
                if let path = GCPNames.path(ofLink: item["selfLink"]?.string) { live[path] = item }
            }
        }
        return resources.map { state in live[state.id].map { refreshed(state, from: $0) } }
    }

    /// The resources of a list page: `items` of a `list`, every scope's of an `aggregatedList`.
    func items(of page: GCPJSON) -> [GCPJSON] {
        spec.regional ? (page["items"]?.object ?? [:]).sorted { $0.key < $1.key }.flatMap { $0.value[spec.collection]?.array ?? [] } : page["items"]?.array ?? []
    }

    /// Every resource of this type in the client's project whose description is Stratum's
    /// record naming this type (these have no labels to filter on): one `list`, or one
    /// `aggregatedList` across regions, paginated. A global resource's region is `global`.
    /// Other projects a stack names are not searched.
    func owned() async throws -> [OwnedResource]? {
        let project = client.project
        let path = spec.regional ? "projects/\(project)/aggregated/\(spec.collection)" : collectionPath(region: "", project: project)
        let pages = try await client.pages(path, query: [("maxResults", "500")], action: "\(spec.collection).\(spec.regional ? "aggregatedList" : "list")")
        return pages.flatMap { items(of: $0) }.compactMap { item in
            guard let (address, ownership) = GCPOwnership.owned(in: item["description"]?.string), address.type == type,
                let path = GCPNames.path(ofLink: item["selfLink"]?.string)
            else { return nil }
            let region = spec.regional ? item["region"]?.string.flatMap(GCPOperation.lastComponent) ?? "" : "global"
            var state = imported(item, path: path, region: region, address: address)
            state.attributes["stratum_lineage"] = .string(ownership.lineage)
            return OwnedResource(state: state, ownership: ownership)
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let name = name(of: resource)
        let project = client.project(of: resource)
        let client = client.in(project)
        var body = try spec.body(resource, project)
        body["name"] = .string(name)
        body["description"] = .string(GCPOwnership.description(for: resource, token: context.token))
        let action = "\(spec.collection).insert"
        let operation: GCPOperation
        do {
            operation = try await client.mutate(
                "POST", collectionPath(region: resource.region, project: project), body: .object(body), requestId: context.token, action: action,
                address: resource.address, region: regionScope(resource.region))
        } catch let error as ProviderError where error.kind == .permanent {
            // Refused as already existing after Compute forgot the requestId: what carries this
            // create's token is what an earlier attempt made.
            if !context.token.isEmpty, let made = try? await find(resource, token: context.token) { return made }
            throw error
        }
        try await context.record(handle: operation.reference.handle)
        if !operation.isDone || operation.error != nil {
            try await client.wait(for: operation.reference, action: action, address: resource.address)
        }
        let path = "\(collectionPath(region: resource.region, project: project))/\(name)"
        guard let item = try await client.getIfExists(path, action: "\(spec.collection).get", address: resource.address, region: regionScope(resource.region)) else {
            throw ProviderError(.transient, "GCP \(action) finished but \(path) does not exist", address: resource.address)
        }
        return state(of: resource, from: item, path: path)
    }

    /// Every input forces a new resource, so the planner never asks for an in-place change; an
    /// adopted resource (recovered after a retryable failure) was made from these same inputs.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let action = "\(spec.collection).delete"
        let project = client.project(of: state)
        let client = client.in(project)
        do {
            let operation = try await client.mutate(
                "DELETE", "\(collectionPath(region: state.region, project: project))/\(name(of: state))", requestId: context.token, action: action, address: state.address,
                region: regionScope(state.region))
            try await context.record(handle: operation.reference.handle)
            if !operation.isDone || operation.error != nil {
                try await client.wait(for: operation.reference, action: action, address: state.address)
            }
        } catch let error as ProviderError where error.kind == .notFound {
            // Already gone.
        }
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let client = client.in(client.project(of: resource))
        if let handle = operation.handle, let reference = GCPOperationReference(handle: handle) {
            // Resume the recorded operation; whether it succeeded shows in what exists below.
            do {
                try await client.configuration.operationPoller.wait(for: "GCP \(spec.collection).insert (operation \(reference))", address: resource.address) {
                    let look = try await client.operation(reference, address: resource.address)
                    return look.isDone ? .done(look) : .running
                }
            } catch let error as ProviderError where error.kind == .notFound {
                // Compute forgets old operations; the resource answers for it.
            }
        }
        return try await find(resource, token: operation.token)
    }

    /// The resource a create with `token` made: its name, with the token in its ownership.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let path = "\(collectionPath(region: resource.region, project: client.project(of: resource)))/\(name(of: resource))"
        guard let item = try await client.getIfExists(path, action: "\(spec.collection).get", address: resource.address, region: regionScope(resource.region)),
            GCPOwnership.token(in: item["description"]?.string) == token
        else { return nil }
        return state(of: resource, from: item, path: path)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        let path = id.hasPrefix("projects/") ? id : "\(collectionPath(region: region, project: client.project))/\(id)"
        guard let item = try await client.getIfExists(path, action: "\(spec.collection).get", address: address, region: regionScope(region)) else { return nil }
        return imported(item, path: path, region: region, address: address)
    }

    /// The state of a live resource adopted as it is.
    func imported(_ item: GCPJSON, path: String, region: String, address: ResourceAddress) -> ResourceState {
        var attributes = spec.attributes(item)
        attributes["name"] = item["name"]?.string.map(Value.string)
        attributes["id"] = .string(path)
        attributes["self_link"] = item["selfLink"]?.string.map(Value.string)
        return ResourceState(address: address, provider: "gcp", region: region, id: path, attributes: attributes, dependencies: [])
    }

    // MARK: state

    func state(of resource: ResolvedResource, from item: GCPJSON, path: String) -> ResourceState {
        var attributes = resource.inputs
        attributes["name"] = .string(name(of: resource))
        attributes["id"] = .string(path)
        attributes["self_link"] = item["selfLink"]?.string.map(Value.string)
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        for key in spec.computed { attributes[key] = spec.attributes(item)[key] }
        return ResourceState(address: resource.address, provider: "gcp", region: resource.region, id: path, attributes: attributes, dependencies: resource.dependencies)
    }

    /// The recorded state with the live values of what the stack declared (a reference to
    /// another resource kept in the form the stack wrote it when it names the same one).
    func refreshed(_ prior: ResourceState, from item: GCPJSON) -> ResourceState {
        var state = prior
        for (key, value) in spec.attributes(item) {
            if let recorded = prior.attributes[key], GCPNames.sameReference(recorded, value) { continue }
            if prior.attributes[key] == nil, !spec.computed.contains(key) { continue }
            state.attributes[key] = value
        }
        return state
    }
}

/// Compute resource names and links.
enum GCPNames {
    static func isValid(_ name: String) -> Bool {
        name.range(of: "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", options: .regularExpression) != nil
    }

    /// A name for a resource whose stack names none: its address name (and index), made a Compute name, and
    /// the start of the lineage, so two states never pick the same one.
    static func derived(from address: ResourceAddress, lineage: String) -> String {
        let named = address.index.map { "\(address.name)-\($0)" } ?? address.name
        var base = String(named.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" })
        if base.first?.isLetter != true { base = "r-" + base }
        let suffix = String(lineage.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(8))
        let trimmed = String(base.prefix(62 - suffix.count)).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return suffix.isEmpty ? trimmed : "\(trimmed)-\(suffix)"
    }

    /// `projects/…` from a full resource link.
    static func path(ofLink link: String?) -> String? {
        guard let link, let range = link.range(of: "projects/") else { return nil }
        return String(link[range.lowerBound...])
    }

    /// A link (`https://…/global/networks/net`) or path (`global/networks/net`) to a network
    /// in the project, from a name or a link.
    static func networkPath(_ network: String, project: String) -> String {
        if network.contains("/") { return path(ofLink: network) ?? network }
        return "projects/\(project)/global/networks/\(network)"
    }

    /// Two values naming the same resource: equal, or links ending in the same name.
    static func sameReference(_ a: Value, _ b: Value) -> Bool {
        if a == b { return true }
        guard let x = a.stringValue, let y = b.stringValue, x.contains("/") || y.contains("/") else { return false }
        return x.split(separator: "/").last == y.split(separator: "/").last
    }
}

/// Stratum's ownership of a Compute resource without labels, kept in its `description` as
/// `Managed by Stratum {"address":…,"lineage":…,"stack":…,"token":…}`, with `owner` and
/// `expires` (seconds since the epoch) for an ephemeral environment's resources. Instances
/// carry it too: it keeps whole the texts their labels may only hash. Records made before the
/// owner and expiry were kept have neither.
enum GCPOwnership {
    static let prefix = "Managed by Stratum "

    static func description(for resource: ResolvedResource, token: String) -> String {
        var fields: [String: GCPJSON] = [
            "stack": .string(resource.ownership.stack), "lineage": .string(resource.ownership.lineage), "address": .string(resource.address.description),
            "token": .string(token),
        ]
        fields["owner"] = resource.ownership.owner.map(GCPJSON.string)
        fields["expires"] = resource.ownership.expiresTag.map(GCPJSON.string)
        return prefix + (String(data: GCPJSON.object(fields).data, encoding: .utf8) ?? "{}")
    }

    /// The address and ownership a description records; nil when it is no record of Stratum's.
    static func owned(in description: String?) -> (address: ResourceAddress, ownership: Ownership)? {
        guard let fields = fields(in: description), let address = fields["address"]?.string.flatMap(ResourceAddress.init(parsing:)),
            let stack = fields["stack"]?.string, let lineage = fields["lineage"]?.string
        else { return nil }
        let expires = fields["expires"]?.string.flatMap { TimeInterval($0) }.map(Date.init(timeIntervalSince1970:))
        return (address, Ownership(stack: stack, lineage: lineage, owner: fields["owner"]?.string, expires: expires))
    }

    static func fields(in description: String?) -> GCPJSON? {
        guard let description, description.hasPrefix(prefix) else { return nil }
        return GCPJSON.parse(Data(description.dropFirst(prefix.count).utf8))
    }

    static func token(in description: String?) -> String? { fields(in: description)?["token"]?.string }
}

extension GCPClient {
    /// The project a resource lives in: its `project` input, else the client's.
    func project(of resource: ResolvedResource) -> String {
        resource.inputs["project"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? project
    }

    func project(of state: ResourceState) -> String {
        state.attributes["project"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? project
    }

    /// This client calling into `project` (operation looks included); rate limits and metrics shared.
    func `in`(_ project: String) -> GCPClient {
        var client = self
        client.project = project
        return client
    }
}

extension GCPJSON {
    /// The value as a Stratum `Value` (numbers that are whole become ints).
    var stratumValue: StratumCore.Value {
        switch self {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        case .number(let number): return number == number.rounded() && abs(number) < 1e15 ? .int(Int(number)) : .double(number)
        case .string(let text): return .string(text)
        case .array(let items): return .list(items.map(\.stratumValue))
        case .object(let entries): return .map(entries.mapValues(\.stratumValue))
        }
    }
}
