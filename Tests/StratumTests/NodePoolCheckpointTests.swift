import Stratum
import StratumCore
import Testing

@Suite("Node pools declare the node contract's inputs")
struct NodePoolCheckpointTests {
    @Test func aBucketCheckpointBecomesEachNodesCheckpointURLAndADependency() throws {
        var content = StackContent()
        let bucket = Bucket("checkpoints")
        bucket.declare(into: &content)
        NodePool("worker", count: 2, command: ["train"], checkpoint: bucket.url).declare(into: &content)
        NodePool("plain", count: 1, command: ["serve"]).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "s", environment: "dev")
        let workers = stack.resources.filter { $0.address.name == "worker" }
        #expect(workers.count == 2)
        for node in workers {
            #expect(node.inputs["count"] == .int(2))
            #expect(node.inputs["pool"] == .string("worker"))
            #expect(node.inputs["checkpoint_url"]?.references.map(\.address) == [bucket.address])
            #expect(node.dependencies.contains(bucket.address))
        }
        let plain = try #require(stack.resources.first { $0.address.name == "plain" })
        #expect(plain.inputs["checkpoint_url"] == nil)
        #expect(plain.inputs["count"] == .int(1))
    }

    @Test func aURLCheckpointIsCarriedAsIs() throws {
        var content = StackContent()
        NodePool("worker", count: 1, command: ["train"], checkpoint: "s3://ckpt/run-1").declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "s", environment: "dev")
        #expect(stack.resources.first?.inputs["checkpoint_url"] == .string("s3://ckpt/run-1"))
    }
}
