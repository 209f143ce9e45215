import Foundation
import StratumCloud
import StratumCore

/// One ingress rule as the stack writes it: `{protocol, from_port, to_port, cidr}` or
/// `{protocol, from_port, to_port, self: true}` for traffic between members of the group.
struct IngressRule: Hashable, Comparable {
    var ipProtocol: String
    var fromPort: Int
    var toPort: Int
    var cidr: String?
    var fromSelf: Bool

    init?(_ value: Value) {
        guard case .map(let m) = value else { return nil }
        ipProtocol = m["protocol"]?.stringValue ?? "tcp"
        fromPort = m["from_port"]?.intValue ?? (ipProtocol == "-1" ? -1 : 0)
        toPort = m["to_port"]?.intValue ?? fromPort
        cidr = m["cidr"]?.stringValue
        fromSelf = m["self"]?.boolValue ?? false
    }

    init(ipProtocol: String, fromPort: Int, toPort: Int, cidr: String?, fromSelf: Bool) {
        self.ipProtocol = ipProtocol
        self.fromPort = fromPort
        self.toPort = toPort
        self.cidr = cidr
        self.fromSelf = fromSelf
    }

    var value: Value {
        var m: [String: Value] = ["protocol": .string(ipProtocol), "from_port": .int(fromPort), "to_port": .int(toPort)]
        if let cidr { m["cidr"] = .string(cidr) }
        if fromSelf { m["self"] = .bool(true) }
        return .map(m)
    }

    static func < (a: IngressRule, b: IngressRule) -> Bool {
        (a.ipProtocol, a.fromPort, a.toPort, a.cidr ?? "", a.fromSelf ? 1 : 0) < (b.ipProtocol, b.fromPort, b.toPort, b.cidr ?? "", b.fromSelf ? 1 : 0)
    }

    func add(to p: inout EC2Parameters, index: Int, groupId: String) {
        p.add("IpPermissions.\(index).IpProtocol", ipProtocol)
        if ipProtocol != "-1" {
            p.add("IpPermissions.\(index).FromPort", String(fromPort))
            p.add("IpPermissions.\(index).ToPort", String(toPort))
        }
        if let cidr { p.add("IpPermissions.\(index).IpRanges.1.CidrIp", cidr) }
        if fromSelf { p.add("IpPermissions.\(index).Groups.1.GroupId", groupId) }
    }

    /// Rules from a Describe item's `ipPermissions`.
    static func parse(_ item: XMLTree, groupId: String) -> [IngressRule] {
        var rules: [IngressRule] = []
        for permission in item.items("ipPermissions") {
            let proto = permission.string("ipProtocol") ?? "-1"
            let from = Int(permission.string("fromPort") ?? "") ?? -1
            let to = Int(permission.string("toPort") ?? "") ?? -1
            let (f, t) = proto == "-1" ? (-1, -1) : (from, to)
            for range in permission.items("ipRanges") {
                rules.append(IngressRule(ipProtocol: proto, fromPort: f, toPort: t, cidr: range.string("cidrIp"), fromSelf: false))
            }
            for group in permission.items("groups") where group.string("groupId") == groupId {
                rules.append(IngressRule(ipProtocol: proto, fromPort: f, toPort: t, cidr: nil, fromSelf: true))
            }
        }
        return rules.sorted()
    }
}

struct SecurityGroupKind: EC2ResourceKind {
    let type = "aws_security_group"
    let describeAction = "DescribeSecurityGroups"
    let itemsPath = "securityGroupInfo"
    let idField = "groupId"
    let idFilter = "group-id"
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "vpc_id": .input(forceNew: true, required: true),
            "name": .input(forceNew: true, required: true),
            "description": .input(forceNew: true),
            "ingress": .input(),
        ]) { $1 })
    }

    static func rules(_ value: Value?) -> [IngressRule] {
        (value?.listValue ?? []).compactMap(IngressRule.init).sorted()
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        var p = EC2Parameters()
        p.add("GroupName", try resource.requireString("name"))
        p.add("GroupDescription", resource.string("description") ?? "Managed by Stratum (\(resource.address))")
        p.add("VpcId", try resource.requireString("vpc_id"))
        p.add(tagSpecification: "security-group", tags: tags)
        let response = try await ec2.call("CreateSecurityGroup", p, idempotent: false)
        guard let id = response.string("groupId") else { throw ProviderError(.transient, "CreateSecurityGroup returned no groupId", address: resource.address) }
        try await authorize(Self.rules(resource.inputs["ingress"]), groupId: id, ec2: ec2)
        return resource.state(id: id)
    }

    func authorize(_ rules: [IngressRule], groupId: String, ec2: EC2API) async throws {
        guard !rules.isEmpty else { return }
        var p = EC2Parameters()
        p.add("GroupId", groupId)
        for (i, rule) in rules.enumerated() { rule.add(to: &p, index: i + 1, groupId: groupId) }
        do {
            _ = try await ec2.call("AuthorizeSecurityGroupIngress", p, idempotent: true)
        } catch let error as ProviderError where error.message.contains("InvalidPermission.Duplicate") {
            // A retried create already added them.
        }
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        var state = prior
        let live = IngressRule.parse(item, groupId: prior.id)
        if live != Self.rules(prior.attributes["ingress"]) { state.attributes["ingress"] = .list(live.map(\.value)) }
        overlayTags(&state, item: item)
        return state
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource, ec2: EC2API) async throws -> ResourceState {
        let old = Set(Self.rules(prior.attributes["ingress"]))
        let new = Set(Self.rules(desired.inputs["ingress"]))
        let revoked = old.subtracting(new).sorted()
        if !revoked.isEmpty {
            var p = EC2Parameters()
            p.add("GroupId", prior.id)
            for (i, rule) in revoked.enumerated() { rule.add(to: &p, index: i + 1, groupId: prior.id) }
            _ = try await ec2.call("RevokeSecurityGroupIngress", p, idempotent: true)
        }
        try await authorize(new.subtracting(old).sorted(), groupId: prior.id, ec2: ec2)
        return try await ec2.updateTags(prior, desired: desired)
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        var p = EC2Parameters()
        p.add("GroupId", state.id)
        try await ec2.deleteIgnoringMissing("DeleteSecurityGroup", p)
    }
}

/// A cluster placement group: instances in it share a low-latency network spine (EFA).
struct PlacementGroupKind: EC2ResourceKind {
    let type = "aws_placement_group"
    let describeAction = "DescribePlacementGroups"
    let itemsPath = "placementGroupSet"
    let idField = "groupName"
    let idFilter = "group-name"
    let paginates = false
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "name": .input(forceNew: true, required: true),
            "strategy": .input(forceNew: true),
            "group_id": .computed,
        ]) { $1 })
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        let name = try resource.requireString("name")
        var p = EC2Parameters()
        p.add("GroupName", name)
        p.add("Strategy", resource.string("strategy") ?? "cluster")
        p.add(tagSpecification: "placement-group", tags: tags)
        let response = try await ec2.call("CreatePlacementGroup", p, idempotent: false)
        return resource.state(id: name, computed: ["group_id": .string(response.string("placementGroup/groupId") ?? "")])
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        guard item.string("state") != "deleted" else { return nil }
        var state = prior
        if let strategy = item.string("strategy"), prior.attributes["strategy"] != nil { state.attributes["strategy"] = .string(strategy) }
        overlayTags(&state, item: item)
        return state
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        var p = EC2Parameters()
        p.add("GroupName", state.id)
        try await ec2.deleteIgnoringMissing("DeletePlacementGroup", p)
    }
}

/// An SSH public key imported as an EC2 key pair.
struct KeyPairKind: EC2ResourceKind {
    let type = "aws_key_pair"
    let describeAction = "DescribeKeyPairs"
    let itemsPath = "keySet"
    let idField = "keyName"
    let idFilter = "key-name"
    let paginates = false
    var schema: ResourceSchema {
        ResourceSchema(type: type, attributes: ownershipAttributes.merging([
            "name": .input(forceNew: true, required: true),
            "public_key": .input(forceNew: true, required: true),
            "key_pair_id": .computed,
            "fingerprint": .computed,
        ]) { $1 })
    }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState {
        let name = try resource.requireString("name")
        var p = EC2Parameters()
        p.add("KeyName", name)
        p.add("PublicKeyMaterial", Data(try resource.requireString("public_key").utf8).base64EncodedString())
        p.add(tagSpecification: "key-pair", tags: tags)
        let response = try await ec2.call("ImportKeyPair", p, idempotent: false)
        return resource.state(id: name, computed: [
            "key_pair_id": .string(response.string("keyPairId") ?? ""),
            "fingerprint": .string(response.string("keyFingerprint") ?? ""),
        ])
    }

    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState? {
        var state = prior
        overlayTags(&state, item: item)
        return state
    }

    func delete(_ state: ResourceState, ec2: EC2API) async throws {
        var p = EC2Parameters()
        p.add("KeyName", state.id)
        try await ec2.deleteIgnoringMissing("DeleteKeyPair", p)
    }
}
