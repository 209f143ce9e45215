import Foundation

/// Time as Stratum sees it, everywhere (engine, state lock, cloud clients): a monotonic reading
/// for intervals and deadlines, a wall-clock date for what is recorded or signed, and a way to
/// wait. Tests inject a `VirtualClock`, so nothing sleeps in real time.
public struct StratumClock: Sendable {
    /// Seconds on a monotonic clock (only differences mean anything).
    public var monotonic: @Sendable () -> Double
    /// Wall-clock time: journal rows, lock leases, request signatures.
    public var date: @Sendable () -> Date
    /// Waits `duration` on this clock.
    public var sleep: @Sendable (Duration) async throws -> Void

    public init(
        monotonic: @escaping @Sendable () -> Double, date: @escaping @Sendable () -> Date,
        sleep: @escaping @Sendable (Duration) async throws -> Void
    ) {
        self.monotonic = monotonic
        self.date = date
        self.sleep = sleep
    }

    /// The real clocks.
    public static let system: StratumClock = {
        let clock = ContinuousClock()
        let origin = clock.now
        return StratumClock(
            monotonic: { (clock.now - origin).seconds },
            date: { Date() },
            sleep: { try await Task.sleep(for: $0) })
    }()
}

/// A clock that moves only when told to or when something sleeps on it: a wait returns at once
/// and advances time by its length, so tests of timeouts, leases and backoff run instantly.
public final class VirtualClock: Sendable {
    private let elapsed = LockedValue(0.0)
    private let slept = LockedValue([Duration]())
    /// The wall-clock date at virtual time zero.
    public let start: Date

    public init(start: Date = Date(timeIntervalSince1970: 1_790_000_000)) {
        self.start = start
    }

    /// Seconds of virtual time since the start.
    public var now: Double { elapsed.get() }
    /// The wall-clock date now.
    public var date: Date { start.addingTimeInterval(elapsed.get()) }
    /// Every wait requested so far, in order.
    public var sleeps: [Duration] { slept.get() }

    public func advance(_ duration: Duration) {
        elapsed.update { $0 += duration.seconds }
    }

    public var clock: StratumClock {
        StratumClock(
            monotonic: { [elapsed] in elapsed.get() },
            date: { [elapsed, start] in start.addingTimeInterval(elapsed.get()) },
            sleep: { [elapsed, slept] duration in
                try Task.checkCancellation()
                slept.update { $0.append(duration) }
                elapsed.update { $0 += max(0, duration.seconds) }
                await Task.yield()
            })
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

/// A value behind a lock, for the few places where an actor hop is not wanted.
public final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func get() -> Value { lock.withLock { value } }

    @discardableResult
    public func update<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}
