// GCP instances against the loopback Compute fake (every request checked against Google's
// discovery document):
//
// 1. Refresh of N instances (default 1,000): one label-filtered, paginated
//    `instances.aggregatedList` per project (what the provider does) versus one GET per
//    instance at a parallelism of 10; prints calls and wall time for each.
// 2. Apply through the planner and executor of a network, a subnetwork, a 16-node gang (one
//    bulkInsert) and 16 single instances, with a share of calls (default 30 %) answered 429;
//    prints failed resources, duplicated instances, calls and calls/s.
//
//   swift run -c release stratum-gcp-bench [--instances 1000] [--gang 16] [--singles 16]
//       [--throttle-share 0.3] [--rate 50] [--latency-ms 0]
import ArgumentParser
import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumEngine
import StratumGCP
import StratumState
import StratumTesting

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stratum-gcp-bench", abstract: "GCP instances on the loopback Compute fake: batched refresh, then a throttled apply.")

    @Option(help: "How many instances to refresh.")
    var instances: Int = 1000

    @Option(help: "Instances in the gang of the apply.")
    var gang: Int = 16

    @Option(help: "Single instances in the apply.")
    var singles: Int = 16

    @Option(help: "The share of calls the fake answers 429.")
    var throttleShare: Double = 0.3

    @Option(help: "The rate limit, calls a second.")
    var rate: Double = 50.0

    @Option(help: "Latency added to every call, in milliseconds.")
    var latencyMs: Int = 0
}

let options = Options.parseOrExit()
let project = "stratum-bench"
let region = "us-central1"
let zones: [Value] = ["us-central1-a", "us-central1-b", "us-central1-c"]
let clock = ContinuousClock()

func provider(_ server: LoopbackHTTPServer, rate: AdaptiveTokenBucket.Settings) throws -> GCPProvider {
    let tokens = BearerTokenCache(clock: .system) { BearerToken(value: "ya29.bench-token", lifetime: .seconds(3600)) }
    let credentials = GCPCredentials(source: .metadataServer, project: project, tokens: tokens)
    let poller = OperationPoller(timeout: .seconds(120), backoff: Backoff(base: .milliseconds(20), cap: .milliseconds(200)))
    let configuration = GCPClient.Configuration(endpoints: GCPEndpoints(compute: server.url.appendingPathComponent("compute/v1")), rateLimit: rate, operationPoller: poller)
    let transport = DelayedTransport(inner: AsyncHTTPTransport(), delay: .milliseconds(options.latencyMs))
    return GCPProvider(client: try GCPClient(configuration: configuration, credentials: credentials, transport: transport))
}

func resource(_ type: String, _ name: String, _ inputs: [String: Value], lineage: String) -> ResolvedResource {
    ResolvedResource(address: ResourceAddress(type: type, name: name), region: region, inputs: inputs, dependencies: [], ownership: Ownership(stack: "bench/refresh", lineage: lineage))
}

// MARK: refresh

func refresh() async throws {
    let fake = try GCPComputeFake(project: project, pace: .afterPolls(0))
    let server = try await fake.serve()
    let gcp = try provider(server, rate: .init(maxRate: 100_000, capacity: 100_000))
    let lineage = "bench-\(UUID().uuidString.lowercased().prefix(8))"
    _ = try await gcp.create(resource("gcp_network", "vpc", ["name": "vpc"], lineage: lineage), token: UUID().uuidString)
    let subnet = try await gcp.create(resource("gcp_subnetwork", "nodes", ["name": "nodes", "network": "vpc", "cidr": "10.0.0.0/16"], lineage: lineage), token: UUID().uuidString)
    // Seeded in gangs of at most 500, then recorded as single instances of one stack.
    var names: [(String, String)] = []
    var seeded = 0
    while seeded < options.instances {
        let count = min(500, options.instances - seeded)
        let gang = try await gcp.create(
            resource("gcp_instance_gang", "seed\(seeded)", [
                "name_prefix": .string("seed\(seeded)"), "count": .int(count), "machine_type": "e2-standard-4", "zones": .list(zones),
                "subnetwork": subnet.attributes["self_link"] ?? "nodes",
            ], lineage: lineage), token: UUID().uuidString)
        for member in gang.attributes["instances"]?.listValue ?? [] {
            if let fields = member.mapValue, let name = fields["name"]?.stringValue, let zone = fields["zone"]?.stringValue { names.append((name, zone)) }
        }
        seeded += count
    }
    func states(owned: Bool) -> [ResourceState] {
        names.enumerated().map { i, entry in
            var attributes: [String: Value] = ["name": .string(entry.0), "machine_type": "e2-standard-4"]
            if owned { attributes["stratum_lineage"] = .string(lineage) }
            return ResourceState(
                address: ResourceAddress(type: "gcp_instance", name: "node", index: i), provider: "gcp", region: region,
                id: "projects/\(project)/zones/\(entry.1)/instances/\(entry.0)", attributes: attributes)
        }
    }

    gcp.client.metrics.reset()
    var start = clock.now
    let batched = try await gcp.read(type: "gcp_instance", resources: states(owned: true))
    let batchedSeconds = (clock.now - start).seconds
    let batchedCalls = gcp.client.metrics.total

    gcp.client.metrics.reset()
    start = clock.now
    let all = states(owned: true)
    var found = 0
    try await withThrowingTaskGroup(of: Int.self) { group in
        var next = 0
        func add() {
            let state = all[next]
            next += 1
            group.addTask { try await gcp.client.getIfExists(state.id, action: "instances.get") == nil ? 0 : 1 }
        }
        for _ in 0..<min(10, all.count) { add() }
        while let one = try await group.next() {
            found += one
            if next < all.count { add() }
        }
    }
    let perSeconds = (clock.now - start).seconds
    let perCalls = gcp.client.metrics.total
    print("refresh of \(names.count) instances (+\(options.latencyMs) ms per call):")
    print(String(format: "  batched (label filter, paginated aggregatedList): %5d API calls  %8.3f s  (%d found)", batchedCalls, batchedSeconds, batched.compactMap { $0 }.count))
    print(String(format: "  one GET per instance (parallelism 10):            %5d API calls  %8.3f s  (%d found)", perCalls, perSeconds, found))
    let violations = await fake.violations
    print("  requests the discovery document rejects: \(violations.count)")
    await server.shutdown()
}

// MARK: apply under throttling

func applyUnderThrottling() async throws {
    let fake = try GCPComputeFake(project: project, pace: .afterPolls(2))
    await fake.set(throttleShare: options.throttleShare)
    let server = try await fake.serve()
    let rate = options.rate
    let gcp = try provider(server, rate: .init(maxRate: rate, capacity: rate, increase: rate / 20))
    var content = StackContent()
    let network = ResourceAddress(type: "gcp_network", name: "vpc")
    let subnet = ResourceAddress(type: "gcp_subnetwork", name: "nodes")
    content.resources.append(DesiredResource(address: network, provider: "gcp", region: region, inputs: ["name": "vpc"]))
    content.resources.append(DesiredResource(
        address: subnet, provider: "gcp", region: region,
        inputs: ["name": "nodes", "network": .reference(AttributeReference(address: network, attribute: "name")), "cidr": "10.0.0.0/16"]))
    let subnetLink = Value.reference(AttributeReference(address: subnet, attribute: "self_link"))
    content.resources.append(DesiredResource(
        address: ResourceAddress(type: "gcp_instance_gang", name: "trainers"), provider: "gcp", region: region,
        inputs: ["count": .int(options.gang), "machine_type": "a3-highgpu-8g", "zones": .list(zones), "subnetwork": subnetLink, "command": ["train"]]))
    for i in 0..<options.singles {
        content.resources.append(DesiredResource(
            address: ResourceAddress(type: "gcp_instance", name: "worker", index: i), provider: "gcp", region: region,
            inputs: [
                "machine_type": "g2-standard-8", "zones": .list(zones), "subnetwork": subnetLink, "spot": true, "command": ["serve"], "pool": "worker",
                "index": .int(i), "count": .int(options.singles),
            ]))
    }
    let stack = try StackEvaluator.evaluate(content, name: "bench", environment: "throttled")
    let registry = ProviderRegistry([gcp])
    let store = InMemoryStateStore()
    let workspace = "bench/throttled"
    let snapshot = await store.read(workspace: workspace)
    let plan = try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: nil, now: Date())
    gcp.client.metrics.reset()
    let start = clock.now
    let result = try await Executor(providers: registry, store: store, workspace: workspace, parallelism: 32).apply(plan)
    let seconds = (clock.now - start).seconds

    let instances = await fake.paths(of: "instances")
    var perAddress: [String: Int] = [:]
    for path in instances {
        let address = await fake.resource(path)?.mapValue?["labels"]?.mapValue?["stratum-address"]?.stringValue ?? path
        let name = String(path.split(separator: "/").last ?? "")
        // A gang's members share its address; each member's name is its own.
        perAddress[address.hasPrefix("gcp_instance_gang") ? name : address, default: 0] += 1
    }
    let duplicates = perAddress.values.reduce(0) { $0 + max(0, $1 - 1) }
    let calls = gcp.client.metrics.total
    let throttled = await fake.injected["throttled", default: 0]
    let violations = await fake.violations
    print("apply of a \(options.gang)-node gang and \(options.singles) single instances (+ network, subnetwork), \(Int(options.throttleShare * 100)) % of calls throttled, rate limit \(Int(rate)) calls/s, parallelism 32:")
    print(String(format: "  %.1f s; failed %d, skipped %d; instances %d (expected %d), duplicated %d", seconds, result.failed.count, result.skipped.count,
                 instances.count, options.gang + options.singles, duplicates))
    print(String(format: "  API calls %d (%d throttled): %.1f calls/s; requests the discovery document rejects: %d", calls, throttled, Double(calls) / seconds, violations.count))
    for failure in result.failed { print("  failed: \(failure.step) \(failure.error)") }
    await server.shutdown()
}

try await refresh()
try await applyUnderThrottling()
