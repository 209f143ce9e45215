import Foundation
import StratumCloud
import StratumCore

extension GCPComputeSpec {
    /// `gcp_resource_policy`: a compact placement policy (instances placed close together for
    /// low network latency) in the resource's region, for `gcp_instance.resource_policy`.
    static let resourcePolicy = GCPComputeSpec(
        type: "gcp_resource_policy", collection: "resourcePolicies", regional: true,
        inputs: ["vm_count": .input(forceNew: true)], computed: [],
        body: { resource, _ in
            var placement: [String: GCPJSON] = ["collocation": "COLLOCATED"]
            if let count = resource.inputs["vm_count"]?.intValue {
                guard count > 0 else { throw ProviderError(.permanent, "vm_count must be at least 1", address: resource.address) }
                placement["vmCount"] = .number(Double(count))
            }
            return ["groupPlacementPolicy": .object(placement)]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["vm_count"] = item["groupPlacementPolicy"]?["vmCount"].map(\.stratumValue)
            return attributes
        })
}

/// The inputs `gcp_instance` and `gcp_instance_gang` share, and what they make of them.
enum GCPInstanceInputs {
    /// A public image family with NVIDIA drivers and CUDA installed (Deep Learning VM).
    static let defaultImage = "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"
    static let defaultScopes = ["https://www.googleapis.com/auth/cloud-platform"]
    /// Machine families whose GPUs come with the machine type; only N1 takes attached GPUs.
    static let gpuFamilies: Set<String> = ["a2", "a3", "a4", "a4x", "g2", "g4"]

    static func schema(type: String, extra: [String: AttributeSchema]) -> ResourceSchema {
        var attributes: [String: AttributeSchema] = [
            "project": .input(forceNew: true),
            "machine_type": .input(forceNew: true, required: true),
            // Where a new instance may go, in order; a running one stays where it is.
            "zones": .input(required: true),
            "subnetwork": .input(forceNew: true, required: true),
            "image": .input(forceNew: true),
            "boot_disk_gib": .input(forceNew: true),
            "accelerator_type": .input(forceNew: true),
            "accelerator_count": .input(forceNew: true),
            "spot": .input(forceNew: true),
            "service_account": .input(forceNew: true),
            "scopes": .input(forceNew: true),
            "resource_policy": .input(forceNew: true),
            "network_tags": .input(forceNew: true),
            "external_ip": .input(forceNew: true),
            "labels": .input(),
            // The boot script is instance metadata, which Compute keeps in plain text.
            "user_data": .input(forceNew: true, plainText: true),
            "command": .input(forceNew: true, plainText: true),
            "env": .input(forceNew: true, plainText: true),
            "container_image": .input(forceNew: true),
            "pool": .input(forceNew: true),
            "count": .input(forceNew: true),
            "checkpoint_url": .input(forceNew: true, plainText: true),
            "gpus": .input(forceNew: true),
            "gpu_class": .input(forceNew: true),
            "id": .computed,
            "zone": .computed,
            "stratum_lineage": .computed,
        ]
        attributes.merge(extra) { $1 }
        return ResourceSchema(type: type, attributes: attributes)
    }

    static func strings(_ value: Value?) -> [String] { (value?.listValue ?? []).compactMap(\.stringValue) }

    static func family(_ machineType: String) -> String { String(machineType.prefix { $0 != "-" }) }

    /// Whether the machine has GPUs: its family carries them, or accelerators are attached.
    static func hasGPUs(_ inputs: [String: Value]) -> Bool {
        let type = inputs["machine_type"]?.stringValue ?? ""
        return gpuFamilies.contains(family(type)) || (inputs["accelerator_type"]?.stringValue != nil && (inputs["accelerator_count"]?.intValue ?? 1) > 0)
    }

    /// Checks both kinds share, before any call.
    static func problems(_ resource: DesiredResource) -> [String] {
        var problems: [String] = []
        let inputs = resource.inputs
        let machineType = inputs["machine_type"]?.stringValue ?? ""
        if inputs["machine_type"] != nil, machineType.range(of: "^[a-z][a-z0-9]*-[a-z0-9-]+$", options: .regularExpression) == nil {
            problems.append("'\(machineType)' is not a Compute machine type (expected FAMILY-…, e.g. a3-highgpu-8g)")
        }
        if case .list(let zones)? = inputs["zones"] {
            if zones.isEmpty { problems.append("zones must list at least one zone") }
            for zone in zones.compactMap(\.stringValue) where GCPErrorClassifier.regionOf(zone: zone) != resource.region {
                problems.append("zone '\(zone)' is not in region \(resource.region)")
            }
        }
        if inputs["accelerator_type"] != nil {
            if gpuFamilies.contains(family(machineType)) {
                problems.append("\(machineType) comes with its GPUs; accelerator_type is only for N1 machine types")
            } else if family(machineType) != "n1" {
                problems.append("GPUs can be attached to N1 machine types only, not \(machineType)")
            }
        } else if inputs["accelerator_count"] != nil {
            problems.append("accelerator_count needs accelerator_type (e.g. nvidia-tesla-t4)")
        }
        for key in GCPLabels.user(inputs["labels"]).keys.sorted() where !GCPLabels.isValidKey(key) || key.hasPrefix("stratum-") {
            problems.append("label '\(key)' is not a GCP label key of the stack's own (a-z first, then a-z, 0-9, '_', '-'; at most 63; not stratum-…)")
        }
        for (key, value) in GCPLabels.user(inputs["labels"]).sorted(by: { $0.key < $1.key }) where !GCPLabels.isValidValue(value) {
            problems.append("label '\(key)' has the value '\(value)'; GCP label values are at most 63 of lower-case letters, digits, '_' and '-'")
        }
        for tag in strings(inputs["network_tags"]) where !GCPNames.isValid(tag) {
            problems.append("network tag '\(tag)' is not a Compute name")
        }
        return problems
    }

    /// A subnetwork's path from its name, `regions/R/subnetworks/N` path or link.
    static func subnetworkPath(_ value: String, project: String, region: String) -> String {
        if let path = GCPNames.path(ofLink: value) { return path }
        if value.hasPrefix("regions/") { return "projects/\(project)/\(value)" }
        return "projects/\(project)/regions/\(region)/subnetworks/\(value)"
    }

    static func resourcePolicyPath(_ value: String, project: String, region: String) -> String {
        if let path = GCPNames.path(ofLink: value) { return path }
        if value.hasPrefix("regions/") { return "projects/\(project)/\(value)" }
        return "projects/\(project)/regions/\(region)/resourcePolicies/\(value)"
    }

    /// An instance's properties in `zone`. `bulk` gives them in the form `bulkInsert`'s
    /// `instanceProperties` takes: the machine type, accelerator type and resource policies
    /// by name rather than path.
    static func properties(
        _ resource: ResolvedResource, project: String, zone: String, labels: [String: String], description: String, atBoot: NodeBootScript.AtBoot, bulk: Bool
    ) throws -> [String: GCPJSON] {
        let inputs = resource.inputs
        let machineType = try GCPInputs.string(resource, "machine_type")
        let region = resource.region
        var image = inputs["image"]?.stringValue ?? defaultImage
        if !image.contains("/") { image = "projects/\(project)/global/images/\(image)" }
        var initialize: [String: GCPJSON] = ["sourceImage": .string(GCPNames.path(ofLink: image) ?? image)]
        if let size = inputs["boot_disk_gib"]?.intValue { initialize["diskSizeGb"] = .string(String(size)) }
        var interface: [String: GCPJSON] = ["subnetwork": .string(subnetworkPath(try GCPInputs.string(resource, "subnetwork"), project: project, region: region))]
        if inputs["external_ip"]?.boolValue ?? true { interface["accessConfigs"] = [["type": "ONE_TO_ONE_NAT", "name": "External NAT"]] }
        let email = inputs["service_account"]?.stringValue ?? "default"
        let scopes = inputs["scopes"] == nil ? defaultScopes : strings(inputs["scopes"])
        var body: [String: GCPJSON] = [
            "description": .string(description),
            "machineType": .string(bulk ? machineType : "zones/\(zone)/machineTypes/\(machineType)"),
            "disks": [["boot": true, "autoDelete": true, "type": "PERSISTENT", "initializeParams": .object(initialize)]],
            "networkInterfaces": [.object(interface)],
            "serviceAccounts": [["email": .string(email), "scopes": .array(scopes.map(GCPJSON.string))]],
            "labels": .object(labels.mapValues(GCPJSON.string)),
        ]
        if let type = inputs["accelerator_type"]?.stringValue {
            let count = inputs["accelerator_count"]?.intValue ?? 1
            body["guestAccelerators"] = [[
                "acceleratorType": .string(bulk ? type : "projects/\(project)/zones/\(zone)/acceleratorTypes/\(type)"), "acceleratorCount": .number(Double(count)),
            ]]
        }
        var scheduling: [String: GCPJSON] = [:]
        // GPUs cannot be live-migrated: the machine stops for host maintenance instead.
        if hasGPUs(inputs) { scheduling["onHostMaintenance"] = "TERMINATE" }
        if inputs["spot"]?.boolValue == true {
            scheduling["provisioningModel"] = "SPOT"
            scheduling["instanceTerminationAction"] = "DELETE"
            scheduling["automaticRestart"] = false
            scheduling["onHostMaintenance"] = "TERMINATE"
        }
        if !scheduling.isEmpty { body["scheduling"] = .object(scheduling) }
        if let policy = inputs["resource_policy"]?.stringValue, !policy.isEmpty {
            let path = resourcePolicyPath(policy, project: project, region: region)
            body["resourcePolicies"] = [.string(bulk ? String(path.split(separator: "/").last ?? "") : path)]
        }
        let tags = strings(inputs["network_tags"])
        if !tags.isEmpty { body["tags"] = ["items": .array(tags.map(GCPJSON.string))] }
        if let script = NodeBootScript.render(resource, cloud: "gcp", atBoot: atBoot) {
            // A stack's own cloud-init document goes where cloud-init reads it; a script is run
            // by the guest agent at boot.
            let key = script.hasPrefix("#cloud-config") ? "user-data" : "startup-script"
            body["metadata"] = ["items": [["key": .string(key), "value": .string(script)]]]
        }
        return body
    }

    /// The inputs and computed attributes as a live instance has them.
    static func live(_ item: GCPJSON) -> [String: Value] {
        var attributes: [String: Value] = [:]
        attributes["zone"] = item["zone"]?.string.flatMap(GCPOperation.lastComponent).map(Value.string)
        attributes["status"] = item["status"]?.string.map(Value.string)
        attributes["self_link"] = item["selfLink"]?.string.map(Value.string)
        let interface = item["networkInterfaces"]?.array.first
        attributes["private_ip"] = .string(interface?["networkIP"]?.string ?? "")
        attributes["public_ip"] = .string(interface?["accessConfigs"]?.array.lazy.compactMap { $0["natIP"]?.string }.first ?? "")
        return attributes
    }

    static func machineType(of item: GCPJSON) -> String? { item["machineType"]?.string.flatMap(GCPOperation.lastComponent) }
}

/// Stratum's ownership of an instance, in its labels (values made to fit GCP's label rules),
/// so refresh and recovery find instances with a label filter.
enum GCPLabels {
    static let stack = "stratum-stack"
    static let lineage = "stratum-lineage"
    static let address = "stratum-address"
    static let token = "stratum-token"

    static func isValidKey(_ key: String) -> Bool { key.range(of: "^[a-z][a-z0-9_-]{0,62}$", options: .regularExpression) != nil }

    /// Lower-case letters (any script), digits, `_` and `-`, at most 63.
    static func isValidValue(_ value: String) -> Bool {
        value.count <= 63 && value.allSatisfy { $0 == "_" || $0 == "-" || $0.isNumber || ($0.isLetter && !$0.isUppercase) }
    }

    /// `text` as a label value: lower case, other characters than a-z, 0-9, `_` and `-` as `_`, at most 63.
    static func value(_ text: String) -> String {
        String(text.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "_" || $0 == "-" ? $0 : "_" }.prefix(63))
    }

    /// The token as a label value: the create's requestId (a UUID), the same for every retry.
    static func tokenValue(_ token: String) -> String { GCPClient.requestId(for: token) }

    static func ownership(_ resource: ResolvedResource, token: String) -> [String: String] {
        [
            stack: value(resource.ownership.stack), lineage: value(resource.ownership.lineage), address: value(resource.address.description),
            Self.token: tokenValue(token),
        ]
    }

    /// The stack's labels (the `labels` input).
    static func user(_ value: Value?) -> [String: String] {
        guard case .map(let map)? = value else { return [:] }
        return map.compactMapValues { $0.stringValue ?? $0.description }
    }

    /// A live resource's labels that are not Stratum's own.
    static func userLabels(of item: GCPJSON) -> [String: String] {
        item["labels"]?.object.compactMapValues(\.string).filter { !$0.key.hasPrefix("stratum-") } ?? [:]
    }

    static func filter(_ key: String, _ value: String) -> String { "labels.\(key) = \"\(value)\"" }
}

/// Reads a project's instances with `instances.aggregatedList` (every zone at once), filtered
/// by label and paginated.
struct GCPInstanceLister {
    let client: GCPClient
    let project: String

    /// Instances by path (`projects/p/zones/z/instances/n`) matching `filter`.
    func instances(filter: String, address: ResourceAddress? = nil) async throws -> [String: GCPJSON] {
        let pages = try await client.pages(
            "projects/\(project)/aggregated/instances", query: [("filter", filter), ("maxResults", "500")], action: "instances.aggregatedList", address: address)
        var found: [String: GCPJSON] = [:]
        for page in pages {
            for scoped in (page["items"]?.object ?? [:]).values {
                for item in scoped["instances"]?.array ?? [] {
                    if let path = GCPNames.path(ofLink: item["selfLink"]?.string) { found[path] = item }
                }
            }
        }
        return found
    }

    /// The live instances of recorded states: one call per lineage among them (one in a run),
    /// plus one by name for states recorded without a lineage (imported).
    func instances(of states: [ResourceState], names: (ResourceState) -> [String]) async throws -> [String: GCPJSON] {
        var found: [String: GCPJSON] = [:]
        let lineages = Set(states.compactMap { $0.attributes["stratum_lineage"]?.stringValue }.filter { !$0.isEmpty })
        for lineage in lineages.sorted() {
            found.merge(try await instances(filter: GCPLabels.filter(GCPLabels.lineage, GCPLabels.value(lineage)))) { $1 }
        }
        let unowned = Set(states.filter { ($0.attributes["stratum_lineage"]?.stringValue ?? "").isEmpty }.flatMap(names)).sorted()
        for start in stride(from: 0, to: unowned.count, by: 50) {
            let chunk = unowned[start..<min(unowned.count, start + 50)]
            found.merge(try await instances(filter: "name eq '\(chunk.joined(separator: "|"))'")) { $1 }
        }
        return found
    }
}

/// What both instance kinds do the same way.
protocol GCPInstanceFamily: ResourceKind {
    var client: GCPClient { get }
}

extension GCPInstanceFamily {
    func batchKey(_ state: ResourceState) -> String { "projects/\(client.project(of: state))" }

    func lister(_ project: String) -> GCPInstanceLister { GCPInstanceLister(client: client.in(project), project: project) }

    func zones(_ resource: ResolvedResource) throws -> [String] {
        let zones = GCPInstanceInputs.strings(resource.inputs["zones"])
        guard !zones.isEmpty else { throw ProviderError(.permanent, "zones must list at least one zone", address: resource.address) }
        return zones
    }

    /// Tries `attempt` in each zone in turn until one has capacity. Each zone's call gets its
    /// own requestId derived from `token`, so a retry replays the same calls and failover
    /// never makes a second machine.
    func failingOver<T>(
        _ resource: ResolvedResource, token: String, what: String, _ attempt: (_ zone: String, _ requestToken: String) async throws -> T
    ) async throws -> T {
        let zones = try zones(resource)
        var stockouts: [String] = []
        var unoffered: [String] = []
        for (i, zone) in zones.enumerated() {
            do {
                return try await attempt(zone, i == 0 ? token : "\(token)/\(zone)")
            } catch let error as ProviderError where error.kind == .capacity {
                stockouts.append("\(zone): \(error.message)")
            } catch let error as ProviderError where Self.isNotOffered(error) {
                unoffered.append("\(zone): \(error.message)")
            }
        }
        if stockouts.isEmpty {
            throw ProviderError(
                .permanent, "\(what) is not offered in any of the \(zones.count) zone(s) allowed (\(unoffered.joined(separator: "; "))); list zones that offer it",
                address: resource.address)
        }
        stockouts += unoffered
        throw ProviderError(
            .capacity,
            "no capacity for \(what) in any of the \(zones.count) zone(s) allowed (\(stockouts.joined(separator: "; "))); add zones to `zones`, or try another region",
            address: resource.address, scope: zones.count > 1 ? .region(resource.region) : .zone(zones.first))
    }

    /// Compute's answer when a zone does not offer the machine type ("Machine type with name
    /// 'X' does not exist in zone 'Z'") or the attached GPU (".../acceleratorTypes/X was not
    /// found"): the next zone may.
    static func isNotOffered(_ error: ProviderError) -> Bool {
        switch error.kind {
        case .permanent: return error.message.contains("does not exist in zone")
        case .notFound: return error.message.contains("/acceleratorTypes/")
        default: return false
        }
    }

    /// Sends a mutating call, records its operation's handle and waits for it.
    func mutateAndWait(
        _ client: GCPClient, _ method: String, _ path: String, body: GCPJSON? = nil, requestToken: String, action: String, address: ResourceAddress,
        zone: String, context: OperationContext?
    ) async throws {
        let operation = try await client.mutate(
            method, path, body: body, requestId: requestToken, action: action, address: address, zone: zone, region: GCPErrorClassifier.regionOf(zone: zone))
        if let context { try await context.record(handle: operation.reference.handle) }
        if !operation.isDone || operation.error != nil {
            try await client.wait(for: operation.reference, action: action, address: address)
        }
    }

    /// Resumes a recorded operation until it is done, whatever its outcome (what it made, if
    /// anything, is looked up afterwards).
    func resume(_ operation: PendingOperation) async throws {
        guard let handle = operation.handle, let reference = GCPOperationReference(handle: handle) else { return }
        let client = client.in(client.project(of: operation.resolved))
        do {
            try await client.configuration.operationPoller.wait(for: "GCP \(operation.type) create (operation \(reference))", address: operation.address) {
                let look = try await client.operation(reference, address: operation.address)
                return look.isDone ? .done(look) : .running
            }
        } catch let error as ProviderError where error.kind == .notFound {
            // Compute forgets old operations; what exists answers for it.
        }
    }

    /// Deletes an instance and waits; one already gone is fine.
    func deleteInstance(_ path: String, requestToken: String, address: ResourceAddress, context: OperationContext?) async throws {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count == 6 else { throw ProviderError(.permanent, "'\(path)' is not an instance path", address: address) }
        do {
            try await mutateAndWait(
                client.in(parts[1]), "DELETE", path, requestToken: requestToken, action: "instances.delete", address: address, zone: parts[3], context: context)
        } catch let error as ProviderError where error.kind == .notFound {
            // Already gone.
        }
    }

    /// Sets an instance's labels to Stratum's ownership (as it has it) and `user`.
    func setLabels(_ path: String, user: [String: String], address: ResourceAddress) async throws {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count == 6 else { throw ProviderError(.permanent, "'\(path)' is not an instance path", address: address) }
        let client = client.in(parts[1])
        let item = try await client.get(path, action: "instances.get", address: address, zone: parts[3])
        var labels = item["labels"]?.object.compactMapValues(\.string).filter { $0.key.hasPrefix("stratum-") } ?? [:]
        labels.merge(user) { $1 }
        var body: [String: GCPJSON] = ["labels": .object(labels.mapValues(GCPJSON.string))]
        if let fingerprint = item["labelFingerprint"]?.string { body["labelFingerprint"] = .string(fingerprint) }
        // A label change is idempotent; a repeat after a lost answer reads a fresh fingerprint.
        try await mutateAndWait(
            client, "POST", "\(path)/setLabels", body: .object(body), requestToken: UUID().uuidString.lowercased(), action: "instances.setLabels",
            address: address, zone: parts[3], context: nil)
    }
}

/// GCE's metadata server, as a node reads it at boot.
extension NodeBootScript.AtBoot {
    static let gceMetadata = "md() { curl -sf -H 'Metadata-Flavor: Google' \"http://metadata.google.internal/computeMetadata/v1/instance/$1\" || true; }"

    /// A single instance: the zone Compute placed it in (`projects/N/zones/Z` from the metadata server).
    static let gcpInstance = NodeBootScript.AtBoot(
        lines: [gceMetadata, "zone=$(md zone)", "export \(NodeContract.zoneName)=\"${zone##*/}\""], variables: [NodeContract.zoneName])

    /// A member of a gang: also its rank, the suffix of its name (`<prefix>-<i>`).
    static func gcpGangMember(cluster: String) -> NodeBootScript.AtBoot {
        NodeBootScript.AtBoot(
            lines: gcpInstance.lines + [
                "name=$(md name)", "export \(NodeContract.nodeIndex)=\"${name##*-}\"",
                "export \(NodeContract.nodeName)=\(NodeBootScript.quote(cluster))-\"${name##*-}\"",
            ],
            variables: [NodeContract.zoneName, NodeContract.nodeIndex, NodeContract.nodeName])
    }
}

/// `gcp_instance`: one Compute Engine instance, created in the first of `zones` with capacity.
/// Refresh reads all of a stack's instances in a project with one label-filtered
/// `instances.aggregatedList` (paginated), not a GET per instance.
struct GCPInstanceKind: GCPInstanceFamily {
    static let typeName = "gcp_instance"
    let client: GCPClient
    let type = Self.typeName
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
        let labels = GCPLabels.ownership(resource, token: context.token).merging(GCPLabels.user(resource.inputs["labels"])) { $1 }
        let machineType = try GCPInputs.string(resource, "machine_type")
        return try await failingOver(resource, token: context.token, what: machineType) { zone, requestToken in
            var body = try GCPInstanceInputs.properties(
                resource, project: project, zone: zone, labels: labels, description: GCPOwnership.description(for: resource, token: context.token),
                atBoot: .gcpInstance, bulk: false)
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

    /// `labels` change in place; `zones` only steers where a new instance goes.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let labels = GCPLabels.user(desired.inputs["labels"])
        if labels != GCPLabels.user(prior.attributes["labels"]) {
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
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await resume(operation)
        return try await find(operation.resolved, token: operation.token)
    }

    /// The instance a create with `token` made, in whichever zone: found by its token label.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let found = try await lister(client.project(of: resource)).instances(
            filter: GCPLabels.filter(GCPLabels.token, GCPLabels.tokenValue(token)), address: resource.address)
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
        var attributes = GCPInstanceInputs.live(item)
        attributes["name"] = item["name"]?.string.map(Value.string)
        attributes["id"] = .string(path)
        attributes["project"] = .string(String(path.split(separator: "/")[1]))
        attributes["machine_type"] = GCPInstanceInputs.machineType(of: item).map(Value.string)
        attributes["zones"] = attributes["zone"].map { .list([$0]) }
        attributes["subnetwork"] = item["networkInterfaces"]?.array.first?["subnetwork"]?.string.map(Value.string)
        let labels = GCPLabels.userLabels(of: item)
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
        let live = GCPLabels.userLabels(of: item)
        if live != GCPLabels.user(prior.attributes["labels"]) { state.attributes["labels"] = live.isEmpty ? nil : .map(live.mapValues(Value.string)) }
        return state
    }
}

/// `gcp_instance_gang`: `count` instances made by one `instances.bulkInsert` with `minCount` =
/// `count` (all of them or none), named `<name_prefix>-<i>`, in the first of `zones` with
/// capacity for all. Its id is `projects/P/zones/Z/instances/<prefix>-*`. A gang some of whose
/// instances are gone (a spot instance reclaimed) is replaced as a whole.
struct GCPInstanceGangKind: GCPInstanceFamily {
    static let typeName = "gcp_instance_gang"
    let client: GCPClient
    let type = Self.typeName
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
            let labels = GCPLabels.userLabels(of: members[0].item)
            if labels != GCPLabels.user(state.attributes["labels"]) { fresh.attributes["labels"] = labels.isEmpty ? nil : .map(labels.mapValues(Value.string)) }
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
        let labels = GCPLabels.ownership(resource, token: context.token).merging(GCPLabels.user(resource.inputs["labels"])) { $1 }
        let cluster = resource.inputs["pool"]?.stringValue ?? resource.address.name
        let machineType = try GCPInputs.string(resource, "machine_type")
        return try await failingOver(resource, token: context.token, what: "\(count) × \(machineType) in one zone") { zone, requestToken in
            let properties = try GCPInstanceInputs.properties(
                resource, project: project, zone: zone, labels: labels, description: GCPOwnership.description(for: resource, token: context.token),
                atBoot: .gcpGangMember(cluster: cluster), bulk: true)
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

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let labels = GCPLabels.user(desired.inputs["labels"])
        if labels != GCPLabels.user(prior.attributes["labels"]), let parts = Self.parts(of: prior.id) {
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
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await resume(operation)
        return try await find(operation.resolved, token: operation.token)
    }

    /// The gang a create with `token` made: the instances carrying its token label.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let project = client.project(of: resource)
        let found = try await lister(project).instances(filter: GCPLabels.filter(GCPLabels.token, GCPLabels.tokenValue(token)), address: resource.address)
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
        let members = Self.members(prefix: parts.prefix, zone: parts.zone, in: found)
        guard let first = members.first else { return nil }
        var attributes: [String: Value] = [
            "id": .string(id), "project": .string(parts.project), "zone": .string(parts.zone), "zones": [.string(parts.zone)],
            "name_prefix": .string(parts.prefix), "count": .int(members.count), "instances": Self.instancesValue(members),
        ]
        attributes["machine_type"] = GCPInstanceInputs.machineType(of: first.item).map(Value.string)
        let labels = GCPLabels.userLabels(of: first.item)
        if !labels.isEmpty { attributes["labels"] = .map(labels.mapValues(Value.string)) }
        return ResourceState(address: address, provider: "gcp", region: region, id: id, attributes: attributes, dependencies: [])
    }
}
