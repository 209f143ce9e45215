import StratumCore

/// Retries throttled and transient provider errors with capped exponential backoff and full
/// jitter. Waiting goes through the injected `sleep`, so tests run on virtual time.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    public var sleep: @Sendable (Duration) async throws -> Void
    public var random: @Sendable (ClosedRange<Double>) -> Double

    public init(
        maxAttempts: Int = 6, baseDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(20),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.sleep = sleep
        self.random = random
    }

    /// No retries at all.
    public static let none = RetryPolicy(maxAttempts: 1)

    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let exponent = min(attempt - 1, 30)
        let ceiling = min(baseDelay * (1 << exponent), maxDelay)
        return ceiling * random(0...1)
    }

    public func run<T: Sendable>(_ operation: @Sendable () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await operation()
            } catch let error as ProviderError where error.isRetryable && attempt < maxAttempts {
                try await sleep(delay(afterAttempt: attempt))
                attempt += 1
            }
        }
    }
}

extension RetryPolicy {
    /// Runs `operation` as `run` does, but before each retry asks `lookup` whether the failed
    /// attempt took effect after all (a create whose response was lost); what it finds is the
    /// result, and no second attempt is made.
    public func run<T: Sendable>(_ operation: @Sendable () async throws -> T, lookingFirst lookup: @Sendable () async throws -> T?) async throws -> T {
        let attempts = AttemptCount()
        return try await run {
            if await attempts.next() > 1, let found = try await lookup() { return found }
            return try await operation()
        }
    }
}

/// Counts the attempts of one retried operation.
private actor AttemptCount {
    private var count = 0

    func next() -> Int {
        count += 1
        return count
    }
}
