import Foundation
import StratumCore
import Testing

@Suite("ChurnSchedule: durations, checks, the seeded choice of nodes")
struct ChurnScheduleTests {
    @Test func durationsReadAndPrint() throws {
        #expect(try ChurnSchedule.duration("90s") == .seconds(90))
        #expect(try ChurnSchedule.duration("90") == .seconds(90))
        #expect(try ChurnSchedule.duration("2m") == .seconds(120))
        #expect(try ChurnSchedule.duration("1.5h") == .seconds(5400))
        #expect(try ChurnSchedule.duration("0.25s") == .milliseconds(250))
        for bad in ["", "2x", "m", "-5s", "1e9h", "nan", "two minutes"] {
            #expect(throws: ChurnError.self, "\(bad)") { try ChurnSchedule.duration(bad) }
        }
        #expect(ChurnSchedule.format(.seconds(120)) == "2m")
        #expect(ChurnSchedule.format(.seconds(3600)) == "1h")
        #expect(ChurnSchedule.format(.seconds(90)) == "90s")
        #expect(ChurnSchedule.format(.milliseconds(1500)) == "1.5s")
        #expect(ChurnSchedule.format(.zero) == "0s")
    }

    @Test func problemsNameWhatIsWrong() {
        #expect(ChurnSchedule(every: .seconds(120), down: .seconds(60)).problems.isEmpty)
        func problems(_ schedule: ChurnSchedule) -> String { schedule.problems.joined(separator: " | ") }
        #expect(problems(ChurnSchedule(kill: 0, every: .seconds(10), down: .seconds(1))).contains("at least 1 node a cycle (got kill 0)"))
        #expect(problems(ChurnSchedule(every: .seconds(60), down: .seconds(60))).contains("churn down (1m) must be shorter than every (1m)"))
        #expect(problems(ChurnSchedule(every: .seconds(60), down: .seconds(90))).contains("must be shorter than every"))
        #expect(problems(ChurnSchedule(every: .seconds(60), down: .zero)).contains("churn down must be more than 0s"))
        #expect(problems(ChurnSchedule(every: .milliseconds(500), down: .milliseconds(100))).contains("every must be at least 1s"))
        #expect(problems(ChurnSchedule(every: .seconds(60), down: .seconds(1), cycles: 0)).contains("cycles must be at least 1"))
        #expect(problems(ChurnSchedule(every: .seconds(60), down: .seconds(1), cycles: 2, for: .seconds(600))).contains("cycles or for, not both"))
        #expect(problems(ChurnSchedule(every: .seconds(60), down: .seconds(1), pool: "")).contains("pool must not be empty"))
    }

    @Test func summaryLine() {
        #expect(ChurnSchedule(every: .seconds(120), down: .seconds(60)).summary == "1 node of any pool every 2m, down 1m, until stopped")
        #expect(ChurnSchedule(kill: 2, every: .seconds(90), down: .seconds(30), cycles: 3, seed: 7, pool: "worker").summary
            == "2 nodes of pool 'worker' every 90s, down 30s, 3 cycles, seed 7")
        #expect(ChurnSchedule(every: .seconds(60), down: .seconds(10), for: .seconds(3600)).summary.hasSuffix(", for 1h"))
    }

    /// The same seed chooses the same nodes; the generator's sequence is fixed (SplitMix64's
    /// published first output for seed 0), so a seed means the same on every machine.
    @Test func theChoiceIsFixedBySeed() {
        var zero = ChurnRandom(seed: 0)
        #expect(zero.next() == 0xE220_A839_7B1D_CDAF)
        let nodes = (0..<8).map { "node-\($0)" }
        func choices(_ seed: UInt64) -> [[String]] {
            var random = ChurnRandom(seed: seed)
            return (0..<5).map { _ in ChurnSchedule.choose(3, from: nodes, using: &random) }
        }
        #expect(choices(42) == choices(42))
        #expect(choices(42) != choices(43))
        for choice in choices(42) {
            #expect(choice.count == 3)
            #expect(Set(choice).count == 3)
            #expect(Set(choice).isSubset(of: nodes))
        }
        // Over many draws every node is chosen: the choice is not stuck on a few.
        var random = ChurnRandom(seed: 1)
        var seen: Set<String> = []
        for _ in 0..<50 { seen.formUnion(ChurnSchedule.choose(1, from: nodes, using: &random)) }
        #expect(seen == Set(nodes))
        var any = ChurnRandom(seed: 3)
        #expect(ChurnSchedule.choose(5, from: ["a", "b"], using: &any).sorted() == ["a", "b"])
    }

    @Test func problemsAgainstTheStacksPools() {
        func node(_ pool: String, _ index: Int, provider: String = "local") -> DesiredResource {
            DesiredResource(
                address: ResourceAddress(type: "\(provider)_node", name: pool, index: index), provider: provider, region: "r",
                inputs: ["pool": .string(pool), "index": .int(index)])
        }
        let bucket = DesiredResource(address: ResourceAddress(type: "local_bucket", name: "data"), provider: "local", region: "local", inputs: [:])
        let stack = [bucket, node("worker", 0), node("worker", 1), node("edge", 0, provider: "aws")]
        let schedule = ChurnSchedule(kill: 2, every: .seconds(60), down: .seconds(10), pool: "worker")
        #expect(schedule.problems(in: stack).isEmpty)

        var more = schedule
        more.kill = 3
        #expect(more.problems(in: stack) == ["churn stops 3 nodes a cycle, but pool 'worker' has 2"])
        var unknown = schedule
        unknown.pool = "wroker"
        #expect(unknown.problems(in: stack) == ["churn names the pool 'wroker', which the stack does not declare (its pools: edge, worker)"])
        var edge = schedule
        edge.pool = "edge"
        edge.kill = 1
        #expect(edge.problems(in: stack) == ["churn stops and restarts nodes on the Local provider only, for now; aws_node.edge[0] is on 'aws'"])
        // Without a pool, every pool's nodes: the AWS one among them.
        var all = schedule
        all.pool = nil
        #expect(all.problems(in: stack).contains { $0.contains("Local provider only") })
        #expect(ChurnSchedule(every: .seconds(60), down: .seconds(10)).problems(in: [bucket]) == ["churn stops nodes, but the stack declares no node pool"])
    }
}
