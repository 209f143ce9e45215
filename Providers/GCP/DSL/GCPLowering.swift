import Foundation
import Stratum
import StratumCore

extension Placement {
    /// Google Cloud in `region` of `project` (nil: the project of the credentials or
    /// `GOOGLE_CLOUD_PROJECT`); `zones` lists the zones nodes may run in, in order of
    /// preference: a node that meets a stockout in one zone is created in the next.
    public static func gcp(project: String? = nil, region: String, zones: [String] = []) -> Placement {
        Placement(provider: "gcp", region: region, zones: zones, lowering: GCPLowering(project: project))
    }

    /// The GCP project a placement names, nil when it names none (or is not on GCP).
    public var gcpProject: String? { (lowering as? GCPLowering)?.project }
}

/// How the portable resources become GCP resources when placed on `.gcp(region:zones:)`.
///
/// - `Network` → `gcp_network` (custom subnet mode) + one `gcp_subnetwork` with the network's
///   CIDR in the placement's region (subnetworks are regional, so one serves every zone) +
///   `gcp_firewall` allowing all traffic from inside that CIDR. Nothing is opened to the world.
/// - `Bucket` → `gcp_bucket`.
/// - `NodePool` → one `gcp_instance` per node with the placement's zones in order (a stockout
///   in one zone moves the create to the next) on the network's subnetwork, the machine type
///   from `GCPMachineCatalog`, and the node contract inputs. Each node carries its `link`
///   (`NodePool.link(for:)`), which its user data shapes at boot.
public struct GCPLowering: PlacementLowering {
    static let resourceTypes = ["network": "gcp_network", "bucket": "gcp_bucket", "node": "gcp_instance"]

    /// The project every lowered resource names (its `project` input); nil for the default one.
    public let project: String?

    public init(project: String? = nil) {
        self.project = project
    }

    public func resourceType(kind: String, on placement: Placement) -> String {
        Self.resourceTypes[kind] ?? "gcp_\(kind)"
    }

    /// The self link of `network`'s subnetwork, which instances attach to.
    public static func subnetwork(of network: Network) -> Ref<String> {
        Ref(ResourceAddress(type: "gcp_subnetwork", name: network.name), "self_link")
    }

    /// The network's own self link (for firewalls of a stack's own).
    public static func selfLink(of network: Network) -> Ref<String> {
        Ref(network.address, "self_link")
    }

    /// Where the placement can be wrong: its project name and region name.
    func placementDiagnostics(_ placement: Placement, address: ResourceAddress, location: SourceLocation) -> [Diagnostic] {
        var problems: [String] = []
        if let project, let problem = GCPLocations.problem(project: project) { problems.append(problem) }
        if let problem = GCPLocations.problem(region: placement.region) { problems.append(problem) }
        return problems.map { Diagnostic(address: address, message: $0, location: location) }
    }

    func inputs(_ inputs: [String: Value]) -> [String: Value] {
        guard let project else { return inputs }
        return inputs.merging(["project": .string(project)]) { $1 }
    }

    public func declare(network: Network, into content: inout StackContent) {
        let placement = network.placement
        content.diagnostics += placementDiagnostics(placement, address: network.address, location: network.location)
        func add(_ type: String, _ inputs: [String: Value]) {
            content.resources.append(DesiredResource(
                address: ResourceAddress(type: type, name: network.name), provider: "gcp", region: placement.region, inputs: self.inputs(inputs),
                dependsOn: network.explicitDependencies, location: network.location))
        }
        let link = Self.selfLink(of: network).value
        add("gcp_network", [:])
        add("gcp_subnetwork", ["network": link, "cidr": .string(network.cidr), "private_google_access": .bool(true)])
        add("gcp_firewall", [
            "network": link, "direction": "INGRESS", "source_ranges": .list([.string(network.cidr)]), "allow": .list([.map(["protocol": "all"])]),
        ])
    }

    /// A GCP bucket is not yet shared with other clouds' nodes (that needs a workload identity
    /// pool trusting their issuers): a cluster spanning clouds keeps its bucket elsewhere.
    public func sharesBuckets(with clouds: Set<String>) -> Bool { clouds == ["gcp"] }

    public func grant(_ bucket: Bucket, to identity: WorkloadIdentity, as name: String, into content: inout StackContent) -> [String: any StringExpression]? {
        nil
    }

    public func declare(bucket: Bucket, into content: inout StackContent) {
        content.diagnostics += placementDiagnostics(bucket.placement, address: bucket.address, location: bucket.location)
        content.resources.append(DesiredResource(
            address: bucket.address, provider: "gcp", region: bucket.placement.region,
            inputs: inputs(["name": .string(bucket.name), "versioning": .bool(bucket.versioning)]),
            dependsOn: bucket.explicitDependencies, location: bucket.location))
    }

    public func declare(nodePool pool: NodePool, into content: inout StackContent) {
        let placement = pool.placement
        func problem(_ message: String) {
            content.diagnostics.append(Diagnostic(address: pool.address, message: message, location: pool.location))
        }
        content.diagnostics += placementDiagnostics(placement, address: pool.address, location: pool.location)
        guard let network = pool.network else {
            return problem("a node pool on GCP needs a network (pass network: Network(…, on: .gcp(region: …)))")
        }
        guard network.placement.provider == "gcp", network.placement.region == placement.region, network.placement.gcpProject == project else {
            return problem("the pool's network must be on GCP in \(placement.region)\(project.map { " of project \($0)" } ?? "") too")
        }
        guard !placement.zones.isEmpty else {
            return problem("a node pool on GCP needs zones to run in: .gcp(region: \"\(placement.region)\", zones: [\"\(placement.region)-a\", …])")
        }
        for message in GCPLocations.problems(zones: placement.zones, region: placement.region) { problem(message) }
        guard let machine = GCPMachineCatalog.machine(for: pool.machine) else {
            let what = pool.machine.gpus == 0 ? "\(pool.machine.cpus) vCPUs and \(pool.machine.memoryGiB) GiB" : "\(pool.machine.gpus) × \(pool.machine.gpuClass ?? "GPU")"
            return problem("no GCP machine type known for \(what); set machine.instanceType (e.g. a3-highgpu-8g)")
        }
        for message in GCPLabels.problems(pool.labels) { problem(message) }
        var nodeInputs = pool.contractInputs.merging([
            "machine_type": .string(machine.machineType),
            "zones": .list(placement.zones.map(Value.string)),
            "subnetwork": Self.subnetwork(of: network).value,
            "command": .list(pool.command.map(Value.string)),
            "env": .map(pool.env.mapValues(\.value)),
            "labels": .map(pool.labels.mapValues(Value.string)),
            "gpus": .int(machine.gpus),
        ]) { $1 }
        if GCPImages.isMachineImage(pool.image) {
            nodeInputs["image"] = .string(pool.image)
        } else if !pool.image.isEmpty {
            nodeInputs["container_image"] = .string(pool.image)
        }
        if let gpuClass = machine.gpuClass ?? pool.machine.gpuClass { nodeInputs["gpu_class"] = .string(gpuClass) }
        if pool.machine.spot { nodeInputs["spot"] = .bool(true) }
        if let bucket = pool.checkpointBucket {
            // The nodes run as an account of their own: bound to the bucket on GCP, or trusted
            // by the bucket's cloud, which takes the account's ID tokens for its own keys.
            let local = bucket.placement.provider == "gcp"
            let account =
                local
                ? GCP.ServiceAccount(pool.name, bucket: bucket, project: project, region: placement.region)
                : GCP.ServiceAccount(pool.name, project: project, region: placement.region)
            account.declare(into: &content)
            nodeInputs["service_account"] = account.email.value
            if !local {
                let identity = WorkloadIdentity(issuer: "accounts.google.com", subject: account.uniqueID, audience: "stratum:\(bucket.name)", tokenSource: "gcp")
                guard let environment = pool.federateCheckpoints(as: identity, into: &content) else { return }
                nodeInputs["env"] = environment
            }
        }
        if pool.gang, pool.count > 1 {
            // A gang shares a compact placement policy of its region.
            let policy = GCP.PlacementPolicy(pool.name, project: project, region: placement.region)
            policy.declare(into: &content)
            nodeInputs["resource_policy"] = policy.selfLink.value
        }
        if let accelerator = machine.acceleratorType {
            nodeInputs["accelerator_type"] = .string(accelerator)
            nodeInputs["accelerator_count"] = .int(machine.gpus)
        }
        for index in 0..<pool.count {
            var node = nodeInputs
            node["index"] = .int(index)
            node["link"] = pool.link(for: index)?.value
            node.merge(coordinatorInput(index: index, rankZero: pool.node(0))) { $1 }
            content.resources.append(DesiredResource(
                address: pool.node(index), provider: "gcp", region: placement.region, inputs: inputs(node),
                dependsOn: pool.explicitDependencies, location: pool.location))
        }
    }
}

/// Checks of GCP project, region and zone names.
public enum GCPLocations {
    /// Why `region` is not a GCP region name (`us-central1`, `europe-west4`), or nil.
    public static func problem(region: String) -> String? {
        region.range(of: "^[a-z]+-[a-z]+[0-9]+$", options: .regularExpression) != nil
            ? nil : "'\(region)' is not a GCP region name (e.g. us-central1, europe-west4)"
    }

    /// Why `zone` is not a zone of `region` (`us-central1-a` in `us-central1`), or nil.
    public static func problem(zone: String, region: String) -> String? {
        let prefix = region + "-"
        if zone.hasPrefix(prefix), zone.count == prefix.count + 1, let letter = zone.last, letter.isASCII, letter.isLowercase { return nil }
        if zone.range(of: "^[a-z]+-[a-z]+[0-9]+-[a-z]$", options: .regularExpression) != nil {
            return "zone '\(zone)' is not in the region \(region) (its zones are \(region)-a, \(region)-b, …)"
        }
        return "'\(zone)' is not a GCP zone name (e.g. \(region)-a)"
    }

    /// The problems of a list of zones for `region`: names, and one named twice.
    public static func problems(zones: [String], region: String) -> [String] {
        var problems = zones.compactMap { problem(zone: $0, region: region) }
        var seen = Set<String>()
        for zone in zones where !seen.insert(zone).inserted { problems.append("zone '\(zone)' is listed twice") }
        return problems
    }

    /// Why `project` is not a GCP project id (6-30 of a-z, 0-9 and '-', starting with a
    /// letter, not ending in '-'; a domain-scoped `example.com:name` is allowed), or nil.
    public static func problem(project: String) -> String? {
        let id = project.split(separator: ":").last.map(String.init) ?? project
        return id.range(of: "^[a-z][-a-z0-9]{4,28}[a-z0-9]$", options: .regularExpression) != nil
            ? nil : "'\(project)' is not a GCP project id (6-30 of a-z, 0-9 and '-', starting with a letter)"
    }
}

/// Boot images versus container images.
enum GCPImages {
    /// A Compute image (`projects/P/global/images/NAME`, `…/images/family/F`, or its URL)
    /// rather than a container image.
    static func isMachineImage(_ image: String) -> Bool {
        image.hasPrefix("projects/") || image.hasPrefix("global/images/") || image.hasPrefix("https://www.googleapis.com/compute/")
            || image.hasPrefix("https://compute.googleapis.com/compute/")
    }
}
