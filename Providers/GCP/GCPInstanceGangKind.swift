import Foundation
import StratumCloud
import StratumCore

/// `gcp_instance_gang`: `count` instances made by one `instances.bulkInsert` with `minCount` =
/// `count` (all of them or none), named `<name_prefix>-<i>`, in the first of `zones` with
/// capacity for all. Its id is `projects/P/zones/Z/instances/<prefix>-*`. A gang some of whose
/// instances are gone (a spot instance reclaimed) is replaced as a whole.
struct GCPInstanceGangKind: GCPInstanceFamily {
    static let typeName = "gcp_instance_gang"
    let client: GCPClient
    let type = Self.typeName

    /// A gang is billed as its `count` members.
    func billing(_ attributes: [String: Value], region: String) -> Billing? {
        guard let machineType = attributes["machine_type"]?.stringValue else { return nil }
        return .machines(instanceType: machineType, region: region, spot: attributes["spot"]?.boolValue == true, count: max(attributes["count"]?.intValue ?? 1, 0))
    }
    let schema = GCPInstanceInputs.schema(type: Self.typeName, extra: [
        "count": .input(forceNew: true, required: true),
        "name_prefix": AttributeSchema(role: .optionalComputed, forceNew: true),
        "instances": .computed,
    ])

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        var review = NodeContract.review(prior, desired: desired)
        let count = prior.attributes["count"]?.intValue ?? 0
        let live = prior.attributes["instances"]?.listValue?.count ?? count
        if live < count { review.replacement = "\(count - live) of the gang's \(count) instances are gone" }
        return review
    }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems = GCPInstanceInputs.problems(resource)
        if let count = resource.inputs["count"]?.intValue, count < 1 { problems.append("count must be at least 1") }
        if let prefix = resource.inputs["name_prefix"]?.stringValue {
            let digits = String((resource.inputs["count"]?.intValue ?? 1) - 1).count
            if !GCPNames.isValid(prefix) || prefix.count + 1 + digits > 63 {
                problems.append("name_prefix '\(prefix)' is not a Compute name that leaves room for '-<index>'")
            }
        }
        return problems.map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    func prefix(of resource: ResolvedResource) -> String {
        if let prefix = resource.inputs["name_prefix"]?.stringValue { return prefix }
        let derived = GCPNames.derived(from: resource.address, lineage: resource.ownership.lineage)
        return String(derived.prefix(56)).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
    }

    static func id(project: String, zone: String, prefix: String) -> String { "projects/\(project)/zones/\(zone)/instances/\(prefix)-*" }

    /// `(project, zone, prefix)` of a gang's id.
    static func parts(of id: String) -> (project: String, zone: String, prefix: String)? {
        let parts = id.split(separator: "/").map(String.init)
        guard parts.count == 6, parts[0] == "projects", parts[2] == "zones", parts[5].hasSuffix("-*") else { return nil }
        return (parts[1], parts[3], String(parts[5].dropLast(2)))
    }

    /// The gang's members among `instances`, by index.
    static func members(prefix: String, zone: String, in instances: [String: GCPJSON]) -> [(index: Int, path: String, item: GCPJSON)] {
        instances.compactMap { path, item -> (Int, String, GCPJSON)? in
            guard let name = item["name"]?.string, name.hasPrefix(prefix + "-"), let index = Int(name.dropFirst(prefix.count + 1)),
                item["zone"]?.string.flatMap(GCPOperation.lastComponent) == zone
            else { return nil }
            return (index, path, item)
        }.sorted { $0.0 < $1.0 }
    }

    static func instancesValue(_ members: [(index: Int, path: String, item: GCPJSON)]) -> Value {
        .list(members.map { member in
            let live = GCPInstanceInputs.live(member.item)
            return .map([
                "name": .string(member.item["name"]?.string ?? ""), "zone": live["zone"] ?? "", "private_ip": live["private_ip"] ?? "",
                "self_link": live["self_link"] ?? "",
            ])
        })
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let live = try await lister(client.project(of: first)).instances(of: resources) { state in
            guard let parts = Self.parts(of: state.id) else { return [] }
            return (0..<(state.attributes["count"]?.intValue ?? 0)).map { "\(parts.prefix)-\($0)" }
        }
        return resources.map { state in
            guard let parts = Self.parts(of: state.id) else { return nil }
            let members = Self.members(prefix: parts.prefix, zone: parts.zone, in: live)
            guard !members.isEmpty else { return nil }
            var fresh = state
            fresh.attributes["instances"] = Self.instancesValue(members)
            let labels = GCPLabels.user(members[0].item["labels"])
            if labels != GCPLabels.input(state.attributes["labels"]) { fresh.attributes["labels"] = labels.isEmpty ? nil : .map(labels.mapValues(Value.string)) }
            return fresh
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let project = client.project(of: resource)
        let client = client.in(project)
        let prefix = prefix(of: resource)
        guard let count = resource.inputs["count"]?.intValue, count > 0 else {
            throw ProviderError(.permanent, "count must be at least 1", address: resource.address)
        }
        let labels = GCPLabels.ownership(for: resource, token: context.token).merging(GCPLabels.input(resource.inputs["labels"])) { $1 }
        let cluster = resource.inputs["pool"]?.stringValue ?? resource.address.name
        let machineType = try GCPInputs.string(resource, "machine_type")
        // A secret that arrived through a reference resolved only now is checked again here.
        if let problem = GCPNodeSecrets.problem(resource.inputs) { throw ProviderError(.permanent, problem, address: resource.address) }
        return try await GCPNodeSecrets.removingOnFailure(resource, project: project, client: client) {
            let secrets = try await GCPNodeSecrets.put(resource, project: project, client: client)
            return try await failingOver(resource, token: context.token, what: "\(count) × \(machineType) in one zone") { zone, requestToken in
                let properties = try GCPInstanceInputs.properties(
                    resource, project: project, zone: zone, labels: labels, description: GCPOwnership.description(for: resource, token: context.token),
                    flavour: .gcpGangMember(cluster: cluster), bulk: true, secrets: secrets)
                let names = (0..<count).map { "\(prefix)-\($0)" }
                let body: GCPJSON = [
                    "count": .string(String(count)), "minCount": .string(String(count)),
                    "perInstanceProperties": .object(Dictionary(uniqueKeysWithValues: names.map { ($0, GCPJSON.object([:])) })),
                    "instanceProperties": .object(properties),
                ]
                do {
                    try await mutateAndWait(
                        client, "POST", "projects/\(project)/zones/\(zone)/instances/bulkInsert", body: body, requestToken: requestToken,
                        action: "instances.bulkInsert", address: resource.address, zone: zone, context: context)
                } catch let error as ProviderError where error.kind == .permanent && !Self.isNotOffered(error) {
                    if let made = try? await find(resource, token: context.token), made.attributes["instances"]?.listValue?.count == count { return made }
                    throw error
                }
                guard let made = try await find(resource, token: context.token), made.attributes["instances"]?.listValue?.count == count else {
                    throw ProviderError(.transient, "GCP instances.bulkInsert finished but the \(count) instances \(prefix)-0… are not all there", address: resource.address)
                }
                return made
            }
        }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let labels = GCPLabels.input(desired.inputs["labels"])
        if labels != GCPLabels.input(prior.attributes["labels"]), let parts = Self.parts(of: prior.id) {
            for index in 0..<(prior.attributes["count"]?.intValue ?? 0) {
                try await setLabels("projects/\(parts.project)/zones/\(parts.zone)/instances/\(parts.prefix)-\(index)", user: labels, address: prior.address)
            }
        }
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        if desired.inputs["labels"] == nil { state.attributes["labels"] = nil }
        state.dependencies = desired.dependencies
        return state
    }

    /// Deletes every instance of the gang, in parallel, each with its own requestId.
    func delete(_ state: ResourceState, context: OperationContext) async throws {
        guard let parts = Self.parts(of: state.id) else { throw ProviderError(.permanent, "'\(state.id)' is not a gang id", address: state.address) }
        let recorded = (state.attributes["instances"]?.listValue ?? []).compactMap { $0.mapValue?["name"]?.stringValue }
        let names = Set(recorded + (0..<(state.attributes["count"]?.intValue ?? 0)).map { "\(parts.prefix)-\($0)" }).sorted()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for name in names {
                group.addTask {
                    try await deleteInstance(
                        "projects/\(parts.project)/zones/\(parts.zone)/instances/\(name)", requestToken: "\(context.token)/\(name)", address: state.address, context: nil)
                }
            }
            try await group.waitForAll()
        }
        try await GCPNodeSecrets.delete(state, project: parts.project, client: client)
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await resume(operation)
        return try await find(operation.resolved, token: operation.token)
    }

    /// The gang a create with `token` made: the instances carrying its token label.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let project = client.project(of: resource)
        let found = try await lister(project).instances(filter: GCPLabels.filter(GCPLabels.token, GCPLabels.value(token)), address: resource.address)
        let prefix = prefix(of: resource)
        guard let zone = found.values.lazy.compactMap({ $0["zone"]?.string.flatMap(GCPOperation.lastComponent) }).first else { return nil }
        let members = Self.members(prefix: prefix, zone: zone, in: found)
        guard !members.isEmpty else { return nil }
        var attributes = resource.inputs
        attributes["name_prefix"] = .string(prefix)
        attributes["zone"] = .string(zone)
        attributes["instances"] = Self.instancesValue(members)
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        let id = Self.id(project: project, zone: zone, prefix: prefix)
        attributes["id"] = .string(id)
        return ResourceState(address: resource.address, provider: "gcp", region: resource.region, id: id, attributes: attributes, dependencies: resource.dependencies)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard let parts = Self.parts(of: id), GCPNames.isValid(parts.prefix) else { return nil }
        let found = try await lister(parts.project).instances(filter: "name eq '\(parts.prefix)-[0-9]+'", address: address)
        return imported(Self.members(prefix: parts.prefix, zone: parts.zone, in: found), id: id, region: region, address: address)
    }

    /// Every gang in the client's project: the instances with Stratum's labels whose record
    /// names this type, grouped by zone and name prefix (one label-filtered
    /// `instances.aggregatedList`), each as imported. Its members are part of it, not resources
    /// of their own.
    func owned() async throws -> [OwnedResource]? {
        let project = client.project
        let found = try await lister(project).owned().filter { $0.address.type == type }
        var gangs: [String: (address: ResourceAddress, ownership: Ownership, zone: String, prefix: String)] = [:]
        for (_, item, address, ownership) in found {
            guard let name = item["name"]?.string, let dash = name.lastIndex(of: "-") else { continue }
            let zone = GCPInstanceInputs.zone(of: item), prefix = String(name[..<dash])
            gangs[Self.id(project: project, zone: zone, prefix: prefix)] = (address, ownership, zone, prefix)
        }
        let instances = Dictionary(uniqueKeysWithValues: found.map { ($0.path, $0.item) })
        return gangs.sorted { $0.key < $1.key }.compactMap { id, gang in
            let members = Self.members(prefix: gang.prefix, zone: gang.zone, in: instances)
            guard var state = imported(members, id: id, region: GCPErrorClassifier.regionOf(zone: gang.zone), address: gang.address) else { return nil }
            state.attributes["stratum_lineage"] = .string(gang.ownership.lineage)
            return OwnedResource(state: state, ownership: gang.ownership)
        }
    }

    /// The state of a live gang (its members, by index) adopted as it is; nil without members.
    func imported(_ members: [(index: Int, path: String, item: GCPJSON)], id: String, region: String, address: ResourceAddress) -> ResourceState? {
        guard let parts = Self.parts(of: id), let first = members.first else { return nil }
        var attributes: [String: Value] = [
            "id": .string(id), "project": .string(parts.project), "zone": .string(parts.zone), "zones": [.string(parts.zone)],
            "name_prefix": .string(parts.prefix), "count": .int(members.count), "instances": Self.instancesValue(members),
        ]
        attributes["machine_type"] = GCPInstanceInputs.machineType(of: first.item).map(Value.string)
        let labels = GCPLabels.user(first.item["labels"])
        if !labels.isEmpty { attributes["labels"] = .map(labels.mapValues(Value.string)) }
        return ResourceState(address: address, provider: "gcp", region: region, id: id, attributes: attributes, dependencies: [])
    }
}
