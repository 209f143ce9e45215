import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import StratumStacks
import StratumState
import StratumTesting
import Testing

/// The moto server the AWS tests run against: CI starts it and sets the variable.
enum Moto {
    static let endpoint: URL? = ProcessInfo.processInfo.environment["STRATUM_TEST_S3_ENDPOINT"].flatMap { $0.isEmpty ? nil : URL(string: $0) }
    static let available = endpoint != nil
    static let skipReason: Comment =
        "STRATUM_TEST_S3_ENDPOINT is unset: start `moto_server -H 127.0.0.1 -p 5055` and export STRATUM_TEST_S3_ENDPOINT=http://127.0.0.1:5055 to run the AWS tests"
}

/// One test's AWS: moto behind a fault proxy (faults off until a test turns them on), a
/// provider talking to the proxy on virtual time, a client talking to moto directly for
/// out-of-band changes and checks, and an in-memory state store.
struct AWSWorld {
    let region: String
    let faults: AWSFaults
    let proxy: FaultProxy
    let provider: AWSProvider
    let direct: AWSClient
    let store = InMemoryStateStore()
    let environment: String
    var workspace: String { "\(AWSGPUCluster.name)/\(environment)" }
    var registry: ProviderRegistry { ProviderRegistry([provider]) }
    let bucketName: String
    /// The engine's retries, on the provider's virtual clock. A throttled call fails the whole
    /// provider step (clients do not retry), so fault-injecting tests get room for many.
    var retry: RetryPolicy { RetryPolicy(maxAttempts: 20, clock: provider.client.clock) }

    static let transport = AsyncHTTPTransport()

    static func make(region: String, accessKey: String = "AKIDSTRATUMTEST", secret: String = "stratum-test-secret") async throws -> AWSWorld {
        let moto = try #require(Moto.endpoint)
        let faults = AWSFaults()
        let proxy = try await faults.proxy { request in
            guard let url = URL(string: moto.absoluteString + request.uri) else { throw CancellationError() }
            let headers = request.headers.filter { !["host", "content-length", "connection", "transfer-encoding"].contains($0.0.lowercased()) }
            let response = try await transport.send(HTTPRequestData(method: request.method, url: url, headers: headers, body: request.body), timeout: .seconds(60))
            // What S3 says of an object in its headers (user metadata, ETag) goes through too.
            let kept = response.headers.filter { let name = $0.0.lowercased(); return name == "content-type" || name == "etag" || name.hasPrefix("x-amz-meta-") }
            return ProxyResponse(status: response.status, headers: kept, body: response.body)
        }
        let clock = VirtualClock().clock
        let keys = StaticCredentials(AWSCredentials(accessKeyId: accessKey, secretAccessKey: secret, source: "test"))
        let provider = AWSProvider(client: AWSClient(
            configuration: .init(endpointOverride: proxy.url, rateLimit: .init(maxRate: 200, capacity: 50)), credentials: keys, transport: transport, clock: clock))
        let direct = AWSClient(configuration: .init(endpointOverride: moto), credentials: keys, transport: transport, clock: clock)
        let suffix = UUID().uuidString.lowercased().prefix(8)
        return AWSWorld(
            region: region, faults: faults, proxy: proxy, provider: provider, direct: direct, environment: "test-\(suffix)",
            bucketName: "stratum-test-\(suffix)")
    }

    func config(workers: Int = 2, placementGroup: Bool = true, instanceType: String = "p5.48xlarge") -> AWSGPUCluster.Config {
        var config = AWSGPUCluster.Config()
        config.region = region
        config.zones = ["\(region)a", "\(region)b"]
        config.workers = workers
        config.placementGroup = placementGroup
        config.instanceType = instanceType
        config.bucketName = bucketName
        return config
    }

    func stack(_ config: AWSGPUCluster.Config) throws -> EvaluatedStack {
        let stack = try StackEvaluator.evaluate(AWSGPUCluster().body(config: config), name: AWSGPUCluster.name, environment: environment)
        try Planner(providers: registry).validate(stack)
        return stack
    }

    func refresh() async throws -> RefreshResult {
        try await Refresher(providers: registry, retry: retry).refresh(await store.read(workspace: workspace).resources)
    }

    func plan(_ stack: EvaluatedStack) async throws -> Plan {
        let snapshot = await store.read(workspace: workspace)
        let refreshed = try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources)
        return try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, now: Date())
    }

    func destroyPlan() async throws -> Plan {
        let snapshot = await store.read(workspace: workspace)
        let refreshed = try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources)
        return Planner(providers: registry).destroyPlan(stackName: AWSGPUCluster.name, environment: environment, snapshot: snapshot, refreshed: refreshed, now: Date())
    }

    @discardableResult
    func apply(_ plan: Plan, parallelism: Int = 10) async throws -> ApplyResult {
        try await Executor(providers: registry, store: store, workspace: workspace, parallelism: parallelism, retry: retry).apply(plan)
    }

    var lineage: String {
        get async throws { await store.read(workspace: workspace).lineage }
    }

    /// Live resources of `action` carrying this world's lineage tag, asked of moto directly
    /// (`DescribePlacementGroups` goes through the proxy, which plays them).
    func tagged(_ action: String, items path: String, lineage: String, viaProxy: Bool = false) async throws -> [XMLTree] {
        var client = direct
        if viaProxy { client.configuration.endpointOverride = proxy.url }
        let document = try await client.ec2(action, [("Filter.1.Name", "tag:stratum:lineage"), ("Filter.1.Value.1", lineage)], region: region, idempotent: true)
        if action == "DescribeInstances" {
            return document.items("reservationSet").flatMap { $0.items("instancesSet") }.filter {
                !["terminated", "shutting-down"].contains($0.string("instanceState/name") ?? "")
            }
        }
        return document.items(path)
    }

    /// Every live, tagged resource of the world, by kind.
    func inventory() async throws -> [String: Int] {
        let lineage = try await lineage
        var counts: [String: Int] = [:]
        counts["instance"] = try await tagged("DescribeInstances", items: "", lineage: lineage).count
        counts["vpc"] = try await tagged("DescribeVpcs", items: "vpcSet", lineage: lineage).count
        counts["subnet"] = try await tagged("DescribeSubnets", items: "subnetSet", lineage: lineage).count
        counts["internet_gateway"] = try await tagged("DescribeInternetGateways", items: "internetGatewaySet", lineage: lineage).count
        counts["route_table"] = try await tagged("DescribeRouteTables", items: "routeTableSet", lineage: lineage).count
        counts["security_group"] = try await tagged("DescribeSecurityGroups", items: "securityGroupInfo", lineage: lineage).count
        counts["placement_group"] = try await tagged("DescribePlacementGroups", items: "placementGroupSet", lineage: lineage, viaProxy: true).count
        let buckets = try await direct.s3("GET", bucket: nil, region: region, action: "ListBuckets")
        counts["bucket"] = String(decoding: buckets.body, as: UTF8.self).contains("<Name>\(bucketName)</Name>") ? 1 : 0
        return counts
    }

    func shutdown() async { await proxy.shutdown() }
}
