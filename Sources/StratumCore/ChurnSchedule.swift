import Foundation

/// Nodes joining and leaving, on a schedule: every `every`, `kill` live nodes (of `pool`, or of
/// any pool) chosen at random from `seed` are stopped as a machine loss would stop them, kept
/// down for `down`, then brought back by reconcile. The first cycle starts at once; the
/// schedule ends after `cycles` cycles, once `duration` has passed (no cycle starts after it),
/// or, with neither, when it is stopped.
///
/// `stratum chaos churn` runs it; a stack declares one with `Churn` (or `NodePool(churn:)`).
public struct ChurnSchedule: Sendable, Hashable, Codable {
    /// Nodes stopped each cycle.
    public var kill: Int
    /// Time from the start of one cycle to the start of the next.
    public var every: Duration
    /// How long the stopped nodes stay down before reconcile brings them back.
    public var down: Duration
    /// How many cycles; nil: until `duration` or until stopped.
    public var cycles: Int?
    /// How long the schedule runs; nil: until `cycles` or until stopped.
    public var duration: Duration?
    /// The seed of the choice of nodes: the same seed, and the same live nodes, choose the same
    /// nodes. Nil: a new seed each run (printed, so a run can be repeated).
    public var seed: UInt64?
    /// The node pool whose nodes are stopped; nil: nodes of every pool.
    public var pool: String?

    public init(
        kill: Int = 1, every: Duration, down: Duration, cycles: Int? = nil, for duration: Duration? = nil, seed: UInt64? = nil, pool: String? = nil
    ) {
        self.kill = kill
        self.every = every
        self.down = down
        self.cycles = cycles
        self.duration = duration
        self.seed = seed
        self.pool = pool
    }

    /// What is wrong with the schedule, one sentence each; empty when nothing is.
    public var problems: [String] {
        var problems: [String] = []
        if kill < 1 { problems.append("churn must stop at least 1 node a cycle (got kill \(kill))") }
        if every < .seconds(1) { problems.append("churn every must be at least 1s (got \(Self.format(every)))") }
        if down <= .zero {
            problems.append("churn down must be more than 0s (got \(Self.format(down)))")
        } else if down >= every {
            problems.append(
                "churn down (\(Self.format(down))) must be shorter than every (\(Self.format(every))): the nodes of one cycle are back before the next cycle stops others")
        }
        if let cycles, cycles < 1 { problems.append("churn cycles must be at least 1 (got \(cycles))") }
        if let duration, duration <= .zero { problems.append("churn for must be more than 0s (got \(Self.format(duration)))") }
        if cycles != nil, duration != nil { problems.append("churn takes cycles or for, not both") }
        if let pool, pool.isEmpty { problems.append("churn pool must not be empty (leave it out for every pool)") }
        return problems
    }

    /// The schedule's problems against a stack's resources: its own (`problems`), and its
    /// pool's: a pool the stack does not declare, nodes on a provider other than Local, fewer
    /// nodes than a cycle stops. Nodes are the resources with a `pool` input (every provider's
    /// node carries its pool's name).
    public func problems(in resources: [DesiredResource]) -> [String] {
        var problems = self.problems
        let nodes = resources.filter { $0.inputs["pool"]?.stringValue != nil }
        let targets = pool.map { pool in nodes.filter { $0.inputs["pool"]?.stringValue == pool } } ?? nodes
        if targets.isEmpty {
            let pools = Set(nodes.compactMap { $0.inputs["pool"]?.stringValue }).sorted()
            if let pool {
                problems.append("churn names the pool '\(pool)', which the stack does not declare (\(pools.isEmpty ? "it has no node pools" : "its pools: \(pools.joined(separator: ", "))"))")
            } else {
                problems.append("churn stops nodes, but the stack declares no node pool")
            }
            return problems
        }
        if let elsewhere = targets.first(where: { $0.provider != "local" }) {
            problems.append("churn stops and restarts nodes on the Local provider only, for now; \(elsewhere.address) is on '\(elsewhere.provider)'")
        }
        if kill > targets.count {
            problems.append("churn stops \(kill) nodes a cycle, but \(pool.map { "pool '\($0)'" } ?? "the stack") has \(targets.count)")
        }
        return problems
    }

    /// One line for plans and progress: `1 node of pool 'worker' every 2m, down 1m, 3 cycles, seed 7`.
    public var summary: String {
        var text = "\(kill) node\(kill == 1 ? "" : "s") of \(pool.map { "pool '\($0)'" } ?? "any pool") every \(Self.format(every)), down \(Self.format(down))"
        if let cycles { text += ", \(cycles) cycle\(cycles == 1 ? "" : "s")" } else if let duration { text += ", for \(Self.format(duration))" } else { text += ", until stopped" }
        if let seed { text += ", seed \(seed)" }
        return text
    }

    // MARK: durations

    /// `90`, `90s`, `2m`, `1.5h` as a duration (a bare number is seconds).
    public static func duration(_ text: String) throws -> Duration {
        let scales: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        var number = text.trimmingCharacters(in: .whitespaces)
        var scale = 1.0
        if let last = number.last, let found = scales[last] {
            scale = found
            number.removeLast()
        }
        guard let value = Double(number), value.isFinite, value >= 0, value * scale <= 366 * 86400 else {
            throw ChurnError("'\(text)' is not a duration: a number of seconds, or with s, m or h (90s, 2m, 1h)")
        }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    /// A duration in the unit that says it shortest: `90s`, `2m`, `1h`, `1.5s`.
    public static func format(_ duration: Duration) -> String {
        let seconds = duration.seconds
        if seconds > 0, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
        if seconds > 0, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
        if seconds == seconds.rounded() { return "\(Int(seconds))s" }
        return String(format: "%gs", seconds)
    }

    // MARK: choosing nodes

    /// `count` of `nodes`, chosen with `random` (a partial Fisher–Yates shuffle), in the order
    /// chosen. Callers pass `nodes` in a fixed order (sorted), so a seed repeats the choice.
    public static func choose<T>(_ count: Int, from nodes: [T], using random: inout ChurnRandom) -> [T] {
        var pool = nodes
        var chosen: [T] = []
        for taken in 0..<min(max(count, 0), pool.count) {
            let index = taken + Int(random.next() % UInt64(pool.count - taken))
            pool.swapAt(taken, index)
            chosen.append(pool[taken])
        }
        return chosen
    }
}

/// SplitMix64: a small generator whose sequence is fixed by its seed on every platform and
/// Swift version, so a churn run can be repeated.
public struct ChurnRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public struct ChurnError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
