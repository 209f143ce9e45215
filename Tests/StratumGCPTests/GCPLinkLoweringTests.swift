import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumGCP
import StratumTesting
import Testing

@Suite("Link conditions of nodes on GCP")
struct GCPLinkLoweringTests {
    static let region = "us-central1"
    static let placement = Placement.gcp(region: region, zones: ["us-central1-a", "us-central1-b"])
    static let providers = ProviderRegistry([GCPProvider.fromEnvironment(["GOOGLE_CLOUD_PROJECT": "stratum-test", "NO_GCE_CHECK": "true"])])
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
        // A gang pool on GCP is one instance per node (sharing a placement policy): each may
        // have its own link.
        var pool = NodePool("edge", count: 4, command: ["train"], network: network, link: .broadband, on: Self.placement).link(.poor, nodes: 2..<4)
        pool.gang = true
        let stack = try Self.evaluate([network, pool])
        #expect((0..<4).map { stack.resourcesByAddress[pool.node($0)]?.inputs["link"] } == [
            LinkProfile.broadband.value, LinkProfile.broadband.value, LinkProfile.poor.value, LinkProfile.poor.value,
        ])
        try Planner(providers: Self.providers).validate(stack)

        let created = try OfflinePlans.plan(stack, providers: Self.providers)
        #expect(OfflinePlans.shown(pool.node(0), in: created).contains("+ link = \(LinkProfile.broadband.value)"))

        let changed = try Self.evaluate([network, pool.link(Self.slower, nodes: 3..<4)])
        let replanned = try OfflinePlans.plan(changed, providers: Self.providers, over: OfflinePlans.state(after: created))
        #expect(replanned.actionable.map(\.address) == [pool.node(3)])
        let node = try #require(replanned.changes.first { $0.address == pool.node(3) })
        #expect(node.action == .replace && node.replacedBy == ["link"])
        #expect(OfflinePlans.shown(pool.node(3), in: replanned).contains("~ rate_kbit = 10000 -> 1000"))
    }

    static func spec(link: LinkProfile?) -> GCP.InstanceSpec {
        GCP.InstanceSpec(
            machineType: "n2-standard-8", zones: ["us-central1-a"], subnetwork: "regions/us-central1/subnetworks/sub", command: ["train"], link: link)
    }

    @Test func groupsCarryPerNodeLinksAndAGangOnlyOne() throws {
        let group = GCP.InstanceGroup("workers", count: 3, Self.spec(link: .broadband), region: Self.region).link(.poor, nodes: 0..<1)
        // Every instance of this gang ends up on the poor link: one profile, which it carries.
        let gang = GCP.InstanceGang("gang", count: 2, Self.spec(link: .broadband), region: Self.region).link(.poor, nodes: 0..<2)
        let stack = try Self.evaluate([group, gang])
        #expect((0..<3).map { stack.resourcesByAddress[group.instance($0)]?.inputs["link"] } == [
            LinkProfile.poor.value, LinkProfile.broadband.value, LinkProfile.broadband.value,
        ])
        #expect(stack.resourcesByAddress[gang.address]?.inputs["link"] == LinkProfile.poor.value)
        try Planner(providers: Self.providers).validate(stack)

        // A gang is one bulk insert of one template: links that differ between its instances
        // are refused at plan time, naming the gang.
        let mixed = GCP.InstanceGang("trainers", count: 4, Self.spec(link: .broadband), region: Self.region).link(.poor, nodes: 2..<4)
        let messages = Self.content([mixed]).diagnostics.filter { $0.address == mixed.address }.map(\.message)
        #expect(messages == [
            "the gang trainers is one bulk insert of one instance template, so its instances share one link, but they differ "
                + "(nodes 0, 1: 100 Mbit/s, 20 ms; nodes 2, 3: 10 Mbit/s, 100 ms, 1 % loss); give the gang one link, or make it a GCP.InstanceGroup for per-node links",
        ], "\(messages)")
        let partly = GCP.InstanceGang("partly", count: 2, Self.spec(link: nil), region: Self.region).link(.poor, nodes: 1..<2)
        #expect(Self.content([partly]).diagnostics.contains { $0.message.contains("node 0: unimpaired; node 1: 10 Mbit/s") })

        // A link beside the stack's own user data, and a profile that cannot be applied.
        var raw = Self.spec(link: .broadband)
        raw.userData = "#cloud-config\n"
        var odd = GCP.InstanceGroup("odd", count: 1, raw, region: Self.region)
        odd.spec.link = LinkProfile(lossPercent: 120)
        let problems = Self.content([odd]).diagnostics.map(\.message)
        #expect(problems.contains(NodeLinks.userDataConflict) && problems.contains("the link loss must be 0 to 100 percent (got 120.0)"), "\(problems)")
    }
}
