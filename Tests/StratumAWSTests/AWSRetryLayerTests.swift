import Foundation
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
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
@Suite("AWS calls under the engine's retry layer", .timeLimit(.minutes(1)))
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
