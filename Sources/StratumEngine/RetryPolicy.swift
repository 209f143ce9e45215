import StratumCore

/// The retry layer for whole operations: the engine repeats provider calls (creates, updates,
/// deletes, refresh and recovery reads) that fail with a throttled or transient error, waiting
/// a capped, fully jittered exponential backoff on the injected clock, and at least the
/// `retryAfter` the cloud named. Cloud clients pace calls and feed throttling back into their
/// rate limits; the only thing one may repeat itself is a call refused as throttled, which the
/// cloud did not act on (`EndpointRateLimits.paced(_:repeatingThrottled:_:)`).
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var backoff: Backoff
    /// What the waits between attempts run on: virtual time in tests.
    public var clock: StratumClock

    public init(maxAttempts: Int = 8, backoff: Backoff = Backoff(), clock: StratumClock = .system) {
        self.maxAttempts = max(1, maxAttempts)
        self.backoff = backoff
        self.clock = clock
    }

    /// No retries at all.
    public static let none = RetryPolicy(maxAttempts: 1)

    public func run<T: Sendable>(_ operation: @Sendable () async throws -> T) async throws -> T {
        try await run(operation, lookingFirst: nil)
    }

    /// Runs `operation` as `run` does, but before each retry asks `lookup` whether the failed
    /// attempt took effect after all (a create whose response was lost); what it finds is the
    /// result, and no second attempt is made.
    public func run<T: Sendable>(
        _ operation: @Sendable () async throws -> T, lookingFirst lookup: (@Sendable () async throws -> T?)?
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                if attempt > 1, let lookup, let found = try await lookup() { return found }
                return try await operation()
            } catch let error as ProviderError where error.isRetryable && attempt < maxAttempts {
                // The cloud's own Retry-After, when it named one, is the least wait.
                EngineMetrics.retried(error)
                try await clock.sleep(max(backoff.delay(afterAttempt: attempt), error.retryAfter ?? .zero))
                attempt += 1
            }
        }
    }
}
