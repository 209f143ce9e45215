import Foundation
import Stratum
import StratumAWS
import StratumCore
import StratumEngine
import StratumTesting
import Testing

@Suite("Link conditions of nodes on AWS")
struct AWSLinkLoweringTests {
    static let placement = Placement.aws(region: "us-east-1")
    static let providers = ProviderRegistry([AWSProvider.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])])
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
        // Two nodes on broadband, one unimpaired, two on a poor link: a heterogeneous pool.
        let pool = NodePool("edge", count: 5, command: ["train"], network: network, link: .broadband, on: Self.placement)
            .link(.unimpaired, nodes: 1..<2).link(.poor, nodes: 3..<5)
        let stack = try Self.evaluate([network, pool])
        #expect((0..<5).map { stack.resourcesByAddress[pool.node($0)]?.inputs["link"] } == [
            LinkProfile.broadband.value, nil, LinkProfile.broadband.value, LinkProfile.poor.value, LinkProfile.poor.value,
        ])
        try Planner(providers: Self.providers).validate(stack)

        let created = try OfflinePlans.plan(stack, providers: Self.providers)
        #expect(OfflinePlans.shown(pool.node(3), in: created).contains("+ link = \(LinkProfile.poor.value)"), "\(OfflinePlans.shown(pool.node(3), in: created))")
        #expect(!OfflinePlans.shown(pool.node(1), in: created).contains("link ="))

        // A changed profile: the node it changes is replaced (its link is in its user data); the
        // others are kept.
        let changed = try Self.evaluate([network, pool.link(Self.slower, nodes: 4..<5)])
        let replanned = try OfflinePlans.plan(changed, providers: Self.providers, over: OfflinePlans.state(after: created))
        #expect(replanned.actionable.map(\.address) == [pool.node(4)])
        let node = try #require(replanned.changes.first { $0.address == pool.node(4) })
        #expect(node.action == .replace && node.replacedBy == ["link"])
        let shown = OfflinePlans.shown(pool.node(4), in: replanned)
        #expect(shown.contains("~ link = { # forces replacement") && shown.contains("~ rate_kbit = 10000 -> 1000"), "\(shown)")
    }

    @Test func instanceGroupsAndInstancesCarryTheirLinks() throws {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        let launch = AWS.LaunchSpec(
            ami: "ami-0123456789abcdef0", instanceType: "m7i.large", subnets: AWSLowering.subnets(of: network), command: ["train"], link: .broadband)
        let group = AWS.InstanceGroup("workers", count: 3, launch, region: "us-east-1").link(.poor, nodes: 2..<3)
        let single = AWS.Instance("probe", launch, region: "us-east-1")
        let stack = try Self.evaluate([network, group, single])
        #expect((0..<3).map { stack.resourcesByAddress[group.instance($0)]?.inputs["link"] } == [
            LinkProfile.broadband.value, LinkProfile.broadband.value, LinkProfile.poor.value,
        ])
        #expect(stack.resourcesByAddress[single.address]?.inputs["link"] == LinkProfile.broadband.value)
        try Planner(providers: Self.providers).validate(stack)

        // Problems: a node the group lacks, a profile that cannot be applied, a link beside the
        // stack's own user data.
        var bad = AWS.InstanceGroup("bad", count: 2, launch, region: "us-east-1").link(LinkProfile(rateMbit: 5, jitterMs: 3), nodes: 1..<3)
        bad.launch.userData = "#!/bin/sh\n"
        let messages = Self.content([network, bad]).diagnostics.map(\.message)
        #expect(messages.contains("a link is set for node 2, but the group has nodes 0..<2"), "\(messages)")
        #expect(messages.contains("a link jitter needs a delay to vary around"))
        #expect(messages.filter { $0 == NodeLinks.userDataConflict }.count == 2, "the launch's link and the per-node one: \(messages)")
    }
}
