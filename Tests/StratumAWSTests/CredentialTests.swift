import Foundation
import Logging
import StratumAWS
import StratumCloud
import StratumCore
import StratumTesting
import Testing

@Suite("AWS credentials")
struct CredentialTests {
    @Test func environmentWins() async throws {
        let chain = AWSCredentialChain(environment: ["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_SESSION_TOKEN": "tok", "HOME": "/nonexistent"])
        let keys = try await chain.credentials()
        #expect(keys.accessKeyId == "AKIAENV")
        #expect(keys.sessionToken == "tok")
        #expect(keys.source == "environment")
    }

    @Test func sharedCredentialsFileWithProfile() async throws {
        let dir = try TestSupport.temporaryDirectory("aws-creds")
        let file = dir.appendingPathComponent("credentials")
        try """
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key = default-secret

            # the team profile
            [team]
            aws_access_key_id=AKIATEAM
            aws_secret_access_key = team-secret
            aws_session_token = team-token
            """.write(to: file, atomically: true, encoding: .utf8)
        let base = ["AWS_SHARED_CREDENTIALS_FILE": file.path, "AWS_CONFIG_FILE": dir.appendingPathComponent("none").path, "HOME": dir.path]
        let plain = try await AWSCredentialChain(environment: base).credentials()
        #expect(plain.accessKeyId == "AKIADEFAULT")
        var withProfile = base
        withProfile["AWS_PROFILE"] = "team"
        let team = try await AWSCredentialChain(environment: withProfile).credentials()
        #expect(team.accessKeyId == "AKIATEAM")
        #expect(team.sessionToken == "team-token")
        #expect(team.source.contains("profile team"))
    }

    @Test func configFileProfileAndRegion() async throws {
        let dir = try TestSupport.temporaryDirectory("aws-config")
        let config = dir.appendingPathComponent("config")
        try """
            [profile ci]
            region = eu-west-3
            aws_access_key_id = AKIACONFIG
            aws_secret_access_key = config-secret
            """.write(to: config, atomically: true, encoding: .utf8)
        let env = ["AWS_CONFIG_FILE": config.path, "AWS_SHARED_CREDENTIALS_FILE": dir.appendingPathComponent("none").path, "AWS_PROFILE": "ci", "HOME": dir.path]
        #expect(try await AWSCredentialChain(environment: env).credentials().accessKeyId == "AKIACONFIG")
        #expect(AWSCredentialChain.defaultRegion(env) == "eu-west-3")
    }

    @Test func unknownProfileIsAClearError() async throws {
        let dir = try TestSupport.temporaryDirectory("aws-none")
        let env = ["AWS_PROFILE": "missing", "HOME": dir.path]
        let error = await #expect(throws: AWSCredentialsError.self) { try await AWSCredentialChain(environment: env).credentials() }
        #expect(error?.description.contains("'missing'") == true)
    }

    @Test func nothingConfiguredSaysWhatToDo() async throws {
        let dir = try TestSupport.temporaryDirectory("aws-none")
        let error = await #expect(throws: AWSCredentialsError.self) { try await AWSCredentialChain(environment: ["HOME": dir.path]).credentials() }
        #expect(error?.description.contains("AWS_ACCESS_KEY_ID") == true)
    }

    @Test func instanceMetadataV2() async throws {
        let requests = Recorder()
        let imds = try await LoopbackHTTPServer.start { request in
            await requests.add("\(request.method) \(request.uri)")
            if request.method == "PUT", request.uri == "/latest/api/token" {
                guard request.header("x-aws-ec2-metadata-token-ttl-seconds") != nil else { return ProxyResponse(status: 400) }
                return ProxyResponse(status: 200, body: Data("imds-session".utf8))
            }
            // IMDSv2 refuses requests without the session token.
            guard request.header("x-aws-ec2-metadata-token") == "imds-session" else { return ProxyResponse(status: 401) }
            if request.uri == "/latest/meta-data/iam/security-credentials/" { return ProxyResponse(status: 200, body: Data("gpu-node-role\n".utf8)) }
            if request.uri == "/latest/meta-data/iam/security-credentials/gpu-node-role" {
                return ProxyResponse(status: 200, body: Data(#"{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token","Expiration":"2099-01-01T00:00:00Z"}"#.utf8))
            }
            return ProxyResponse(status: 404)
        }
        defer { Task { await imds.shutdown() } }
        let dir = try TestSupport.temporaryDirectory("aws-imds")
        // A generous timeout: on a loaded 2-core CI machine the first loopback connection can take over a second.
        let chain = AWSCredentialChain.standard(
            environment: ["HOME": dir.path, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url.absoluteString, "AWS_METADATA_SERVICE_TIMEOUT": "15"],
            transport: AsyncHTTPTransport())
        let keys = try await chain.credentials()
        #expect(keys.accessKeyId == "ASIAIMDS")
        #expect(keys.sessionToken == "imds-token")
        #expect(keys.source.contains("gpu-node-role"))
        #expect(await requests.all.first == "PUT /latest/api/token")
        // Cached until near expiry: no second round trip.
        _ = try await chain.credentials()
        #expect(await requests.all.count == 3)
    }

    @Test func noMetadataServiceMeansNoCredentials() async throws {
        let dir = try TestSupport.temporaryDirectory("aws-imds-off")
        // Nothing listens on this port.
        let imds = InstanceMetadataCredentials(endpoint: URL(string: "http://127.0.0.1:9")!, transport: AsyncHTTPTransport(), timeout: .milliseconds(200))
        #expect(try await imds.fetch() == nil)
        await #expect(throws: AWSCredentialsError.self) { try await AWSCredentialChain(environment: ["HOME": dir.path], imds: imds).credentials() }
    }

    @Test func secretsNeverShowInDescriptionsErrorsOrLogs() async throws {
        let secret = "SECRET-wJalrXUtnFEMI-K7MDENG"
        let token = "SESSION-TOKEN-abcdef"
        let keys = AWSCredentials(accessKeyId: "AKIAREDACTME1234", secretAccessKey: secret, sessionToken: token, source: "test")
        #expect(!"\(keys)".contains(secret) && !"\(keys)".contains(token) && !"\(keys)".contains("AKIAREDACTME"))
        #expect(String(reflecting: keys).contains("1234"))

        let logs = LogCapture()
        var logger = Logger(label: "test") { _ in logs }
        logger.logLevel = .trace
        let transport = ScriptedTransport { _ in
            HTTPResponseData(status: 403, body: Data("<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error></ErrorResponse>".utf8))
        }
        let client = AWSClient(configuration: .init(endpointOverride: URL(string: "http://127.0.0.1:1")), credentials: StaticCredentials(keys), transport: transport, clock: VirtualClock().clock, logger: logger)
        let error = await #expect(throws: ProviderError.self) { try await client.ec2("DescribeVpcs", region: "us-east-1", idempotent: true) }
        #expect(error?.kind == .auth)
        let text = "\(String(describing: error)) \(logs.text)"
        #expect(!text.contains(secret))
        #expect(!text.contains(token))
        #expect(!logs.text.isEmpty)
        // The request's trace names its headers with their secret values masked.
        #expect(logs.text.contains("X-Amz-Security-Token: \(Redaction.mask)"))
        #expect(logs.text.contains("Authorization: \(Redaction.mask)"))
        // The request carried them (signed), so the redaction is not vacuous.
        #expect(transport.lastRequest?.headers.contains { $0.1 == token } == true)
    }
}

actor Recorder {
    var all: [String] = []
    func add(_ line: String) { all.append(line) }
}

/// A transport answering from a closure, remembering the last request.
final class ScriptedTransport: HTTPTransport, @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [HTTPRequestData] = []
    let answer: @Sendable (HTTPRequestData) throws -> HTTPResponseData

    init(_ answer: @escaping @Sendable (HTTPRequestData) throws -> HTTPResponseData) {
        self.answer = answer
    }

    var lastRequest: HTTPRequestData? { lock.withLock { requests.last } }
    var count: Int { lock.withLock { requests.count } }

    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        lock.withLock { requests.append(request) }
        return try answer(request)
    }
}

/// Collects log lines with their metadata.
final class LogCapture: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    var text: String { lock.withLock { lines.joined(separator: "\n") } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
        lock.withLock { lines.append("\(event.level) \(event.message) \(all)") }
    }
}
