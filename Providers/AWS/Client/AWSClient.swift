import Foundation
import Logging
import StratumCore
import StratumCloud

/// Where AWS credentials come from.
public protocol AWSCredentialSource: Sendable {
    func credentials() async throws -> AWSCredentials
}

extension AWSCredentialChain: AWSCredentialSource {}

/// Fixed credentials (tests, or keys handed over by the caller).
public struct StaticCredentials: AWSCredentialSource {
    public var value: AWSCredentials
    public init(_ value: AWSCredentials) { self.value = value }
    public func credentials() async throws -> AWSCredentials { value }
}

/// Signs and sends AWS API calls: the EC2 Query API and S3's REST API.
///
/// Every call passes through a per-(service, region) adaptive rate limit, which throttling
/// answers slow down. A failed call is classified and handed back, never repeated here: the
/// engine's `RetryPolicy` is the one retry layer, and it looks before it repeats a create.
public struct AWSClient: Sendable {
    public struct Configuration: Sendable {
        /// Replaces every AWS endpoint (an emulator such as moto): `AWS_ENDPOINT_URL`.
        public var endpointOverride: URL?
        /// Per-service overrides: `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL_S3`.
        public var serviceEndpoints: [String: URL]
        public var timeout: Duration
        public var rateLimit: AdaptiveTokenBucket.Settings

        public init(
            endpointOverride: URL? = nil, serviceEndpoints: [String: URL] = [:], timeout: Duration = .seconds(30),
            rateLimit: AdaptiveTokenBucket.Settings = .init()
        ) {
            self.endpointOverride = endpointOverride
            self.serviceEndpoints = serviceEndpoints
            self.timeout = timeout
            self.rateLimit = rateLimit
        }

        /// Endpoint overrides from `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`.
        public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Configuration {
            var configuration = Configuration()
            configuration.endpointOverride = environment["AWS_ENDPOINT_URL"].flatMap { $0.isEmpty ? nil : URL(string: $0) }
            for service in ["EC2", "S3", "IAM", "SSM"] {
                if let url = environment["AWS_ENDPOINT_URL_\(service)"].flatMap({ $0.isEmpty ? nil : URL(string: $0) }) {
                    configuration.serviceEndpoints[service.lowercased()] = url
                }
            }
            return configuration
        }
    }

    public var configuration: Configuration
    public var credentials: any AWSCredentialSource
    public var transport: any HTTPTransport
    public var clock: StratumClock
    public var logger: Logger
    /// One adaptive limit per "service/region".
    public let rateLimits: EndpointRateLimits
    /// Counts of calls sent, by action, for benchmarks and tests.
    public let metrics: CallMetrics

    public init(
        configuration: Configuration, credentials: any AWSCredentialSource, transport: any HTTPTransport,
        clock: StratumClock = .system, logger: Logger = Logger(label: "stratum.aws")
    ) {
        self.configuration = configuration
        self.credentials = credentials
        self.transport = transport
        self.clock = clock
        self.logger = logger
        self.rateLimits = EndpointRateLimits(settings: configuration.rateLimit, clock: clock)
        self.metrics = CallMetrics()
    }

    /// The token bucket that paces calls to `service` in `region`.
    public func rateLimiter(service: String, region: String) async -> AdaptiveTokenBucket {
        await rateLimits.limiter(for: "\(service)/\(region)")
    }

    // MARK: endpoints

    public func endpoint(service: String, region: String) -> URL {
        if let url = configuration.serviceEndpoints[service] ?? configuration.endpointOverride { return url }
        // IAM is global: one endpoint, whatever the region.
        if service == "iam" { return URL(string: region.hasPrefix("cn-") ? "https://iam.cn-north-1.amazonaws.com.cn" : "https://iam.amazonaws.com")! }
        let suffix = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
        return URL(string: "https://\(service).\(region).\(suffix)") ?? URL(fileURLWithPath: "/")
    }

    /// Whether S3 is addressed path-style (`endpoint/bucket`): emulators need it.
    public var s3PathStyle: Bool { configuration.serviceEndpoints["s3"] != nil || configuration.endpointOverride != nil }

    // MARK: EC2 Query API

    /// Calls an EC2 action and returns the parsed response document.
    public func ec2(
        _ action: String, _ parameters: [(String, String)] = [], region: String, idempotent: Bool, address: ResourceAddress? = nil
    ) async throws -> XMLTree {
        let body = Data(AWSPercentEncoding.formBody([("Action", action), ("Version", "2016-11-15")] + parameters).utf8)
        let base = endpoint(service: "ec2", region: region)
        let response = try await send(
            service: "ec2", region: region, action: action, method: "POST", url: base, path: base.path.isEmpty ? "/" : base.path, query: [],
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], body: body,
            idempotent: idempotent, address: address)
        guard let document = XMLTree.parse(response.body) else {
            throw ProviderError(.transient, "AWS \(action) returned a response that is not XML", address: address)
        }
        return document
    }

    // MARK: IAM Query API

    /// Calls an IAM action (a global service, signed for us-east-1) and returns the parsed response.
    public func iam(_ action: String, _ parameters: [(String, String)] = [], idempotent: Bool, address: ResourceAddress? = nil) async throws -> XMLTree {
        let body = Data(AWSPercentEncoding.formBody([("Action", action), ("Version", "2010-05-08")] + parameters).utf8)
        let base = endpoint(service: "iam", region: "us-east-1")
        let response = try await send(
            service: "iam", region: "us-east-1", action: action, method: "POST", url: base, path: base.path.isEmpty ? "/" : base.path, query: [],
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], body: body, idempotent: idempotent, address: address)
        guard let document = XMLTree.parse(response.body) else {
            throw ProviderError(.transient, "AWS \(action) returned a response that is not XML", address: address)
        }
        return document
    }

    // MARK: JSON protocol (SSM)

    /// Calls an action of a JSON-protocol service (`ssm`, target `AmazonSSM.PutParameter`) with
    /// `body` (a JSON object); the response's JSON object.
    public func json(
        service: String, target: String, _ body: [String: Any], region: String, idempotent: Bool, address: ResourceAddress? = nil
    ) async throws -> [String: Any] {
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        let base = endpoint(service: service, region: region)
        let action = String(target.split(separator: ".").last ?? Substring(target))
        let response = try await send(
            service: service, region: region, action: action, method: "POST", url: base, path: base.path.isEmpty ? "/" : base.path, query: [],
            headers: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", target)], body: data, idempotent: idempotent, address: address)
        return ((try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]) ?? [:]
    }

    // MARK: S3 REST API

    /// Calls S3; `expect404` returns a 404 response instead of throwing it.
    public func s3(
        _ method: String, bucket: String?, key: String = "", query: [(String, String)] = [], headers: [(String, String)] = [],
        body: Data = Data(), region: String, action: String, idempotent: Bool = true, expect404: Bool = false, address: ResourceAddress? = nil
    ) async throws -> HTTPResponseData {
        let base = endpoint(service: "s3", region: region)
        var path = base.path
        var host = base
        if let bucket {
            if s3PathStyle {
                path += "/\(bucket)"
            } else if let virtual = URL(string: "\(base.scheme ?? "https")://\(bucket).\(base.host ?? "")") {
                host = virtual
            }
        }
        if !key.isEmpty { path += "/" + AWSPercentEncoding.encode(key, keepSlash: true) }
        if path.isEmpty { path = "/" }
        var headers = headers
        headers.append(("x-amz-content-sha256", SigV4Signer.sha256Hex(body)))
        return try await send(
            service: "s3", region: region, action: action, method: method, url: host, path: path, query: query, headers: headers, body: body,
            idempotent: idempotent, address: address, accept404: expect404)
    }

    // MARK: sending

    /// `idempotent` says whether AWS may see the call twice: the engine's retry of a
    /// non-idempotent create looks for what the first attempt left before it calls again.
    func send(
        service: String, region: String, action: String, method: String, url base: URL, path: String, query: [(String, String)],
        headers: [(String, String)], body: Data, idempotent: Bool, address: ResourceAddress?, accept404: Bool = false
    ) async throws -> HTTPResponseData {
        try await rateLimits.paced("\(service)/\(region)") {
            metrics.record(action)
            let response: HTTPResponseData
            do {
                let request = try await signedRequest(
                    service: service, region: region, method: method, base: base, path: path, query: query, headers: headers, body: body)
                logger.trace("aws request", metadata: [
                    "action": "\(action)", "url": "\(Redaction.standard.url(request.url))",
                    "headers": "\(Redaction.standard.headers(request.headers).map { "\($0.0): \($0.1)" }.joined(separator: ", "))",
                ])
                response = try await transport.send(request, timeout: configuration.timeout)
            } catch let error as HTTPConnectionError {
                throw ProviderError(.transient, "AWS \(action): \(error)", address: address)
            } catch let error as AWSCredentialsError {
                throw ProviderError(.auth, error.message, address: address)
            }
            guard (200..<300).contains(response.status) || (accept404 && response.status == 404) else {
                let error = AWSServiceError.parse(status: response.status, body: response.body)
                logger.debug("aws call failed", metadata: ["action": "\(action)", "region": "\(region)", "status": "\(response.status)", "code": "\(error.code)"])
                throw AWSErrorClassifier.providerError(error, action: action, address: address, region: region)
            }
            logger.trace("aws call", metadata: ["action": "\(action)", "region": "\(region)", "status": "\(response.status)"])
            return response
        }
    }

    func signedRequest(
        service: String, region: String, method: String, base: URL, path: String, query: [(String, String)], headers: [(String, String)], body: Data
    ) async throws -> HTTPRequestData {
        let keys = try await credentials.credentials()
        var hostHeader = base.host ?? ""
        if let port = base.port { hostHeader += ":\(port)" }
        var signable = SignableRequest(method: method, path: path, query: query, headers: [("Host", hostHeader)] + headers, body: body)
        SigV4Signer(service: service, region: region).sign(&signable, credentials: keys, date: clock.date())
        var components = URLComponents()
        components.scheme = base.scheme
        components.host = base.host
        components.port = base.port
        components.percentEncodedPath = path
        if !query.isEmpty {
            components.percentEncodedQuery = query.map { "\(AWSPercentEncoding.encode($0.0))=\(AWSPercentEncoding.encode($0.1))" }.joined(separator: "&")
        }
        guard let url = components.url else { throw ProviderError(.permanent, "cannot form a URL for \(base)\(path)") }
        // async-http-client sets Host itself from the URL.
        return HTTPRequestData(method: method, url: url, headers: signable.headers.filter { $0.0 != "Host" }, body: body)
    }
}
