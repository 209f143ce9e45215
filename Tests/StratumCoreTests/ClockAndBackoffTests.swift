import Foundation
import StratumCore
import Testing

@Suite("One clock and one backoff", .timeLimit(.minutes(3)))
struct ClockAndBackoffTests {
    @Test func backoffIsCappedFullJitter() {
        let upper = Backoff(base: .milliseconds(100), cap: .seconds(2), random: { $0.upperBound })
        #expect(upper.delay(afterAttempt: 1) == .milliseconds(100))
        #expect(upper.delay(afterAttempt: 3) == .milliseconds(400))
        #expect(upper.delay(afterAttempt: 10) == .seconds(2))
        #expect(upper.delay(afterAttempt: 1_000) == .seconds(2))
        let lower = Backoff(base: .milliseconds(100), cap: .seconds(2), random: { $0.lowerBound })
        #expect(lower.delay(afterAttempt: 5) == .zero)
        let half = Backoff(base: .seconds(1), cap: .seconds(60), random: { ($0.lowerBound + $0.upperBound) / 2 })
        #expect(half.delay(afterAttempt: 4) == .seconds(4))
    }

    @Test func virtualTimeMovesOnlyWhenSomethingWaitsOrAdvancesIt() async throws {
        let time = VirtualClock(start: Date(timeIntervalSince1970: 1_000))
        let clock = time.clock
        #expect(clock.monotonic() == 0)
        #expect(clock.date() == Date(timeIntervalSince1970: 1_000))
        try await clock.sleep(.milliseconds(1_500))
        time.advance(.seconds(2))
        #expect(clock.monotonic() == 3.5)
        #expect(time.date == Date(timeIntervalSince1970: 1_003.5))
        #expect(time.sleeps == [.milliseconds(1_500)])
    }

    @Test func aCancelledWaitOnVirtualTimeThrowsAndDoesNotMoveTime() async throws {
        let time = VirtualClock()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await time.clock.sleep(.seconds(10))
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(time.now == 0)
    }

    @Test func theSystemClockReadsRealTime() {
        let clock = StratumClock.system
        let readings = (0..<1_000).map { _ in clock.monotonic() }
        #expect(zip(readings, readings.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(abs(clock.date().timeIntervalSinceNow) < 5)
    }
}
