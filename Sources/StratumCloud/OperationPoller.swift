import StratumCore

/// What one look at a long-running cloud operation found.
public enum OperationProgress<Result: Sendable>: Sendable {
    /// Finished; `Result` is what the operation produced (a resource's id, its final state).
    case done(Result)
    /// Still running.
    case running
    /// Still running, and the cloud said when to look again (HTTP `Retry-After`): the next
    /// look comes after that wait instead of the backoff's (never past the deadline).
    case runningRetryAfter(Duration)
}

/// Polls a long-running cloud operation (a GCP operation, an Azure `Azure-AsyncOperation`
/// URL, an EC2 instance on its way to `terminated`) until it is done, waiting a capped
/// exponential backoff between looks (or as long as the cloud asked), all on the injected clock, and gives up at a deadline.
///
/// A look that fails with a throttled or transient error counts as "still running": polling
/// is a read, so the next look is the retry. Any other error ends the wait. The operation
/// itself goes on in the cloud after a timeout; whoever recorded its handle can resume it.
public struct OperationPoller: Sendable {
    /// Longest the wait may last.
    public var timeout: Duration
    /// Waits between looks. Polling wants an even pace more than spread, so the default draws
    /// from the upper half of the range: `base`, then up to double, up to `cap`.
    public var backoff: Backoff
    public var clock: StratumClock

    public init(
        timeout: Duration = .seconds(600),
        backoff: Backoff = Backoff(base: .seconds(2), cap: .seconds(15), random: { Double.random(in: ($0.lowerBound + $0.upperBound) / 2 ... $0.upperBound) }),
        clock: StratumClock = .system
    ) {
        self.timeout = timeout
        self.backoff = backoff
        self.clock = clock
    }

    /// Looks at the operation until `check` says it is done. `operation` names it in the
    /// timeout error (with `address`, the resource it is for).
    @discardableResult
    public func wait<Result: Sendable>(
        for operation: String, address: ResourceAddress? = nil, _ check: () async throws -> OperationProgress<Result>
    ) async throws -> Result {
        let deadline = clock.monotonic() + timeout.seconds
        var looks = 0
        var lastError: ProviderError?
        while true {
            looks += 1
            var requested: Duration?
            do {
                switch try await check() {
                case .done(let result): return result
                case .running: requested = nil
                case .runningRetryAfter(let wait): requested = wait
                }
                lastError = nil
            } catch let error as ProviderError where error.isRetryable {
                lastError = error
            }
            let remaining = deadline - clock.monotonic()
            guard remaining > 0 else {
                var message = "\(operation) did not finish within \(Self.describe(timeout)) (\(looks) looks)"
                if let lastError { message += "; the last look failed: \(lastError.message)" }
                throw ProviderError(.transient, message, address: address)
            }
            try await clock.sleep(min(requested ?? backoff.delay(afterAttempt: looks), .seconds(remaining)))
        }
    }

    static func describe(_ duration: Duration) -> String {
        let seconds = duration.seconds
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}
