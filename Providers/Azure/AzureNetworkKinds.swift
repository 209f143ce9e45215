import StratumCloud
import StratumCore

extension AzureARMSpec {
    /// `azure_resource_group`: a resource group in the resource's region.
    static let resourceGroup = AzureARMSpec(
        type: "azure_resource_group", armType: "Microsoft.Resources/resourceGroups",
        inputs: ["tags": .input()], computed: [],
        collection: { _, client, _ in "/subscriptions/\(client.subscription)/resourceGroups" },
        nameRule: AzureNames.resourceGroup,
        body: { resource, _ in ["location": .string(resource.region)] },
        attributes: { _ in [:] })

    /// `azure_virtual_network`: a virtual network with its address space; subnets are their own resources.
    static let virtualNetwork = AzureARMSpec(
        type: "azure_virtual_network", armType: "Microsoft.Network/virtualNetworks",
        inputs: ["resource_group": .input(forceNew: true, required: true), "address_space": .input(forceNew: true, required: true), "tags": .input()],
        computed: [],
        collection: { inputs, client, address in try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Network/virtualNetworks" },
        nameRule: AzureNames.general,
        body: { resource, _ in
            guard let space = AzureInputs.strings(resource.inputs["address_space"]), !space.isEmpty else {
                throw ProviderError(.permanent, "input 'address_space' needs at least one CIDR", address: resource.address)
            }
            return ["location": .string(resource.region), "properties": ["addressSpace": ["addressPrefixes": .array(space.map(CloudJSON.string))]]]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["address_space"] = AzureInputs.value(item["properties"]?["addressSpace"]?["addressPrefixes"])
            return attributes
        },
        canonical: { key, value in key == "address_space" ? AzureInputs.strings(value).map { .list($0.map(Value.string)) } ?? value : value })

    /// `azure_subnet`: an address range of a virtual network, with an optional security group.
    /// Subnets carry no tags in ARM: recovery adopts the subnet of the create's name only when
    /// its range (and security group) are the ones asked for, and `stratum sweep` cannot list
    /// them (`owned()` is nil); a subnet goes with its virtual network.
    static let subnet = AzureARMSpec(
        type: "azure_subnet", armType: "Microsoft.Network/virtualNetworks/subnets",
        inputs: [
            "resource_group": .input(forceNew: true, required: true), "virtual_network": .input(forceNew: true, required: true),
            "cidr": .input(forceNew: true, required: true), "network_security_group": .input(),
        ],
        computed: [], ownership: .nowhere,
        collection: { inputs, client, address in
            let network = try AzureInputs.string(inputs, "virtual_network", address)
            let path = network.hasPrefix("/subscriptions/")
                ? network : try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Network/virtualNetworks/\(network)"
            return path + "/subnets"
        },
        nameRule: AzureNames.general,
        body: { resource, client in
            var properties: [String: CloudJSON] = ["addressPrefix": .string(try AzureInputs.string(resource.inputs, "cidr", resource.address))]
            if let group = resource.inputs["network_security_group"]?.stringValue, !group.isEmpty {
                let id = group.hasPrefix("/subscriptions/")
                    ? group : try AzureInputs.group(resource.inputs, client, resource.address) + "/providers/Microsoft.Network/networkSecurityGroups/\(group)"
                properties["networkSecurityGroup"] = ["id": .string(id)]
            }
            return ["properties": .object(properties)]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["cidr"] = item["properties"]?["addressPrefix"]?.string.map(Value.string)
            attributes["network_security_group"] = item["properties"]?["networkSecurityGroup"]?["id"]?.string.map(Value.string) ?? .null
            return attributes
        },
        canonical: { key, value in key == "network_security_group" && value.stringValue?.isEmpty == true ? .null : value })

    /// `azure_network_security_group`: a security group and its rules, changed in place.
    static let networkSecurityGroup = AzureARMSpec(
        type: "azure_network_security_group", armType: "Microsoft.Network/networkSecurityGroups",
        inputs: ["resource_group": .input(forceNew: true, required: true), "rules": .input(), "tags": .input()],
        computed: [],
        collection: { inputs, client, address in try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Network/networkSecurityGroups" },
        nameRule: AzureNames.general,
        body: { resource, _ in
            let rules = try AzureSecurityRules.canonical(resource.inputs["rules"], address: resource.address)
            return ["location": .string(resource.region), "properties": ["securityRules": .array(rules.map(AzureSecurityRules.body))]]
        },
        attributes: { item in
            ["rules": .list((item["properties"]?["securityRules"]?.array ?? []).map(AzureSecurityRules.live))]
        },
        canonical: { key, value in
            key == "rules" ? ((try? AzureSecurityRules.canonical(value, address: ResourceAddress(type: "azure_network_security_group", name: "-"))).map(Value.list) ?? value) : value
        })

    /// `azure_public_ip`: a static Standard IPv4 address, in `zones` when given.
    static let publicIP = AzureARMSpec(
        type: "azure_public_ip", armType: "Microsoft.Network/publicIPAddresses",
        inputs: ["resource_group": .input(forceNew: true, required: true), "zones": .input(forceNew: true), "tags": .input()],
        computed: ["ip_address"],
        collection: { inputs, client, address in try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Network/publicIPAddresses" },
        nameRule: AzureNames.general,
        body: { resource, _ in
            var body: [String: CloudJSON] = [
                "location": .string(resource.region), "sku": ["name": "Standard", "tier": "Regional"],
                "properties": ["publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"],
            ]
            if let zones = AzureInputs.strings(resource.inputs["zones"]), !zones.isEmpty { body["zones"] = .array(zones.map(CloudJSON.string)) }
            return body
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["zones"] = AzureInputs.value(item["zones"])
            attributes["ip_address"] = item["properties"]?["ipAddress"]?.string.map(Value.string)
            return attributes
        },
        canonical: { key, value in key == "zones" ? AzureInputs.strings(value).map { .list($0.map(Value.string)) } ?? value : value })

    /// `azure_proximity_placement_group`: keeps VMs close together; `vm_sizes` states the sizes
    /// meant to go in it, so Azure places the group where they all are.
    static let proximityPlacementGroup = AzureARMSpec(
        type: "azure_proximity_placement_group", armType: "Microsoft.Compute/proximityPlacementGroups",
        inputs: ["resource_group": .input(forceNew: true, required: true), "vm_sizes": .input(forceNew: true), "tags": .input()],
        computed: [],
        collection: { inputs, client, address in try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Compute/proximityPlacementGroups" },
        nameRule: AzureNames.general,
        body: { resource, _ in
            var properties: [String: CloudJSON] = ["proximityPlacementGroupType": "Standard"]
            if let sizes = AzureInputs.strings(resource.inputs["vm_sizes"]), !sizes.isEmpty {
                properties["intent"] = ["vmSizes": .array(sizes.map(CloudJSON.string))]
            }
            return ["location": .string(resource.region), "properties": .object(properties)]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["vm_sizes"] = AzureInputs.value(item["properties"]?["intent"]?["vmSizes"])
            return attributes
        })
}

/// A security group's `rules` input: a list of maps with `name`, `priority`, `direction`
/// (Inbound, Outbound; default Inbound), `access` (Allow, Deny; default Allow), `protocol`
/// (Tcp, Udp, Icmp, `*`; default `*`), and `source_address_prefixes`,
/// `source_port_ranges`, `destination_address_prefixes`, `destination_port_ranges` (a list or
/// one string each, also accepted in the singular: `source_address_prefix`, …; default `*`).
enum AzureSecurityRules {
    static let ranges = ["source_address_prefixes", "source_port_ranges", "destination_address_prefixes", "destination_port_ranges"]
    /// The singular spelling of each range key.
    static let singular: [String: String] = [
        "source_address_prefixes": "source_address_prefix", "source_port_ranges": "source_port_range",
        "destination_address_prefixes": "destination_address_prefix", "destination_port_ranges": "destination_port_range",
    ]
    /// ARM's field for a range key: plural and singular.
    static let fields: [String: (plural: String, singular: String)] = [
        "source_address_prefixes": ("sourceAddressPrefixes", "sourceAddressPrefix"), "source_port_ranges": ("sourcePortRanges", "sourcePortRange"),
        "destination_address_prefixes": ("destinationAddressPrefixes", "destinationAddressPrefix"),
        "destination_port_ranges": ("destinationPortRanges", "destinationPortRange"),
    ]

    /// The rules in one form, defaults filled in and names spelt as ARM spells them.
    static func canonical(_ value: Value?, address: ResourceAddress) throws -> [Value] {
        try (value?.listValue ?? []).map { item in
            guard let rule = item.mapValue, let name = rule["name"]?.stringValue, !name.isEmpty, let priority = rule["priority"]?.intValue else {
                throw ProviderError(.permanent, "every security rule needs a 'name' and a 'priority' (100-4096)", address: address)
            }
            var fields: [String: Value] = [
                "name": .string(name), "priority": .int(priority),
                "direction": .string(try spelt(rule["direction"], ["Inbound", "Outbound"], "direction", address) ?? "Inbound"),
                "access": .string(try spelt(rule["access"], ["Allow", "Deny"], "access", address) ?? "Allow"),
                "protocol": .string(try spelt(rule["protocol"], ["Tcp", "Udp", "Icmp", "Esp", "Ah", "*"], "protocol", address) ?? "*"),
            ]
            for key in ranges {
                let given = AzureInputs.strings(rule[key]) ?? AzureInputs.strings(singular[key].flatMap { rule[$0] }) ?? ["*"]
                fields[key] = .list((given.isEmpty ? ["*"] : given).map(Value.string))
            }
            return .map(fields)
        }
    }

    static func spelt(_ value: Value?, _ allowed: [String], _ key: String, _ address: ResourceAddress) throws -> String? {
        guard let text = value?.stringValue else { return nil }
        let wanted = ["all": "*", "any": "*"][text.lowercased()] ?? text
        guard let match = allowed.first(where: { $0.lowercased() == wanted.lowercased() }) else {
            throw ProviderError(.permanent, "security rule '\(key)' is '\(text)'; it must be one of \(allowed.joined(separator: ", "))", address: address)
        }
        return match
    }

    /// A canonical rule as ARM's `securityRules[]` entry: one range in the singular field, more in the plural.
    static func body(_ rule: Value) -> CloudJSON {
        let fields = rule.mapValue ?? [:]
        var properties: [String: CloudJSON] = [
            "priority": .number(Double(fields["priority"]?.intValue ?? 0)), "direction": .string(fields["direction"]?.stringValue ?? ""),
            "access": .string(fields["access"]?.stringValue ?? ""), "protocol": .string(fields["protocol"]?.stringValue ?? ""),
        ]
        for key in ranges {
            let values = (fields[key]?.listValue ?? []).compactMap(\.stringValue)
            guard let names = self.fields[key] else { continue }
            if values.count == 1 { properties[names.singular] = .string(values[0]) } else { properties[names.plural] = .array(values.map(CloudJSON.string)) }
        }
        return ["name": .string(fields["name"]?.stringValue ?? ""), "properties": .object(properties)]
    }

    /// A live `securityRules[]` entry in the canonical form.
    static func live(_ item: CloudJSON) -> Value {
        let properties = item["properties"]?.object ?? [:]
        var fields: [String: Value] = [
            "name": .string(item["name"]?.string ?? ""), "priority": .int(Int(properties["priority"]?.number ?? 0)),
            "direction": .string(properties["direction"]?.string ?? ""), "access": .string(properties["access"]?.string ?? ""),
            "protocol": .string(properties["protocol"]?.string ?? ""),
        ]
        for key in ranges {
            guard let names = self.fields[key] else { continue }
            let plural = properties[names.plural]?.array.compactMap(\.string) ?? []
            let values = plural.isEmpty ? properties[names.singular]?.string.map { [$0] } ?? [] : plural
            fields[key] = .list(values.map(Value.string))
        }
        return .map(fields)
    }
}
