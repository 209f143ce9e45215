import Foundation
import StratumCore

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
    let clock: StratumClock
    public private(set) var rate: Double
    private var tokens: Double
    private var lastRefill: Double
    /// How many throttling answers were reported, for reports and tests.
    public private(set) var throttleEvents = 0
    /// How many times the rate was cut.
    public private(set) var cuts = 0
    private var lastCut = -Double.infinity

    public init(settings: Settings = Settings(), clock: StratumClock) {
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

/// Adaptive rate limits per endpoint: one `AdaptiveTokenBucket` for each key a client names
/// (AWS: "ec2/us-east-1"; a cloud whose quotas are per API and project: "compute/my-project"),
/// made on first use. Endpoints share nothing, so throttling on one never slows another.
public actor EndpointRateLimits {
    /// Settings for endpoints without an override.
    public let settings: AdaptiveTokenBucket.Settings
    /// Settings for particular endpoints (an API with a lower published limit).
    public let overrides: [String: AdaptiveTokenBucket.Settings]
    let clock: StratumClock
    private var buckets: [String: AdaptiveTokenBucket] = [:]

    public init(settings: AdaptiveTokenBucket.Settings = .init(), overrides: [String: AdaptiveTokenBucket.Settings] = [:], clock: StratumClock) {
        self.settings = settings
        self.overrides = overrides
        self.clock = clock
    }

    /// The bucket that paces calls to `endpoint`.
    public func limiter(for endpoint: String) -> AdaptiveTokenBucket {
        if let existing = buckets[endpoint] { return existing }
        let made = AdaptiveTokenBucket(settings: overrides[endpoint] ?? settings, clock: clock)
        buckets[endpoint] = made
        return made
    }

    /// The endpoints that have a bucket so far.
    public var endpoints: [String] { buckets.keys.sorted() }

    /// Runs `call` as `paced` does, and when it is refused as throttled, runs it again, up to
    /// `repeats` more times: a refusal means the cloud did not act on the call, so repeating it
    /// is safe for any call. Each repeat waits for the refusal's `retryAfter`, then for a token
    /// of the bucket the refusal just slowed. After the last, the refusal is thrown, for the
    /// engine's retry. A client that makes several calls per resource (one create is a handful
    /// of them) uses this so one refused call does not cost the whole create an attempt.
    public nonisolated func paced<T: Sendable>(_ endpoint: String, repeatingThrottled repeats: Int, _ call: () async throws -> T) async throws -> T {
        var refusals = 0
        while true {
            do {
                return try await paced(endpoint, call)
            } catch let error as ProviderError where error.kind == .throttled && refusals < repeats {
                refusals += 1
                if let wait = error.retryAfter, wait > .zero { try await clock.sleep(wait) }
            }
        }
    }

    /// Runs one call to `endpoint` under its limit: waits for a token, then reports the outcome
    /// back (a success grows the rate; a `.throttled` provider error cuts it). The call is not
    /// repeated here: retrying is the engine's job.
    public nonisolated func paced<T: Sendable>(_ endpoint: String, _ call: () async throws -> T) async throws -> T {
        let bucket = await limiter(for: endpoint)
        try await bucket.acquire()
        do {
            let value = try await call()
            await bucket.recordSuccess()
            return value
        } catch let error as ProviderError where error.kind == .throttled {
            await bucket.recordThrottle()
            throw error
        }
    }
}
