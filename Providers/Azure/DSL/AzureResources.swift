import Stratum
import StratumCore

/// Azure resources with every knob, for stacks that need more than the portable `Network`,
/// `Bucket` and `NodePool` offer. Each declares an `azure_*` resource of the Azure provider;
/// every one takes `subscription` (nil: the credentials' one) and the location it is declared
/// in, and all but the resource group name the group they live in (`resourceGroup`: a
/// `Azure.ResourceGroup`'s `id`, or a group's name).
public enum Azure {}

/// The parts every Azure resource declaration shares: the address, the `subscription` and
/// `resource_group` inputs, the name and location checks.
struct AzureDeclaration {
    /// A problem of a resource name: nil when fine.
    typealias NameCheck = (String) -> String?

    static func declare(
        _ type: String, _ name: String, index: Int? = nil, subscription: String?, region: String, resourceGroup: (any StringExpression)?,
        inputs: [String: Value], azureName: String? = nil, nameCheck: NameCheck = { AzureNaming.problem(resourceName: $0) }, tags: [String: String]? = nil,
        dependsOn: [ResourceAddress], location: SourceLocation, check: Bool = true, into content: inout StackContent
    ) {
        let address = ResourceAddress(type: type, name: name, index: index)
        if check {
            var problems: [String] = []
            if !ResourceAddress.isName(name) { problems.append("invalid name '\(name)': use letters, digits, '-' and '_'") }
            problems += [AzureNaming.problem(location: region), subscription.flatMap { AzureNaming.problem(subscription: $0) }, azureName.flatMap(nameCheck)]
                .compactMap { $0 }
            problems += AzureNaming.problems(tags: tags ?? [:])
            content.diagnostics += problems.map { Diagnostic(address: address, message: $0, location: location) }
        }
        var inputs = inputs
        if let azureName { inputs["name"] = .string(azureName) }
        if let subscription { inputs["subscription"] = .string(subscription) }
        if let resourceGroup { inputs["resource_group"] = resourceGroup.value }
        if let tags, !tags.isEmpty { inputs["tags"] = .map(tags.mapValues(Value.string)) }
        content.resources.append(DesiredResource(address: address, provider: "azure", region: region, inputs: inputs, dependsOn: dependsOn, location: location))
    }
}

extension Azure {
    /// `azure_resource_group`: the group the other resources live in, in `location`.
    public struct ResourceGroup: Resource {
        public let name: String
        /// The group's Azure name; nil: derived from the address and the state's lineage.
        public var groupName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(_ name: String, groupName: String? = nil, subscription: String? = nil, location: String, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.groupName = groupName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_resource_group", name: name) }
        /// What the group's resources' `resourceGroup` refers to.
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            AzureDeclaration.declare(
                "azure_resource_group", name, subscription: subscription, region: location, resourceGroup: nil, inputs: [:], azureName: groupName,
                nameCheck: { AzureNaming.problem(resourceGroup: $0) }, dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_virtual_network`: a virtual network with its address space.
    public struct VirtualNetwork: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// CIDRs of the address space.
        public var addressSpace: [String]
        public var networkName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, addressSpace: [String], networkName: String? = nil, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.addressSpace = addressSpace
            self.networkName = networkName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_virtual_network", name: name) }
        /// What a subnet's `virtualNetwork` refers to.
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            if addressSpace.isEmpty {
                content.diagnostics.append(Diagnostic(address: address, message: "a virtual network needs at least one CIDR in its address space", location: sourceLocation))
            }
            for cidr in addressSpace {
                if let why = CIDR.problem(in: cidr) {
                    content.diagnostics.append(Diagnostic(address: address, message: "invalid CIDR '\(cidr)': \(why)", location: sourceLocation))
                }
            }
            AzureDeclaration.declare(
                "azure_virtual_network", name, subscription: subscription, region: location, resourceGroup: resourceGroup,
                inputs: ["address_space": .list(addressSpace.map(Value.string))], azureName: networkName, dependsOn: explicitDependencies,
                location: sourceLocation, into: &content)
        }
    }

    /// `azure_subnet`: an address range of a virtual network, optionally behind a network security group.
    public struct Subnet: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// The virtual network: its `id`, or its name.
        public var virtualNetwork: any StringExpression
        public var cidr: String
        /// A network security group's `id`.
        public var networkSecurityGroup: (any StringExpression)?
        public var subnetName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, virtualNetwork: any StringExpression, cidr: String,
            networkSecurityGroup: (any StringExpression)? = nil, subnetName: String? = nil, subscription: String? = nil, location: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.virtualNetwork = virtualNetwork
            self.cidr = cidr
            self.networkSecurityGroup = networkSecurityGroup
            self.subnetName = subnetName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_subnet", name: name) }
        /// What a VM's `subnet` refers to.
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            if let why = CIDR.problem(in: cidr) {
                content.diagnostics.append(Diagnostic(address: address, message: "invalid CIDR '\(cidr)': \(why)", location: sourceLocation))
            }
            var inputs: [String: Value] = ["virtual_network": virtualNetwork.value, "cidr": .string(cidr)]
            if let networkSecurityGroup { inputs["network_security_group"] = networkSecurityGroup.value }
            AzureDeclaration.declare(
                "azure_subnet", name, subscription: subscription, region: location, resourceGroup: resourceGroup, inputs: inputs, azureName: subnetName,
                dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_network_security_group`: rules allowing or denying traffic, for subnets to name.
    public struct NetworkSecurityGroup: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        public var rules: [AzureSecurityRule]
        public var groupName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, rules: [AzureSecurityRule], groupName: String? = nil, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.rules = rules
            self.groupName = groupName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_network_security_group", name: name) }
        /// What a subnet's `networkSecurityGroup` refers to.
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            var problems = rules.flatMap { $0.problems() }
            var seen: [Azure.RuleKey: String] = [:]
            for rule in rules {
                let key = Azure.RuleKey(priority: rule.priority, direction: rule.direction.rawValue)
                if let first = seen[key] { problems.append("rules '\(first)' and '\(rule.name)' share priority \(rule.priority) \(rule.direction.rawValue)") }
                seen[key] = seen[key] ?? rule.name
            }
            content.diagnostics += problems.map { Diagnostic(address: address, message: $0, location: sourceLocation) }
            AzureDeclaration.declare(
                "azure_network_security_group", name, subscription: subscription, region: location, resourceGroup: resourceGroup,
                inputs: ["rules": .list(rules.map(\.value))], azureName: groupName, dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// Rules of one direction may not share a priority.
    struct RuleKey: Hashable {
        var priority: Int
        var direction: String
    }

    /// `azure_public_ip`: a static Standard public IP address.
    public struct PublicIP: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// Availability zones it serves; empty: none named.
        public var zones: [String]
        public var ipName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, zones: [String] = [], ipName: String? = nil, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.zones = zones
            self.ipName = ipName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_public_ip", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var ipAddress: Ref<String> { Ref(address, "ip_address") }

        public func declare(into content: inout StackContent) {
            content.diagnostics += AzureNaming.problems(zones: zones).map { Diagnostic(address: address, message: $0, location: sourceLocation) }
            var inputs: [String: Value] = [:]
            if !zones.isEmpty { inputs["zones"] = .list(zones.map(Value.string)) }
            AzureDeclaration.declare(
                "azure_public_ip", name, subscription: subscription, region: location, resourceGroup: resourceGroup, inputs: inputs, azureName: ipName,
                dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_proximity_placement_group`: VMs that name it are placed close together, in one datacenter.
    public struct ProximityPlacementGroup: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// The sizes the group is meant for, so Azure picks a datacenter that has them all.
        public var vmSizes: [String]
        public var groupName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, vmSizes: [String] = [], groupName: String? = nil, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.vmSizes = vmSizes
            self.groupName = groupName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_proximity_placement_group", name: name) }
        /// What a VM's `proximityPlacementGroup` refers to.
        public var id: Ref<String> { Ref(address, "id") }

        public func declare(into content: inout StackContent) {
            content.diagnostics += vmSizes.compactMap { AzureNaming.problem(size: $0) }.map { Diagnostic(address: address, message: $0, location: sourceLocation) }
            var inputs: [String: Value] = [:]
            if !vmSizes.isEmpty { inputs["vm_sizes"] = .list(vmSizes.map(Value.string)) }
            AzureDeclaration.declare(
                "azure_proximity_placement_group", name, subscription: subscription, region: location, resourceGroup: resourceGroup, inputs: inputs,
                azureName: groupName, dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_storage_account`: a StorageV2 account. Its name is global across Azure.
    public struct StorageAccount: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// The Azure name: 3-24 lowercase letters and digits, unique across Azure.
        public var accountName: String
        /// `Standard_LRS` (the default), `Standard_ZRS`, `Standard_GRS`, `Premium_LRS`, …
        public var sku: String
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, accountName: String, sku: String = "Standard_LRS",
            subscription: String? = nil, location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.accountName = accountName
            self.sku = sku
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_storage_account", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        public var blobEndpoint: Ref<String> { Ref(address, "blob_endpoint") }

        public func declare(into content: inout StackContent) {
            let skus = ["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_RAGRS", "Standard_GZRS", "Standard_RAGZRS", "Premium_LRS", "Premium_ZRS"]
            if !skus.contains(sku) {
                content.diagnostics.append(Diagnostic(address: address, message: "sku '\(sku)' must be one of \(skus.joined(separator: ", "))", location: sourceLocation))
            }
            AzureDeclaration.declare(
                "azure_storage_account", name, subscription: subscription, region: location, resourceGroup: resourceGroup,
                inputs: ["sku": .string(sku), "kind": "StorageV2"], azureName: accountName,
                nameCheck: { AzureNaming.problem(storageAccount: $0) }, dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_blob_container`: a container of a storage account. Its `url` is `az://ACCOUNT/CONTAINER`.
    public struct BlobContainer: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// The storage account's Azure name.
        public var storageAccount: String
        /// The container's name: 3-63 of a-z, 0-9 and '-'.
        public var containerName: String
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, resourceGroup: any StringExpression, storageAccount: String, containerName: String, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.resourceGroup = resourceGroup
            self.storageAccount = storageAccount
            self.containerName = containerName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_blob_container", name: name) }
        public var id: Ref<String> { Ref(address, "id") }
        /// `az://ACCOUNT/CONTAINER`.
        public var url: Ref<String> { Ref(address, "url") }

        public func declare(into content: inout StackContent) {
            if let why = AzureNaming.problem(storageAccount: storageAccount) {
                content.diagnostics.append(Diagnostic(address: address, message: why, location: sourceLocation))
            }
            AzureDeclaration.declare(
                "azure_blob_container", name, subscription: subscription, region: location, resourceGroup: resourceGroup,
                inputs: ["storage_account": .string(storageAccount)], azureName: containerName, nameCheck: { AzureNaming.problem(container: $0) },
                dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }
}
