import Foundation
import StratumCore

/// A node the schedule may stop: its address, and its provider id when it was chosen (the id
/// its replacement must not have).
public struct ChurnNode: Sendable, Hashable {
    public var address: ResourceAddress
    public var id: String

    public init(address: ResourceAddress, id: String) {
        self.address = address
        self.id = id
    }
}

/// What a stopped node became once reconcile ran: running again with `id` (a new one), or not
/// back, with why.
public struct ChurnReturn: Sendable, Hashable {
    public var node: ChurnNode
    public var id: String?
    public var problem: String?

    public init(node: ChurnNode, id: String?, problem: String? = nil) {
        self.node = node
        self.id = id
        self.problem = problem
    }

    public var isBack: Bool { problem == nil && id != nil }
}

/// What a churn schedule works on: the stack's nodes, a way to stop them for real, and the
/// heal path that brings them back.
public protocol ChurnTarget: Sendable {
    /// The nodes running now that the schedule may stop (of its pool).
    func liveNodes() async throws -> [ChurnNode]
    /// Stops `nodes` as a machine loss would.
    func stop(_ nodes: [ChurnNode]) async throws
    /// Brings `nodes` back the way drift is healed, and says what each became.
    func bringBack(_ nodes: [ChurnNode]) async throws -> [ChurnReturn]
}

/// What a run reports as it goes; times are seconds since the schedule started.
public enum ChurnEvent: Sendable, Equatable {
    /// Cycle `cycle` (from 0) stopped `nodes`.
    case stopped(cycle: Int, nodes: [ChurnNode], at: Double)
    /// Cycle `cycle` found fewer live nodes than it stops, and stopped none.
    case skipped(cycle: Int, live: Int, at: Double)
    /// Cycle `cycle` starts `by` seconds after its time: bringing the last ones back took longer.
    case late(cycle: Int, by: Double)
    /// Reconcile is bringing `nodes` back; `early` when the schedule was stopped while they were down.
    case bringingBack(cycle: Int, nodes: [ChurnNode], at: Double, early: Bool)
    /// Reconcile ran: what each node became, how long it was down, how long reconcile took.
    case back(cycle: Int, returns: [ChurnReturn], at: Double, down: Double, reconcile: Double)
}

/// How a run ended.
public struct ChurnSummary: Sendable, Equatable {
    public enum End: String, Sendable {
        case cycles, duration, stopped
    }

    /// Cycles run (skipped ones included).
    public var cycles: Int
    /// Nodes stopped, all brought back.
    public var stopped: Int
    public var end: End

    public init(cycles: Int, stopped: Int, end: End) {
        self.cycles = cycles
        self.stopped = stopped
        self.end = end
    }
}

/// Runs a `ChurnSchedule` on a `ChurnTarget`, timed by an injected clock: cycle `k` starts at
/// `k × every` after the start (or as soon as the one before is done, when that overran); it
/// chooses `kill` of the live nodes, sorted by address, with a generator seeded by `seed`,
/// stops them, waits `down`, and has the target bring them back. `shouldStop` ends it between
/// waits: nodes that are down are brought back first. A node that does not come back ends it
/// with an error (after the others are back), as does a first cycle with too few live nodes.
public struct ChurnRunner: Sendable {
    public var schedule: ChurnSchedule
    public var seed: UInt64
    public var clock: StratumClock
    /// The longest a wait goes without checking `shouldStop`.
    public var poll: Duration
    public var shouldStop: @Sendable () -> Bool
    public var report: @Sendable (ChurnEvent) -> Void

    public init(
        schedule: ChurnSchedule, seed: UInt64, clock: StratumClock = .system, poll: Duration = .milliseconds(200),
        shouldStop: @escaping @Sendable () -> Bool = { false }, report: @escaping @Sendable (ChurnEvent) -> Void = { _ in }
    ) {
        self.schedule = schedule
        self.seed = seed
        self.clock = clock
        self.poll = poll
        self.shouldStop = shouldStop
        self.report = report
    }

    public func run(on target: some ChurnTarget) async throws -> ChurnSummary {
        if let problem = schedule.problems.first { throw ChurnError(problem) }
        let origin = clock.monotonic()
        let elapsed = { clock.monotonic() - origin }
        var random = ChurnRandom(seed: seed)
        var cycle = 0
        var stoppedNodes = 0
        while true {
            if let cycles = schedule.cycles, cycle >= cycles { return ChurnSummary(cycles: cycle, stopped: stoppedNodes, end: .cycles) }
            let due = Double(cycle) * schedule.every.seconds
            if let duration = schedule.duration, due >= duration.seconds { return ChurnSummary(cycles: cycle, stopped: stoppedNodes, end: .duration) }
            if cycle > 0, elapsed() - due > poll.seconds { report(.late(cycle: cycle, by: elapsed() - due)) }
            guard await wait(until: due, elapsed: elapsed) else { return ChurnSummary(cycles: cycle, stopped: stoppedNodes, end: .stopped) }

            let live = try await target.liveNodes().sorted { $0.address < $1.address }
            guard live.count >= schedule.kill else {
                let which = schedule.pool.map { " of pool '\($0)'" } ?? ""
                if cycle == 0 {
                    throw ChurnError(
                        "churn stops \(schedule.kill) node\(schedule.kill == 1 ? "" : "s") a cycle, but \(live.count) node\(live.count == 1 ? "" : "s")\(which) \(live.count == 1 ? "is" : "are") running")
                }
                report(.skipped(cycle: cycle, live: live.count, at: elapsed()))
                cycle += 1
                continue
            }
            let chosen = ChurnSchedule.choose(schedule.kill, from: live, using: &random)
            do {
                try await target.stop(chosen)
            } catch {
                // Whatever was stopped before the failure comes back before the error is told.
                _ = try? await target.bringBack(chosen)
                throw error
            }
            stoppedNodes += chosen.count
            let downAt = elapsed()
            report(.stopped(cycle: cycle, nodes: chosen, at: downAt))
            let early = !(await wait(until: downAt + schedule.down.seconds, elapsed: elapsed))
            report(.bringingBack(cycle: cycle, nodes: chosen, at: elapsed(), early: early))
            let down = elapsed() - downAt
            let started = clock.monotonic()
            let returns = try await target.bringBack(chosen)
            report(.back(cycle: cycle, returns: returns, at: elapsed(), down: down, reconcile: clock.monotonic() - started))
            let missing = returns.filter { !$0.isBack } + chosen.filter { node in !returns.contains { $0.node.address == node.address } }.map {
                ChurnReturn(node: $0, id: nil, problem: "reconcile said nothing of it")
            }
            if !missing.isEmpty {
                let list = missing.map { "\($0.node.address) (\($0.problem ?? "no id"))" }.joined(separator: ", ")
                throw ChurnError("churn stopped: \(list) did not come back; `stratum reconcile` tries again and says why")
            }
            cycle += 1
            if early { return ChurnSummary(cycles: cycle, stopped: stoppedNodes, end: .stopped) }
        }
    }

    /// Waits until `time` seconds after the start, a step of at most `poll` at a time; false
    /// when the schedule was stopped first.
    func wait(until time: Double, elapsed: () -> Double) async -> Bool {
        while !shouldStop() {
            let left = time - elapsed()
            guard left > 0 else { return true }
            do {
                try await clock.sleep(min(poll, .milliseconds(Int64((left * 1000).rounded(.up)))))
            } catch {
                return false
            }
        }
        return false
    }
}
