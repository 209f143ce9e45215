import Foundation
import Stratum
import StratumAzure
import StratumCore
import StratumEngine
import StratumTesting
import Testing

@Suite("Link conditions of nodes on Azure")
struct AzureLinkLoweringTests {
    static let placement = Placement.azure(location: "eastus", zones: ["1", "2"])
    static let providers = ProviderRegistry([AzureProvider.fromEnvironment(["AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555"])])
    static let slower = LinkProfile(rateMbit: 1, delayMs: 100, lossPercent: 1)

    static func content(_ declarations: [any Declaration]) -> StackContent {
        var content = StackContent()
        for declaration in declarations { declaration.declare(into: &content) }
        return content
    }

    static func evaluate(_ declarations: [any Declaration]) throws -> EvaluatedStack {
        try StackEvaluator.evaluate(content(declarations), name: "t", environment: "dev")
    }

    @Test func eachNodeOfAPoolCarriesItsLinkShownInPlansAndAChangeReplacesIt() throws {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        let pool = NodePool("edge", count: 3, command: ["train"], network: network, on: Self.placement).link(.poor, nodes: 1..<3)
        let stack = try Self.evaluate([network, pool])
        #expect((0..<3).map { stack.resourcesByAddress[pool.node($0)]?.inputs["link"] } == [nil, LinkProfile.poor.value, LinkProfile.poor.value])
        try Planner(providers: Self.providers).validate(stack)

        let created = try OfflinePlans.plan(stack, providers: Self.providers)
        #expect(OfflinePlans.shown(pool.node(1), in: created).contains("+ link = \(LinkProfile.poor.value)"))
        #expect(!OfflinePlans.shown(pool.node(0), in: created).contains("link ="))

        // Node 1 loses its link, node 2 changes its own: both are replaced (rank 0, whose address
        // the others are told, is kept).
        let changed = try Self.evaluate([network, pool.link(.unimpaired, nodes: 1..<2).link(Self.slower, nodes: 2..<3)])
        let replanned = try OfflinePlans.plan(changed, providers: Self.providers, over: OfflinePlans.state(after: created))
        #expect(replanned.actionable.map(\.address) == [pool.node(1), pool.node(2)])
        #expect(replanned.actionable.allSatisfy { $0.action == .replace && $0.replacedBy == ["link"] })
        let shown = OfflinePlans.shown(pool.node(1), in: replanned)
        #expect(shown.contains("~ link = \(LinkProfile.poor.value) -> null # forces replacement"), "\(shown)")
    }

    @Test func vmGroupsCarryPerNodeLinks() throws {
        let spec = Azure.VMSpec(size: "Standard_D4s_v5", zones: ["1"], subnet: "subnet-id", command: ["train"], link: .poor)
        let group = Azure.VMGroup("workers", count: 3, resourceGroup: "ml-rg", spec, location: "eastus").link(.broadband, nodes: 1..<2)
        let single = Azure.VirtualMachine("probe", resourceGroup: "ml-rg", spec, location: "eastus")
        let stack = try Self.evaluate([group, single])
        #expect((0..<3).map { stack.resourcesByAddress[group.vm($0)]?.inputs["link"] } == [
            LinkProfile.poor.value, LinkProfile.broadband.value, LinkProfile.poor.value,
        ])
        #expect(stack.resourcesByAddress[single.address]?.inputs["link"] == LinkProfile.poor.value)
        try Planner(providers: Self.providers).validate(stack)

        let problems = Self.content([Azure.VMGroup("odd", count: 1, resourceGroup: "ml-rg", spec, location: "eastus").link(.poor, nodes: 1..<2)])
            .diagnostics.map(\.message)
        #expect(problems.contains("a link is set for node 1, but the group has nodes 0..<1"), "\(problems)")
    }
}
