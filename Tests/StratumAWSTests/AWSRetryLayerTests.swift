import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import StratumStacks
import Testing

/// Answers from a list, then with the last answer; counts requests.
final class CannedTransport: HTTPTransport, @unchecked Sendable {
    private let answers: LockedValue<[HTTPResponseData]>
    private let sent = LockedValue(0)

    init(_ answers: [HTTPResponseData]) { self.answers = LockedValue(answers) }

    var count: Int { sent.get() }

    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        sent.update { $0 += 1 }
        return answers.update { $0.count > 1 ? $0.removeFirst() : $0[0] }
    }
}

/// AWS calls are retried once, by the engine's policy, never again inside the client.
@Suite("AWS calls under the engine's retry layer", .timeLimit(.minutes(3)))
struct AWSRetryLayerTests {
    static let throttled = HTTPResponseData(
        status: 503, body: Data("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors></Response>".utf8))
    static let ok = HTTPResponseData(status: 200, body: Data("<DescribeVpcsResponse><vpcSet/></DescribeVpcsResponse>".utf8))

    @Test func throttledCallsAreRetriedByThePolicyOnVirtualTimeAndSlowTheEndpoint() async throws {
        let time = VirtualClock()
        let transport = CannedTransport([Self.throttled, Self.throttled, Self.ok])
        let client = AWSClient(
            configuration: .init(endpointOverride: URL(string: "http://127.0.0.1:1")),
            credentials: StaticCredentials(AWSCredentials(accessKeyId: "AKID", secretAccessKey: "secret")), transport: transport, clock: time.clock)
        let retry = RetryPolicy(maxAttempts: 5, backoff: Backoff(base: .seconds(1), cap: .seconds(8), random: { $0.upperBound }), clock: time.clock)
        let document = try await retry.run { try await client.ec2("DescribeVpcs", region: "us-east-1", idempotent: true) }
        #expect(document.name == "DescribeVpcsResponse")
        #expect(transport.count == 3)
        #expect(time.sleeps == [.seconds(1), .seconds(2)])
        #expect(client.metrics.byAction["DescribeVpcs"] == 3)
        let limiter = await client.rateLimiter(service: "ec2", region: "us-east-1")
        #expect(await limiter.throttleEvents == 2)
        // Another region's endpoint was never slowed.
        #expect(await client.rateLimiter(service: "ec2", region: "eu-west-1").rate == AdaptiveTokenBucket.Settings().maxRate)
    }
}

/// A create whose first attempt made the resource but failed on a follow-up call is retried
/// by the engine, which finds what the attempt made and finishes configuring it.
@Suite("AWS creates retried after a partial attempt", .enabled(if: Moto.available, Moto.skipReason), .timeLimit(.minutes(2)))
struct AWSPartialCreateTests {
    @Test func aThrottledFollowUpCallIsCompletedOnTheAdoptedResource() async throws {
        let world = try await AWSWorld.make(region: "ca-central-1")
        defer { Task { await world.shutdown() } }
        var content = StackContent()
        let network = Network("net", cidr: "10.30.0.0/16", on: .aws(region: world.region, zones: ["\(world.region)a", "\(world.region)b"]))
        network.declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: AWSGPUCluster.name, environment: world.environment)
        // Each subnet is made (tagged in the same call); then making it hand out public
        // addresses is throttled, once per subnet.
        await world.faults.set(throttledActions: ["ModifySubnetAttribute": 2])
        let subnetsBefore = await world.faults.forwarded["CreateSubnet", default: 0]
        let result = try await world.apply(try await world.plan(stack))
        #expect(result.ok, "\(result.failed.map { "\($0.step.address): \($0.error)" })")
        #expect(await world.faults.injected["throttle", default: 0] == 2)
        // No second subnet was made: each retry found the first attempt's subnet.
        #expect(await world.faults.forwarded["CreateSubnet", default: 0] == subnetsBefore + 2)
        let lineage = try await world.lineage
        let subnets = try await world.tagged("DescribeSubnets", items: "subnetSet", lineage: lineage)
        #expect(subnets.count == 2)
        #expect(subnets.allSatisfy { $0.string("mapPublicIpOnLaunch") == "true" }, "\(subnets.map { $0.string("mapPublicIpOnLaunch") ?? "?" })")
        #expect(!(try await world.plan(stack)).hasChanges)
        #expect(try await world.apply(try await world.destroyPlan()).ok)
    }
}
