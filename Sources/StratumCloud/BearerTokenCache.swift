import Foundation
import StratumCore

/// An OAuth2 access token and how long it lives. Its value never prints.
public struct BearerToken: Sendable, CustomStringConvertible {
    public var value: String
    /// Lifetime from when it was issued (`expires_in`).
    public var lifetime: Duration

    public init(value: String, lifetime: Duration) {
        self.value = value
        self.lifetime = lifetime
    }

    /// Reads an OAuth2 token response (RFC 6749 §5.1: `access_token`, `expires_in`), as
    /// token endpoints and metadata servers answer. Without `expires_in`, `defaultLifetime`.
    public static func parse(_ body: Data, defaultLifetime: Duration = .seconds(3600)) throws -> BearerToken {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw ProviderError(.auth, "the token endpoint's answer is not a JSON object")
        }
        guard let value = object["access_token"] as? String, !value.isEmpty else {
            let reason = (object["error_description"] as? String) ?? (object["error"] as? String) ?? "no access_token"
            throw ProviderError(.auth, "the token endpoint gave no token: \(Redaction.standard.text(reason))")
        }
        // Some endpoints send expires_in as a string.
        let seconds = (object["expires_in"] as? NSNumber)?.doubleValue ?? (object["expires_in"] as? String).flatMap(Double.init)
        return BearerToken(value: value, lifetime: seconds.map { .milliseconds(Int64($0 * 1000)) } ?? defaultLifetime)
    }

    public var description: String { "BearerToken(\(Redaction.mask), lifetime \(Int(lifetime.seconds)) s)" }
}

/// Caches an OAuth2 bearer token for a cloud client: fetched once and shared by every
/// concurrent caller (one fetch in flight at a time), and fetched again `refreshMargin` before
/// it expires, on the injected clock. If an early refresh fails while the cached token is
/// still valid, callers keep that token; once it has expired the fetch error is theirs.
public actor BearerTokenCache {
    /// How the token is got: a client-credentials grant, a signed JWT exchange, a metadata server.
    public typealias Fetch = @Sendable () async throws -> BearerToken

    let fetch: Fetch
    let clock: StratumClock
    public let refreshMargin: Duration
    private var cached: (token: BearerToken, expiresAt: Double)?
    private var inFlight: Task<(BearerToken, Double), any Error>?
    /// How many times the token was fetched, for tests and reports.
    public private(set) var fetches = 0

    public init(refreshMargin: Duration = .seconds(300), clock: StratumClock = .system, fetch: @escaping Fetch) {
        self.refreshMargin = refreshMargin
        self.clock = clock
        self.fetch = fetch
    }

    /// A token valid now: the cached one, or a fresh one.
    public func token() async throws -> String {
        let now = clock.monotonic()
        if let cached, now < cached.expiresAt - refreshMargin.seconds { return cached.token.value }
        do {
            let (token, expiresAt) = try await refreshed()
            cached = (token, expiresAt)
            return token.value
        } catch {
            if let cached, clock.monotonic() < cached.expiresAt { return cached.token.value }
            throw error
        }
    }

    /// The `Authorization` header value.
    public func authorization() async throws -> String { "Bearer \(try await token())" }

    /// Drops the cached token (the cloud answered 401 with it): the next caller fetches anew.
    public func invalidate() {
        cached = nil
    }

    private func refreshed() async throws -> (BearerToken, Double) {
        if let inFlight { return try await inFlight.value }
        fetches += 1
        let (fetch, clock) = (self.fetch, self.clock)
        let task = Task {
            // The lifetime counts from before the request went out, so it never overstates.
            let asked = clock.monotonic()
            let token = try await fetch()
            return (token, asked + token.lifetime.seconds)
        }
        inFlight = task
        defer { inFlight = nil }
        return try await task.value
    }
}
