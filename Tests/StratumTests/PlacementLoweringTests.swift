import Foundation
import Stratum
import Testing

/// A cloud's lowering as a plug-in would write it: a network becomes two resources of its own
/// types, buckets and nodes keep the generic lowering but under other type names.
struct TwoPartNetworkLowering: PlacementLowering {
    func resourceType(kind: String, on placement: Placement) -> String {
        ["network": "nimbus_net", "bucket": "nimbus_store", "node": "nimbus_vm"][kind] ?? "nimbus_\(kind)"
    }

    func declare(network: Network, into content: inout StackContent) {
        content.resources.append(DesiredResource(
            address: network.address, provider: "nimbus", region: network.placement.region, inputs: ["range": .string(network.cidr)],
            dependsOn: network.explicitDependencies, location: network.location))
        content.resources.append(DesiredResource(
            address: ResourceAddress(type: "nimbus_firewall", name: network.name), provider: "nimbus", region: network.placement.region,
            inputs: ["network": network.id.value], dependsOn: [], location: network.location))
    }
}

@Suite("Placement lowering")
struct PlacementLoweringTests {
    static let nimbus = Placement(provider: "nimbus", region: "north-1", zones: ["north-1x"], lowering: TwoPartNetworkLowering())

    @Test func portableResourcesAskTheirPlacementForTheLowering() throws {
        var content = StackContent()
        let network = Network("net", cidr: "10.3.0.0/16", on: Self.nimbus)
        let bucket = Bucket("data", versioning: true, on: Self.nimbus)
        network.declare(into: &content)
        bucket.declare(into: &content)
        NodePool("vm", count: 2, command: ["run"], env: ["DATA": bucket.url], network: network, on: Self.nimbus).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "t", environment: "dev")
        #expect(stack.resources.map(\.address.description).sorted() == [
            "nimbus_firewall.net", "nimbus_net.net", "nimbus_store.data", "nimbus_vm.vm[0]", "nimbus_vm.vm[1]",
        ])
        let firewall = try #require(stack.resources.first { $0.address.type == "nimbus_firewall" })
        #expect(firewall.inputs["network"]?.references.map(\.address.description) == ["nimbus_net.net"])
        // Kinds the lowering does not override keep the generic inputs, under its type names.
        let vm = try #require(stack.resources.first { $0.address.description == "nimbus_vm.vm[1]" })
        #expect(vm.inputs["index"] == .int(1))
        #expect(vm.inputs["network_id"]?.references.map(\.address.description) == ["nimbus_net.net"])
        #expect(vm.region == "north-1")
        #expect(stack.resources.first { $0.address.type == "nimbus_store" }?.inputs["versioning"] == .bool(true))
    }

    @Test func portableChecksRunWhateverTheLowering() {
        var content = StackContent()
        Network("bad net", cidr: "10.3.0.1/16", on: Self.nimbus).declare(into: &content)
        NodePool("vm", count: -1, command: [], on: Self.nimbus).declare(into: &content)
        let messages = content.diagnostics.map(\.message)
        #expect(messages.contains { $0.contains("invalid name 'bad net'") })
        #expect(messages.contains { $0.contains("invalid CIDR '10.3.0.1/16'") })
        #expect(messages.contains { $0.contains("count must not be negative") })
    }

    @Test func genericLoweringPrefixesTheProviderName() {
        var content = StackContent()
        let elsewhere = Placement(provider: "elsewhere", region: "r1")
        Network("net", cidr: "10.4.0.0/16", on: elsewhere).declare(into: &content)
        Bucket("data", on: elsewhere).declare(into: &content)
        NodePool("n", count: 1, command: ["x"], on: elsewhere).declare(into: &content)
        #expect(content.resources.map(\.address.description) == ["elsewhere_network.net", "elsewhere_bucket.data", "elsewhere_node.n[0]"])
        #expect(content.resources.allSatisfy { $0.provider == "elsewhere" && $0.region == "r1" })
        #expect(content.resources.first?.inputs == ["cidr": .string("10.4.0.0/16")])
    }

    @Test func placementsCompareByProviderRegionAndZones() {
        let plain = Placement(provider: "nimbus", region: "north-1", zones: ["north-1x"])
        #expect(plain == Self.nimbus)
        #expect(Set([plain, Self.nimbus]).count == 1)
        #expect(Placement(provider: "nimbus", region: "north-1") != Self.nimbus)
        #expect(Placement.local == Placement(provider: "local", region: "local"))
    }
}
