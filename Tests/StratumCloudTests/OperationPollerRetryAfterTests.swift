import Foundation
import StratumCloud
import StratumCore
import Testing

@Suite("An operation's own pace on virtual time", .timeLimit(.minutes(3)))
struct OperationPollerRetryAfterTests {
    @Test func aRequestedWaitReplacesTheBackoffButNeverPassesTheDeadline() async throws {
        let time = VirtualClock()
        let looks = LockedValue(0)
        let poller = OperationPoller(timeout: .seconds(100), backoff: Backoff(base: .seconds(1), cap: .seconds(4), random: { $0.upperBound }), clock: time.clock)
        let done = try await poller.wait(for: "operation op-1") { () -> OperationProgress<Int> in
            switch looks.update({ $0 += 1; return $0 }) {
            case 1: return .runningRetryAfter(.seconds(30))
            case 2: return .running
            case 3: return .runningRetryAfter(.milliseconds(500))
            default: return .done(4)
            }
        }
        #expect(done == 4)
        // The cloud's 30 s and 0.5 s; the backoff's own wait between them.
        #expect(time.sleeps == [.seconds(30), .seconds(2), .milliseconds(500)])

        // A wait longer than what is left of the deadline is cut to it; then the wait ends.
        let late = VirtualClock()
        let error = await #expect(throws: ProviderError.self) {
            try await OperationPoller(timeout: .seconds(60), clock: late.clock).wait(for: "operation op-2") { () -> OperationProgress<Int> in
                .runningRetryAfter(.seconds(45))
            }
        }
        #expect(late.sleeps == [.seconds(45), .seconds(15)])
        #expect(error?.kind == .transient)
    }
}
