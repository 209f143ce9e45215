import StratumCloud
import StratumCore

extension ResolvedResource {
    func string(_ key: String) -> String? { inputs[key]?.stringValue }

    func requireString(_ key: String) throws -> String {
        guard let value = inputs[key]?.stringValue, !value.isEmpty else {
            throw ProviderError(.permanent, "input '\(key)' is required", address: address)
        }
        return value
    }

    func strings(_ key: String) -> [String] {
        inputs[key]?.listValue?.compactMap(\.stringValue) ?? []
    }

    /// The state a create hands back: its inputs, id and computed attributes.
    func state(id: String, computed: [String: Value] = [:]) -> ResourceState {
        var attributes = inputs
        attributes["id"] = .string(id)
        attributes["stratum_lineage"] = .string(ownership.lineage)
        for (key, value) in computed { attributes[key] = value }
        return ResourceState(address: address, provider: "aws", region: region, id: id, attributes: attributes, dependencies: dependencies)
    }
}

/// Common attributes of every AWS resource type.
let ownershipAttributes: [String: AttributeSchema] = [
    "id": .computed,
    "tags": .input(),
    "stratum_lineage": .computed,
]

/// Shared by refresh: the live user tags replace the recorded ones, so tag drift shows.
func overlayTags(_ state: inout ResourceState, item: XMLTree) {
    let recorded = OwnershipTags.userTags(state.attributes["tags"])
    var live = OwnershipTags.parse(item).filter { !$0.key.hasPrefix("stratum:") }
    // Stratum names resources itself unless the stack sets a Name.
    if recorded["Name"] == nil { live["Name"] = nil }
    if live != recorded { state.attributes["tags"] = .map(live.mapValues(Value.string)) }
}

struct VPCKind: EC2ResourceKind {
    let type = "aws_vpc"

    func validate(_ resource: DesiredResource) -> [Diagnostic] { AWSValidation.cidr(resource) }
    let describeAction = "DescribeVpcs"
    let itemsPath = "vpcSet"
    let idField = "vpcId"
    let idFilter = "vpc-id"
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "cidr": .input(forceNew: true, required: true),
        ]) { $1 })
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        var p = EC2Parameters()
        p.add("CidrBlock", try resource.requireString("cidr"))
        p.add(tagSpecification: "vpc", tags: tags)
        let response = try await ec2.call("CreateVpc", p, idempotent: false)
        guard let id = response.string("vpc/vpcId") else { throw ProviderError(.transient, "CreateVpc returned no vpcId", address: resource.address) }
        return resource.state(id: id)
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        var state = prior
        if let cidr = item.string("cidrBlock") { state.attributes["cidr"] = .string(cidr) }
        overlayTags(&state, item: item)
        return state
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        var p = EC2Parameters()
        p.add("VpcId", state.id)
        try await ec2.deleteIgnoringMissing("DeleteVpc", p)
    }
}

struct SubnetKind: EC2ResourceKind {
    let type = "aws_subnet"

    func validate(_ resource: DesiredResource) -> [Diagnostic] { AWSValidation.cidr(resource) }
    let describeAction = "DescribeSubnets"
    let itemsPath = "subnetSet"
    let idField = "subnetId"
    let idFilter = "subnet-id"
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "vpc_id": .input(forceNew: true, required: true),
            "cidr": .input(forceNew: true, required: true),
            "availability_zone": AttributeSchema(role: .optionalComputed, forceNew: true),
            "map_public_ip": .input(),
        ]) { $1 })
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        var p = EC2Parameters()
        p.add("VpcId", try resource.requireString("vpc_id"))
        p.add("CidrBlock", try resource.requireString("cidr"))
        p.add("AvailabilityZone", resource.string("availability_zone"))
        p.add(tagSpecification: "subnet", tags: tags)
        let response = try await ec2.call("CreateSubnet", p, idempotent: false)
        guard let id = response.string("subnet/subnetId") else { throw ProviderError(.transient, "CreateSubnet returned no subnetId", address: resource.address) }
        if resource.inputs["map_public_ip"]?.boolValue == true {
            var m = EC2Parameters()
            m.add("SubnetId", id)
            m.add("MapPublicIpOnLaunch.Value", "true")
            _ = try await ec2.call("ModifySubnetAttribute", m, idempotent: true)
        }
        return resource.state(id: id, computed: ["availability_zone": .string(response.string("subnet/availabilityZone") ?? "")])
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        var state = prior
        if let cidr = item.string("cidrBlock") { state.attributes["cidr"] = .string(cidr) }
        if let zone = item.string("availabilityZone") { state.attributes["availability_zone"] = .string(zone) }
        if let vpc = item.string("vpcId") { state.attributes["vpc_id"] = .string(vpc) }
        if let mapped = item.string("mapPublicIpOnLaunch"), prior.attributes["map_public_ip"] != nil || mapped == "true" {
            state.attributes["map_public_ip"] = .bool(mapped == "true")
        }
        overlayTags(&state, item: item)
        return state
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource, ec2: EC2API) async throws -> ResourceState {
        if desired.inputs["map_public_ip"] != prior.attributes["map_public_ip"] {
            var m = EC2Parameters()
            m.add("SubnetId", prior.id)
            m.add("MapPublicIpOnLaunch.Value", desired.inputs["map_public_ip"]?.boolValue == true ? "true" : "false")
            _ = try await ec2.call("ModifySubnetAttribute", m, idempotent: true)
        }
        return try await ec2.updateTags(prior, desired: desired)
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        var p = EC2Parameters()
        p.add("SubnetId", state.id)
        try await ec2.deleteIgnoringMissing("DeleteSubnet", p)
    }
}

/// An internet gateway attached to one VPC (create attaches, delete detaches first).
struct InternetGatewayKind: EC2ResourceKind {
    let type = "aws_internet_gateway"
    let describeAction = "DescribeInternetGateways"
    let itemsPath = "internetGatewaySet"
    let idField = "internetGatewayId"
    let idFilter = "internet-gateway-id"
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "vpc_id": .input(forceNew: true, required: true),
        ]) { $1 })
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        var p = EC2Parameters()
        p.add(tagSpecification: "internet-gateway", tags: tags)
        let response = try await ec2.call("CreateInternetGateway", p, idempotent: false)
        guard let id = response.string("internetGateway/internetGatewayId") else {
            throw ProviderError(.transient, "CreateInternetGateway returned no id", address: resource.address)
        }
        try await attach(id, vpc: try resource.requireString("vpc_id"), ec2: ec2)
        return resource.state(id: id)
    }

    func attach(_ id: String, vpc: String, ec2: EC2API) async throws {
        var a = EC2Parameters()
        a.add("InternetGatewayId", id)
        a.add("VpcId", vpc)
        _ = try await ec2.call("AttachInternetGateway", a, idempotent: true)
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        var state = prior
        // A gateway left detached (by an interrupted create) reads as attached to nothing.
        let attached = item.items("attachmentSet").compactMap { $0.string("vpcId") }
        state.attributes["vpc_id"] = .string(attached.first ?? "")
        overlayTags(&state, item: item)
        return state
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        if let vpc = state.attributes["vpc_id"]?.stringValue, !vpc.isEmpty {
            var d = EC2Parameters()
            d.add("InternetGatewayId", state.id)
            d.add("VpcId", vpc)
            do {
                _ = try await ec2.call("DetachInternetGateway", d, idempotent: true)
            } catch let error as ProviderError where error.kind == .notFound || error.message.contains("Gateway.NotAttached") {}
        }
        var p = EC2Parameters()
        p.add("InternetGatewayId", state.id)
        try await ec2.deleteIgnoringMissing("DeleteInternetGateway", p)
    }
}

/// A route table with an optional default route to an internet gateway, associated with subnets.
struct RouteTableKind: EC2ResourceKind {
    let type = "aws_route_table"
    let describeAction = "DescribeRouteTables"
    let itemsPath = "routeTableSet"
    let idField = "routeTableId"
    let idFilter = "route-table-id"
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "vpc_id": .input(forceNew: true, required: true),
            "internet_gateway_id": .input(forceNew: true),
            "subnet_ids": .input(forceNew: true),
        ]) { $1 })
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        var p = EC2Parameters()
        p.add("VpcId", try resource.requireString("vpc_id"))
        p.add(tagSpecification: "route-table", tags: tags)
        let response = try await ec2.call("CreateRouteTable", p, idempotent: false)
        guard let id = response.string("routeTable/routeTableId") else {
            throw ProviderError(.transient, "CreateRouteTable returned no id", address: resource.address)
        }
        if let gateway = resource.string("internet_gateway_id"), !gateway.isEmpty {
            var r = EC2Parameters()
            r.add("RouteTableId", id)
            r.add("DestinationCidrBlock", "0.0.0.0/0")
            r.add("GatewayId", gateway)
            _ = try await ec2.call("CreateRoute", r, idempotent: true)
        }
        for subnet in resource.strings("subnet_ids") {
            var a = EC2Parameters()
            a.add("RouteTableId", id)
            a.add("SubnetId", subnet)
            _ = try await ec2.call("AssociateRouteTable", a, idempotent: true)
        }
        return resource.state(id: id)
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        var state = prior
        let associated = item.items("associationSet").compactMap { $0.string("subnetId") }.filter { !$0.isEmpty }
        let recorded = prior.attributes["subnet_ids"]?.listValue?.compactMap(\.stringValue) ?? []
        if Set(associated) != Set(recorded) { state.attributes["subnet_ids"] = .list(associated.sorted().map(Value.string)) }
        overlayTags(&state, item: item)
        return state
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        let describe = EC2Describe(kind: self, ec2: ec2)
        if let item = try await describe.find(id: state.id) {
            for association in item.items("associationSet") where association.string("main") != "true" {
                guard let associationId = association.string("routeTableAssociationId") else { continue }
                var d = EC2Parameters()
                d.add("AssociationId", associationId)
                try await ec2.deleteIgnoringMissing("DisassociateRouteTable", d)
            }
        }
        var p = EC2Parameters()
        p.add("RouteTableId", state.id)
        try await ec2.deleteIgnoringMissing("DeleteRouteTable", p)
    }
}
