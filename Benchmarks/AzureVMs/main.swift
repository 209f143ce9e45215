// Azure virtual machines against the loopback ARM fake (every request body checked against
// the Azure SDK's models):
//
// 1. Refresh of N VMs (default 1,000) in one resource group: the provider's paginated lists
//    of the group's VMs and NICs versus one GET per VM at a parallelism of 10; prints calls
//    and wall time for each.
// 2. Apply through the planner and executor of a 16-node gang (16 `azure_virtual_machine`s
//    sharing a proximity placement group), with a share of calls (default 30 %) answered 429;
//    prints failed resources, duplicated VMs, calls and calls/s.
//
//   swift run -c release stratum-azure-bench [--vms 1000] [--gang 16] [--throttle-share 0.3]
//       [--rate 50] [--latency-ms 0]
import ArgumentParser
import Foundation
import Stratum
import StratumAzure
import StratumCloud
import StratumCore
import StratumEngine
import StratumState
import StratumTesting

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stratum-azure-bench", abstract: "Azure VMs on the loopback ARM fake: batched refresh, then a throttled apply of a gang.")

    @Option(help: "How many VMs to refresh.")
    var vms: Int = 1000

    @Option(help: "VMs in the gang of the apply.")
    var gang: Int = 16

    @Option(help: "The share of calls the fake answers 429.")
    var throttleShare: Double = 0.3

    @Option(help: "The rate limit, calls a second.")
    var rate: Double = 50.0

    @Option(help: "Latency added to every call, in milliseconds.")
    var latencyMs: Int = 0
}

let options = Options.parseOrExit()
let region = "eastus"
let group = "stratum-bench"
let zones: [Value] = ["1", "2", "3"]
let clock = ContinuousClock()
let subscription = "00000000-0000-4000-8000-00000000be0c"

func provider(_ server: LoopbackHTTPServer, subscription: String, rate: AdaptiveTokenBucket.Settings) throws -> AzureProvider {
    let tokens = BearerTokenCache(clock: .system) { BearerToken(value: "bench-token", lifetime: .seconds(3600)) }
    let credentials = AzureCredentials(source: .managedIdentity(clientId: nil), subscription: subscription, tokens: tokens)
    let poller = OperationPoller(timeout: .seconds(120), backoff: Backoff(base: .milliseconds(20), cap: .milliseconds(200)))
    let configuration = AzureClient.Configuration(
        endpoints: AzureEndpoints(resourceManager: server.url), readRateLimit: rate, writeRateLimit: rate, operationPoller: poller)
    let transport = DelayedTransport(inner: AsyncHTTPTransport(), delay: .milliseconds(options.latencyMs))
    return AzureProvider(client: try AzureClient(configuration: configuration, credentials: credentials, transport: transport))
}

func put(_ client: AzureClient, _ path: String, _ body: CloudJSON) async throws {
    let answer = try await client.put(path, body: body, action: "seed")
    _ = try await client.finish(answer, action: "seed")
}

/// The resource group, network, subnet and proximity placement group the VMs use; the subnet's id.
func network(_ client: AzureClient) async throws -> (subnet: String, placement: String) {
    try await put(client, client.resourceGroup(group), ["location": .string(region)])
    try await put(
        client, client.resourceGroup(group, "Microsoft.Network/virtualNetworks/net"),
        ["location": .string(region), "properties": ["addressSpace": ["addressPrefixes": ["10.0.0.0/16"]]]])
    let subnet = client.resourceGroup(group, "Microsoft.Network/virtualNetworks/net/subnets/nodes")
    try await put(client, subnet, ["properties": ["addressPrefix": "10.0.0.0/16"]])
    let placement = client.resourceGroup(group, "Microsoft.Compute/proximityPlacementGroups/gang")
    try await put(client, placement, ["location": .string(region), "properties": ["proximityPlacementGroupType": "Standard"]])
    return (subnet, placement)
}

// MARK: refresh

func refresh() async throws {
    let fake = try AzureARMFake(subscription: subscription, pace: .afterPolls(0))
    // Operations finish at once: no Retry-After wait before the first look.
    await fake.set(retryAfter: 0)
    let server = try await fake.serve()
    let azure = try provider(server, subscription: subscription, rate: .init(maxRate: 100_000, capacity: 100_000))
    let client = azure.client
    let (subnet, _) = try await network(client)
    // Seeded straight through the client (a NIC and a VM each, 10 at a time), then recorded
    // as states of one stack.
    let ids: [String] = (0..<options.vms).map { client.resourceGroup(group, "Microsoft.Compute/virtualMachines/node-\($0)") }
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        var next = 0
        func add() {
            let i = next
            next += 1
            tasks.addTask {
                let nic = client.resourceGroup(group, "Microsoft.Network/networkInterfaces/node-\(i)-nic")
                try await put(client, nic, [
                    "location": .string(region),
                    "properties": ["ipConfigurations": [["name": "ipconfig1", "properties": ["subnet": ["id": .string(subnet)], "privateIPAllocationMethod": "Dynamic"]]]],
                ])
                try await put(client, ids[i], [
                    "location": .string(region), "zones": [.string("\(i % 3 + 1)")], "tags": ["stratum-stack": "bench/refresh"],
                    "properties": [
                        "hardwareProfile": ["vmSize": "Standard_D4s_v5"],
                        "storageProfile": ["imageReference": ["publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"]],
                        "osProfile": [
                            "computerName": .string("node-\(i)"), "adminUsername": "stratum",
                            "linuxConfiguration": [
                                "disablePasswordAuthentication": true,
                                "ssh": ["publicKeys": [["path": "/home/stratum/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 bench"]]],
                            ],
                        ],
                        "networkProfile": ["networkInterfaces": [["id": .string(nic)]]],
                    ],
                ])
            }
        }
        for _ in 0..<min(10, ids.count) { add() }
        while try await tasks.next() != nil { if next < ids.count { add() } }
    }
    let states = ids.enumerated().map { i, id in
        ResourceState(
            address: ResourceAddress(type: "azure_virtual_machine", name: "node", index: i), provider: "azure", region: region, id: id,
            attributes: ["name": .string("node-\(i)"), "resource_group": .string(group), "size": "Standard_D4s_v5"])
    }

    client.metrics.reset()
    var start = clock.now
    let batched = try await azure.read(type: "azure_virtual_machine", resources: states)
    let batchedSeconds = (clock.now - start).seconds
    let batchedCalls = client.metrics.total

    client.metrics.reset()
    start = clock.now
    var found = 0
    try await withThrowingTaskGroup(of: Int.self) { tasks in
        var next = 0
        func add() {
            let id = ids[next]
            next += 1
            tasks.addTask { try await client.getIfExists(id, action: "virtualMachines.get") == nil ? 0 : 1 }
        }
        for _ in 0..<min(10, ids.count) { add() }
        while let one = try await tasks.next() {
            found += one
            if next < ids.count { add() }
        }
    }
    let perSeconds = (clock.now - start).seconds
    let perCalls = client.metrics.total
    print("refresh of \(ids.count) VMs in one resource group (+\(options.latencyMs) ms per call):")
    print(String(format: "  batched (paginated lists of VMs and NICs): %5d API calls  %8.3f s  (%d found)", batchedCalls, batchedSeconds, batched.compactMap { $0 }.count))
    print(String(format: "  one GET per VM (parallelism 10):           %5d API calls  %8.3f s  (%d found)", perCalls, perSeconds, found))
    let violations = await fake.violations
    print("  requests the SDK models reject: \(violations.count)")
    for violation in violations.prefix(5) { print("    \(violation)") }
    await server.shutdown()
}

// MARK: apply under throttling

func applyUnderThrottling() async throws {
    let fake = try AzureARMFake(subscription: subscription, pace: .afterPolls(2))
    let server = try await fake.serve()
    let rate = options.rate
    let azure = try provider(server, subscription: subscription, rate: .init(maxRate: rate, capacity: rate, increase: rate / 20))
    // Operations take two looks each; Retry-After 0 leaves the pace of looks to the poller.
    await fake.set(retryAfter: 0)
    let (subnet, placement) = try await network(azure.client)
    await fake.set(throttleShare: options.throttleShare)
    var content = StackContent()
    for i in 0..<options.gang {
        content.resources.append(DesiredResource(
            address: ResourceAddress(type: "azure_virtual_machine", name: "trainer", index: i), provider: "azure", region: region,
            inputs: [
                "resource_group": .string(group), "size": "Standard_ND96isr_H100_v5", "zones": .list(zones), "subnet": .string(subnet),
                "proximity_placement_group": .string(placement), "command": ["train"], "pool": "trainer", "index": .int(i), "count": .int(options.gang),
            ]))
    }
    let stack = try StackEvaluator.evaluate(content, name: "bench", environment: "throttled")
    let registry = ProviderRegistry([azure])
    let store = InMemoryStateStore()
    let workspace = "bench/throttled"
    let snapshot = await store.read(workspace: workspace)
    let plan = try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: nil, now: Date())
    azure.client.metrics.reset()
    let start = clock.now
    let result = try await Executor(providers: registry, store: store, workspace: workspace, parallelism: 32).apply(plan)
    let seconds = (clock.now - start).seconds

    let vms = await fake.ids(ofType: "Microsoft.Compute/virtualMachines")
    var perAddress: [String: Int] = [:]
    for id in vms {
        let address = await fake.resource(id)?.mapValue?["tags"]?.mapValue?["stratum-address"]?.stringValue ?? id
        perAddress[address, default: 0] += 1
    }
    let duplicates = perAddress.values.reduce(0) { $0 + max(0, $1 - 1) }
    let nics = await fake.ids(ofType: "Microsoft.Network/networkInterfaces").count
    let calls = azure.client.metrics.total
    let throttled = await fake.injected["throttled", default: 0]
    let violations = await fake.violations
    print("apply of a \(options.gang)-VM gang in a proximity placement group, \(Int(options.throttleShare * 100)) % of calls throttled, rate limit \(Int(rate)) calls/s, parallelism 32:")
    print(String(format: "  %.1f s; failed %d, skipped %d; VMs %d, NICs %d (expected %d), duplicated %d", seconds, result.failed.count, result.skipped.count,
                 vms.count, nics, options.gang, duplicates))
    print(String(format: "  API calls %d (%d throttled): %.1f calls/s; requests the SDK models reject: %d", calls, throttled, Double(calls) / seconds, violations.count))
    for failure in result.failed { print("  failed: \(failure.step) \(failure.error)") }
    for violation in violations.prefix(5) { print("    \(violation)") }
    await server.shutdown()
}

try await refresh()
try await applyUnderThrottling()
