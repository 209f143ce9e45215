import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing
@testable import StratumAzure

/// A resource group, network, subnet, security group, storage account and container driven
/// through the real Planner, Refresher and Executor against the ARM fake.
@Suite("Azure networking and storage through the engine on the ARM fake", .timeLimit(.minutes(3)))
struct AzureLifecycleTests {
    static let stackName = "azure-net"
    static let environment = "test"

    static func stack() throws -> EvaluatedStack {
        var content = StackContent()
        let region = AzureFakeWorld.region
        let group = CustomResource("azure_resource_group", "main", provider: "azure", region: region, inputs: ["tags": Value.map(["team": "ml"])])
        group.declare(into: &content)
        let network = CustomResource(
            "azure_virtual_network", "vnet", provider: "azure", region: region, inputs: ["resource_group": group["name"], "address_space": Value.list(["10.0.0.0/16"])])
        network.declare(into: &content)
        let rules: Value = [["name": "internal", "priority": 100, "protocol": "*", "source_address_prefixes": ["10.0.0.0/16"]]]
        let nsg = CustomResource("azure_network_security_group", "internal", provider: "azure", region: region, inputs: ["resource_group": group["id"], "rules": rules])
        nsg.declare(into: &content)
        CustomResource(
            "azure_subnet", "nodes", provider: "azure", region: region,
            inputs: ["resource_group": group["name"], "virtual_network": network["id"], "cidr": "10.0.1.0/24", "network_security_group": nsg["id"]]
        ).declare(into: &content)
        let account = CustomResource(
            "azure_storage_account", "data", provider: "azure", region: region, inputs: ["resource_group": group["name"], "name": "stratumnetdata"])
        account.declare(into: &content)
        CustomResource(
            "azure_blob_container", "checkpoints", provider: "azure", region: region,
            inputs: ["resource_group": group["name"], "storage_account": account["name"], "name": "checkpoints"]
        ).declare(into: &content)
        return try StackEvaluator.evaluate(content, name: stackName, environment: environment)
    }

    static let armTypes = [
        "Microsoft.Resources/resourceGroups", "Microsoft.Network/virtualNetworks", "Microsoft.Network/virtualNetworks/subnets",
        "Microsoft.Network/networkSecurityGroups", "Microsoft.Storage/storageAccounts", "Microsoft.Storage/storageAccounts/blobServices/containers",
    ]

    @Test func planApplyRefreshDriftRecreateDestroy() async throws {
        try await AzureFakeWorld.run { world in
            let registry = ProviderRegistry([world.provider])
            let store = InMemoryStateStore()
            let workspace = "\(Self.stackName)/\(Self.environment)"
            let retry = RetryPolicy(maxAttempts: 5, clock: world.client.clock)
            func refreshed() async throws -> (StateSnapshot, RefreshResult) {
                let snapshot = await store.read(workspace: workspace)
                return (snapshot, try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources))
            }
            func plan(_ stack: EvaluatedStack) async throws -> Plan {
                let (snapshot, live) = try await refreshed()
                return try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: live, now: Date())
            }
            func apply(_ plan: Plan) async throws -> ApplyResult {
                try await Executor(providers: registry, store: store, workspace: workspace, parallelism: 4, retry: retry).apply(plan)
            }
            let stack = try Self.stack()
            try Planner(providers: registry).validate(stack)

            let first = try await plan(stack)
            #expect(first.changes.count == 6 && first.changes.allSatisfy { $0.action == .create })
            let applied = try await apply(first)
            #expect(applied.ok, "\(applied.failed.map { "\($0.step.address): \($0.error)" })")
            for type in Self.armTypes { #expect(await world.fake.ids(ofType: type).count == 1, "\(type)") }
            let container = try #require(await store.read(workspace: workspace).resources[ResourceAddress(type: "azure_blob_container", name: "checkpoints")])
            #expect(container.attributes["url"] == "az://stratumnetdata/checkpoints")

            // Refresh reads each type with one list call, and finds nothing to change.
            let before = await world.fake.calls
            let second = try await plan(stack)
            #expect(!second.hasChanges, "\(second.actionable.map { "\($0.address) \($0.action) \($0.changedAttributes)" })")
            let after = await world.fake.calls
            for type in Self.armTypes {
                #expect(after["GET \(type)", default: 0] - before["GET \(type)", default: 0] == 1, "\(type)")
            }
            #expect(after.values.reduce(0, +) - before.values.reduce(0, +) == Self.armTypes.count)

            // A container deleted behind Stratum's back is planned again and recreated.
            await world.fake.deleteOutOfBand(container.id)
            let drift = try await plan(stack)
            #expect(drift.actionable.map(\.address.description) == ["azure_blob_container.checkpoints"])
            #expect(drift.actionable.first?.action == .create)
            #expect(try await apply(drift).ok)
            #expect(await world.fake.ids(ofType: "Microsoft.Storage/storageAccounts/blobServices/containers").count == 1)
            #expect(!(try await plan(stack)).hasChanges)

            let (snapshot, live) = try await refreshed()
            let destroy = Planner(providers: registry).destroyPlan(stackName: Self.stackName, environment: Self.environment, snapshot: snapshot, refreshed: live, now: Date())
            let destroyed = try await apply(destroy)
            #expect(destroyed.ok, "\(destroyed.failed.map { "\($0.step.address): \($0.error)" })")
            #expect(await store.read(workspace: workspace).resources.isEmpty)
            for type in Self.armTypes { #expect(await world.fake.ids(ofType: type).isEmpty, "\(type) left behind") }
        }
    }
}
