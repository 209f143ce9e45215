import Foundation
import StratumAWS
import StratumCloud
import StratumCore
import Testing

@Suite("AWS errors, retries and rate limiting")
struct RetryAndRateLimitTests {
    static func ec2Error(_ status: Int, _ code: String) -> HTTPResponseData {
        HTTPResponseData(status: status, body: Data("<Response><Errors><Error><Code>\(code)</Code><Message>message for \(code)</Message></Error></Errors><RequestID>r-1</RequestID></Response>".utf8))
    }

    @Test(arguments: [
        (500, "InsufficientInstanceCapacity", ProviderError.Kind.capacity),
        (500, "InsufficientHostCapacity", .capacity),
        (400, "InstanceLimitExceeded", .quota),
        (400, "VcpuLimitExceeded", .quota),
        (400, "MaxSpotInstanceCountExceeded", .quota),
        (503, "RequestLimitExceeded", .throttled),
        (400, "Throttling", .throttled),
        (503, "SlowDown", .throttled),
        (500, "InternalError", .transient),
        (502, "HTTP502", .transient),
        (401, "AuthFailure", .auth),
        (403, "InvalidClientTokenId", .auth),
        (403, "SignatureDoesNotMatch", .auth),
        (403, "UnauthorizedOperation", .auth),
        (400, "InvalidParameterValue", .permanent),
        (400, "InvalidVpcID.NotFound", .notFound),
    ])
    func classification(status: Int, code: String, kind: ProviderError.Kind) {
        #expect(AWSErrorClassifier.kind(of: AWSServiceError(code: code, message: "", status: status)) == kind)
    }

    @Test func permanentErrorsCarryAWSMessageAndAddress() {
        let address = ResourceAddress(type: "aws_instance", name: "worker", index: 3)
        let error = AWSErrorClassifier.providerError(
            AWSServiceError(code: "InvalidParameterValue", message: "Invalid value 'zz9.huge' for InstanceType.", status: 400), action: "RunInstances", address: address)
        #expect(error.kind == .permanent)
        #expect(error.description == "aws_instance.worker[3]: AWS RunInstances failed: InvalidParameterValue: Invalid value 'zz9.huge' for InstanceType.")
    }

    @Test func tokenBucketHalvesOnThrottleAndGrowsBack() async throws {
        let time = VirtualClock()
        let bucket = AdaptiveTokenBucket(settings: .init(maxRate: 10, minRate: 1, capacity: 2, increase: 1, decrease: 0.5, cooldown: 1), clock: time.clock)
        try await bucket.acquire()
        try await bucket.acquire()
        #expect(time.now == 0)
        // Empty: the third call waits a tenth of a second of virtual time.
        try await bucket.acquire()
        #expect(abs(time.now - 0.1) < 0.01)
        await bucket.recordThrottle()
        #expect(await bucket.rate == 5)
        // Throttles within the cooldown are the same signal: no further cut.
        await bucket.recordThrottle()
        #expect(await bucket.rate == 5)
        for _ in 0..<3 {
            time.advance(.seconds(2))
            await bucket.recordThrottle()
        }
        #expect(await bucket.rate == 1)
        #expect(await bucket.cuts == 4)
        let before = time.now
        try await bucket.acquire()
        #expect(time.now - before >= 0.99)
        for _ in 0..<20 { await bucket.recordSuccess() }
        #expect(await bucket.rate == 10)
        #expect(await bucket.throttleEvents == 5)
    }

    func client(_ transport: ScriptedTransport, time: VirtualClock) -> AWSClient {
        AWSClient(
            configuration: .init(endpointOverride: URL(string: "http://127.0.0.1:1")),
            credentials: StaticCredentials(AWSCredentials(accessKeyId: "AKID", secretAccessKey: "secret")), transport: transport, clock: time.clock)
    }

    @Test func aThrottledCallIsHandedBackOnceAndCutsTheRate() async throws {
        let transport = ScriptedTransport { _ in Self.ec2Error(503, "RequestLimitExceeded") }
        let time = VirtualClock()
        let client = client(transport, time: time)
        let error = await #expect(throws: ProviderError.self) { try await client.ec2("RunInstances", region: "us-east-1", idempotent: false) }
        #expect(error?.kind == .throttled)
        // The engine retries; the client sends once and does not wait.
        #expect(transport.count == 1)
        #expect(time.sleeps.isEmpty)
        let bucket = await client.rateLimiter(service: "ec2", region: "us-east-1")
        #expect(await bucket.throttleEvents == 1)
        #expect(await bucket.rate == AdaptiveTokenBucket.Settings().maxRate * AdaptiveTokenBucket.Settings().decrease)
        #expect(client.metrics.byAction["RunInstances"] == 1)
    }

    @Test func serverErrorsAreHandedBackWithoutRepeatingTheCall() async throws {
        let transport = ScriptedTransport { _ in Self.ec2Error(500, "InternalError") }
        let client = client(transport, time: VirtualClock())
        let create = await #expect(throws: ProviderError.self) { try await client.ec2("CreateVpc", region: "us-east-1", idempotent: false) }
        #expect(create?.kind == .transient)
        #expect(transport.count == 1)
        await #expect(throws: ProviderError.self) { try await client.ec2("DescribeVpcs", region: "us-east-1", idempotent: true) }
        #expect(transport.count == 2)
    }

    @Test func capacityAndQuotaAreNotRetried() async throws {
        let transport = ScriptedTransport { _ in Self.ec2Error(500, "InsufficientInstanceCapacity") }
        let client = client(transport, time: VirtualClock())
        let error = await #expect(throws: ProviderError.self) { try await client.ec2("RunInstances", region: "us-east-1", idempotent: true) }
        #expect(error?.kind == .capacity)
        #expect(transport.count == 1)
    }

    @Test func endpointOverrideFromEnvironment() {
        let configuration = AWSClient.Configuration.fromEnvironment(["AWS_ENDPOINT_URL": "http://127.0.0.1:5055", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"])
        let client = AWSClient(configuration: configuration, credentials: StaticCredentials(AWSCredentials(accessKeyId: "a", secretAccessKey: "b")), transport: ScriptedTransport { _ in HTTPResponseData(status: 200) })
        #expect(client.endpoint(service: "ec2", region: "us-west-2").absoluteString == "http://127.0.0.1:5055")
        #expect(client.endpoint(service: "s3", region: "us-west-2").absoluteString == "http://127.0.0.1:9000")
        let real = AWSClient(configuration: .init(), credentials: StaticCredentials(AWSCredentials(accessKeyId: "a", secretAccessKey: "b")), transport: ScriptedTransport { _ in HTTPResponseData(status: 200) })
        #expect(real.endpoint(service: "ec2", region: "eu-west-1").absoluteString == "https://ec2.eu-west-1.amazonaws.com")
        #expect(!real.s3PathStyle)
    }

    @Test func xmlTreeReadsEC2Shapes() throws {
        let xml = """
            <DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><vpcSet><item><vpcId>vpc-1</vpcId><tagSet><item><key>a</key><value>b &amp; c</value></item></tagSet></item><item><vpcId>vpc-2</vpcId></item></vpcSet><nextToken>n</nextToken></DescribeVpcsResponse>
            """
        let root = try #require(XMLTree.parse(Data(xml.utf8)))
        #expect(root.items("vpcSet").map { $0.string("vpcId") } == ["vpc-1", "vpc-2"])
        #expect(root.items("vpcSet")[0].items("tagSet")[0].string("value") == "b & c")
        #expect(root.string("nextToken") == "n")
        #expect(XMLTree.parse(Data("not xml <".utf8)) == nil)
        let tagged = try #require(XMLTree.parse(Data("<r><tagSet><item><key>stratum:token</key><value>abc-def</value></item></tagSet></r>".utf8)))
        #expect(tagged.items("tagSet").first?.string("key") == "stratum:token")
    }
}
