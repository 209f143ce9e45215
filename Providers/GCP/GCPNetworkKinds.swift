import StratumCore

extension GCPComputeSpec {
    /// `gcp_network`: a VPC network in custom subnet mode (subnetworks are declared, never
    /// made automatically in every region).
    static let network = GCPComputeSpec(
        type: "gcp_network", collection: "networks", regional: false,
        inputs: ["routing_mode": .input(forceNew: true)], computed: [],
        body: { resource, _ in
            try GCPInputs.oneOf(resource, "routing_mode", ["REGIONAL", "GLOBAL"])
            return [
                "autoCreateSubnetworks": false,
                "routingConfig": ["routingMode": .string(resource.inputs["routing_mode"]?.stringValue ?? "REGIONAL")],
            ]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            if let mode = item["routingConfig"]?["routingMode"]?.string { attributes["routing_mode"] = .string(mode) }
            return attributes
        })

    /// `gcp_subnetwork`: an IPv4 range of a network in the resource's region.
    static let subnetwork = GCPComputeSpec(
        type: "gcp_subnetwork", collection: "subnetworks", regional: true,
        inputs: [
            "network": .input(forceNew: true, required: true), "cidr": .input(forceNew: true, required: true),
            "private_google_access": .input(forceNew: true),
        ],
        computed: ["gateway_address"],
        body: { resource, project in
            var body: [String: GCPJSON] = [
                "network": .string(GCPNames.networkPath(try GCPInputs.string(resource, "network"), project: project)),
                "ipCidrRange": .string(try GCPInputs.string(resource, "cidr")),
            ]
            if let access = resource.inputs["private_google_access"]?.boolValue { body["privateIpGoogleAccess"] = .bool(access) }
            return body
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["network"] = item["network"]?.string.map(Value.string)
            attributes["cidr"] = item["ipCidrRange"]?.string.map(Value.string)
            attributes["private_google_access"] = item["privateIpGoogleAccess"].map(\.stratumValue)
            attributes["gateway_address"] = item["gatewayAddress"]?.string.map(Value.string)
            return attributes
        })

    /// `gcp_firewall`: one rule of a network: `allow` is a list of `{protocol, ports}`.
    static let firewall = GCPComputeSpec(
        type: "gcp_firewall", collection: "firewalls", regional: false,
        inputs: [
            "network": .input(forceNew: true, required: true), "direction": .input(forceNew: true), "priority": .input(forceNew: true),
            "source_ranges": .input(forceNew: true), "target_tags": .input(forceNew: true), "allow": .input(forceNew: true, required: true),
        ],
        computed: [],
        body: { resource, project in
            try GCPInputs.oneOf(resource, "direction", ["INGRESS", "EGRESS"])
            var body: [String: GCPJSON] = [
                "network": .string(GCPNames.networkPath(try GCPInputs.string(resource, "network"), project: project)),
                "direction": .string(resource.inputs["direction"]?.stringValue ?? "INGRESS"),
                "allowed": .array(try GCPInputs.rules(resource)),
            ]
            if let priority = resource.inputs["priority"]?.intValue { body["priority"] = .number(Double(priority)) }
            if let ranges = resource.inputs["source_ranges"]?.listValue { body["sourceRanges"] = .array(ranges.compactMap(\.stringValue).map(GCPJSON.string)) }
            if let tags = resource.inputs["target_tags"]?.listValue { body["targetTags"] = .array(tags.compactMap(\.stringValue).map(GCPJSON.string)) }
            return body
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["network"] = item["network"]?.string.map(Value.string)
            attributes["direction"] = item["direction"]?.string.map(Value.string)
            attributes["priority"] = item["priority"].map(\.stratumValue)
            attributes["source_ranges"] = item["sourceRanges"].map(\.stratumValue)
            attributes["target_tags"] = item["targetTags"].map(\.stratumValue)
            attributes["allow"] = item["allowed"].map { allowed in
                .list(allowed.array.map { rule in
                    var fields: [String: Value] = ["protocol": .string(rule["IPProtocol"]?.string ?? "")]
                    if let ports = rule["ports"] { fields["ports"] = ports.stratumValue }
                    return .map(fields)
                })
            }
            return attributes
        })
}

/// Reading a resource's inputs for a request body; a missing or malformed one fails before any call.
enum GCPInputs {
    static func string(_ resource: ResolvedResource, _ key: String) throws -> String {
        guard let value = resource.inputs[key]?.stringValue, !value.isEmpty else {
            throw ProviderError(.permanent, "input '\(key)' is required", address: resource.address)
        }
        return value
    }

    static func oneOf(_ resource: ResolvedResource, _ key: String, _ allowed: [String]) throws {
        guard let value = resource.inputs[key]?.stringValue, !allowed.contains(value) else { return }
        throw ProviderError(.permanent, "input '\(key)' is '\(value)'; it must be one of \(allowed.joined(separator: ", "))", address: resource.address)
    }

    /// `allow`: `[{protocol: "tcp", ports: ["22", "8000-9000"]}]` as Compute's `allowed`.
    static func rules(_ resource: ResolvedResource) throws -> [GCPJSON] {
        guard let rules = resource.inputs["allow"]?.listValue, !rules.isEmpty else {
            throw ProviderError(.permanent, "input 'allow' needs at least one {protocol, ports} rule", address: resource.address)
        }
        return try rules.map { rule in
            guard let proto = rule.mapValue?["protocol"]?.stringValue, !proto.isEmpty else {
                throw ProviderError(.permanent, "every 'allow' rule needs a protocol (tcp, udp, icmp, all, or a number)", address: resource.address)
            }
            var fields: [String: GCPJSON] = ["IPProtocol": .string(proto)]
            if let ports = rule.mapValue?["ports"]?.listValue {
                fields["ports"] = .array(ports.map { .string($0.stringValue ?? $0.intValue.map(String.init) ?? "") })
            }
            return .object(fields)
        }
    }
}
