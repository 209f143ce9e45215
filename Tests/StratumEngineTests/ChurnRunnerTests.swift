import Foundation
import StratumCore
import StratumEngine
import Testing

/// Nodes in memory: stopping one marks it down; bringing it back gives it a new id (as a
/// replacement by reconcile does), taking `healTime` of the clock. Everything it is asked is
/// recorded with the clock's time.
final class FakeChurnTarget: ChurnTarget, @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [ResourceAddress: String]
    private var downed: Set<ResourceAddress> = []
    private var generation = 0
    private(set) var log: [(time: Double, what: String)] = []
    let clock: VirtualClock
    var healTime: Duration = .seconds(2)
    /// Nodes that stay down when brought back (their replacement fails).
    var stuck: Set<ResourceAddress> = []
    /// Nodes reported down by something other than the schedule (too few live nodes).
    var alsoDown: Set<ResourceAddress> = []
    /// Called after each stop (a test sends its "signal" there).
    var afterStop: @Sendable () -> Void = {}

    init(nodes: Int, clock: VirtualClock) {
        ids = Dictionary(uniqueKeysWithValues: (0..<nodes).map { (ResourceAddress(type: "local_node", name: "worker", index: $0), "pid-\(100 + $0)") })
        self.clock = clock
    }

    func record(_ what: String) { lock.withLock { log.append((clock.now, what)) } }
    var entries: [(time: Double, what: String)] { lock.withLock { log } }
    var down: Set<ResourceAddress> { lock.withLock { downed } }

    func liveNodes() async throws -> [ChurnNode] {
        // Handed back unsorted: the runner must sort before choosing.
        lock.withLock { ids.filter { !downed.contains($0.key) && !alsoDown.contains($0.key) }.map { ChurnNode(address: $0.key, id: $0.value) }.shuffled() }
    }

    func stop(_ nodes: [ChurnNode]) async throws {
        lock.withLock { for node in nodes { downed.insert(node.address) } }
        record("stop " + nodes.map(\.address.description).joined(separator: ","))
        afterStop()
    }

    func bringBack(_ nodes: [ChurnNode]) async throws -> [ChurnReturn] {
        record("reconcile")
        try await clock.clock.sleep(healTime)
        return lock.withLock {
            nodes.map { node in
                guard !stuck.contains(node.address) else { return ChurnReturn(node: node, id: nil, problem: "its create failed") }
                generation += 1
                downed.remove(node.address)
                ids[node.address] = "pid-\(1000 + generation)"
                return ChurnReturn(node: node, id: ids[node.address])
            }
        }
    }
}

final class Events: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [ChurnEvent] = []
    func add(_ event: ChurnEvent) { lock.withLock { list.append(event) } }
    var all: [ChurnEvent] { lock.withLock { list } }
    var stopped: [[String]] {
        all.compactMap { if case .stopped(_, let nodes, _) = $0 { return nodes.map(\.address.description) } else { return nil } }
    }
}

@Suite("ChurnRunner: the schedule on an injected clock")
struct ChurnRunnerTests {
    func runner(_ schedule: ChurnSchedule, seed: UInt64 = 7, clock: VirtualClock, events: Events, stop: @escaping @Sendable () -> Bool = { false }) -> ChurnRunner {
        ChurnRunner(schedule: schedule, seed: seed, clock: clock.clock, poll: .seconds(1), shouldStop: stop, report: events.add)
    }

    /// Cycle k stops its nodes at k × every, brings them back after down, and each comes back
    /// with a new id; the run ends after its cycles without waiting out the last period.
    @Test(.timeLimit(.minutes(1)))
    func cyclesAreTimedByTheClock() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 4, clock: clock)
        let events = Events()
        let summary = try await runner(ChurnSchedule(kill: 1, every: .seconds(120), down: .seconds(60), cycles: 3), clock: clock, events: events).run(on: target)
        #expect(summary == ChurnSummary(cycles: 3, stopped: 3, end: .cycles))
        let times = target.entries.map(\.time)
        // stop at 0, reconcile at 60 (2 s long); stop at 120, reconcile at 180; stop at 240, reconcile at 300.
        #expect(times == [0, 60, 120, 180, 240, 300])
        #expect(clock.now == 302)
        #expect(target.down.isEmpty)
        for event in events.all {
            if case .back(_, let returns, _, let down, let reconcile) = event {
                #expect(down == 60)
                #expect(reconcile == 2)
                #expect(returns.allSatisfy { $0.isBack && $0.id != $0.node.id })
            }
        }
        #expect(events.stopped.count == 3)
    }

    /// The same seed and the same nodes choose the same nodes, whatever order the target
    /// lists them in; another seed chooses otherwise.
    @Test(.timeLimit(.minutes(1)))
    func theSeedFixesTheChoice() async throws {
        func choices(seed: UInt64) async throws -> [[String]] {
            let clock = VirtualClock()
            let events = Events()
            let schedule = ChurnSchedule(kill: 2, every: .seconds(10), down: .seconds(5), cycles: 6)
            _ = try await runner(schedule, seed: seed, clock: clock, events: events).run(on: FakeChurnTarget(nodes: 6, clock: clock))
            return events.stopped
        }
        let first = try await choices(seed: 11)
        #expect(first.count == 6)
        #expect(first.allSatisfy { $0.count == 2 && Set($0).count == 2 })
        #expect(try await choices(seed: 11) == first)
        #expect(try await choices(seed: 12) != first)
        // The choice is the seeded shuffle of the sorted addresses.
        var random = ChurnRandom(seed: 11)
        let sorted = (0..<6).map { "local_node.worker[\($0)]" }
        #expect(first[0] == ChurnSchedule.choose(2, from: sorted, using: &random))
    }

    /// --for: no cycle starts at or after it; the cycle in progress finishes.
    @Test(.timeLimit(.minutes(1)))
    func forEndsTheSchedule() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 2, clock: clock)
        let events = Events()
        let summary = try await runner(ChurnSchedule(every: .seconds(30), down: .seconds(10), for: .seconds(70)), clock: clock, events: events).run(on: target)
        #expect(summary == ChurnSummary(cycles: 3, stopped: 3, end: .duration))
        #expect(target.entries.filter { $0.what.hasPrefix("stop") }.map(\.time) == [0, 30, 60])
    }

    /// A signal while nodes are down ends the wait: they are brought back at once, and the run
    /// ends without another cycle.
    @Test(.timeLimit(.minutes(1)))
    func aSignalBringsDownedNodesBackFirst() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 3, clock: clock)
        let signalled = LockedValue(false)
        target.afterStop = { signalled.update { $0 = true } }
        let events = Events()
        let schedule = ChurnSchedule(kill: 2, every: .seconds(3600), down: .seconds(1800))
        let summary = try await runner(schedule, clock: clock, events: events, stop: { signalled.get() }).run(on: target)
        #expect(summary == ChurnSummary(cycles: 1, stopped: 2, end: .stopped))
        #expect(target.down.isEmpty)
        // Brought back right after the stop, not after 1800 s.
        #expect(target.entries.map(\.time) == [0, 0])
        #expect(events.all.contains { if case .bringingBack(_, let nodes, _, true) = $0 { return nodes.count == 2 } else { return false } })
    }

    /// A signal between cycles ends the run with nothing down.
    @Test(.timeLimit(.minutes(1)))
    func aSignalBetweenCyclesEndsTheRun() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 2, clock: clock)
        let events = Events()
        let summary = try await runner(ChurnSchedule(every: .seconds(100), down: .seconds(10)), clock: clock, events: events, stop: { clock.now >= 150 }).run(on: target)
        #expect(summary == ChurnSummary(cycles: 2, stopped: 2, end: .stopped))
        #expect(target.down.isEmpty)
        #expect(clock.now < 200)
    }

    /// More nodes a cycle than are running: refused at the first cycle, skipped at a later one.
    @Test(.timeLimit(.minutes(1)))
    func tooFewLiveNodes() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 2, clock: clock)
        let events = Events()
        await #expect(throws: ChurnError.self) {
            try await runner(ChurnSchedule(kill: 3, every: .seconds(10), down: .seconds(5)), clock: clock, events: events).run(on: target)
        }
        #expect(target.entries.isEmpty)
        do {
            _ = try await runner(ChurnSchedule(kill: 3, every: .seconds(10), down: .seconds(5)), clock: clock, events: events).run(on: target)
        } catch let error as ChurnError {
            #expect(error.description == "churn stops 3 nodes a cycle, but 2 nodes are running")
        }

        // Two cycles; before the second, a node fails on its own.
        let later = FakeChurnTarget(nodes: 2, clock: clock)
        later.afterStop = { later.alsoDown = [ResourceAddress(type: "local_node", name: "worker", index: 0), ResourceAddress(type: "local_node", name: "worker", index: 1)] }
        let summary = try await runner(ChurnSchedule(kill: 1, every: .seconds(10), down: .seconds(5), cycles: 2), clock: clock, events: events).run(on: later)
        #expect(summary == ChurnSummary(cycles: 2, stopped: 1, end: .cycles))
        #expect(events.all.contains { if case .skipped(1, 0, _) = $0 { return true } else { return false } })
    }

    /// A node that does not come back ends the schedule with an error naming it.
    @Test(.timeLimit(.minutes(1)))
    func aNodeThatDoesNotComeBackEndsIt() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 1, clock: clock)
        target.stuck = [ResourceAddress(type: "local_node", name: "worker", index: 0)]
        let events = Events()
        do {
            _ = try await runner(ChurnSchedule(every: .seconds(10), down: .seconds(5), cycles: 5), clock: clock, events: events).run(on: target)
            Issue.record("the run went on")
        } catch let error as ChurnError {
            #expect(error.description.contains("local_node.worker[0] (its create failed) did not come back"))
        }
        #expect(target.entries.filter { $0.what.hasPrefix("stop") }.count == 1)
    }

    /// Bringing nodes back took longer than the time between cycles: the next starts at once, late.
    @Test(.timeLimit(.minutes(1)))
    func anOverrunMakesTheNextCycleLate() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 2, clock: clock)
        target.healTime = .seconds(25)
        let events = Events()
        _ = try await runner(ChurnSchedule(every: .seconds(20), down: .seconds(5), cycles: 2), clock: clock, events: events).run(on: target)
        #expect(target.entries.filter { $0.what.hasPrefix("stop") }.map(\.time) == [0, 30])
        #expect(events.all.contains(.late(cycle: 1, by: 10)))
    }

    /// A schedule with problems is refused before anything is stopped.
    @Test(.timeLimit(.minutes(1)))
    func aBadScheduleIsRefused() async throws {
        let clock = VirtualClock()
        let target = FakeChurnTarget(nodes: 2, clock: clock)
        await #expect(throws: ChurnError.self) {
            try await runner(ChurnSchedule(every: .seconds(10), down: .seconds(10)), clock: clock, events: Events()).run(on: target)
        }
        #expect(target.entries.isEmpty)
    }

    @Test func plansShowTheSchedule() {
        var plan = Plan(stack: "lab", environment: "prod", lineage: "l", serial: 1, createdAt: Date(timeIntervalSince1970: 0), changes: [])
        #expect(!PlanRenderer.render(plan).contains("Churn"))
        plan.churn = ChurnSchedule(kill: 1, every: .seconds(120), down: .seconds(60), pool: "worker")
        #expect(PlanRenderer.render(plan).contains(
            "Churn schedule: 1 node of pool 'worker' every 2m, down 1m, until stopped (`stratum chaos churn --stack lab --env prod` runs it)"))
    }
}
