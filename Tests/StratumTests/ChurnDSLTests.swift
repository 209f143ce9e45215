import Foundation
import Stratum
import Testing

@Suite("Churn in the DSL: declared, checked against the pools")
struct ChurnDSLTests {
    func evaluate(@StackBuilder _ body: () -> StackContent) throws -> EvaluatedStack {
        try StackEvaluator.evaluate(body(), name: "churny", environment: "test")
    }

    /// The problems a body is refused for, as one text.
    func refusal(@StackBuilder _ body: () -> StackContent) -> String {
        do {
            _ = try evaluate(body)
            return "not refused"
        } catch {
            return "\(error)"
        }
    }

    @Test func aStackLevelScheduleAndAPoolsOwn() throws {
        let stack = try evaluate {
            NodePool("worker", count: 3, command: ["/bin/true"])
            NodePool("edge", count: 2, command: ["/bin/true"])
            Churn(kill: 2, every: .seconds(120), down: .seconds(60), cycles: 4, seed: 9, pool: "worker")
        }
        #expect(stack.churn == ChurnSchedule(kill: 2, every: .seconds(120), down: .seconds(60), cycles: 4, seed: 9, pool: "worker"))

        let pooled = try evaluate {
            NodePool("worker", count: 3, command: ["/bin/true"], churn: Churn(every: .seconds(90), down: .seconds(30)))
        }
        #expect(pooled.churn == ChurnSchedule(kill: 1, every: .seconds(90), down: .seconds(30), pool: "worker"))
        // Churn is no resource input: a node's inputs are the same with or without it.
        let plain = try evaluate { NodePool("worker", count: 3, command: ["/bin/true"]) }
        #expect(plain.churn == nil)
        #expect(plain.resources.map(\.inputs) == pooled.resources.map(\.inputs))
    }

    @Test func schedulesThePlanCannotRunAreRefused() {
        #expect(refusal {
            NodePool("worker", count: 2, command: ["/bin/true"])
            Churn(kill: 3, every: .seconds(60), down: .seconds(10), pool: "worker")
        }.contains("churn stops 3 nodes a cycle, but pool 'worker' has 2"))
        #expect(refusal {
            NodePool("worker", count: 2, command: ["/bin/true"])
            Churn(every: .seconds(60), down: .seconds(10), pool: "workers")
        }.contains("churn names the pool 'workers', which the stack does not declare (its pools: worker)"))
        #expect(refusal {
            NodePool("worker", count: 2, command: ["/bin/true"], churn: Churn(every: .seconds(60), down: .seconds(60)))
        }.contains("churn down (1m) must be shorter than every (1m)"))
        #expect(refusal {
            NodePool("gpu", count: 2, command: ["train"], churn: Churn(every: .seconds(60), down: .seconds(10)), on: Placement(provider: "aws", region: "us-east-1"))
        }.contains("churn stops and restarts nodes on the Local provider only, for now; aws_node.gpu[0] is on 'aws'"))
        #expect(refusal {
            NodePool("worker", count: 2, command: ["/bin/true"], churn: Churn(every: .seconds(60), down: .seconds(10), pool: "edge"))
        }.contains("the churn of pool 'worker' names the pool 'edge': leave its pool out"))
        #expect(refusal {
            NodePool("worker", count: 2, command: ["/bin/true"], churn: Churn(every: .seconds(60), down: .seconds(10)))
            Churn(every: .seconds(30), down: .seconds(10))
        }.contains("a stack declares one churn schedule; another is declared at"))
        #expect(refusal {
            Bucket("data")
            Churn(every: .seconds(30), down: .seconds(10))
        }.contains("churn stops nodes, but the stack declares no node pool"))
    }
}
