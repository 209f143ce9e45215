import Foundation
import Logging
import StratumCloud
import StratumCore

/// Sends Azure Resource Manager calls: JSON over HTTPS with a bearer token and the
/// api-version pinned for the resource type (`AzureAPIVersions`).
///
/// Calls are paced per subscription by two adaptive rate limits, reads and writes (ARM's
/// throttling counts them apart), that throttling answers slow down. Lists follow `nextLink`.
/// A PUT, PATCH, DELETE or POST hands back the long-running operation it started, if any
/// (`AzureOperation`), for the caller to journal and `wait` on; waits honour `Retry-After`.
/// Only URLs on the Resource Manager endpoint's host are ever sent the token (a `nextLink` or
/// operation URL elsewhere is refused). A call refused as throttled (429: ARM did not act on
/// it) is sent again after its `Retry-After`, up to `throttleRepeats` times, since one create
/// is a handful of calls and one refusal should not cost it an engine attempt; any other
/// failure is classified (`AzureErrorClassifier`) and handed back: the engine's `RetryPolicy`
/// retries what is worth retrying.
public struct AzureClient: Sendable {
    public struct Configuration: Sendable {
        public var endpoints: AzureEndpoints
        public var timeout: Duration
        /// Reads per subscription: ARM refills 25 a second into a bucket of 250.
        public var readRateLimit: AdaptiveTokenBucket.Settings
        /// Writes (PUT, PATCH, DELETE, POST) per subscription: 10 a second into a bucket of 200.
        public var writeRateLimit: AdaptiveTokenBucket.Settings
        /// How long waiting on one operation may last, and the pace of the looks when Azure
        /// names none.
        public var operationPoller: OperationPoller
        public var apiVersions: AzureAPIVersions
        /// How many times a call refused as throttled is sent again before the refusal is
        /// handed to the engine.
        public var throttleRepeats: Int

        public init(
            endpoints: AzureEndpoints = AzureEndpoints(), timeout: Duration = .seconds(30),
            readRateLimit: AdaptiveTokenBucket.Settings = .init(maxRate: 25, capacity: 250),
            writeRateLimit: AdaptiveTokenBucket.Settings = .init(maxRate: 10, capacity: 200), operationPoller: OperationPoller = OperationPoller(),
            apiVersions: AzureAPIVersions = AzureAPIVersions(), throttleRepeats: Int = 4
        ) {
            self.throttleRepeats = max(0, throttleRepeats)
            self.endpoints = endpoints
            self.timeout = timeout
            self.readRateLimit = readRateLimit
            self.writeRateLimit = writeRateLimit
            self.operationPoller = operationPoller
            self.apiVersions = apiVersions
        }
    }

    /// Which of ARM's per-subscription limits a call counts against.
    public enum CallClass: String, Sendable {
        case read, write
    }

    /// What a mutating call answered: its body, and the operation it started, if any.
    public struct Answer: Sendable {
        public var status: Int
        public var json: CloudJSON?
        /// Set when the change goes on after the answer; journal its `handle`, then `wait`.
        public var operation: AzureOperation?
        /// How long Azure asked to wait before the first look.
        public var retryAfter: Duration?
    }

    public var configuration: Configuration
    public var credentials: AzureCredentials
    /// The subscription calls go to.
    public var subscription: String
    public var transport: any HTTPTransport
    public var clock: StratumClock
    public var logger: Logger
    let readLimits: EndpointRateLimits
    let writeLimits: EndpointRateLimits
    /// Counts of calls sent, by action, for benchmarks and tests.
    public let metrics = CallMetrics()

    public init(
        configuration: Configuration, credentials: AzureCredentials, subscription: String? = nil, transport: any HTTPTransport,
        clock: StratumClock = .system, logger: Logger = Logger(label: "stratum.azure")
    ) throws {
        guard let subscription = subscription ?? credentials.subscription else {
            throw ProviderError(.permanent, "no Azure subscription: name one in the stack's placement or set AZURE_SUBSCRIPTION_ID")
        }
        self.configuration = configuration
        self.credentials = credentials
        self.subscription = subscription
        self.transport = transport
        self.clock = clock
        self.logger = logger
        self.configuration.operationPoller.clock = clock
        readLimits = EndpointRateLimits(settings: configuration.readRateLimit, clock: clock)
        writeLimits = EndpointRateLimits(settings: configuration.writeRateLimit, clock: clock)
    }

    /// The rate limits of a call class; each subscription has its own bucket in them.
    public func rateLimits(_ callClass: CallClass) -> EndpointRateLimits {
        callClass == .read ? readLimits : writeLimits
    }

    /// The ARM id of something in a resource group of the client's subscription:
    /// `resourceGroup("rg", "Microsoft.Network/virtualNetworks/v")`; without `resource`, the group.
    public func resourceGroup(_ group: String, _ resource: String? = nil) -> String {
        "/subscriptions/\(subscription)/resourceGroups/\(group)" + (resource.map { "/providers/\($0)" } ?? "")
    }

    // MARK: calls

    /// GETs a resource (or a page of a list) by its ARM id.
    public func get(
        _ path: String, query: [(String, String)] = [], action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> CloudJSON {
        let response = try await send(
            "GET", try url(path, query: query), body: nil, action: action, callClass: .read, address: address, zone: zone, region: region)
        return try document(response, action: action, address: address)
    }

    /// Like `get`, but a resource that does not exist is nil instead of an error.
    public func getIfExists(
        _ path: String, query: [(String, String)] = [], action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> CloudJSON? {
        let response = try await send(
            "GET", try url(path, query: query), body: nil, action: action, callClass: .read, address: address, zone: zone, region: region,
            accepting: [404])
        return response.status == 404 ? nil : try document(response, action: action, address: address)
    }

    /// Every item (`value[]`) of a list, following `nextLink` until a page has none.
    /// `maxPages` bounds a server that never stops.
    public func list(
        _ path: String, query: [(String, String)] = [], action: String, address: ResourceAddress? = nil, maxPages: Int = 10_000
    ) async throws -> [CloudJSON] {
        var items: [CloudJSON] = []
        var next: URL? = try url(path, query: query)
        var pages = 0
        while let page = next, pages < maxPages {
            let response = try await send("GET", page, body: nil, action: action, callClass: .read, address: address, zone: nil, region: nil)
            let json = try document(response, action: action, address: address)
            items += json["value"]?.array ?? []
            pages += 1
            next = json["nextLink"]?.string.flatMap { $0.isEmpty ? nil : URL(string: $0, relativeTo: page)?.absoluteURL }
        }
        if next != nil { throw ProviderError(.transient, "Azure \(action) still had more pages after \(maxPages)", address: address) }
        return items
    }

    /// A PUT (create or replace) of the resource at `path`.
    public func put(
        _ path: String, body: CloudJSON, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> Answer {
        try await change("PUT", path, body: body, action: action, address: address, zone: zone, region: region)
    }

    /// A PATCH (update of some fields) of the resource at `path`.
    public func patch(
        _ path: String, body: CloudJSON, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> Answer {
        try await change("PATCH", path, body: body, action: action, address: address, zone: zone, region: region)
    }

    /// A DELETE of the resource at `path`. One already gone answers 204 (or 404): no operation.
    public func delete(_ path: String, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil) async throws -> Answer {
        try await change("DELETE", path, body: nil, action: action, address: address, zone: zone, region: region, accepting: [404])
    }

    /// A POST of an action on a resource (`…/virtualMachines/vm/deallocate`).
    public func post(
        _ path: String, body: CloudJSON? = nil, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil
    ) async throws -> Answer {
        try await change("POST", path, body: body, action: action, address: address, zone: zone, region: region)
    }

    func change(
        _ method: String, _ path: String, body: CloudJSON?, action: String, address: ResourceAddress?, zone: String?, region: String?,
        accepting: Set<Int> = []
    ) async throws -> Answer {
        let target = try url(path, query: [])
        let response = try await send(
            method, target, body: body, action: action, callClass: .write, address: address, zone: zone, region: region, accepting: accepting)
        return Answer(
            status: response.status, json: CloudJSON.parse(response.body),
            operation: AzureOperation.started(method: method, requestURL: target, response: response), retryAfter: retryAfter(response))
    }

    /// The answer's result: its body, or, when it started an operation, what `wait` gives.
    public func finish(_ answer: Answer, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil) async throws
        -> CloudJSON?
    {
        guard let operation = answer.operation else { return answer.json }
        return try await wait(for: operation, action: action, address: address, zone: zone, region: region, firstLookAfter: answer.retryAfter)
    }

    // MARK: long-running operations

    /// A look's verdict that ends the wait: the operation itself failed.
    struct OperationFailed: Error {
        var error: ProviderError
    }

    /// Waits until `operation` ends, on the configured poller, each next look when Azure's
    /// `Retry-After` says (else the poller's backoff). Its result: the resource (PUT, PATCH),
    /// the POST's result, nil for a DELETE. A failed operation's `error` is classified like a
    /// failed call's. `operation` may come from a handle journaled by another process.
    @discardableResult
    public func wait(
        for operation: AzureOperation, action: String, address: ResourceAddress? = nil, zone: String? = nil, region: String? = nil,
        firstLookAfter: Duration? = nil
    ) async throws -> CloudJSON? {
        if let firstLookAfter { try await clock.sleep(firstLookAfter) }
        let final: CloudJSON?
        do {
            final = try await configuration.operationPoller.wait(for: "Azure \(action) (\(operation))", address: address) {
                try await look(at: operation, action: action, address: address, zone: zone, region: region)
            }
        } catch let failed as OperationFailed {
            throw failed.error
        }
        guard operation.style != .provisioningState, let result = operation.resultURL else { return final }
        let response = try await send("GET", result, body: nil, action: action, callClass: .read, address: address, zone: zone, region: region)
        return CloudJSON.parse(response.body)
    }

    /// Looks at an operation once.
    func look(at operation: AzureOperation, action: String, address: ResourceAddress?, zone: String?, region: String?) async throws
        -> OperationProgress<CloudJSON?>
    {
        // Every status comes back here: what one means depends on the style.
        let response = try await send(
            "GET", operation.url, body: nil, action: "\(action) (operation)", callClass: .read, address: address, zone: zone, region: region,
            accepting: Set(300..<600))
        let json = CloudJSON.parse(response.body)
        let running: OperationProgress<CloudJSON?> = retryAfter(response).map { .runningRetryAfter($0) } ?? .running
        func failure(_ error: AzureServiceError) -> OperationFailed {
            OperationFailed(
                error: AzureErrorClassifier.providerError(
                    error, action: action, address: address, resource: operation.resultURL?.path ?? operation.url.path, zone: zone, region: region))
        }
        if response.status == 429 {
            await rateLimits(.read).limiter(for: rateLimitKey(operation.url)).recordThrottle()
            return running
        }
        if response.status >= 500 && operation.style != .location { return running }
        switch operation.style {
        case .asyncOperation:
            guard response.status < 300, let status = json?["status"]?.string else {
                throw failure(AzureServiceError.parse(status: response.status, body: response.body))
            }
            switch status.lowercased() {
            case "succeeded": return .done(json)
            case "failed", "canceled", "cancelled":
                throw failure(
                    json?["error"].map { AzureServiceError.parse(error: $0, status: nil) }
                        ?? AzureServiceError(status: nil, code: "Operation\(status)", message: "the operation ended \(status)"))
            default: return running
            }
        case .location:
            if response.status == 202 { return running }
            guard response.status < 300 else { throw failure(AzureServiceError.parse(status: response.status, body: response.body)) }
            return .done(json)
        case .provisioningState:
            if operation.method == "DELETE" && response.status == 404 { return .done(nil) }
            guard response.status < 300 else { throw failure(AzureServiceError.parse(status: response.status, body: response.body)) }
            let state = json.flatMap(AzureOperation.provisioningState) ?? "Succeeded"
            switch state.lowercased() {
            case "succeeded": return operation.method == "DELETE" ? running : .done(json)
            case "failed", "canceled", "cancelled":
                throw failure(AzureServiceError(status: nil, code: "Provisioning\(state)", message: "the resource's provisioningState is \(state)"))
            default: return running
            }
        }
    }

    // MARK: sending

    func send(
        _ method: String, _ url: URL, body: CloudJSON?, action: String, callClass: CallClass, address: ResourceAddress?, zone: String?,
        region: String?, accepting: Set<Int> = []
    ) async throws -> HTTPResponseData {
        let arm = configuration.endpoints.resourceManager
        guard url.scheme == arm.scheme, url.host == arm.host, url.port == arm.port else {
            throw ProviderError(
                .permanent, "Azure \(action): \(Redaction.standard.url(url)) is not on the Resource Manager endpoint \(arm); no token is sent there",
                address: address)
        }
        return try await rateLimits(callClass).paced(rateLimitKey(url), repeatingThrottled: configuration.throttleRepeats) {
            metrics.record(action)
            let response = try await credentials.tokens.send(
                method, url, headers: [("Accept", "application/json")] + (body != nil ? [("Content-Type", "application/json")] : []),
                body: body?.data ?? Data(), over: transport, timeout: configuration.timeout, label: "Azure", action: action, address: address, logger: logger)
            guard (200..<300).contains(response.status) || accepting.contains(response.status) else {
                let error = AzureServiceError.parse(status: response.status, body: response.body, retryAfter: retryAfter(response))
                logger.debug("azure call failed", metadata: ["action": "\(action)", "status": "\(response.status)", "error": "\(error)"])
                throw AzureErrorClassifier.providerError(error, action: action, address: address, resource: url.path, zone: zone, region: region)
            }
            logger.trace("azure call", metadata: ["action": "\(action)", "status": "\(response.status)"])
            return response
        }
    }

    /// The rate-limit key of a call: `arm/{subscription}` of the subscription in its path (the
    /// client's when the path names none).
    public func rateLimitKey(_ url: URL) -> String {
        let parts = url.path.split(separator: "/")
        let named = parts.firstIndex { $0.lowercased() == "subscriptions" }.flatMap { $0 + 1 < parts.count ? String(parts[$0 + 1]) : nil }
        return "arm/\(named ?? subscription)"
    }

    /// `path` (an ARM id) on the Resource Manager endpoint with its pinned api-version.
    func url(_ path: String, query: [(String, String)]) throws -> URL {
        guard var components = URLComponents(url: configuration.endpoints.resourceManager, resolvingAgainstBaseURL: false) else {
            throw ProviderError(.permanent, "the Resource Manager endpoint \(configuration.endpoints.resourceManager) is not a URL")
        }
        let version = try configuration.apiVersions.version(forPath: path)
        components.percentEncodedPath = components.percentEncodedPath + (path.hasPrefix("/") ? path : "/" + path)
        components.percentEncodedQuery = FormEncoding.encode([("api-version", version)] + query)
        guard let url = components.url else { throw ProviderError(.permanent, "cannot form a Resource Manager URL for \(path)") }
        return url
    }

    func document(_ response: HTTPResponseData, action: String, address: ResourceAddress?) throws -> CloudJSON {
        guard let json = CloudJSON.parse(response.body) else {
            throw ProviderError(.transient, "Azure \(action) answered something that is not JSON", address: address)
        }
        return json
    }

    /// How long the answer asks to wait: `retry-after-ms` / `x-ms-retry-after-ms`, else
    /// `Retry-After` in seconds or as an HTTP date.
    func retryAfter(_ response: HTTPResponseData) -> Duration? {
        for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let text = response.header(name), let milliseconds = Double(text.trimmingCharacters(in: .whitespaces)), milliseconds >= 0 {
                return .milliseconds(Int64(milliseconds))
            }
        }
        guard let text = response.header("Retry-After")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Double(text), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: text) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSince(clock.date())) * 1000))
    }
}

extension AzureClient {
    /// The client for this process: endpoints from the environment
    /// (`AzureEndpoints.fromEnvironment`), credentials as `AzureCredentials.resolve` finds them,
    /// and `subscription` if given, else `AZURE_SUBSCRIPTION_ID`.
    public static func standard(
        environment: [String: String] = ProcessInfo.processInfo.environment, subscription: String? = nil, transport: any HTTPTransport,
        clock: StratumClock = .system, logger: Logger = Logger(label: "stratum.azure")
    ) throws -> AzureClient {
        let endpoints = AzureEndpoints.fromEnvironment(environment)
        let fetcher = AzureTokenFetcher(endpoints: endpoints, transport: transport, clock: clock)
        let credentials = try AzureCredentials.resolve(environment: environment, subscription: subscription, fetcher: fetcher)
        return try AzureClient(
            configuration: Configuration(endpoints: endpoints), credentials: credentials, subscription: subscription, transport: transport, clock: clock,
            logger: logger)
    }
}
