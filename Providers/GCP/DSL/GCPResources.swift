import Stratum
import StratumCore

/// GCP resources with every knob, for stacks that need more than the portable `Network`,
/// `Bucket` and `NodePool` offer. Each declares `gcp_*` resources of the GCP provider; every one
/// takes `project` (nil: the credentials' project) and the region it is declared in (global
/// resources such as networks keep it as where their state is kept).
public enum GCP {
    /// One rule of a firewall: a protocol (`tcp`, `udp`, `icmp`, `all` or a number) and, for
    /// tcp and udp, ports or port ranges (`"22"`, `"8000-9000"`; none: every port).
    public struct FirewallRule: Sendable, Hashable {
        /// `tcp`, `udp`, `icmp`, `all` or a protocol number.
        public var ipProtocol: String
        /// Ports or ranges (`"22"`, `"8000-9000"`); empty: every port.
        public var ports: [String]

        public init(_ ipProtocol: String, ports: [String] = []) {
            self.ipProtocol = ipProtocol
            self.ports = ports
        }

        /// Every protocol and port.
        public static let all = FirewallRule("all")
        /// TCP on `ports` (none: every port).
        public static func tcp(_ ports: String...) -> FirewallRule { FirewallRule("tcp", ports: ports) }
        /// UDP on `ports` (none: every port).
        public static func udp(_ ports: String...) -> FirewallRule { FirewallRule("udp", ports: ports) }

        var value: Value {
            var fields: [String: Value] = ["protocol": .string(ipProtocol)]
            if !ports.isEmpty { fields["ports"] = .list(ports.map(Value.string)) }
            return .map(fields)
        }
    }
}

/// The parts every GCP resource declaration shares: the address name, the `project` input,
/// labels (for the types that have them) and the region.
struct GCPDeclaration {
    static func declare(
        _ type: String, _ name: String, index: Int? = nil, project: String?, region: String, inputs: [String: Value], labels: [String: String]? = nil,
        computeName: String? = nil, dependsOn: [ResourceAddress], location: SourceLocation, check: Bool = true, into content: inout StackContent
    ) {
        let address = ResourceAddress(type: type, name: name, index: index)
        if check {
            var problems: [String] = []
            if !ResourceAddress.isName(name) { problems.append("invalid name '\(name)': use letters, digits, '-' and '_'") }
            problems += [GCPLocations.problem(region: region), project.flatMap { GCPLocations.problem(project: $0) }].compactMap { $0 }
            if let computeName, !GCPNames.isValid(computeName) {
                problems.append("name '\(computeName)' is not a Compute name: 1-63 of a-z, 0-9 and '-', starting with a letter, not ending in '-'")
            }
            problems += GCPLabels.problems(labels ?? [:])
            content.diagnostics += problems.map { Diagnostic(address: address, message: $0, location: location) }
        }
        var inputs = inputs
        if let project { inputs["project"] = .string(project) }
        if let labels, !labels.isEmpty { inputs["labels"] = .map(labels.mapValues(Value.string)) }
        content.resources.append(DesiredResource(address: address, provider: "gcp", region: region, inputs: inputs, dependsOn: dependsOn, location: location))
    }
}

extension GCP {
    /// `gcp_network`: a VPC network in custom subnet mode.
    public struct Network: Resource {
        public let name: String
        /// The Compute name; nil: derived from the address and the state's lineage.
        public var networkName: String?
        /// `REGIONAL` (the default) or `GLOBAL` dynamic routing.
        public var routingMode: String?
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, networkName: String? = nil, routingMode: String? = nil, project: String? = nil, region: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.networkName = networkName
            self.routingMode = routingMode
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_network", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var selfLink: Ref<String> { Ref(address, "self_link") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = [:]
            if let networkName { inputs["name"] = .string(networkName) }
            if let routingMode {
                inputs["routing_mode"] = .string(routingMode)
                if !["REGIONAL", "GLOBAL"].contains(routingMode) {
                    content.diagnostics.append(Diagnostic(address: address, message: "routing mode '\(routingMode)' must be REGIONAL or GLOBAL", location: location))
                }
            }
            GCPDeclaration.declare(
                "gcp_network", name, project: project, region: region, inputs: inputs, computeName: networkName, dependsOn: explicitDependencies,
                location: location, into: &content)
        }
    }

    /// `gcp_subnetwork`: an IPv4 range of a network in one region (every zone of it).
    public struct Subnetwork: Resource {
        public let name: String
        /// The network: its `selfLink`, or a name or link as a string.
        public var network: any StringExpression
        public var cidr: String
        /// Lets instances without an external address reach Google APIs (Cloud Storage).
        public var privateGoogleAccess: Bool
        public var subnetworkName: String?
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, network: any StringExpression, cidr: String, privateGoogleAccess: Bool = true, subnetworkName: String? = nil,
            project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.network = network
            self.cidr = cidr
            self.privateGoogleAccess = privateGoogleAccess
            self.subnetworkName = subnetworkName
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_subnetwork", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        /// What an instance's `subnetwork` refers to.
        public var selfLink: Ref<String> { Ref(address, "self_link") }
        public var gatewayAddress: Ref<String> { Ref(address, "gateway_address") }

        public func declare(into content: inout StackContent) {
            if let problem = CIDR.problem(in: cidr) {
                content.diagnostics.append(Diagnostic(address: address, message: "invalid CIDR '\(cidr)': \(problem)", location: location))
            }
            var inputs: [String: Value] = ["network": network.value, "cidr": .string(cidr), "private_google_access": .bool(privateGoogleAccess)]
            if let subnetworkName { inputs["name"] = .string(subnetworkName) }
            GCPDeclaration.declare(
                "gcp_subnetwork", name, project: project, region: region, inputs: inputs, computeName: subnetworkName, dependsOn: explicitDependencies,
                location: location, into: &content)
        }
    }

    /// `gcp_firewall`: one ingress (or egress) rule of a network.
    public struct Firewall: Resource {
        public enum Direction: String, Sendable {
            case ingress = "INGRESS", egress = "EGRESS"
        }

        public let name: String
        public var network: any StringExpression
        public var allow: [FirewallRule]
        public var sourceRanges: [String]
        /// Only instances with one of these network tags; empty: every instance of the network.
        public var targetTags: [String]
        public var direction: Direction
        public var priority: Int?
        public var firewallName: String?
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, network: any StringExpression, allow: [FirewallRule], sourceRanges: [String], targetTags: [String] = [],
            direction: Direction = .ingress, priority: Int? = nil, firewallName: String? = nil, project: String? = nil, region: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.network = network
            self.allow = allow
            self.sourceRanges = sourceRanges
            self.targetTags = targetTags
            self.direction = direction
            self.priority = priority
            self.firewallName = firewallName
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_firewall", name: name) }
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            func problem(_ message: String) { content.diagnostics.append(Diagnostic(address: address, message: message, location: location)) }
            if allow.isEmpty { problem("a firewall needs at least one rule to allow") }
            for range in sourceRanges {
                if let why = CIDR.problem(in: range) { problem("invalid source range '\(range)': \(why)") }
            }
            if let priority, !(0...65535).contains(priority) { problem("priority \(priority) is outside 0...65535") }
            var inputs: [String: Value] = [
                "network": network.value, "allow": .list(allow.map(\.value)), "direction": .string(direction.rawValue),
                "source_ranges": .list(sourceRanges.map(Value.string)),
            ]
            if !targetTags.isEmpty { inputs["target_tags"] = .list(targetTags.map(Value.string)) }
            if let priority { inputs["priority"] = .int(priority) }
            if let firewallName { inputs["name"] = .string(firewallName) }
            GCPDeclaration.declare(
                "gcp_firewall", name, project: project, region: region, inputs: inputs, computeName: firewallName, dependsOn: explicitDependencies,
                location: location, into: &content)
        }
    }

    /// `gcp_resource_policy`: a compact placement policy. Instances that name it are placed
    /// close together (one low-latency network block), in the zone of the first.
    public struct PlacementPolicy: Resource {
        public let name: String
        /// How many instances the policy will hold; nil: Compute's default.
        public var vmCount: Int?
        public var policyName: String?
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, vmCount: Int? = nil, policyName: String? = nil, project: String? = nil, region: String, fileID: String = #fileID,
            line: Int = #line
        ) {
            self.name = name
            self.vmCount = vmCount
            self.policyName = policyName
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_resource_policy", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        /// What an instance's `resource_policy` refers to.
        public var selfLink: Ref<String> { Ref(address, "self_link") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = [:]
            if let vmCount {
                inputs["vm_count"] = .int(vmCount)
                if vmCount < 1 {
                    content.diagnostics.append(Diagnostic(address: address, message: "vm_count must be at least 1 (got \(vmCount))", location: location))
                }
            }
            if let policyName { inputs["name"] = .string(policyName) }
            GCPDeclaration.declare(
                "gcp_resource_policy", name, project: project, region: region, inputs: inputs, computeName: policyName, dependsOn: explicitDependencies,
                location: location, into: &content)
        }
    }

    /// `gcp_bucket`: a Cloud Storage bucket. Its `url` is `gs://NAME`.
    public struct Bucket: Resource {
        public let name: String
        /// A region or multi-region (`US-CENTRAL1`, `US`); nil: the declared region.
        public var storageLocation: String?
        public var versioning: Bool
        public var storageClass: String?
        public var uniformAccess: Bool
        /// Delete the objects first when the bucket is destroyed.
        public var forceDestroy: Bool
        public var labels: [String: String]
        public var project: String?
        public var region: String
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(
            _ name: String, storageLocation: String? = nil, versioning: Bool = false, storageClass: String? = nil, uniformAccess: Bool = true,
            forceDestroy: Bool = false, labels: [String: String] = [:], project: String? = nil, region: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.storageLocation = storageLocation
            self.versioning = versioning
            self.storageClass = storageClass
            self.uniformAccess = uniformAccess
            self.forceDestroy = forceDestroy
            self.labels = labels
            self.project = project
            self.region = region
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "gcp_bucket", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var selfLink: Ref<String> { Ref(address, "self_link") }
        /// `gs://NAME`.
        public var url: Ref<String> { Ref(address, "url") }

        public func declare(into content: inout StackContent) {
            var inputs: [String: Value] = [
                "name": .string(name), "versioning": .bool(versioning), "uniform_access": .bool(uniformAccess), "force_destroy": .bool(forceDestroy),
            ]
            if let storageLocation { inputs["location"] = .string(storageLocation) }
            if let storageClass { inputs["storage_class"] = .string(storageClass) }
            GCPDeclaration.declare(
                "gcp_bucket", name, project: project, region: region, inputs: inputs, labels: labels, dependsOn: explicitDependencies,
                location: location, into: &content)
        }
    }
}
