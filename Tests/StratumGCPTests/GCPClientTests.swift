import Foundation
import Logging
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

/// The Compute client against a loopback server: bearer tokens, requestId, error bodies and
/// operation waits (looks paced on a virtual clock).
@Suite(.timeLimit(.minutes(3))) struct GCPClientTests {
    /// A small Compute stand-in: inserts answer a RUNNING operation that is DONE after
    /// `runningLooks` looks; `failure` (set per operation) ends it with `error.errors[]`.
    final class ComputeStub: Sendable {
        let received = ReceivedRequests()
        let runningLooks: Int
        let looks = LockedValue([String: Int]())
        let operationError: GCPJSON?
        let answer: (@Sendable (ProxyRequest) -> ProxyResponse?)?

        init(runningLooks: Int = 2, operationError: GCPJSON? = nil, answer: (@Sendable (ProxyRequest) -> ProxyResponse?)? = nil) {
            self.runningLooks = runningLooks
            self.operationError = operationError
            self.answer = answer
        }

        func handle(_ request: ProxyRequest) -> ProxyResponse {
            received.append(request)
            if let answer, let response = answer(request) { return response }
            let path = pathOf(request)
            let base = "/compute/v1/projects/test-project/"
            guard path.hasPrefix(base) else { return googleError(404, reason: "notFound", message: "no such path \(path)") }
            let rest = path.dropFirst(base.count).split(separator: "/").map(String.init)
            if request.method == "POST" {
                // zones/{zone}/instances → a zonal operation; regions/…, global/… alike.
                let location = rest.dropLast().joined(separator: "/")
                return jsonResponse(200, operation(location: location, name: "operation-\(queryOf(request)["requestId"] ?? "none")", status: "RUNNING"))
            }
            if let index = rest.firstIndex(of: "operations"), index + 1 < rest.count {
                let name = rest[index + 1]
                let seen = looks.update { counts -> Int in
                    counts[name, default: 0] += 1
                    return counts[name]!
                }
                return jsonResponse(200, operation(location: rest[..<index].joined(separator: "/"), name: name, status: seen > runningLooks ? "DONE" : "RUNNING"))
            }
            return googleError(404, reason: "notFound", message: "The resource '\(path)' was not found")
        }

        func operation(location: String, name: String, status: String) -> GCPJSON {
            let prefix = "https://compute.googleapis.com/compute/v1/projects/test-project"
            var fields: [String: GCPJSON] = [
                "kind": "compute#operation", "name": .string(name), "status": .string(status), "operationType": "insert",
                "targetLink": .string("\(prefix)/zones/us-central1-a/instances/node-0"), "targetId": "1234567890123456789",
                "selfLink": .string("\(prefix)/\(location)/operations/\(name)"),
            ]
            let parts = location.split(separator: "/").map(String.init)
            if parts.first == "zones", parts.count > 1 { fields["zone"] = .string("\(prefix)/zones/\(parts[1])") }
            if parts.first == "regions", parts.count > 1 { fields["region"] = .string("\(prefix)/regions/\(parts[1])") }
            if status == "DONE", let operationError {
                fields["error"] = operationError
                fields["httpErrorStatusCode"] = 503
            }
            return .object(fields)
        }
    }

    struct World {
        let server: LoopbackHTTPServer
        let client: GCPClient
        let clock: VirtualClock
        let tokenFetches: LockedValue<Int>
    }

    static func world(_ stub: ComputeStub, logger: Logger = Logger(label: "stratum.gcp")) async throws -> World {
        let server = try await LoopbackHTTPServer.start { stub.handle($0) }
        let clock = VirtualClock()
        let fetches = LockedValue(0)
        let tokens = BearerTokenCache(clock: clock.clock) {
            let count = fetches.update { value -> Int in
                value += 1
                return value
            }
            return BearerToken(value: "ya29.token-\(count)", lifetime: .seconds(3600))
        }
        let credentials = GCPCredentials(source: .metadataServer, project: "test-project", tokens: tokens)
        let configuration = GCPClient.Configuration(endpoints: GCPEndpoints(compute: server.url.appendingPathComponent("compute/v1")))
        let client = try GCPClient(
            configuration: configuration, credentials: credentials, transport: AsyncHTTPTransport(), clock: clock.clock, logger: logger)
        return World(server: server, client: client, clock: clock, tokenFetches: fetches)
    }

    @Test func mutatingCallCarriesTheRequestIdAndTheWaitLooksUntilDone() async throws {
        let stub = ComputeStub(runningLooks: 2)
        let world = try await Self.world(stub)
        defer { Task { await world.server.shutdown() } }
        let body: GCPJSON = ["name": "node-0", "machineType": "zones/us-central1-a/machineTypes/a3-highgpu-8g"]

        let started = try await world.client.mutate(
            "POST", "projects/test-project/zones/us-central1-a/instances", body: body, requestId: "journal-token-1", action: "instances.insert",
            zone: "us-central1-a")
        #expect(started.reference.scope == .zone("us-central1-a"))
        #expect(!started.isDone)
        let finished = try await world.client.wait(for: started.reference, action: "instances.insert")
        #expect(finished.isDone)
        #expect(finished.targetLink?.hasSuffix("/zones/us-central1-a/instances/node-0") == true)
        #expect(finished.targetId == "1234567890123456789")

        let insert = try #require(stub.received.all.first)
        let requestId = try #require(queryOf(insert)["requestId"])
        #expect(requestId == GCPClient.requestId(for: "journal-token-1"))
        #expect(UUID(uuidString: requestId) != nil)
        #expect(insert.header("Authorization") == "Bearer ya29.token-1")
        #expect(GCPJSON.parse(insert.body) == body)
        // Three looks (RUNNING, RUNNING, DONE) with a paced wait between them, on the virtual clock.
        let looks = stub.received.all.dropFirst().map(pathOf)
        #expect(looks == Array(repeating: "/compute/v1/projects/test-project/zones/us-central1-a/operations/\(started.reference.name)", count: 3))
        #expect(world.clock.sleeps.count == 2)
        #expect(world.tokenFetches.get() == 1)
    }

    @Test func regionalAndGlobalOperationsAreLookedAtWhereTheyLive() async throws {
        let stub = ComputeStub(runningLooks: 0)
        let world = try await Self.world(stub)
        defer { Task { await world.server.shutdown() } }
        let regional = try await world.client.mutate(
            "POST", "projects/test-project/regions/us-central1/subnetworks", body: ["name": "subnet"], requestId: "t-2", action: "subnetworks.insert")
        #expect(regional.reference.scope == .region("us-central1"))
        try await world.client.wait(for: regional.reference, action: "subnetworks.insert")
        let global = try await world.client.mutate(
            "POST", "projects/test-project/global/networks", body: ["name": "net"], requestId: "t-3", action: "networks.insert")
        #expect(global.reference.scope == .global)
        try await world.client.wait(for: global.reference, action: "networks.insert")
        let paths = stub.received.all.map(pathOf)
        #expect(paths.contains("/compute/v1/projects/test-project/regions/us-central1/operations/\(regional.reference.name)"))
        #expect(paths.contains("/compute/v1/projects/test-project/global/operations/\(global.reference.name)"))
    }

    @Test func anOperationThatFailsForCapacityNamesItsZone() async throws {
        let stub = ComputeStub(
            runningLooks: 1,
            operationError: ["errors": [["code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "The zone 'projects/test-project/zones/us-central1-a' does not have enough resources available to fulfill the request."]]])
        let world = try await Self.world(stub)
        defer { Task { await world.server.shutdown() } }
        let address = ResourceAddress(type: "gcp_instance", name: "node", index: 0)
        let started = try await world.client.mutate(
            "POST", "projects/test-project/zones/us-central1-a/instances", body: ["name": "node-0"], requestId: "t-4", action: "instances.insert", address: address)
        let error = await #expect(throws: ProviderError.self) {
            try await world.client.wait(for: started.reference, action: "instances.insert", address: address)
        }
        #expect(error?.kind == .capacity)
        #expect(error?.scope == .zone("us-central1-a"))
        #expect(error?.address == address)
    }

    @Test func aThrottledCallIsHandedBackWithoutARetry() async throws {
        let stub = ComputeStub { _ in googleError(429, reason: "rateLimitExceeded", message: "Rate Limit Exceeded", domain: "usageLimits") }
        let world = try await Self.world(stub)
        defer { Task { await world.server.shutdown() } }
        let error = await #expect(throws: ProviderError.self) {
            _ = try await world.client.mutate(
                "POST", "projects/test-project/zones/us-central1-a/instances", body: ["name": "node-0"], requestId: "t-5", action: "instances.insert")
        }
        #expect(error?.kind == .throttled)
        #expect(stub.received.all.count == 1)
        // The answer slowed the project's write limit, and only that one.
        #expect(await world.client.rateLimits.limiter(for: world.client.rateLimitKey(.write)).throttleEvents == 1)
        #expect(await world.client.rateLimits.limiter(for: world.client.rateLimitKey(.read)).throttleEvents == 0)
    }

    @Test func anUnauthorizedAnswerDropsTheCachedToken() async throws {
        let calls = LockedValue(0)
        let stub = ComputeStub { _ in
            calls.update { $0 += 1 }
            return calls.get() == 1 ? googleError(401, reason: "authError", message: "Invalid Credentials") : nil
        }
        let world = try await Self.world(stub)
        defer { Task { await world.server.shutdown() } }
        let path = "projects/test-project/global/operations/operation-x"
        let error = await #expect(throws: ProviderError.self) { _ = try await world.client.get(path, action: "operations.get") }
        #expect(error?.kind == .auth)
        _ = try await world.client.get(path, action: "operations.get")
        #expect(stub.received.all.last?.header("Authorization") == "Bearer ya29.token-2")
        #expect(world.tokenFetches.get() == 2)
    }

    @Test func aMissingResourceIsNilForGetIfExists() async throws {
        let stub = ComputeStub()
        let world = try await Self.world(stub)
        defer { Task { await world.server.shutdown() } }
        let missing = try await world.client.getIfExists("projects/test-project/zones/us-central1-a/instances/absent", action: "instances.get")
        #expect(missing == nil)
        let error = await #expect(throws: ProviderError.self) {
            _ = try await world.client.get("projects/test-project/zones/us-central1-a/instances/absent", action: "instances.get")
        }
        #expect(error?.kind == .notFound)
    }

    @Test func aClientFromTheEnvironmentSignsInWithTheKeyAndFollowsEveryPage() async throws {
        let account = try TestServiceAccount()
        let received = ReceivedRequests()
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            if pathOf(request) == "/token" {
                guard let jwt = request.formFields["assertion"], account.verifiedClaims(jwt) != nil else {
                    return jsonResponse(400, ["error": "invalid_grant"])
                }
                return jsonResponse(200, ["access_token": "ya29.from-key", "expires_in": 3600])
            }
            guard request.header("Authorization") == "Bearer ya29.from-key" else { return googleError(401, reason: "authError", message: "Invalid Credentials") }
            guard pathOf(request) == "/compute/v1/projects/example-project/aggregated/instances" else {
                return googleError(404, reason: "notFound", message: "no such path")
            }
            let token = queryOf(request)["pageToken"]
            let next: [String: String] = ["": "page-2", "page-2": "page-3"]
            var page: [String: GCPJSON] = [
                "kind": "compute#instanceAggregatedList",
                "items": ["zones/us-central1-a": ["instances": [["name": .string("node-\(token ?? "page-1")")]]]],
            ]
            if let following = next[token ?? ""] { page["nextPageToken"] = .string(following) }
            return jsonResponse(200, .object(page))
        }
        defer { Task { await server.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let keyPath = try scratch.write("key.json", account.keyFile(tokenURI: URL(string: "https://oauth2.invalid/token")!))
        let environment = [
            "GOOGLE_APPLICATION_CREDENTIALS": keyPath, "HOME": scratch.path,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": server.url.absoluteString + "/compute/v1/",
            "STRATUM_GCP_TOKEN_URI": server.url.absoluteString + "/token",
        ]

        let client = try await GCPClient.standard(environment: environment, transport: AsyncHTTPTransport())
        #expect(client.project == "example-project")
        let pages = try await client.pages(
            "projects/example-project/aggregated/instances", query: [("filter", "labels.stratum-stack=training")], action: "instances.aggregatedList")
        let names = pages.flatMap { $0["items"]?["zones/us-central1-a"]?["instances"]?.array ?? [] }.compactMap { $0["name"]?.string }
        #expect(names == ["node-page-1", "node-page-2", "node-page-3"])
        let listCalls = received.all.filter { pathOf($0).hasSuffix("/aggregated/instances") }
        #expect(listCalls.map { queryOf($0)["pageToken"] } == [nil, "page-2", "page-3"])
        #expect(listCalls.allSatisfy { queryOf($0)["filter"] == "labels.stratum-stack=training" })
        #expect(received.count(pathPrefix: "/token") == 1)
        #expect(client.metrics.byAction == ["instances.aggregatedList": 3])
    }

    @Test func aWaitResumesFromTheRecordedHandle() async throws {
        let stub = ComputeStub(runningLooks: 3)
        let first = try await Self.world(stub)
        defer { Task { await first.server.shutdown() } }
        let started = try await first.client.mutate(
            "POST", "projects/test-project/zones/us-central1-a/instances", body: ["name": "node-0"], requestId: "t-6", action: "instances.insert")
        // What the journal keeps; the process that started the operation stops looking here.
        let handle = started.reference.handle
        _ = try await first.client.operation(started.reference)

        // The next run: a new client with its own clock, given only the handle.
        let next = try GCPClient(
            configuration: first.client.configuration, credentials: first.client.credentials, transport: AsyncHTTPTransport(), clock: VirtualClock().clock)
        let resumed = try #require(GCPOperationReference(handle: handle))
        let finished = try await next.wait(for: resumed, action: "instances.insert")
        #expect(finished.isDone)
        #expect(finished.reference == started.reference)
        // One insert in all: resuming looks at the operation, it does not start another.
        #expect(stub.received.all.filter { $0.method == "POST" }.count == 1)
    }

    @Test func tokensStayOutOfTheRequestLog() async throws {
        let lines = LockedValue([String]())
        var logger = Logger(label: "stratum.gcp") { _ in LineCollector(lines: lines) }
        logger.logLevel = .trace
        let stub = ComputeStub(runningLooks: 0)
        let world = try await Self.world(stub, logger: logger)
        defer { Task { await world.server.shutdown() } }
        _ = try await world.client.get("projects/test-project/global/operations/operation-1", action: "operations.get")
        let log = lines.get().joined(separator: "\n")
        #expect(log.contains("operations.get"))
        #expect(log.contains("Authorization: \(Redaction.mask)"))
        #expect(!log.contains("ya29.token-1"))
    }

    @Test func theProjectIsRequiredAndAGivenOneWins() throws {
        let tokens = BearerTokenCache { BearerToken(value: "unused", lifetime: .seconds(3600)) }
        let withoutProject = GCPCredentials(source: .metadataServer, project: nil, tokens: tokens)
        let error = #expect(throws: ProviderError.self) {
            _ = try GCPClient(configuration: GCPClient.Configuration(), credentials: withoutProject, transport: AsyncHTTPTransport())
        }
        #expect(error?.message.contains("GOOGLE_CLOUD_PROJECT") == true)
        let keyProject = GCPCredentials(source: .metadataServer, project: "key-project", tokens: tokens)
        #expect(try GCPClient(configuration: GCPClient.Configuration(), credentials: keyProject, transport: AsyncHTTPTransport()).project == "key-project")
        let given = try GCPClient(configuration: GCPClient.Configuration(), credentials: keyProject, project: "stack-project", transport: AsyncHTTPTransport())
        #expect(given.project == "stack-project")
        #expect(given.rateLimitKey(.write) == "compute/stack-project/write")
    }

    @Test func requestIdsAreStableUUIDs() {
        let token = "9d1c7f3e-create-gcp_instance.node[0]"
        #expect(GCPClient.requestId(for: token) == GCPClient.requestId(for: token))
        #expect(GCPClient.requestId(for: token) != GCPClient.requestId(for: token + "x"))
        #expect(UUID(uuidString: GCPClient.requestId(for: token)) != nil)
        let uuid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
        #expect(GCPClient.requestId(for: uuid) == uuid.lowercased())
    }

    @Test func operationHandlesRoundTrip() {
        for reference in [
            GCPOperationReference(scope: .zone("us-central1-a"), name: "operation-1"),
            GCPOperationReference(scope: .region("europe-west4"), name: "operation-2"),
            GCPOperationReference(scope: .global, name: "operation-3"),
        ] {
            #expect(GCPOperationReference(handle: reference.handle) == reference)
        }
        #expect(GCPOperationReference(handle: "zones/us-central1-a/instances/x") == nil)
    }
}

/// Keeps every log line with its metadata, to look for secrets in them.
struct LineCollector: LogHandler {
    let lines: LockedValue<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.update { $0.append("\(event.level) \(event.message) \(metadata.merging(event.metadata ?? [:]) { $1 })") }
    }
}
