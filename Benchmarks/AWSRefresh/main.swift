// Refresh of N EC2 instances against an AWS endpoint (moto by default): one tag-filtered,
// paginated DescribeInstances per region (what the AWS provider does) versus one Describe
// per instance (what a provider without batched reads does, at Terraform's default
// parallelism of 10). Same run, same instances; prints API calls and wall time for each,
// with the endpoint's own latency and with an added per-call latency.
//
// With --apply-instances N it then applies N instances through the engine behind a fault
// proxy that throttles a share of calls (--throttle-share, default 0.3), and reports failures, duplicates and throughput
// against the configured rate limit.
//
//   swift run -c release stratum-aws-refresh-bench [--instances 1000] [--endpoint URL] [--latency-ms 50]
//       [--apply-instances 1000 --rate 50]
import ArgumentParser
import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import StratumState
import StratumTesting

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stratum-aws-refresh-bench", abstract: "Refresh of N EC2 instances (batched versus one call each), then an optional throttled apply.")

    @Option(help: "How many instances to refresh.")
    var instances: Int = 1000

    @Option(help: "The AWS endpoint (moto by default).")
    var endpoint: String = ProcessInfo.processInfo.environment["STRATUM_TEST_S3_ENDPOINT"] ?? ProcessInfo.processInfo.environment["AWS_ENDPOINT_URL"] ?? "http://127.0.0.1:5055"

    @Option(help: "The region the instances are made in.")
    var region: String = "ca-central-1"

    @Option(help: "Latency added to every call, in milliseconds.")
    var latencyMs: Int = 50

    @Option(help: "Parallel calls of the one-call-per-instance refresh.")
    var parallelism: Int = 10

    @Option(help: "Then apply this many instances through the engine behind a throttling proxy (0: skip).")
    var applyInstances: Int = 0

    @Option(help: "The rate limit of the apply, calls a second.")
    var rate: Double = 50.0

    @Option(help: "The share of calls the proxy answers as throttled.")
    var throttleShare: Double = 0.3
}

let options = Options.parseOrExit()
guard let endpoint = URL(string: options.endpoint) else { fatalError("bad endpoint \(options.endpoint)") }
let base = AsyncHTTPTransport()
let keys = StaticCredentials(AWSCredentials(accessKeyId: "AKIDBENCHMARK", secretAccessKey: "benchmark-secret", source: "benchmark"))
let limits = AdaptiveTokenBucket.Settings(maxRate: 100_000, capacity: 100_000)

func provider(latency: Duration) -> AWSProvider {
    AWSProvider(client: AWSClient(
        configuration: .init(endpointOverride: endpoint, rateLimit: limits), credentials: keys,
        transport: DelayedTransport(inner: base, delay: latency)))
}

let seeder = AWSClient(configuration: .init(endpointOverride: endpoint, rateLimit: limits), credentials: keys, transport: base)
let lineage = "bench-\(UUID().uuidString.lowercased().prefix(8))"
let clock = ContinuousClock()

print("seeding \(options.instances) instances in \(options.region) at \(endpoint.absoluteString) (lineage \(lineage))")
var seeded: [String] = []
while seeded.count < options.instances {
    let batch = min(100, options.instances - seeded.count)
    let response = try await seeder.ec2("RunInstances", [
        ("ImageId", "ami-12c6146b"), ("InstanceType", "p5.48xlarge"), ("MinCount", String(batch)), ("MaxCount", String(batch)),
        ("TagSpecification.1.ResourceType", "instance"),
        ("TagSpecification.1.Tag.1.Key", "stratum:lineage"), ("TagSpecification.1.Tag.1.Value", lineage),
    ], region: options.region, idempotent: false)
    seeded += response.items("instancesSet").compactMap { $0.string("instanceId") }
}
let ids = seeded

func states(owned: Bool) -> [ResourceState] {
    ids.enumerated().map { i, id in
        var attributes: [String: Value] = ["id": .string(id), "instance_type": "p5.48xlarge"]
        if owned { attributes["stratum_lineage"] = .string(lineage) }
        return ResourceState(address: ResourceAddress(type: "aws_instance", name: "bench", index: i), provider: "aws", region: options.region, id: id, attributes: attributes)
    }
}

struct Measurement {
    var calls: Int
    var seconds: Double
    var found: Int
}

func batched(_ provider: AWSProvider) async throws -> Measurement {
    provider.client.metrics.reset()
    let start = clock.now
    let live = try await provider.read(type: "aws_instance", resources: states(owned: true))
    return Measurement(calls: provider.client.metrics.total, seconds: (clock.now - start).seconds, found: live.compactMap { $0 }.count)
}

func perResource(_ provider: AWSProvider) async throws -> Measurement {
    provider.client.metrics.reset()
    let start = clock.now
    // Recorded without ownership, each read filters by its one instance id.
    let all = states(owned: false)
    var found = 0
    try await withThrowingTaskGroup(of: Int.self) { group in
        var next = 0
        for _ in 0..<min(options.parallelism, all.count) {
            let state = all[next]
            next += 1
            group.addTask { try await provider.read(type: "aws_instance", resources: [state]).compactMap { $0 }.count }
        }
        while let done = try await group.next() {
            found += done
            if next < all.count {
                let state = all[next]
                next += 1
                group.addTask { try await provider.read(type: "aws_instance", resources: [state]).compactMap { $0 }.count }
            }
        }
    }
    return Measurement(calls: provider.client.metrics.total, seconds: (clock.now - start).seconds, found: found)
}

func report(_ label: String, _ b: Measurement, _ p: Measurement) {
    print(label)
    print(String(format: "  batched (tag filter, paginated):  %5d API calls  %8.3f s  (%d found)", b.calls, b.seconds, b.found))
    print(String(format: "  one call per resource (par. %2d):  %5d API calls  %8.3f s  (%d found)", options.parallelism, p.calls, p.seconds, p.found))
    print(String(format: "  ratio: %.0fx fewer calls, %.1fx faster", Double(p.calls) / Double(max(b.calls, 1)), p.seconds / max(b.seconds, 1e-9)))
}

let direct = provider(latency: .zero)
_ = try await batched(direct)  // warm the connection pool
report("refresh of \(ids.count) instances, endpoint latency only:", try await batched(direct), try await perResource(direct))
if options.latencyMs > 0 {
    let far = provider(latency: .milliseconds(options.latencyMs))
    report("refresh of \(ids.count) instances, +\(options.latencyMs) ms per call:", try await batched(far), try await perResource(far))
}

for start in stride(from: 0, to: ids.count, by: 100) {
    let chunk = ids[start..<min(start + 100, ids.count)]
    _ = try await seeder.ec2("TerminateInstances", chunk.enumerated().map { ("InstanceId.\($0.offset + 1)", $0.element) }, region: options.region, idempotent: true)
}
print("terminated the \(ids.count) instances")

// MARK: apply under throttling

func applyUnderThrottling(count: Int, rate: Double) async throws {
    let faults = AWSFaults()
    await faults.set(throttleShare: options.throttleShare)
    let proxy = try await faults.proxy { request in
        guard let url = URL(string: endpoint.absoluteString + request.uri) else { throw CancellationError() }
        let headers = request.headers.filter { !["host", "content-length", "connection"].contains($0.0.lowercased()) }
        let response = try await base.send(HTTPRequestData(method: request.method, url: url, headers: headers, body: request.body), timeout: .seconds(120))
        return ProxyResponse(status: response.status, headers: response.headers.filter { $0.0.lowercased() == "content-type" }, body: response.body)
    }
    let provider = AWSProvider(client: AWSClient(
        configuration: .init(endpointOverride: proxy.url, rateLimit: .init(maxRate: rate, capacity: rate, increase: rate / 20)),
        credentials: keys, transport: base))
    let region = options.region
    var content = StackContent()
    let vpc = AWS.VPC("bench", cidr: "10.77.0.0/16", region: region)
    let subnet = AWS.Subnet("bench", vpc: vpc.id, cidr: "10.77.0.0/20", zone: "\(region)a", region: region)
    vpc.declare(into: &content)
    subnet.declare(into: &content)
    AWS.InstanceGroup("node", count: count, AWS.LaunchSpec(ami: "ami-12c6146b", instanceType: "p5.48xlarge", subnets: [subnet.id]), region: region).declare(into: &content)
    let stack = try StackEvaluator.evaluate(content, name: "bench", environment: "throttled")
    let registry = ProviderRegistry([provider])
    let store = InMemoryStateStore()
    let workspace = "bench/throttled"
    let snapshot = await store.read(workspace: workspace)
    let plan = try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: nil, now: Date())
    let start = clock.now
    let result = try await Executor(providers: registry, store: store, workspace: workspace, parallelism: 32).apply(plan)
    let seconds = (clock.now - start).seconds

    var instances: [XMLTree] = []
    var next: String?
    repeat {
        var parameters = [("Filter.1.Name", "tag:stratum:lineage"), ("Filter.1.Value.1", snapshot.lineage), ("MaxResults", "1000")]
        if let next { parameters.append(("NextToken", next)) }
        let page = try await seeder.ec2("DescribeInstances", parameters, region: region, idempotent: true)
        instances += page.items("reservationSet").flatMap { $0.items("instancesSet") }.filter { $0.string("instanceState/name") == "running" }
        next = page.string("nextToken").flatMap { $0.isEmpty ? nil : $0 }
    } while next != nil
    let addresses = instances.compactMap { $0.items("tagSet").first { $0.string("key") == "stratum:address" }?.string("value") }
    let calls = provider.client.metrics.total
    let throttled = await faults.injected["throttle", default: 0]
    let bucket = await provider.client.rateLimiter(service: "ec2", region: region)
    print("apply of \(count) instances (+ VPC, subnet) with \(Int(options.throttleShare * 100)) % of calls throttled, rate limit \(Int(rate)) calls/s, parallelism 32:")
    print(String(format: "  %.1f s; failed %d, skipped %d; instances %d, distinct addresses %d, duplicates %d",
                 seconds, result.failed.count, result.skipped.count, instances.count, Set(addresses).count, instances.count - Set(addresses).count))
    print(String(format: "  API calls %d (%d throttled): %.1f calls/s = %.0f %% of the limit; %.1f creates/s; rate cut %d times, now %.1f/s",
                 calls, throttled, Double(calls) / seconds, 100 * Double(calls) / seconds / rate, Double(count + 2) / seconds, await bucket.cuts, await bucket.rate))
    let ids = instances.compactMap { $0.string("instanceId") }
    for start in stride(from: 0, to: ids.count, by: 100) {
        let chunk = ids[start..<min(start + 100, ids.count)]
        _ = try await seeder.ec2("TerminateInstances", chunk.enumerated().map { ("InstanceId.\($0.offset + 1)", $0.element) }, region: region, idempotent: true)
    }
    await proxy.shutdown()
}

if options.applyInstances > 0 {
    try await applyUnderThrottling(count: options.applyInstances, rate: options.rate)
}
