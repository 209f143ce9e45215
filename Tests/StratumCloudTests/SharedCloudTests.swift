import Foundation
import StratumCloud
import StratumCore
import Testing

@Suite("Long-running operations on virtual time", .timeLimit(.minutes(3)))
struct OperationPollerTests {
    @Test func pollsWithGrowingWaitsUntilDone() async throws {
        let time = VirtualClock()
        let looks = LockedValue(0)
        let poller = OperationPoller(timeout: .seconds(600), backoff: Backoff(base: .seconds(1), cap: .seconds(4), random: { $0.upperBound }), clock: time.clock)
        let id = try await poller.wait(for: "operation op-1") { () -> OperationProgress<String> in
            looks.update { $0 += 1; return $0 } < 5 ? .running : .done("vm-1")
        }
        #expect(id == "vm-1")
        #expect(looks.get() == 5)
        #expect(time.sleeps == [.seconds(1), .seconds(2), .seconds(4), .seconds(4)])
    }

    @Test func aThrottledLookIsNotTheEndButAPermanentErrorIs() async throws {
        let time = VirtualClock()
        let looks = LockedValue(0)
        let poller = OperationPoller(backoff: Backoff(base: .seconds(1), cap: .seconds(1), random: { $0.upperBound }), clock: time.clock)
        let done = try await poller.wait(for: "op") { () -> OperationProgress<Int> in
            let look = looks.update { $0 += 1; return $0 }
            if look == 1 { throw ProviderError(.throttled, "Rate exceeded") }
            if look == 2 { throw ProviderError(.transient, "503") }
            return .done(look)
        }
        #expect(done == 3)
        let failing = await #expect(throws: ProviderError.self) {
            try await poller.wait(for: "op") { () -> OperationProgress<Int> in throw ProviderError(.permanent, "operation failed: QUOTA") }
        }
        #expect(failing?.message == "operation failed: QUOTA")
    }

    @Test func givesUpAtTheDeadlineNamingTheOperation() async throws {
        let time = VirtualClock()
        let address = ResourceAddress(type: "gcp_instance", name: "node", index: 0)
        let poller = OperationPoller(timeout: .seconds(30), backoff: Backoff(base: .seconds(4), cap: .seconds(8), random: { $0.upperBound }), clock: time.clock)
        let error = await #expect(throws: ProviderError.self) {
            try await poller.wait(for: "operation op-9", address: address) { () -> OperationProgress<Int> in
                throw ProviderError(.transient, "backend unavailable")
            }
        }
        #expect(error?.kind == .transient)
        #expect(error?.address == address)
        #expect(error?.message.hasPrefix("operation op-9 did not finish within 30 s") == true)
        #expect(error?.message.contains("backend unavailable") == true)
        // The last wait is cut to the deadline: no time is spent past it.
        #expect(time.now == 30)
    }
}

@Suite("OAuth2 bearer tokens on virtual time", .timeLimit(.minutes(3)))
struct BearerTokenCacheTests {
    @Test func concurrentCallersShareOneFetch() async throws {
        let time = VirtualClock()
        let gate = AsyncGate()
        let cache = BearerTokenCache(clock: time.clock) {
            await gate.wait()
            return BearerToken(value: "tok-1", lifetime: .seconds(3600))
        }
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.token() } }
            // Let every caller reach the cache before the one fetch answers.
            while await gate.waiting < 1 { await Task.yield() }
            for _ in 0..<100 { await Task.yield() }
            await gate.open()
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(tokens == Array(repeating: "tok-1", count: 20))
        #expect(await cache.fetches == 1)
    }

    @Test func refreshesBeforeExpiryAndKeepsAValidTokenWhenARefreshFails() async throws {
        let time = VirtualClock()
        let issued = LockedValue(0)
        let failing = LockedValue(false)
        let cache = BearerTokenCache(refreshMargin: .seconds(300), clock: time.clock) {
            if failing.get() { throw ProviderError(.transient, "token endpoint down") }
            let n = issued.update { $0 += 1; return $0 }
            return BearerToken(value: "tok-\(n)", lifetime: .seconds(3600))
        }
        #expect(try await cache.token() == "tok-1")
        time.advance(.seconds(3299))
        #expect(try await cache.token() == "tok-1")
        time.advance(.seconds(2))
        // Inside the margin: fetched again before the old one runs out.
        #expect(try await cache.authorization() == "Bearer tok-2")
        #expect(await cache.fetches == 2)

        failing.update { $0 = true }
        time.advance(.seconds(3400))
        // The refresh fails, but tok-2 is still valid for another 100 s.
        #expect(try await cache.token() == "tok-2")
        time.advance(.seconds(200))
        let error = await #expect(throws: ProviderError.self) { try await cache.token() }
        #expect(error?.message == "token endpoint down")

        failing.update { $0 = false }
        await cache.invalidate()
        #expect(try await cache.token() == "tok-3")
    }

    @Test func tokenResponsesParseAndNeverPrint() throws {
        let token = try BearerToken.parse(Data(#"{"access_token":"ya29.SECRET-VALUE","expires_in":3599,"token_type":"Bearer"}"#.utf8))
        #expect(token.value == "ya29.SECRET-VALUE")
        #expect(token.lifetime == .seconds(3599))
        #expect(!"\(token)".contains("SECRET"))
        let stringly = try BearerToken.parse(Data(#"{"access_token":"t","expires_in":"60"}"#.utf8))
        #expect(stringly.lifetime == .seconds(60))
        let refused = #expect(throws: ProviderError.self) {
            try BearerToken.parse(Data(#"{"error":"invalid_client","error_description":"bad client secret"}"#.utf8))
        }
        #expect(refused?.kind == .auth)
        #expect(refused?.message.contains("bad client secret") == true)
    }
}

@Suite("Redaction of secrets in logs and errors")
struct RedactionTests {
    @Test func headersQueryParametersAndJSONFieldsAreMasked() throws {
        let redaction = Redaction.standard
        let headers = redaction.headers([("Authorization", "Bearer abc"), ("X-Amz-Security-Token", "tok"), ("Content-Type", "application/json")])
        #expect(headers.map(\.1) == [Redaction.mask, Redaction.mask, "application/json"])

        let url = try #require(URL(string: "https://acct.blob.example/c/b?sv=2022-11-02&sig=SIGNATURE%2B1&se=2030&X-Amz-Signature=abcd"))
        let shown = redaction.url(url)
        #expect(!shown.contains("SIGNATURE") && !shown.contains("abcd"))
        #expect(shown.contains("sv=2022-11-02") && shown.contains("se=2030"))

        let body = Data(#"{"credentials":{"AccessKeyId":"AKIA1","SecretAccessKey":"SHHH","Token":"TKN"},"items":[{"client_secret":"CS"}],"name":"vm-1"}"#.utf8)
        let json = redaction.json(body)
        for secret in ["SHHH", "TKN", "CS"] { #expect(!json.contains(secret)) }
        #expect(json.contains("vm-1") && json.contains("AKIA1"))
    }

    @Test func knownSecretsAreMaskedInFreeText() {
        let text = Redaction.standard.text("login failed for s3cr3t-pa55 (user admin)", secrets: ["s3cr3t-pa55", "ab"])
        #expect(text == "login failed for \(Redaction.mask) (user admin)")
        #expect(Redaction.standard.json(Data("not json: hunter22".utf8), secrets: ["hunter22"]) == "not json: \(Redaction.mask)")
    }
}

@Suite("Per-endpoint adaptive rate limits", .timeLimit(.minutes(3)))
struct EndpointRateLimitTests {
    @Test func throttlingOnOneEndpointNeverSlowsAnother() async throws {
        let time = VirtualClock()
        let settings = AdaptiveTokenBucket.Settings(maxRate: 10, minRate: 1, capacity: 1, increase: 1, decrease: 0.5, cooldown: 1)
        let limits = EndpointRateLimits(settings: settings, overrides: ["compute/slow": .init(maxRate: 2, minRate: 1, capacity: 1)], clock: time.clock)
        await #expect(throws: ProviderError.self) {
            try await limits.paced("compute/a") { () -> Int in throw ProviderError(.throttled, "rateLimitExceeded") }
        }
        // A permanent error is no signal about the rate.
        await #expect(throws: ProviderError.self) {
            try await limits.paced("compute/b") { () -> Int in throw ProviderError(.permanent, "bad request") }
        }
        #expect(await limits.limiter(for: "compute/a").rate == 5)
        #expect(await limits.limiter(for: "compute/b").rate == 10)
        #expect(await limits.limiter(for: "compute/a").throttleEvents == 1)
        #expect(await limits.limiter(for: "compute/slow").rate == 2)
        #expect(await limits.endpoints == ["compute/a", "compute/b", "compute/slow"])

        // a was throttled: its bucket is empty and refills at 5/s, so its next call waits a
        // fifth of a second. b's bucket refilled meanwhile and lets its call through at once.
        _ = try await limits.paced("compute/a") { 1 }
        #expect(abs(time.now - 0.2) < 0.01)
        let mark = time.now
        _ = try await limits.paced("compute/b") { 1 }
        #expect(time.now == mark)
        #expect(await limits.limiter(for: "compute/a").rate == 6)
    }
}

/// Holds callers until opened.
actor AsyncGate {
    private var isOpen = false
    private var continuations: [CheckedContinuation<Void, Never>] = []
    var waiting: Int { continuations.count }

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { continuations.append($0) }
    }

    func open() {
        isOpen = true
        continuations.forEach { $0.resume() }
        continuations = []
    }
}
