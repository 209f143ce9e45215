import Stratum
import StratumCore

/// AWS resources with every knob, for stacks that need more than the portable `Network`,
/// `Bucket` and `NodePool` offer. Each declares one `aws_*` resource of the AWS provider.
public enum AWS {
    /// An ingress rule of a security group.
    public struct IngressRule: Sendable, Hashable {
        public var ipProtocol: String
        public var fromPort: Int
        public var toPort: Int
        /// Source block, or nil with `fromGroupMembers` for traffic between the group's members.
        public var cidr: String?
        public var fromGroupMembers: Bool

        public init(ipProtocol: String = "tcp", fromPort: Int, toPort: Int? = nil, cidr: String? = nil, fromGroupMembers: Bool = false) {
            self.ipProtocol = ipProtocol
            self.fromPort = fromPort
            self.toPort = toPort ?? fromPort
            self.cidr = cidr
            self.fromGroupMembers = fromGroupMembers
        }

        /// All traffic from `cidr`.
        public static func all(from cidr: String) -> IngressRule { IngressRule(ipProtocol: "-1", fromPort: -1, toPort: -1, cidr: cidr) }
        /// All traffic between members of the group (NCCL, EFA).
        public static let betweenMembers = IngressRule(ipProtocol: "-1", fromPort: -1, toPort: -1, fromGroupMembers: true)

        var value: Value {
            var m: [String: Value] = ["protocol": .string(ipProtocol), "from_port": .int(fromPort), "to_port": .int(toPort)]
            if let cidr { m["cidr"] = .string(cidr) }
            if fromGroupMembers { m["self"] = .bool(true) }
            return .map(m)
        }
    }
}

/// The parts every AWS resource declaration shares.
struct AWSDeclaration {
    static func declare(
        _ type: String, _ name: String, index: Int? = nil, region: String, inputs: [String: Value], tags: [String: String],
        dependsOn: [ResourceAddress], location: SourceLocation, into content: inout StackContent
    ) {
        let address = ResourceAddress(type: type, name: name, index: index)
        if !ResourceAddress.isName(name) {
            content.diagnostics.append(Diagnostic(address: address, message: "invalid name '\(name)': use letters, digits, '-' and '_'", location: location))
        }
        var inputs = inputs
        if !tags.isEmpty { inputs["tags"] = .map(tags.mapValues(Value.string)) }
        content.resources.append(DesiredResource(address: address, provider: "aws", region: region, inputs: inputs, dependsOn: dependsOn, location: location))
    }
}

extension AWS {
    /// `aws_vpc`: a virtual network.
    public struct VPC: Resource {
        public let name: String
        public var cidr: String
        public var region: String
        public var tags: [String: String]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, cidr: String, region: String, tags: [String: String] = [:], fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.cidr = cidr
            self.region = region
            self.tags = tags
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_vpc", name: name) }
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            if let problem = CIDR.problem(in: cidr) {
                content.diagnostics.append(Diagnostic(address: address, message: "invalid CIDR '\(cidr)': \(problem)", location: location))
            }
            AWSDeclaration.declare("aws_vpc", name, region: region, inputs: ["cidr": .string(cidr)], tags: tags, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_subnet`: a block of a VPC in one availability zone.
    public struct Subnet: Resource {
        public let name: String
        public var vpc: Ref<String>
        public var cidr: String
        public var zone: String?
        public var mapPublicIP: Bool
        public var region: String
        public var tags: [String: String]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, vpc: Ref<String>, cidr: String, zone: String? = nil, mapPublicIP: Bool = false, region: String,
            tags: [String: String] = [:], fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.vpc = vpc
            self.cidr = cidr
            self.zone = zone
            self.mapPublicIP = mapPublicIP
            self.region = region
            self.tags = tags
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_subnet", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var availabilityZone: Ref<String> { Ref(address, "availability_zone") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = ["vpc_id": vpc.value, "cidr": .string(cidr), "map_public_ip": .bool(mapPublicIP)]
            if let zone { inputs["availability_zone"] = .string(zone) }
            AWSDeclaration.declare("aws_subnet", name, region: region, inputs: inputs, tags: tags, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_internet_gateway`, attached to a VPC.
    public struct InternetGateway: Resource {
        public let name: String
        public var vpc: Ref<String>
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, vpc: Ref<String>, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.vpc = vpc
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_internet_gateway", name: name) }
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            AWSDeclaration.declare("aws_internet_gateway", name, region: region, inputs: ["vpc_id": vpc.value], tags: [:], dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_route_table` with a default route to an internet gateway, associated with subnets.
    public struct RouteTable: Resource {
        public let name: String
        public var vpc: Ref<String>
        public var internetGateway: Ref<String>?
        public var subnets: [Ref<String>]
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, vpc: Ref<String>, internetGateway: Ref<String>? = nil, subnets: [Ref<String>], region: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.vpc = vpc
            self.internetGateway = internetGateway
            self.subnets = subnets
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_route_table", name: name) }
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = ["vpc_id": vpc.value, "subnet_ids": .list(subnets.map(\.value))]
            if let internetGateway { inputs["internet_gateway_id"] = internetGateway.value }
            AWSDeclaration.declare("aws_route_table", name, region: region, inputs: inputs, tags: [:], dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_security_group` with ingress rules (egress stays AWS's default: all).
    public struct SecurityGroup: Resource {
        public let name: String
        public var vpc: Ref<String>
        public var ingress: [IngressRule]
        public var description: String?
        public var region: String
        public var tags: [String: String]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, vpc: Ref<String>, ingress: [IngressRule] = [], description: String? = nil, region: String,
            tags: [String: String] = [:], fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.vpc = vpc
            self.ingress = ingress
            self.description = description
            self.region = region
            self.tags = tags
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_security_group", name: name) }
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = ["vpc_id": vpc.value, "name": .string(name), "ingress": .list(ingress.map(\.value))]
            if let description { inputs["description"] = .string(description) }
            AWSDeclaration.declare("aws_security_group", name, region: region, inputs: inputs, tags: tags, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_placement_group`: `cluster` packs instances onto one low-latency network spine.
    public struct PlacementGroup: Resource {
        public let name: String
        public var strategy: String
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, strategy: String = "cluster", region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.strategy = strategy
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_placement_group", name: name) }
        /// The group's name, which is how instances refer to it.
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            AWSDeclaration.declare(
                "aws_placement_group", name, region: region, inputs: ["name": .string(name), "strategy": .string(strategy)], tags: [:],
                dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_key_pair`: an SSH public key imported into EC2.
    public struct KeyPair: Resource {
        public let name: String
        public var publicKey: String
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String, publicKey: String, region: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.publicKey = publicKey
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_key_pair", name: name) }
        public var keyName: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            AWSDeclaration.declare(
                "aws_key_pair", name, region: region, inputs: ["name": .string(name), "public_key": .string(publicKey)], tags: [:],
                dependsOn: explicitDependencies, location: location, into: &content)
        }
    }

    /// `aws_s3_bucket` with tags, versioning and `forceDestroy` (empty it on destroy).
    public struct S3Bucket: Resource {
        public let name: String
        public var versioning: Bool
        public var forceDestroy: Bool
        public var region: String
        public var tags: [String: String]
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, versioning: Bool = false, forceDestroy: Bool = false, region: String, tags: [String: String] = [:],
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.versioning = versioning
            self.forceDestroy = forceDestroy
            self.region = region
            self.tags = tags
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "aws_s3_bucket", name: name) }
        public var url: Ref<String> { Ref(address, "url") }
        public var arn: Ref<String> { Ref(address, "arn") }

        public func declare(into content: inout StackContent) {
            if let why = S3BucketNames.problem(name) {
                content.diagnostics.append(Diagnostic(address: address, message: "invalid S3 bucket name '\(name)': \(why)", location: location))
            }
            AWSDeclaration.declare(
                "aws_s3_bucket", name, region: region, inputs: ["name": .string(name), "versioning": .bool(versioning), "force_destroy": .bool(forceDestroy)],
                tags: tags, dependsOn: explicitDependencies, location: location, into: &content)
        }
    }
}
