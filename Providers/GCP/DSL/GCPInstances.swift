import Stratum
import StratumCore

extension GCP {
    /// An accelerator attached to an N1 machine type (`nvidia-tesla-t4` × 1). A2, A3 and G2
    /// types carry their GPUs and take none.
    public struct Accelerator: Sendable, Hashable {
        public var type: String
        public var count: Int

        public init(_ type: String, count: Int = 1) {
            self.type = type
            self.count = count
        }
    }

    /// What every instance of a gang, group or single instance is created with.
    public struct InstanceSpec: Sendable {
        public var machineType: String
        /// Zones in order of preference: a stockout in one moves the create to the next.
        public var zones: [String]
        /// The subnetwork: a `GCP.Subnetwork`'s `selfLink`, `GCPLowering.subnetwork(of:)`, or a name or link.
        public var subnetwork: any StringExpression
        /// The boot image (`projects/P/global/images/family/F`); nil: the provider's GPU-ready default.
        public var image: String?
        public var bootDiskGiB: Int?
        public var accelerator: Accelerator?
        /// Spot provisioning; Compute deletes a preempted instance.
        public var spot: Bool
        /// The service account's email (`GCP.ServiceAccount.email`); nil: the project's default one.
        public var serviceAccount: (any StringExpression)?
        /// OAuth scopes of the service account; empty: cloud-platform.
        public var scopes: [String]
        /// A `GCP.PlacementPolicy`'s `selfLink` (or a name or link).
        public var resourcePolicy: (any StringExpression)?
        public var networkTags: [String]
        /// A public address (one-to-one NAT).
        public var externalIP: Bool
        public var labels: [String: String]
        /// A raw boot script (cloud-init or shell); when nil, one is built from `command` and `env`.
        public var userData: String?
        public var command: [String]
        public var env: [String: any StringExpression]
        /// The container every instance runs `command` in.
        public var containerImage: String?
        /// Where the nodes keep checkpoints (a bucket's `url`): `STRATUM_CHECKPOINT_URL` on every node.
        public var checkpoint: (any StringExpression)?
        /// The bundled trainer as the workload (`GCP.TrainerArchive.workload`), instead of a
        /// command or container; the instances fetch it as `serviceAccount`.
        public var trainer: TrainerWorkload?
        /// The link conditions every instance is held to (`LinkProfile`), shaped by its node
        /// setup at boot: a change replaces the instances. nil: the VPC's network as it is.
        public var link: LinkProfile?

        public init(
            machineType: String, zones: [String], subnetwork: any StringExpression, image: String? = nil, bootDiskGiB: Int? = nil,
            accelerator: Accelerator? = nil, spot: Bool = false, serviceAccount: (any StringExpression)? = nil, scopes: [String] = [],
            resourcePolicy: (any StringExpression)? = nil, networkTags: [String] = [], externalIP: Bool = true, labels: [String: String] = [:],
            userData: String? = nil, command: [String] = [], env: [String: any StringExpression] = [:], containerImage: String? = nil,
            checkpoint: (any StringExpression)? = nil, trainer: TrainerWorkload? = nil, link: LinkProfile? = nil
        ) {
            self.link = link
            self.machineType = machineType
            self.zones = zones
            self.subnetwork = subnetwork
            self.image = image
            self.bootDiskGiB = bootDiskGiB
            self.accelerator = accelerator
            self.spot = spot
            self.serviceAccount = serviceAccount
            self.scopes = scopes
            self.resourcePolicy = resourcePolicy
            self.networkTags = networkTags
            self.externalIP = externalIP
            self.labels = labels
            self.userData = userData
            self.command = command
            self.env = env
            self.containerImage = containerImage
            self.checkpoint = checkpoint
            self.trainer = trainer
        }

        /// The GPUs each instance has: those its machine type carries, else the attached ones.
        public var gpus: (count: Int, gpuClass: String?) {
            if let carried = GCPMachineCatalog.gpus(ofMachineType: machineType) { return (carried.gpus, carried.gpuClass) }
            if let accelerator { return (accelerator.count, GCPMachineCatalog.gpuClass(ofAccelerator: accelerator.type)) }
            return (0, nil)
        }

        /// The inputs every instance of the spec carries (labels are added by the declaration).
        var inputs: [String: Value] {
            var inputs: [String: Value] = [
                "machine_type": .string(machineType), "zones": .list(zones.map(Value.string)), "subnetwork": subnetwork.value,
                "spot": .bool(spot), "external_ip": .bool(externalIP), "gpus": .int(gpus.count),
            ]
            if let gpuClass = gpus.gpuClass { inputs["gpu_class"] = .string(gpuClass) }
            if let image { inputs["image"] = .string(image) }
            if let bootDiskGiB { inputs["boot_disk_gib"] = .int(bootDiskGiB) }
            if let accelerator {
                inputs["accelerator_type"] = .string(accelerator.type)
                inputs["accelerator_count"] = .int(accelerator.count)
            }
            if let serviceAccount { inputs["service_account"] = serviceAccount.value }
            if !scopes.isEmpty { inputs["scopes"] = .list(scopes.map(Value.string)) }
            if let resourcePolicy { inputs["resource_policy"] = resourcePolicy.value }
            if !networkTags.isEmpty { inputs["network_tags"] = .list(networkTags.map(Value.string)) }
            if let userData { inputs["user_data"] = .string(userData) }
            if !command.isEmpty { inputs["command"] = .list(command.map(Value.string)) }
            if !env.isEmpty { inputs["env"] = .map(env.mapValues(\.value)) }
            if let containerImage { inputs["container_image"] = .string(containerImage) }
            if let checkpoint { inputs["checkpoint_url"] = checkpoint.value }
            if let trainer { inputs.merge(trainer.inputs) { $1 } }
            return inputs
        }

        func diagnostics(region: String) -> [String] {
            var problems: [String] = []
            if zones.isEmpty { problems.append("an instance needs at least one zone") }
            problems += GCPLocations.problems(zones: zones, region: region)
            if machineType.range(of: "^[a-z][a-z0-9]*-[a-z0-9-]+$", options: .regularExpression) == nil {
                problems.append("'\(machineType)' is not a Compute machine type name (e.g. a3-highgpu-8g, n1-standard-8)")
            }
            if let accelerator {
                if GCPMachineCatalog.carriesGPUs(machineType) {
                    problems.append("\(machineType) carries its own GPUs; attach no accelerator (only N1 types take one)")
                } else if !machineType.hasPrefix("n1-") {
                    problems.append("accelerators attach only to N1 machine types, not \(machineType)")
                }
                if accelerator.count < 1 { problems.append("accelerator count must be at least 1 (got \(accelerator.count))") }
            }
            if let bootDiskGiB, !(10...65536).contains(bootDiskGiB) { problems.append("boot disk of \(bootDiskGiB) GiB is outside 10...65536") }
            problems += link?.problems ?? []
            if userData != nil, link?.isUnimpaired == false { problems.append(NodeLinks.userDataConflict) }
            problems += TrainerWorkload.problems(
                trainer, otherWorkload: containerImage != nil || !command.isEmpty || userData != nil, hasIdentity: serviceAccount != nil,
                hint: "a serviceAccount (GCP.ServiceAccount)")
            return problems
        }

        /// Declares one resource of `type` with the spec's inputs, `extra`, and `link` (the spec's,
        /// or the node's own in a group).
        func declare(
            _ type: String, _ name: String, index: Int? = nil, extra: [String: Value], link: LinkProfile?, project: String?, region: String,
            dependsOn: [ResourceAddress], location: SourceLocation, into content: inout StackContent
        ) {
            // A group's instances share the spec: its problems are reported once, on the first.
            let check = (index ?? 0) == 0
            if check {
                let address = ResourceAddress(type: type, name: name, index: index)
                content.diagnostics += diagnostics(region: region).map { Diagnostic(address: address, message: $0, location: location) }
            }
            var inputs = inputs.merging(extra) { $1 }
            inputs["link"] = link.flatMap { $0.isUnimpaired ? nil : $0.value }
            GCPDeclaration.declare(
                type, name, index: index, project: project, region: region, inputs: inputs, labels: labels,
                dependsOn: dependsOn, location: location, check: check, into: &content)
        }
    }

    /// `gcp_instance`: one Compute instance.
    public struct Instance: Resource {
        public let name: String
        public var spec: InstanceSpec
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, _ spec: InstanceSpec, project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.spec = spec
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_instance", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var selfLink: Ref<String> { Ref(address, "self_link") }
        public var zone: Ref<String> { Ref(address, "zone") }
        public var privateIP: Ref<String> { Ref(address, "private_ip") }
        public var publicIP: Ref<String> { Ref(address, "public_ip") }

        public func declare(into content: inout StackContent) {
            spec.declare(
                "gcp_instance", name, extra: [:], link: spec.link, project: project, region: region, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `count` separate instances, `gcp_instance.<name>[i]`: each is created (and fails over
    /// between zones) on its own, so one lost node is recreated alone.
    public struct InstanceGroup: Resource {
        public let name: String
        public var count: Int
        public var spec: InstanceSpec
        public var project: String?
        public var region: String
        /// Per-instance link conditions, by index, over `spec.link`.
        public var links: [Int: LinkProfile] = [:]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, count: Int, _ spec: InstanceSpec, project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.count = count
            self.spec = spec
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_instance", name: name) }
        public func instance(_ index: Int) -> ResourceAddress { ResourceAddress(type: "gcp_instance", name: name, index: index) }
        public var ids: [Ref<String>] { (0..<max(count, 0)).map { Ref(instance($0), "id") } }
        public var privateIPs: [Ref<String>] { (0..<max(count, 0)).map { Ref(instance($0), "private_ip") } }

        /// The group with instances `nodes` held to `profile` (the rest keep theirs).
        public func link(_ profile: LinkProfile, nodes: Range<Int>) -> InstanceGroup {
            var group = self
            for index in nodes { group.links[index] = profile }
            return group
        }

        public func declare(into content: inout StackContent) {
            guard count >= 0 else {
                content.diagnostics.append(Diagnostic(address: address, message: "count must not be negative (got \(count))", location: location))
                return
            }
            content.diagnostics += NodeLinks.diagnostics(
                links, count: count, group: address, node: instance, userData: spec.userData != nil, location: location)
            for index in 0..<count {
                spec.declare(
                    "gcp_instance", name, index: index,
                    extra: ["pool": .string(name), "count": .int(count), "index": .int(index)]
                        .merging(coordinatorInput(index: index, rankZero: instance(0))) { $1 },
                    link: NodeLinks.profile(index, link: spec.link, links: links), project: project,
                    region: region, dependsOn: explicitDependencies, location: location, into: &content)
            }
        }
    }

    /// `gcp_instance_gang`: `count` instances made together by one bulk insert, all or none,
    /// in one zone (the next zone of the spec's when one is out of capacity). Instances are
    /// named `<namePrefix>-<i>`; each one's node index is that suffix.
    public struct InstanceGang: Resource {
        public let name: String
        public var count: Int
        public var spec: InstanceSpec
        /// nil: derived by the provider from the address.
        public var namePrefix: String?
        public var project: String?
        public var region: String
        /// Per-instance link conditions, by index, over `spec.link`. The gang is one bulk insert
        /// of one instance template, so every instance must end up with the same profile.
        public var links: [Int: LinkProfile] = [:]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, count: Int, _ spec: InstanceSpec, namePrefix: String? = nil, project: String? = nil, region: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.count = count
            self.spec = spec
            self.namePrefix = namePrefix
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_instance_gang", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        /// The zone the whole gang landed in.
        public var zone: Ref<String> { Ref(address, "zone") }
        /// `[{name, zone, private_ip, self_link}]`, one per instance.
        public var instances: Ref<Value> { Ref(address, "instances") }

        /// The gang with instances `nodes` held to `profile`: allowed only where every instance
        /// ends up with one profile (see `links`).
        public func link(_ profile: LinkProfile, nodes: Range<Int>) -> InstanceGang {
            var gang = self
            for index in nodes { gang.links[index] = profile }
            return gang
        }

        public func declare(into content: inout StackContent) {
            if count < 1 {
                content.diagnostics.append(Diagnostic(address: address, message: "a gang needs at least one instance (got \(count))", location: location))
            }
            // Instance names are `<prefix>-<i>`: the prefix leaves room for the suffix.
            if let namePrefix, !GCPNames.isValid(namePrefix + "-\(max(count - 1, 0))") {
                content.diagnostics.append(Diagnostic(
                    address: address, message: "name prefix '\(namePrefix)' does not make Compute names '\(namePrefix)-0' …: a-z, 0-9 and '-', starting with a letter",
                    location: location))
            }
            var extra: [String: Value] = ["pool": .string(name), "count": .int(count)]
            if let namePrefix { extra["name_prefix"] = .string(namePrefix) }
            content.diagnostics += NodeLinks.diagnostics(
                links, count: count, group: address, node: { _ in address }, userData: spec.userData != nil, location: location)
            let profiles = (0..<max(count, 0)).map { NodeLinks.profile($0, link: spec.link, links: links) }
            if Set(profiles).count > 1 {
                let described = Dictionary(grouping: profiles.indices, by: { profiles[$0] }).values.sorted { $0[0] < $1[0] }
                    .map { nodes in "node\(nodes.count == 1 ? "" : "s") \(nodes.map(String.init).joined(separator: ", ")): \(profiles[nodes[0]]?.summary ?? "unimpaired")" }
                content.diagnostics.append(Diagnostic(
                    address: address,
                    message: "the gang \(name) is one bulk insert of one instance template, so its instances share one link, but they differ ("
                        + described.joined(separator: "; ") + "); give the gang one link, or make it a GCP.InstanceGroup for per-node links",
                    location: location))
            }
            spec.declare(
                "gcp_instance_gang", name, extra: extra, link: profiles.first ?? spec.link, project: project, region: region, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }
}
