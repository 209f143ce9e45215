import Foundation
import StratumCloud
import StratumCore

/// `gcp_instance`: one Compute Engine instance, created in the first of `zones` with capacity.
/// Refresh reads all of a stack's instances in a project with one label-filtered
/// `instances.aggregatedList` (paginated), not a GET per instance.
struct GCPInstanceKind: GCPInstanceFamily {
    static let typeName = "gcp_instance"
    let client: GCPClient
    let type = Self.typeName

    func billing(_ attributes: [String: Value], region: String) -> Billing? {
        attributes["machine_type"]?.stringValue.map { .machines(instanceType: $0, region: region, spot: attributes["spot"]?.boolValue == true, count: 1) }
    }
    let schema = GCPInstanceInputs.schema(type: Self.typeName, extra: [
        "name": AttributeSchema(role: .optionalComputed, forceNew: true),
        "index": .input(forceNew: true),
        "self_link": .computed, "private_ip": .computed, "public_ip": .computed, "status": .computed,
    ])

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        NodeContract.review(prior, desired: desired)
    }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems = GCPInstanceInputs.problems(resource)
        if let name = resource.inputs["name"]?.stringValue, !GCPNames.isValid(name) { problems.append("name '\(name)' is not a Compute name") }
        return problems.map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    func name(of resource: ResolvedResource) -> String {
        resource.inputs["name"]?.stringValue ?? GCPNames.derived(from: resource.address, lineage: resource.ownership.lineage)
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let live = try await lister(client.project(of: first)).instances(of: resources) { [String($0.id.split(separator: "/").last ?? "")] }
        return resources.map { state in live[state.id].map { refreshed(state, from: $0) } }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let project = client.project(of: resource)
        let client = client.in(project)
        let name = name(of: resource)
        let labels = GCPLabels.ownership(for: resource, token: context.token).merging(GCPLabels.input(resource.inputs["labels"])) { $1 }
        let machineType = try GCPInputs.string(resource, "machine_type")
        // A secret that arrived through a reference resolved only now is checked again here.
        if let problem = GCPNodeSecrets.problem(resource.inputs) { throw ProviderError(.permanent, problem, address: resource.address) }
        return try await GCPNodeSecrets.removingOnFailure(resource, project: project, client: client) {
            let secrets = try await GCPNodeSecrets.put(resource, project: project, client: client)
            return try await failingOver(resource, token: context.token, what: machineType) { zone, requestToken in
                var body = try GCPInstanceInputs.properties(
                    resource, project: project, zone: zone, labels: labels, description: GCPOwnership.description(for: resource, token: context.token),
                    flavour: .gcp, bulk: false, secrets: secrets)
                body["name"] = .string(name)
                let path = "projects/\(project)/zones/\(zone)/instances/\(name)"
                do {
                    try await mutateAndWait(
                        client, "POST", "projects/\(project)/zones/\(zone)/instances", body: .object(body), requestToken: requestToken, action: "instances.insert",
                        address: resource.address, zone: zone, context: context)
                } catch let error as ProviderError where error.kind == .permanent && !Self.isNotOffered(error) {
                    // Refused as already existing after Compute forgot the requestId: what carries
                    // this create's token is what an earlier attempt made.
                    if let made = try? await find(resource, token: context.token) { return made }
                    throw error
                }
                guard let item = try await client.getIfExists(path, action: "instances.get", address: resource.address, zone: zone) else {
                    throw ProviderError(.transient, "GCP instances.insert finished but \(path) does not exist", address: resource.address)
                }
                return state(of: resource, from: item, path: path)
            }
        }
    }

    /// `labels` change in place; `zones` only steers where a new instance goes.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let labels = GCPLabels.input(desired.inputs["labels"])
        if labels != GCPLabels.input(prior.attributes["labels"]) {
            try await setLabels(prior.id, user: labels, address: prior.address)
        }
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        if desired.inputs["labels"] == nil { state.attributes["labels"] = nil }
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await deleteInstance(state.id, requestToken: context.token, address: state.address, context: context)
        try await GCPNodeSecrets.delete(state, project: client.project(of: state), client: client)
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await resume(operation)
        return try await find(operation.resolved, token: operation.token)
    }

    /// The instance a create with `token` made, in whichever zone: found by its token label.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let found = try await lister(client.project(of: resource)).instances(
            filter: GCPLabels.filter(GCPLabels.token, GCPLabels.value(token)), address: resource.address)
        guard let (path, item) = found.first(where: { $0.value["name"]?.string == name(of: resource) }) else { return nil }
        return state(of: resource, from: item, path: path)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        let found: (String, GCPJSON)?
        if id.hasPrefix("projects/") {
            let parts = id.split(separator: "/").map(String.init)
            found = try await client.in(parts.count > 1 ? parts[1] : client.project).getIfExists(id, action: "instances.get", address: address).map { (id, $0) }
        } else if GCPNames.isValid(id) {
            found = try await lister(client.project).instances(filter: "name eq '\(id)'", address: address).first.map { ($0.key, $0.value) }
        } else {
            found = nil
        }
        guard let (path, item) = found else { return nil }
        return imported(item, path: path, region: region, address: address)
    }

    /// Every instance in the client's project with Stratum's labels whose record names this
    /// type (gang members name `gcp_instance_gang`), as imported. Found by one label-filtered
    /// `instances.aggregatedList`; the whole stack and address come from the description.
    /// The node's Secret Manager secrets are not part of the state, so deleting it leaves them.
    func owned() async throws -> [OwnedResource]? {
        try await lister(client.project).owned().compactMap { path, item, address, ownership in
            guard address.type == type else { return nil }
            var state = imported(item, path: path, region: GCPErrorClassifier.regionOf(zone: GCPInstanceInputs.zone(of: item)), address: address)
            state.attributes["stratum_lineage"] = .string(ownership.lineage)
            return OwnedResource(state: state, ownership: ownership)
        }
    }

    /// The state of a live instance adopted as it is.
    func imported(_ item: GCPJSON, path: String, region: String, address: ResourceAddress) -> ResourceState {
        var attributes = GCPInstanceInputs.live(item)
        attributes["name"] = item["name"]?.string.map(Value.string)
        attributes["id"] = .string(path)
        attributes["project"] = .string(String(path.split(separator: "/")[1]))
        attributes["machine_type"] = GCPInstanceInputs.machineType(of: item).map(Value.string)
        attributes["zones"] = attributes["zone"].map { .list([$0]) }
        attributes["subnetwork"] = item["networkInterfaces"]?.array.first?["subnetwork"]?.string.map(Value.string)
        let labels = GCPLabels.user(item["labels"])
        if !labels.isEmpty { attributes["labels"] = .map(labels.mapValues(Value.string)) }
        return ResourceState(address: address, provider: "gcp", region: region, id: path, attributes: attributes, dependencies: [])
    }

    func state(of resource: ResolvedResource, from item: GCPJSON, path: String) -> ResourceState {
        var attributes = resource.inputs
        attributes.merge(GCPInstanceInputs.live(item)) { $1 }
        attributes["name"] = .string(name(of: resource))
        attributes["id"] = .string(path)
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        return ResourceState(address: resource.address, provider: "gcp", region: resource.region, id: path, attributes: attributes, dependencies: resource.dependencies)
    }

    func refreshed(_ prior: ResourceState, from item: GCPJSON) -> ResourceState {
        var state = prior
        state.attributes.merge(GCPInstanceInputs.live(item)) { $1 }
        if let type = GCPInstanceInputs.machineType(of: item) { state.attributes["machine_type"] = .string(type) }
        let live = GCPLabels.user(item["labels"])
        if live != GCPLabels.input(prior.attributes["labels"]) { state.attributes["labels"] = live.isEmpty ? nil : .map(live.mapValues(Value.string)) }
        return state
    }
}
