import StratumCore

/// How many calls of each action a cloud client sent (each attempt counts), for benchmarks
/// and tests.
public final class CallMetrics: Sendable {
    private let counts = LockedValue([String: Int]())

    public init() {}

    public func record(_ action: String) { counts.update { $0[action, default: 0] += 1 } }
    public var byAction: [String: Int] { counts.get() }
    public var total: Int { counts.get().values.reduce(0, +) }
    public func reset() { counts.update { $0 = [:] } }
}
