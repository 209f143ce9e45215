import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

/// The Azure provider against the loopback ARM fake (`AzureARMFake`), which checks every PUT
/// and PATCH body against the Azure SDK's models.
struct AzureFakeWorld {
    static let subscription = "00000000-0000-4000-8000-000000000001"
    static let region = "eastus2"

    let fake: AzureARMFake
    let server: LoopbackHTTPServer
    let client: AzureClient
    let provider: AzureProvider

    /// `clock` paces operation looks and `Retry-After` waits: a virtual one answers at once; the
    /// system one (with the fake's `Retry-After` set to 0) lets a test cancel a create while it waits.
    static func make(pace: AzureARMFake.OperationPace = .afterPolls(2), clock: StratumClock = VirtualClock().clock) async throws -> AzureFakeWorld {
        let fake = try AzureARMFake(subscription: subscription, pace: pace)
        let server = try await fake.serve()
        let tokens = BearerTokenCache(clock: clock) { BearerToken(value: "arm-fake-token", lifetime: .seconds(3600)) }
        let credentials = AzureCredentials(source: .managedIdentity(clientId: nil), subscription: subscription, tokens: tokens)
        let poller = OperationPoller(timeout: .seconds(60), backoff: Backoff(base: .milliseconds(5), cap: .milliseconds(20)), clock: clock)
        let configuration = AzureClient.Configuration(endpoints: AzureEndpoints(resourceManager: server.url), operationPoller: poller)
        let client = try AzureClient(configuration: configuration, credentials: credentials, transport: AsyncHTTPTransport(), clock: clock)
        return AzureFakeWorld(fake: fake, server: server, client: client, provider: AzureProvider(client: client))
    }

    /// What the fake saw that ARM would refuse: bodies the SDK's models reject, paths it does not serve.
    func problems() async -> [String] { await fake.violations }

    /// Runs `body` on a fresh world, then shuts it down and expects no violations.
    static func run(pace: AzureARMFake.OperationPace = .afterPolls(2), _ body: (AzureFakeWorld) async throws -> Void) async throws {
        let world = try await make(pace: pace)
        do {
            try await body(world)
        } catch {
            await world.server.shutdown()
            throw error
        }
        let problems = await world.problems()
        await world.server.shutdown()
        #expect(problems.isEmpty, "\(problems)")
    }

    /// The ARM id of something in a resource group of the fake's subscription.
    func id(_ group: String, _ resource: String? = nil) -> String { client.resourceGroup(group, resource) }

    /// A resource of `type` made through the provider, with a fresh token.
    @discardableResult
    func create(
        _ type: String, _ name: String, inputs: [String: Value], ownership: Ownership = Ownership(stack: "azure/test", lineage: "lineage-1")
    ) async throws -> ResourceState {
        try await provider.create(
            ResolvedResource(address: ResourceAddress(type: type, name: name), region: Self.region, inputs: inputs, dependencies: [], ownership: ownership),
            token: UUID().uuidString.lowercased())
    }

    /// A resource group named `name`, made through the provider.
    @discardableResult
    func resourceGroup(_ name: String) async throws -> ResourceState {
        try await create("azure_resource_group", name, inputs: ["name": .string(name)])
    }

    /// A resource group with a virtual network (10.0.0.0/16) and a subnet (10.0.0.0/24) in it,
    /// all made through the provider; the subnet's state (its `id` is what a VM or NIC names).
    func subnet(group: String = "rg", network: String = "vnet", subnet: String = "nodes") async throws -> ResourceState {
        try await resourceGroup(group)
        try await create("azure_virtual_network", network, inputs: ["resource_group": .string(group), "name": .string(network), "address_space": ["10.0.0.0/16"]])
        return try await create(
            "azure_subnet", subnet, inputs: ["resource_group": .string(group), "virtual_network": .string(network), "name": .string(subnet), "cidr": "10.0.0.0/24"])
    }
}
