import Stratum
import StratumCore

extension Azure {
    /// What every VM of a group, or a single VM, is created with.
    public struct VMSpec: Sendable {
        /// The VM size (`Standard_ND96isr_H100_v5`).
        public var size: String
        /// Availability zones in order of preference: an allocation failure in one moves the create to the next.
        public var zones: [String]
        /// The subnet: an `Azure.Subnet`'s `id`, `AzureLowering.subnet(of:)`, or an id as a string.
        public var subnet: any StringExpression
        /// `publisher:offer:sku:version`; nil: the provider's GPU-ready default.
        public var image: String?
        public var osDiskGiB: Int?
        /// Spot priority: Azure deletes an evicted VM.
        public var spot: Bool
        /// The most to pay an hour on spot; nil: up to the on-demand price.
        public var maxPrice: Double?
        /// A public IP address for each VM.
        public var publicIP: Bool
        /// nil: on where the size supports it.
        public var acceleratedNetworking: Bool?
        /// An `Azure.ProximityPlacementGroup`'s `id`.
        public var proximityPlacementGroup: (any StringExpression)?
        public var adminUsername: String?
        /// An OpenSSH public key for the admin user.
        public var sshPublicKey: String?
        public var tags: [String: String]
        /// A raw boot script (cloud-init or shell); when nil, one is built from `command` and `env`.
        public var userData: String?
        public var command: [String]
        public var env: [String: any StringExpression]
        /// The container every VM runs `command` in.
        public var containerImage: String?
        /// Where the nodes keep checkpoints (a container's `url`): `STRATUM_CHECKPOINT_URL` on every node.
        public var checkpoint: (any StringExpression)?
        /// The bundled trainer as the workload (`Azure.TrainerArchive.workload`), instead of a
        /// command or container.
        public var trainer: TrainerWorkload?
        /// The user-assigned identity the VMs' software uses (`Azure.NodeIdentity`); nil: a
        /// system-assigned one of each VM's own.
        public var identity: NodeIdentity?
        /// The vault a `Secret` in `env` is kept in (`Azure.KeyVault`, whose reader is `identity`);
        /// the node reads it with its identity at every start of the workload.
        public var keyVault: KeyVault?
        /// The link conditions every VM is held to (`LinkProfile`), shaped by its node setup at
        /// boot: a change replaces the VMs. nil: the virtual network as it is.
        public var link: LinkProfile?

        public init(
            size: String, zones: [String], subnet: any StringExpression, image: String? = nil, osDiskGiB: Int? = nil, spot: Bool = false,
            maxPrice: Double? = nil, publicIP: Bool = false, acceleratedNetworking: Bool? = nil, proximityPlacementGroup: (any StringExpression)? = nil,
            adminUsername: String? = nil, sshPublicKey: String? = nil, tags: [String: String] = [:], userData: String? = nil, command: [String] = [],
            env: [String: any StringExpression] = [:], containerImage: String? = nil, checkpoint: (any StringExpression)? = nil,
            trainer: TrainerWorkload? = nil, identity: NodeIdentity? = nil, keyVault: KeyVault? = nil, link: LinkProfile? = nil
        ) {
            self.link = link
            self.keyVault = keyVault
            self.trainer = trainer
            self.identity = identity
            self.size = size
            self.zones = zones
            self.subnet = subnet
            self.image = image
            self.osDiskGiB = osDiskGiB
            self.spot = spot
            self.maxPrice = maxPrice
            self.publicIP = publicIP
            self.acceleratedNetworking = acceleratedNetworking
            self.proximityPlacementGroup = proximityPlacementGroup
            self.adminUsername = adminUsername
            self.sshPublicKey = sshPublicKey
            self.tags = tags
            self.userData = userData
            self.command = command
            self.env = env
            self.containerImage = containerImage
            self.checkpoint = checkpoint
        }

        /// The GPUs each VM has, as the catalog knows its size.
        public var gpus: (count: Int, gpuClass: String?) {
            AzureMachineCatalog.gpus(ofSize: size).map { ($0.gpus, $0.gpuClass) } ?? (0, nil)
        }

        /// The inputs every VM of the spec carries (tags are added by the declaration).
        var inputs: [String: Value] {
            var inputs: [String: Value] = [
                "size": .string(size), "zones": .list(zones.map(Value.string)), "subnet": subnet.value, "spot": .bool(spot), "public_ip": .bool(publicIP),
                "gpus": .int(gpus.count),
            ]
            if let gpuClass = gpus.gpuClass { inputs["gpu_class"] = .string(gpuClass) }
            if let image { inputs["image"] = .string(image) }
            if let osDiskGiB { inputs["os_disk_gib"] = .int(osDiskGiB) }
            if let maxPrice { inputs["max_price"] = .double(maxPrice) }
            if let acceleratedNetworking { inputs["accelerated_networking"] = .bool(acceleratedNetworking) }
            if let proximityPlacementGroup { inputs["proximity_placement_group"] = proximityPlacementGroup.value }
            if let adminUsername { inputs["admin_username"] = .string(adminUsername) }
            if let sshPublicKey { inputs["ssh_public_key"] = .string(sshPublicKey) }
            if let userData { inputs["user_data"] = .string(userData) }
            if !command.isEmpty { inputs["command"] = .list(command.map(Value.string)) }
            if !env.isEmpty { inputs["env"] = .map(env.mapValues(\.value)) }
            if let containerImage { inputs["container_image"] = .string(containerImage) }
            if let checkpoint { inputs["checkpoint_url"] = checkpoint.value }
            if let trainer { inputs.merge(trainer.inputs) { $1 } }
            if let identity {
                inputs["identity"] = identity.id.value
                inputs["identity_client_id"] = identity.clientID.value
            }
            if let keyVault { inputs["key_vault"] = keyVault.id.value }
            return inputs
        }

        func problems() -> [String] {
            var problems: [String] = []
            if zones.isEmpty { problems.append("a VM needs at least one availability zone") }
            problems += AzureNaming.problems(zones: zones)
            if let why = AzureNaming.problem(size: size) { problems.append(why) }
            if let image, let why = AzureNaming.problem(image: image) { problems.append(why) }
            if let osDiskGiB, !(30...4095).contains(osDiskGiB) { problems.append("an OS disk of \(osDiskGiB) GiB is outside 30...4095") }
            if let maxPrice {
                if !spot { problems.append("max_price applies to spot VMs only (set spot: true)") }
                if maxPrice != -1, maxPrice <= 0 { problems.append("max_price must be above 0, or -1 for up to the on-demand price (got \(maxPrice))") }
            }
            if let sshPublicKey, !sshPublicKey.hasPrefix("ssh-") && !sshPublicKey.hasPrefix("ecdsa-") {
                problems.append("ssh_public_key is not an OpenSSH public key (ssh-rsa …, ssh-ed25519 …)")
            }
            problems += TrainerWorkload.problems(
                trainer, otherWorkload: containerImage != nil || !command.isEmpty || userData != nil, hasIdentity: identity != nil,
                hint: "an identity (Azure.NodeIdentity)")
            problems += link?.problems ?? []
            if userData != nil, link?.isUnimpaired == false { problems.append(NodeLinks.userDataConflict) }
            return problems
        }

        /// Declares one VM with the spec's inputs, `extra`, and `link` (the spec's, or the VM's own
        /// in a group). A group's VMs share the spec: its problems are reported once, on the first.
        func declare(
            _ name: String, index: Int? = nil, extra: [String: Value], link: LinkProfile?, resourceGroup: any StringExpression, vmName: String?,
            subscription: String?, region: String, dependsOn: [ResourceAddress], location: SourceLocation, into content: inout StackContent
        ) {
            let check = (index ?? 0) == 0
            if check {
                let address = ResourceAddress(type: "azure_virtual_machine", name: name, index: index)
                content.diagnostics += problems().map { Diagnostic(address: address, message: $0, location: location) }
            }
            var inputs = inputs.merging(extra) { $1 }
            inputs["link"] = link.flatMap { $0.isUnimpaired ? nil : $0.value }
            AzureDeclaration.declare(
                "azure_virtual_machine", name, index: index, subscription: subscription, region: region, resourceGroup: resourceGroup,
                inputs: inputs, azureName: vmName, nameCheck: { AzureNaming.problem(resourceName: $0, limit: 64) }, tags: tags,
                dependsOn: dependsOn, location: location, check: check, into: &content)
        }
    }

    /// `azure_virtual_machine`: one VM with its own network interface (and public IP when asked).
    public struct VirtualMachine: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        public var spec: VMSpec
        /// The VM's Azure name; nil: derived from the address and the state's lineage.
        public var vmName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, _ spec: VMSpec, vmName: String? = nil, subscription: String? = nil, location: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.spec = spec
            self.vmName = vmName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_virtual_machine", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var zone: Ref<String> { Ref(address, "zone") }
        public var privateIP: Ref<String> { Ref(address, "private_ip") }
        public var publicIP: Ref<String> { Ref(address, "public_ip") }
        /// The object id of the VM's system-assigned identity, for role assignments.
        public var principalID: Ref<String> { Ref(address, "principal_id") }

        public func declare(into content: inout StackContent) {
            spec.declare(
                name, extra: [:], link: spec.link, resourceGroup: resourceGroup, vmName: vmName, subscription: subscription, region: location,
                dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `count` separate VMs, `azure_virtual_machine.<name>[i]`: each is created (and fails over
    /// between zones) on its own, so one lost node is recreated alone.
    public struct VMGroup: Resource {
        public let name: String
        public var count: Int
        public var resourceGroup: any StringExpression
        public var spec: VMSpec
        public var subscription: String?
        public var location: String
        /// Per-VM link conditions, by index, over `spec.link`.
        public var links: [Int: LinkProfile] = [:]
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, count: Int, resourceGroup: any StringExpression, _ spec: VMSpec, subscription: String? = nil, location: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.count = count
            self.resourceGroup = resourceGroup
            self.spec = spec
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_virtual_machine", name: name) }
        public func vm(_ index: Int) -> ResourceAddress { ResourceAddress(type: "azure_virtual_machine", name: name, index: index) }
        public var ids: [Ref<String>] { (0..<max(count, 0)).map { Ref(vm($0), "id") } }
        public var privateIPs: [Ref<String>] { (0..<max(count, 0)).map { Ref(vm($0), "private_ip") } }

        /// The group with VMs `nodes` held to `profile` (the rest keep theirs).
        public func link(_ profile: LinkProfile, nodes: Range<Int>) -> VMGroup {
            var group = self
            for index in nodes { group.links[index] = profile }
            return group
        }

        public func declare(into content: inout StackContent) {
            guard count >= 0 else {
                content.diagnostics.append(Diagnostic(address: address, message: "count must not be negative (got \(count))", location: sourceLocation))
                return
            }
            content.diagnostics += NodeLinks.diagnostics(
                links, count: count, group: address, node: vm, userData: spec.userData != nil, location: sourceLocation)
            for index in 0..<count {
                spec.declare(
                    name, index: index,
                    extra: ["pool": .string(name), "count": .int(count), "index": .int(index)]
                        .merging(coordinatorInput(index: index, rankZero: vm(0))) { $1 },
                    link: NodeLinks.profile(index, link: spec.link, links: links), resourceGroup: resourceGroup, vmName: nil,
                    subscription: subscription, region: location, dependsOn: explicitDependencies, location: sourceLocation, into: &content)
            }
        }
    }
}
