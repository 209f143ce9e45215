import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing
@testable import StratumGCP

/// A network, two subnetworks and a firewall driven through the real Planner, Refresher and
/// Executor against the Compute fake.
@Suite("GCP networking through the engine on the Compute fake", .timeLimit(.minutes(3)))
struct GCPLifecycleTests {
    static let environment = "test"

    static func stack() throws -> EvaluatedStack {
        var content = StackContent()
        let region = GCPFakeWorld.region
        let network = CustomResource("gcp_network", "vpc", provider: "gcp", region: region, inputs: ["routing_mode": "REGIONAL"])
        network.declare(into: &content)
        for (index, cidr) in ["10.0.0.0/20", "10.0.16.0/20"].enumerated() {
            CustomResource("gcp_subnetwork", "nodes", index: index, provider: "gcp", region: region, inputs: ["network": network["name"], "cidr": cidr]).declare(into: &content)
        }
        let rules: [Value] = [["protocol": "tcp", "ports": ["0-65535"]], ["protocol": "icmp"]]
        CustomResource(
            "gcp_firewall", "internal", provider: "gcp", region: region,
            inputs: ["network": network["self_link"], "source_ranges": Value.list(["10.0.0.0/8"]), "allow": Value.list(rules)]
        ).declare(into: &content)
        return try StackEvaluator.evaluate(content, name: "gcp-net", environment: environment)
    }

    @Test func planApplyRefreshDriftRecreateDestroy() async throws {
        try await GCPFakeWorld.run { world in
            let run = GCPEngineRun(provider: world.provider, stack: "gcp-net", environment: Self.environment)
            func plan(_ stack: EvaluatedStack) async throws -> Plan { try await run.plan(stack) }
            func apply(_ plan: Plan) async throws -> ApplyResult { try await run.apply(plan) }
            let stack = try Self.stack()
            try Planner(providers: run.registry).validate(stack)

            let first = try await plan(stack)
            #expect(first.changes.count == 4 && first.changes.allSatisfy { $0.action == .create })
            let applied = try await apply(first)
            #expect(applied.ok, "\(applied.failed.map { "\($0.step.address): \($0.error)" })")
            #expect(await world.fake.paths(of: "networks").count == 1)
            #expect(await world.fake.paths(of: "subnetworks").count == 2)
            #expect(await world.fake.paths(of: "firewalls").count == 1)

            // Refresh reads each type with one list call, and finds nothing to change.
            let before = await world.fake.calls
            let second = try await plan(stack)
            #expect(!second.hasChanges, "\(second.actionable.map { "\($0.address) \($0.action) \($0.changedAttributes)" })")
            let after = await world.fake.calls
            for method in ["compute.networks.list", "compute.subnetworks.aggregatedList", "compute.firewalls.list"] {
                #expect(after[method, default: 0] - before[method, default: 0] == 1, "\(method)")
            }

            // A subnetwork deleted behind Stratum's back is planned again and recreated.
            let victim = try #require(await run.store.read(workspace: run.workspace).resources[ResourceAddress(type: "gcp_subnetwork", name: "nodes", index: 1)])
            await world.fake.deleteOutOfBand(victim.id)
            let drift = try await plan(stack)
            #expect(drift.actionable.map(\.address.description) == ["gcp_subnetwork.nodes[1]"])
            #expect(drift.actionable.first?.action == .create)
            #expect(try await apply(drift).ok)
            #expect(await world.fake.paths(of: "subnetworks").count == 2)
            #expect(!(try await plan(stack)).hasChanges)

            let destroyed = try await apply(try await run.destroyPlan())
            #expect(destroyed.ok, "\(destroyed.failed.map { "\($0.step.address): \($0.error)" })")
            #expect(await run.store.read(workspace: run.workspace).resources.isEmpty)
            for kind in ["networks", "subnetworks", "firewalls"] {
                #expect(await world.fake.paths(of: kind).isEmpty, "\(kind) left behind")
            }
        }
    }
}
