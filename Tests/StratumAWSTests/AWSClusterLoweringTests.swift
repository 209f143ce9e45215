import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import Testing

@Suite("AWS: a GPU cluster where placement put it")
struct AWSClusterLoweringTests {
    @Test func aGPUClusterLandsAsAVPCAndAGangOfInstancesInTheDecidedZone() throws {
        let landing = Landing(cloud: "aws", region: "us-east-1", zone: "us-east-1b", instanceType: "p5.48xlarge", machines: 2, gpusPerMachine: 8, spot: true, hourly: 60)
        let decision = PlacementDecision(request: "r", landing: landing, runnersUp: [], reason: "test")
        let cluster = GPUCluster("train", gpu: .h100, count: 16, clouds: [.aws(region: "us-east-1", zones: ["us-east-1a", "us-east-1b"])], spot: true, command: ["true"])
        var content = StackContent()
        ClusterDecisions.$current.withValue(["train": decision]) { cluster.declare(into: &content) }
        let stack = try StackEvaluator.evaluate(content, name: "t", environment: "dev")
        let instances = stack.resources.filter { $0.address.type == "aws_instance" }
        #expect(instances.count == 2)
        #expect(instances.allSatisfy { $0.inputs["instance_type"] == "p5.48xlarge" && $0.inputs["spot"] == true })
        // One subnet, in the decided zone: the gang cannot spill into another.
        let subnets = stack.resources.filter { $0.address.type == "aws_subnet" }
        #expect(subnets.map { $0.inputs["availability_zone"] } == ["us-east-1b"])
        // The gang shares a cluster placement group.
        let group = try #require(stack.resources.first { $0.address.type == "aws_placement_group" })
        #expect(group.address.name == "train" && group.inputs["strategy"] == "cluster")
        #expect(instances.allSatisfy { $0.inputs["placement_group"] == .reference(AttributeReference(address: group.address, attribute: "id")) })
        let keys = StaticCredentials(AWSCredentials(accessKeyId: "k", secretAccessKey: "s", source: "test"))
        let aws = AWSProvider(client: AWSClient(configuration: .init(), credentials: keys, transport: AsyncHTTPTransport()))
        try Planner(providers: ProviderRegistry([aws, StratumBuiltinProvider()])).validate(stack)
    }
}
