import StratumCloud

/// Adds a fixed delay before every call, standing in for the distance to a real cloud endpoint
/// (benchmarks run their fakes on loopback, where a call costs next to nothing).
public struct DelayedTransport: HTTPTransport {
    public let inner: any HTTPTransport
    public let delay: Duration

    public init(inner: any HTTPTransport, delay: Duration) {
        self.inner = inner
        self.delay = delay
    }

    public func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        if delay > .zero { try await Task.sleep(for: delay) }
        return try await inner.send(request, timeout: timeout)
    }
}
