import Foundation
import Stratum
import StratumAWS
import StratumCore
import StratumEngine
import StratumStacks
import Testing

@Suite("AWS lowering of portable resources")
struct AWSLoweringTests {
    @Test func portableResourcesBecomeAWSResources() throws {
        let placement = Placement.aws(region: "us-east-1", zones: ["us-east-1a", "us-east-1b", "us-east-1c"])
        var content = StackContent()
        let network = Network("net", cidr: "10.0.0.0/16", on: placement)
        let bucket = Bucket("ckpt-bucket", versioning: true, on: placement)
        network.declare(into: &content)
        bucket.declare(into: &content)
        NodePool("gpu", count: 2, machine: .gpu("H100", count: 8), command: ["train"], env: ["CKPT": bucket.url], network: network, on: placement).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "t", environment: "dev")
        let types = stack.resources.map(\.address.description).sorted()
        #expect(types == [
            "aws_instance.gpu[0]", "aws_instance.gpu[1]", "aws_internet_gateway.net", "aws_route_table.net", "aws_s3_bucket.ckpt-bucket",
            "aws_security_group.net", "aws_subnet.net[0]", "aws_subnet.net[1]", "aws_subnet.net[2]", "aws_vpc.net",
        ])
        let node = try #require(stack.resources.first { $0.address.description == "aws_instance.gpu[1]" })
        #expect(node.inputs["instance_type"] == "p5.48xlarge")
        #expect(node.inputs["subnet_ids"]?.references.map(\.address.description) == ["aws_subnet.net[0]", "aws_subnet.net[1]", "aws_subnet.net[2]"])
        #expect(node.inputs["container_image"] == nil, "the command runs on the machine image itself")
        // Rank 1 is told rank 0's address; rank 0 learns its own at boot.
        #expect(node.inputs["coordinator"]?.references.map(\.description) == ["aws_instance.gpu[0].private_ip"])
        #expect(stack.resources.first { $0.address.description == "aws_instance.gpu[0]" }?.inputs["coordinator"] == nil)
        let subnets = stack.resources.filter { $0.address.type == "aws_subnet" }.sorted { $0.address < $1.address }
        #expect(subnets.map { $0.inputs["cidr"] } == ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"])
        #expect(subnets.map { $0.inputs["availability_zone"] } == ["us-east-1a", "us-east-1b", "us-east-1c"])
        // Every lowered resource passes the AWS provider's schema and checks.
        let provider = AWSProvider.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
        try Planner(providers: ProviderRegistry([provider])).validate(stack)
    }

    @Test func awsPlacementCarriesTheAWSLowering() {
        let placement = Placement.aws(region: "eu-west-1")
        #expect(placement.lowering is AWSLowering)
        // Equal to a placement without the lowering: equality is provider, region and zones.
        #expect(placement == Placement(provider: "aws", region: "eu-west-1"))
        #expect(Network("n", cidr: "10.0.0.0/16", on: placement).address.description == "aws_vpc.n")
        #expect(Bucket("b-1", on: placement).address.description == "aws_s3_bucket.b-1")
        #expect(NodePool("p", count: 1, command: ["x"], on: placement).node(0).description == "aws_instance.p[0]")
    }

    @Test func poolsOnAWSNeedANetworkAndAKnownMachine() {
        var content = StackContent()
        NodePool("cpu", count: 1, command: ["x"], on: .aws(region: "us-east-1")).declare(into: &content)
        let net = Network("n", cidr: "10.0.0.0/16", on: .aws(region: "us-east-1"))
        NodePool("odd", count: 1, machine: .gpu("Z9000", count: 3), command: ["x"], network: net, on: .aws(region: "us-east-1")).declare(into: &content)
        Bucket("Bad_Name", on: .aws(region: "us-east-1")).declare(into: &content)
        let messages = content.diagnostics.map(\.message)
        #expect(messages.contains { $0.contains("needs a network") })
        #expect(messages.contains { $0.contains("no EC2 instance type known for 3 × Z9000") })
        #expect(messages.contains { $0.contains("invalid S3 bucket name 'Bad_Name'") })
    }

    @Test func bundledStackEvaluatesForEveryEnvironment() throws {
        for file in ["aws-gpu-cluster.dev.yaml", "aws-gpu-cluster.prod.yaml"] {
            let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/\(file)").standardized
            let config = try StackConfigLoader.load(AWSGPUCluster.Config.self, from: url)
            let stack = try StackEvaluator.evaluate(AWSGPUCluster().body(config: config), name: AWSGPUCluster.name, environment: "x")
            let workers = stack.resources.filter { $0.address.type == "aws_instance" }
            #expect(workers.count == config.workers)
            #expect(workers.allSatisfy { $0.inputs["instance_type"]?.stringValue == config.instanceType })
            #expect(stack.resources.contains { $0.address.type == "aws_placement_group" } == config.placementGroup)
            let provider = AWSProvider.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
            try Planner(providers: ProviderRegistry([provider])).validate(stack)
        }
        #expect(AWSGPUCluster.Config().instanceType == "p5.48xlarge")
    }
}
