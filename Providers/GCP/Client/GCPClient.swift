import Crypto
import Foundation
import Logging
import StratumCloud
import StratumCore

/// Sends Google Cloud JSON REST calls with a bearer token: Compute Engine v1, the Cloud
/// Storage JSON API v1 (and its uploads), IAM v1 and Secret Manager v1 (`API`), each at its own
/// base in `GCPEndpoints`.
///
/// Calls are paced per API, project and call class (reads, writes, operation reads) by adaptive
/// rate limits that throttling answers slow down. Credentials that name a quota project (an
/// `authorized_user` file with `quota_project_id`) send it as `x-goog-user-project`, so the
/// calls are billed and counted against that project, as Google's client libraries do. Every
/// mutating Compute call carries a `requestId`, so Compute answers a repeat with the first
/// call's operation instead of acting twice. A failed call is classified and handed back, never
/// repeated here: the engine's `RetryPolicy` is the one retry layer.
public struct GCPClient: Sendable {
    public struct Configuration: Sendable {
        public var endpoints: GCPEndpoints
        public var timeout: Duration
        public var rateLimit: AdaptiveTokenBucket.Settings
        /// How long waiting on one operation may last, and the pace of the looks.
        public var operationPoller: OperationPoller

        public init(
            endpoints: GCPEndpoints = GCPEndpoints(), timeout: Duration = .seconds(30), rateLimit: AdaptiveTokenBucket.Settings = .init(),
            operationPoller: OperationPoller = OperationPoller()
        ) {
            self.endpoints = endpoints
            self.timeout = timeout
            self.rateLimit = rateLimit
            self.operationPoller = operationPoller
        }
    }

    /// The REST APIs the client calls.
    public enum API: String, Sendable {
        case compute, storage, upload, iam, secretManager = "secretmanager"
    }

    /// Which of Compute's per-project API rate quotas a call counts against.
    public enum CallClass: String, Sendable {
        case read, write, operationRead = "operation-read"
    }

    public var configuration: Configuration
    public var credentials: GCPCredentials
    /// The project calls go to.
    public var project: String
    public var transport: any HTTPTransport
    public var clock: StratumClock
    public var logger: Logger
    public let rateLimits: EndpointRateLimits
    /// Counts of calls sent, by action, for benchmarks and tests.
    public let metrics = CallMetrics()

    public init(
        configuration: Configuration, credentials: GCPCredentials, project: String? = nil, transport: any HTTPTransport, clock: StratumClock = .system,
        logger: Logger = Logger(label: "stratum.gcp")
    ) throws {
        guard let project = project ?? credentials.project else {
            throw ProviderError(.permanent, "no GCP project: name one in the stack's placement, set GOOGLE_CLOUD_PROJECT, or use a key that names one")
        }
        self.configuration = configuration
        self.credentials = credentials
        self.project = project
        self.transport = transport
        self.clock = clock
        self.logger = logger
        var poller = configuration.operationPoller
        poller.clock = clock
        self.configuration.operationPoller = poller
        self.rateLimits = EndpointRateLimits(settings: configuration.rateLimit, clock: clock)
    }

    /// The rate-limit key of a call class of an API in a project (default: the client's).
    public func rateLimitKey(_ callClass: CallClass, api: API = .compute, project: String? = nil) -> String {
        "\(api.rawValue)/\(project ?? self.project)/\(callClass.rawValue)"
    }

    /// The base URL of an API.
    public func base(_ api: API) -> URL {
        switch api {
        case .compute: return configuration.endpoints.compute
        case .storage: return configuration.endpoints.storage
        case .upload: return configuration.endpoints.upload
        case .iam: return configuration.endpoints.iam
        case .secretManager: return configuration.endpoints.secretManager
        }
    }

    // MARK: calls

    /// GETs a resource or list under an API's base (`projects/p/zones/z/instances/x` under Compute's).
    public func get(
        _ path: String, query: [(String, String)] = [], api: API = .compute, action: String, address: ResourceAddress? = nil, zone: String? = nil,
        region: String? = nil, callClass: CallClass = .read
    ) async throws -> GCPJSON {
        let response = try await send(
            "GET", path, query: query, body: nil, api: api, action: action, callClass: callClass, address: address, zone: zone, region: region)
        return try document(response, action: action, address: address)
    }

    /// Every page of a list or `aggregatedList`, following `nextPageToken` (sent back as
    /// `pageToken`) until a page has none. `maxPages` bounds a server that never stops.
    public func pages(
        _ path: String, query: [(String, String)] = [], api: API = .compute, action: String, address: ResourceAddress? = nil, zone: String? = nil,
        region: String? = nil, maxPages: Int = 10_000
    ) async throws -> [GCPJSON] {
        var pages: [GCPJSON] = []
        var token: String?
        repeat {
            let page = try await get(
                path, query: query + (token.map { [("pageToken", $0)] } ?? []), api: api, action: action, address: address, zone: zone, region: region)
            pages.append(page)
            token = page["nextPageToken"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        } while token != nil && pages.count < maxPages
        if token != nil {
            throw ProviderError(.transient, "GCP \(action) still had more pages after \(maxPages)", address: address)
        }
        return pages
    }

    /// Like `get`, but a resource that does not exist is nil instead of an error.
    public func getIfExists(
        _ path: String, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> GCPJSON? {
        let response = try await send(
            "GET", path, query: [], body: nil, api: .compute, action: action, callClass: .read, address: address, zone: zone, region: region, accepting: [404])
        if response.status == 404 { return nil }
        return try document(response, action: action, address: address)
    }

    /// A mutating call (`POST`, `PATCH`, `PUT`, `DELETE`) with `requestId`, answered by an operation.
    public func mutate(
        _ method: String, _ path: String, query: [(String, String)] = [], body: GCPJSON? = nil, requestId: String, action: String,
        address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> GCPOperation {
        let response = try await send(
            method, path, query: query + [("requestId", Self.requestId(for: requestId))], body: body, api: .compute, action: action, callClass: .write,
            address: address, zone: zone, region: region)
        let json = try document(response, action: action, address: address)
        guard let operation = GCPOperation(json: json) else {
            throw ProviderError(.transient, "GCP \(action) answered something that is not an operation", address: address)
        }
        return operation
    }

    /// Looks at an operation once.
    public func operation(_ reference: GCPOperationReference, address: ResourceAddress? = nil) async throws -> GCPOperation {
        let (zone, region) = Self.location(of: reference)
        let json = try await get(
            reference.path(project: project), action: "operations.get", address: address, zone: zone, region: region, callClass: .operationRead)
        guard let operation = GCPOperation(json: json) else {
            throw ProviderError(.transient, "GCP operations.get for \(reference) answered something that is not an operation", address: address)
        }
        return operation
    }

    /// Waits until the operation is `DONE`, on the configured poller; a failed operation's
    /// `error.errors[]` is classified like a failed call's.
    @discardableResult
    public func wait(for reference: GCPOperationReference, action: String, address: ResourceAddress? = nil) async throws -> GCPOperation {
        let finished = try await configuration.operationPoller.wait(for: "GCP \(action) (operation \(reference))", address: address) {
            let operation = try await self.operation(reference, address: address)
            return operation.isDone ? .done(operation) : .running
        }
        if let error = finished.error {
            let (zone, region) = Self.location(of: reference)
            throw GCPErrorClassifier.providerError(error, action: action, address: address, zone: zone, region: region)
        }
        return finished
    }

    static func location(of reference: GCPOperationReference) -> (zone: String?, region: String?) {
        switch reference.scope {
        case .zone(let zone): return (zone, GCPErrorClassifier.regionOf(zone: zone))
        case .region(let region): return (nil, region)
        case .global: return (nil, nil)
        }
    }

    /// Compute wants a UUID as `requestId`. A token that is one is sent as it is; any other is
    /// turned into one by hashing, so every retry of an operation sends the same id.
    public static func requestId(for token: String) -> String {
        if let uuid = UUID(uuidString: token) { return uuid.uuidString.lowercased() }
        var bytes = Array(SHA256.hash(data: Data(token.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80  // version 8: a custom, name-derived UUID (RFC 9562)
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // the RFC variant
        let uuid = UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
        return uuid.uuidString.lowercased()
    }

    /// A Cloud Storage JSON API call (`b/bucket`, `b/bucket/o/object`) in `project` (for its
    /// rate limits; default the client's). Storage has no operations and no `requestId`: a
    /// call's answer is the resource, or empty (a delete's 204). Statuses in `accepting` (say
    /// 404 or 409) are handed back instead of thrown, for the caller to decide.
    public func storage(
        _ method: String, _ path: String, query: [(String, String)] = [], body: GCPJSON? = nil, action: String, project: String? = nil,
        address: ResourceAddress? = nil, accepting: Set<Int> = []
    ) async throws -> (status: Int, json: GCPJSON?) {
        try await plain(method, path, query: query, body: body.map(Payload.json), api: .storage, action: action, project: project, address: address, accepting: accepting)
    }

    /// Stores `data` as an object of `bucket` with one multipart upload (`uploadType=multipart`):
    /// `metadata` (the object resource: `name`, `contentType`, custom `metadata`) and the bytes
    /// in one request, so an object never exists without its metadata. `query` adds
    /// preconditions (`ifGenerationMatch=0`: only if there is none). The answer is the object.
    public func upload(
        _ data: Data, metadata: GCPJSON, bucket: String, query: [(String, String)] = [], action: String, project: String? = nil,
        address: ResourceAddress? = nil, accepting: Set<Int> = []
    ) async throws -> (status: Int, json: GCPJSON?) {
        let boundary = "stratum-" + UUID().uuidString.lowercased()
        var body = Data("--\(boundary)\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".utf8)
        body += metadata.data
        body += Data("\r\n--\(boundary)\r\nContent-Type: \(metadata["contentType"]?.string ?? "application/octet-stream")\r\n\r\n".utf8)
        body += data
        body += Data("\r\n--\(boundary)--\r\n".utf8)
        return try await plain(
            "POST", "b/\(GCPBucketKind.segment(bucket))/o", query: [("uploadType", "multipart")] + query,
            body: .raw(body, contentType: "multipart/related; boundary=\(boundary)"), api: .upload, action: action, project: project, address: address,
            accepting: accepting)
    }

    /// A call to an API without operations, under its root: IAM (`v1/projects/p/serviceAccounts`)
    /// or Secret Manager (`v1/projects/p/secrets`); like `storage`, the answer is the resource,
    /// or empty.
    public func call(
        _ api: API, _ method: String, _ path: String, query: [(String, String)] = [], body: GCPJSON? = nil, action: String, project: String? = nil,
        address: ResourceAddress? = nil, accepting: Set<Int> = []
    ) async throws -> (status: Int, json: GCPJSON?) {
        try await plain(method, path, query: query, body: body.map(Payload.json), api: api, action: action, project: project, address: address, accepting: accepting)
    }

    /// A call to an API without operations: the status and the JSON answer, if any.
    func plain(
        _ method: String, _ path: String, query: [(String, String)] = [], body: Payload?, api: API, action: String, project: String?,
        address: ResourceAddress?, accepting: Set<Int>
    ) async throws -> (status: Int, json: GCPJSON?) {
        let response = try await send(
            method, path, query: query, payload: body, api: api, project: project, action: action, callClass: method == "GET" ? .read : .write,
            address: address, zone: nil, region: nil, accepting: accepting)
        if response.body.isEmpty || !(200..<300).contains(response.status) { return (response.status, GCPJSON.parse(response.body)) }
        return (response.status, try document(response, action: action, address: address))
    }

    /// A request body: JSON, or bytes of a content type (a media upload).
    enum Payload {
        case json(GCPJSON)
        case raw(Data, contentType: String)

        var data: Data {
            switch self {
            case .json(let json): return json.data
            case .raw(let data, _): return data
            }
        }

        var contentType: String {
            switch self {
            case .json: return "application/json"
            case .raw(_, let contentType): return contentType
            }
        }
    }

    // MARK: sending

    func send(
        _ method: String, _ path: String, query: [(String, String)], body: GCPJSON?, api: API, project: String? = nil, action: String,
        callClass: CallClass, address: ResourceAddress?, zone: String?, region: String?, accepting: Set<Int> = []
    ) async throws -> HTTPResponseData {
        try await send(
            method, path, query: query, payload: body.map(Payload.json), api: api, project: project, action: action, callClass: callClass, address: address,
            zone: zone, region: region, accepting: accepting)
    }

    func send(
        _ method: String, _ path: String, query: [(String, String)], payload: Payload?, api: API, project: String? = nil, action: String,
        callClass: CallClass, address: ResourceAddress?, zone: String?, region: String?, accepting: Set<Int> = []
    ) async throws -> HTTPResponseData {
        let url = try url(path, query: query, api: api)
        return try await rateLimits.paced(rateLimitKey(callClass, api: api, project: project)) {
            metrics.record(action)
            var headers: [(String, String)] = []
            if let quotaProject = credentials.quotaProject { headers.append(("x-goog-user-project", quotaProject)) }
            if let payload { headers.append(("Content-Type", payload.contentType)) }
            let response = try await credentials.tokens.send(
                method, url, headers: headers, body: payload?.data ?? Data(), over: transport, timeout: configuration.timeout, label: "GCP", action: action,
                address: address, logger: logger)
            guard (200..<300).contains(response.status) || accepting.contains(response.status) else {
                let error = GCPServiceError.parse(status: response.status, body: response.body)
                logger.debug("gcp call failed", metadata: ["action": "\(action)", "status": "\(response.status)", "error": "\(error)"])
                throw GCPErrorClassifier.providerError(error, action: action, address: address, zone: zone, region: region)
            }
            logger.trace("gcp call", metadata: ["action": "\(action)", "status": "\(response.status)"])
            return response
        }
    }

    func url(_ path: String, query: [(String, String)], api: API = .compute) throws -> URL {
        guard var components = URLComponents(url: base(api), resolvingAgainstBaseURL: false) else {
            throw ProviderError(.permanent, "the \(api.rawValue) endpoint \(base(api)) is not a URL")
        }
        components.percentEncodedPath = components.percentEncodedPath + "/" + path
        if !query.isEmpty {
            components.percentEncodedQuery = FormEncoding.encode(query)
        }
        guard let url = components.url else { throw ProviderError(.permanent, "cannot form a \(api.rawValue) URL for \(path)") }
        return url
    }

    func document(_ response: HTTPResponseData, action: String, address: ResourceAddress?) throws -> GCPJSON {
        guard let json = GCPJSON.parse(response.body) else {
            throw ProviderError(.transient, "GCP \(action) answered something that is not JSON", address: address)
        }
        return json
    }
}

extension GCPClient {
    /// The client for this process: endpoints from the environment (`GCPEndpoints.fromEnvironment`),
    /// Application Default Credentials, and `project` if given, else the one they name.
    public static func standard(
        environment: [String: String] = ProcessInfo.processInfo.environment, project: String? = nil, transport: any HTTPTransport,
        clock: StratumClock = .system, logger: Logger = Logger(label: "stratum.gcp")
    ) async throws -> GCPClient {
        let endpoints = GCPEndpoints.fromEnvironment(environment)
        let fetcher = GCPTokenFetcher(endpoints: endpoints, transport: transport, clock: clock)
        let credentials = try await GCPCredentials.resolve(environment: environment, project: project, fetcher: fetcher)
        return try GCPClient(configuration: Configuration(endpoints: endpoints), credentials: credentials, transport: transport, clock: clock, logger: logger)
    }
}
