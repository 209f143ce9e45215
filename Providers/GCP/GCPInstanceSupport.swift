import Foundation
import StratumBootstrap
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
            // The bundled trainer, fetched from the cluster's bucket and built at boot (StratumBootstrap).
            // Rank 0's address (a reference to its private IP): the node contract's STRATUM_COORDINATOR.
            "coordinator": .input(forceNew: true),
            "trainer_url": .input(forceNew: true),
            "trainer_sha256": .input(forceNew: true),
            "trainer_config": .input(forceNew: true, plainText: true),
            "trainer_arguments": .input(forceNew: true, plainText: true),
            "command": .input(forceNew: true, plainText: true),
            // A Secret here goes to Secret Manager and is read by the node as its service
            // account (GCPNodeSecrets); plain entries are in the instance's metadata.
            "env": .input(forceNew: true, deliversSecrets: true),
            "container_image": .input(forceNew: true),
            // The node's link conditions (LinkProfile.value), shaped by its user data at boot: a change replaces the machine.
            "link": .input(forceNew: true),
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
        problems += GCPLabels.problems(GCPLabels.input(inputs["labels"]))
        if let problem = GCPNodeSecrets.problem(inputs) { problems.append(problem) }
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
        _ resource: ResolvedResource, project: String, zone: String, labels: [String: String], description: String, flavour: BootstrapFlavour, bulk: Bool,
        secrets: [String: String] = [:]
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
        let machine = GCPMachineCatalog.bootstrapMachine(
            machineType: machineType,
            gpus: inputs["gpus"]?.intValue ?? (inputs["accelerator_type"] != nil ? inputs["accelerator_count"]?.intValue ?? 1 : nil),
            gpuClass: inputs["gpu_class"]?.stringValue ?? inputs["accelerator_type"]?.stringValue.map(GCPMachineCatalog.gpuClass(ofAccelerator:)))
        if let userData = try NodeUserData.render(resource, flavour: flavour, machine: machine, secrets: secrets) {
            // A #cloud-config document (the node setup, or the stack's own) goes where cloud-init
            // reads it; any other script the stack gives is run by the guest agent at boot.
            let text = String(decoding: userData.bytes, as: UTF8.self)
            let key = text.hasPrefix("#cloud-config") ? "user-data" : "startup-script"
            body["metadata"] = ["items": [["key": .string(key), "value": .string(text)]]]
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

    static func zone(of item: GCPJSON) -> String { item["zone"]?.string.flatMap(GCPOperation.lastComponent) ?? "" }
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

    /// Every instance with Stratum's labels (any lineage), by path, with the address and
    /// ownership its description records; one without a record is left out. An instance made
    /// before the description kept the expiry has it from its label.
    func owned() async throws -> [(path: String, item: GCPJSON, address: ResourceAddress, ownership: Ownership)] {
        try await instances(filter: GCPLabels.presence(GCPLabels.lineage)).sorted { $0.key < $1.key }.compactMap { path, item in
            guard let record = GCPOwnership.owned(in: item["description"]?.string) else { return nil }
            var ownership = record.ownership
            if ownership.expires == nil, let expires = item["labels"]?[GCPLabels.expires]?.string.flatMap({ TimeInterval($0) }) {
                ownership.expires = Date(timeIntervalSince1970: expires)
            }
            return (path, item, record.address, ownership)
        }
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
    static let gceMetadata = "md() { curl -sf -H 'Metadata-Flavor: Google' \"http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1/instance/$1\" || true; }"

    /// A single instance: the zone Compute placed it in (`projects/N/zones/Z` from the metadata server).
    static let gcpInstance = NodeBootScript.AtBoot(
        lines: [
            gceMetadata, "zone=$(md zone)", "export \(NodeContract.zoneName)=\"${zone##*/}\"",
            "export \(NodeContract.nodeIPName)=\"$(md network-interfaces/0/ip)\"",
        ],
        variables: [NodeContract.zoneName, NodeContract.nodeIPName])

    /// A member of a gang: also its rank, the suffix of its name (`<prefix>-<i>`).
    static func gcpGangMember(cluster: String) -> NodeBootScript.AtBoot {
        NodeBootScript.AtBoot(
            lines: gcpInstance.lines + [
                "name=$(md name)", "export \(NodeContract.nodeIndex)=\"${name##*-}\"",
                "export \(NodeContract.nodeName)=\(NodeBootScript.quote(cluster))-\"${name##*-}\"",
                // Members are <prefix>-<i>: rank 0 is <prefix>-0, which the VPC's DNS resolves.
                "export \(NodeContract.coordinatorName)=\"${name%-*}-0\"",
            ],
            variables: [NodeContract.zoneName, NodeContract.nodeIPName, NodeContract.nodeIndex, NodeContract.nodeName, NodeContract.coordinatorName])
    }
}
