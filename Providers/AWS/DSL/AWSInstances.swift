import Stratum
import StratumCore

extension AWS {
    /// What every instance of a group (or a single instance) is launched with.
    public struct LaunchSpec: Sendable {
        public var ami: String
        public var instanceType: String
        /// Acceptable subnets in order of preference: on a capacity shortage in one, the next is tried.
        public var subnets: [Ref<String>]
        public var securityGroups: [Ref<String>]
        public var placementGroup: Ref<String>?
        public var keyName: (any StringExpression)?
        /// A raw boot script; when nil, one is built from `command` and `env`.
        public var userData: String?
        public var command: [String]
        public var env: [String: any StringExpression]
        public var containerImage: String?
        /// The bundled trainer as the workload (`AWS.TrainerArchive.workload`), instead of a
        /// command or container.
        public var trainer: TrainerWorkload?
        /// The instance profile whose role the node's software uses (`AWS.InstanceRole.instanceProfile`).
        public var instanceProfile: (any StringExpression)?
        /// Where the pool keeps checkpoints: every node gets it as `STRATUM_CHECKPOINT_URL`.
        public var checkpoint: (any StringExpression)?
        public var rootVolumeGiB: Int?
        public var rootDeviceName: String?
        public var spot: Bool
        public var tags: [String: String]
        /// The link conditions every instance is held to (`LinkProfile`), shaped by its node
        /// setup at boot: a change replaces the instances. nil: the VPC's network as it is.
        public var link: LinkProfile?

        public init(
            ami: String, instanceType: String, subnets: [Ref<String>], securityGroups: [Ref<String>] = [], placementGroup: Ref<String>? = nil,
            keyName: (any StringExpression)? = nil, userData: String? = nil, command: [String] = [], env: [String: any StringExpression] = [:],
            containerImage: String? = nil, trainer: TrainerWorkload? = nil, instanceProfile: (any StringExpression)? = nil,
            checkpoint: (any StringExpression)? = nil, rootVolumeGiB: Int? = nil,
            rootDeviceName: String? = nil, spot: Bool = false, tags: [String: String] = [:], link: LinkProfile? = nil
        ) {
            self.link = link
            self.trainer = trainer
            self.instanceProfile = instanceProfile
            self.checkpoint = checkpoint
            self.ami = ami
            self.instanceType = instanceType
            self.subnets = subnets
            self.securityGroups = securityGroups
            self.placementGroup = placementGroup
            self.keyName = keyName
            self.userData = userData
            self.command = command
            self.env = env
            self.containerImage = containerImage
            self.rootVolumeGiB = rootVolumeGiB
            self.rootDeviceName = rootDeviceName
            self.spot = spot
            self.tags = tags
        }

        var inputs: [String: Value] {
            var inputs: [String: Value] = [
                "ami": .string(ami), "instance_type": .string(instanceType),
                "subnet_ids": .list(subnets.map(\.value)), "security_group_ids": .list(securityGroups.map(\.value)),
                "spot": .bool(spot),
            ]
            if let placementGroup { inputs["placement_group"] = placementGroup.value }
            if let keyName { inputs["key_name"] = keyName.value }
            if let userData { inputs["user_data"] = .string(userData) }
            if !command.isEmpty { inputs["command"] = .list(command.map(Value.string)) }
            if !env.isEmpty { inputs["env"] = .map(env.mapValues(\.value)) }
            if let containerImage { inputs["container_image"] = .string(containerImage) }
            if let trainer { inputs.merge(trainer.inputs) { $1 } }
            if let instanceProfile { inputs["iam_instance_profile"] = instanceProfile.value }
            if let checkpoint { inputs["checkpoint_url"] = checkpoint.value }
            if let rootVolumeGiB { inputs["root_volume_gib"] = .int(rootVolumeGiB) }
            if let rootDeviceName { inputs["root_device_name"] = .string(rootDeviceName) }
            if let link, !link.isUnimpaired { inputs["link"] = link.value }
            return inputs
        }

        func diagnostics(address: ResourceAddress, location: SourceLocation) -> [Diagnostic] {
            var problems: [Diagnostic] = []
            if subnets.isEmpty { problems.append(Diagnostic(address: address, message: "an instance needs at least one subnet", location: location)) }
            problems += (link?.problems ?? []).map { Diagnostic(address: address, message: $0, location: location) }
            if userData != nil, link?.isUnimpaired == false {
                problems.append(Diagnostic(address: address, message: NodeLinks.userDataConflict, location: location))
            }
            problems += TrainerWorkload.problems(
                trainer, otherWorkload: containerImage != nil || !command.isEmpty || userData != nil, hasIdentity: instanceProfile != nil,
                hint: "an instanceProfile (AWS.InstanceRole)"
            ).map { Diagnostic(address: address, message: $0, location: location) }
            return problems
        }
    }

    /// `aws_instance`: one EC2 instance.
    public struct Instance: Resource {
        public let name: String
        public var launch: LaunchSpec
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, _ launch: LaunchSpec, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.launch = launch
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_instance", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var privateIP: Ref<String> { Ref(address, "private_ip") }

        public func declare(into content: inout StackContent) {
            content.diagnostics += launch.diagnostics(address: address, location: location)
            AWSDeclaration.declare("aws_instance", name, region: region, inputs: launch.inputs, tags: launch.tags, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `count` identical instances, `aws_instance.<name>[i]`; each is its own resource so one
    /// lost node is recreated alone.
    public struct InstanceGroup: Resource {
        public let name: String
        public var count: Int
        public var launch: LaunchSpec
        public var region: String
        /// Per-instance link conditions, by index, over `launch.link`.
        public var links: [Int: LinkProfile] = [:]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, count: Int, _ launch: LaunchSpec, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.count = count
            self.launch = launch
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_instance", name: name) }
        public func instance(_ index: Int) -> ResourceAddress { ResourceAddress(type: "aws_instance", name: name, index: index) }
        public var ids: [Ref<String>] { (0..<max(count, 0)).map { Ref(instance($0), "id") } }
        public var privateIPs: [Ref<String>] { (0..<max(count, 0)).map { Ref(instance($0), "private_ip") } }

        /// The group with instances `nodes` held to `profile` (the rest keep theirs).
        public func link(_ profile: LinkProfile, nodes: Range<Int>) -> InstanceGroup {
            var group = self
            for index in nodes { group.links[index] = profile }
            return group
        }

        public func declare(into content: inout StackContent) {
            if count < 0 {
                content.diagnostics.append(Diagnostic(address: address, message: "count must not be negative (got \(count))", location: location))
                return
            }
            content.diagnostics += launch.diagnostics(address: address, location: location)
            content.diagnostics += NodeLinks.diagnostics(
                links, count: count, group: address, node: instance, userData: launch.userData != nil, location: location)
            for index in 0..<count {
                var inputs = launch.inputs
                inputs["link"] = NodeLinks.profile(index, link: launch.link, links: links)?.value
                inputs["pool"] = .string(name)
                inputs["count"] = .int(count)
                inputs["index"] = .int(index)
                // Rank 0 learns its own address at boot; the others are told it.
                inputs.merge(coordinatorInput(index: index, rankZero: instance(0))) { $1 }
                AWSDeclaration.declare(
                    "aws_instance", name, index: index, region: region, inputs: inputs, tags: launch.tags, dependsOn: explicitDependencies,
                    location: location, into: &content)
            }
        }
    }
}
