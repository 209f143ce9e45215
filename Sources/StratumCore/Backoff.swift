/// Capped exponential backoff with full jitter: the wait after failed attempt n is uniformly
/// random in `0 ... min(cap, base * 2^(n-1))`. The random source is injected, so tests pin it.
/// The engine's retries, the cloud clients' operation polling and anything else that backs
/// off use this one type.
public struct Backoff: Sendable {
    public var base: Duration
    public var cap: Duration
    /// Draws from the given range; `{ $0.upperBound }` makes waits deterministic.
    public var random: @Sendable (ClosedRange<Double>) -> Double

    public init(
        base: Duration = .milliseconds(200), cap: Duration = .seconds(20),
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) {
        self.base = base
        self.cap = cap
        self.random = random
    }

    /// The ceiling of the wait after failed attempt `attempt` (counting from 1).
    public func ceiling(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        return min(base * (1 << exponent), cap)
    }

    /// The wait after failed attempt `attempt` (counting from 1).
    public func delay(afterAttempt attempt: Int) -> Duration {
        ceiling(afterAttempt: attempt) * random(0...1)
    }
}
