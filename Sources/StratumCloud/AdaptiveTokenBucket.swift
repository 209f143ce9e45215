import Foundation

/// A client-side rate limiter for one (service, region): a token bucket whose refill rate
/// grows additively while calls succeed and halves when the cloud throttles (AIMD), so a
/// fleet of concurrent creates settles just under what the account is allowed.
///
/// The rate is cut at most once per `cooldown`: a burst of concurrent calls throttled
/// together is one signal, not many, and throttling that does not come from our own rate
/// (a noisy neighbour, a shared account) cannot drive the rate to the floor.
public actor AdaptiveTokenBucket {
    public struct Settings: Sendable {
        /// Tokens per second at start and the ceiling it grows back to.
        public var maxRate: Double
        /// The floor it never shrinks below.
        public var minRate: Double
        /// Tokens the bucket holds when full (how big a burst may be).
        public var capacity: Double
        /// Rate added per successful call.
        public var increase: Double
        /// Factor applied to the rate on throttling.
        public var decrease: Double
        /// Seconds after a cut during which further throttling does not cut again.
        public var cooldown: Double

        public init(maxRate: Double = 20, minRate: Double = 0.5, capacity: Double = 20, increase: Double = 1, decrease: Double = 0.5, cooldown: Double = 1) {
            self.maxRate = maxRate
            self.minRate = minRate
            self.capacity = capacity
            self.increase = increase
            self.decrease = decrease
            self.cooldown = cooldown
        }
    }

    public let settings: Settings
    let clock: CloudClock
    public private(set) var rate: Double
    private var tokens: Double
    private var lastRefill: Double
    /// How many throttling answers were reported, for reports and tests.
    public private(set) var throttleEvents = 0
    /// How many times the rate was cut.
    public private(set) var cuts = 0
    private var lastCut = -Double.infinity

    public init(settings: Settings = Settings(), clock: CloudClock) {
        self.settings = settings
        self.clock = clock
        self.rate = settings.maxRate
        self.tokens = settings.capacity
        self.lastRefill = clock.monotonic()
    }

    /// Waits (on the injected clock) until a token is free, then takes it.
    public func acquire() async throws {
        while true {
            refill()
            if tokens >= 1 {
                tokens -= 1
                return
            }
            let wait = (1 - tokens) / rate
            try await clock.sleep(.nanoseconds(Int64(wait * 1e9) + 1))
        }
    }

    /// A call went through: grow the rate a little.
    public func recordSuccess() {
        rate = min(settings.maxRate, rate + settings.increase)
    }

    /// The cloud throttled a call: empty the bucket and, unless it was just cut, halve the rate.
    public func recordThrottle() {
        refill()
        throttleEvents += 1
        tokens = min(tokens, 0)
        let now = clock.monotonic()
        guard now - lastCut >= settings.cooldown else { return }
        lastCut = now
        cuts += 1
        rate = max(settings.minRate, rate * settings.decrease)
    }

    private func refill() {
        let now = clock.monotonic()
        let elapsed = max(0, now - lastRefill)
        lastRefill = now
        tokens = min(settings.capacity, tokens + elapsed * rate)
    }
}

/// Capped exponential backoff with full jitter: attempt n waits a uniformly random time in
/// `0 ... min(cap, base * 2^(n-1))`.
public struct Backoff: Sendable {
    public var maxAttempts: Int
    public var base: Duration
    public var cap: Duration
    public var random: @Sendable (ClosedRange<Double>) -> Double

    public init(
        maxAttempts: Int = 8, base: Duration = .milliseconds(100), cap: Duration = .seconds(20),
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) {
        self.maxAttempts = maxAttempts
        self.base = base
        self.cap = cap
        self.random = random
    }

    /// The wait after failed attempt `attempt` (counting from 1).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(base * (1 << exponent), cap)
        return ceiling * random(0...1)
    }
}
