import Foundation

/// Time as the cloud clients see it: a monotonic reading for rate limiting, a wall clock for
/// request signing, and a way to wait. Tests inject a virtual clock, so nothing sleeps.
public struct CloudClock: Sendable {
    /// Seconds on a monotonic clock.
    public var monotonic: @Sendable () -> Double
    /// Wall-clock time (signatures carry it).
    public var date: @Sendable () -> Date
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
    public static let system: CloudClock = {
        let clock = ContinuousClock()
        let origin = clock.now
        return CloudClock(
            monotonic: { (clock.now - origin).timeInterval },
            date: { Date() },
            sleep: { try await Task.sleep(for: $0) })
    }()
}

/// A clock that only moves when something sleeps on it: waits return at once and advance time.
public final class VirtualCloudClock: Sendable {
    private let state = LockedValue(0.0)
    private let slept = LockedValue([Duration]())
    public let start: Date

    public init(start: Date = Date(timeIntervalSince1970: 1_790_000_000)) {
        self.start = start
    }

    public var now: Double { state.get() }
    /// Every wait requested so far.
    public var sleeps: [Duration] { slept.get() }

    public func advance(_ duration: Duration) {
        state.update { $0 += duration.timeInterval }
    }

    public var clock: CloudClock {
        CloudClock(
            monotonic: { [state] in state.get() },
            date: { [state, start] in start.addingTimeInterval(state.get()) },
            sleep: { [state, slept] duration in
                slept.update { $0.append(duration) }
                state.update { $0 += duration.timeInterval }
                await Task.yield()
            })
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number (named apart from other modules' `seconds`).
    public var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
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
