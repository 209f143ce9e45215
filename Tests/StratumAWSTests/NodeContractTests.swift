import Foundation
import Stratum
@testable import StratumAWS
import StratumBootstrap
import StratumCore
import StratumCloud
import StratumLocal
import StratumTesting
import Testing

/// The same node pool on Local (run for real) and on AWS (its user data rendered): both give
/// each node the one contract of `STRATUM_*` variables.
@Suite("One node contract on every provider", .timeLimit(.minutes(3)))
struct NodeContractTests {
    static let checkpoint = "s3://stratum-checkpoints/run-7"

    /// A workload that records the environment it was started with, then waits to be stopped.
    static func pool(on placement: Placement, network: Network?) -> NodePool {
        NodePool(
            "trainer", count: 3, machine: MachineRequest(instanceType: "m7i.large"),
            command: ["/bin/sh", "-c", #"env > "$STRATUM_NODE_DIR/env.tmp" && mv "$STRATUM_NODE_DIR/env.tmp" "$STRATUM_NODE_DIR/env.txt"; exec sleep 60"#],
            // A stack cannot override the contract: its STRATUM_NODE_INDEX is replaced.
            env: ["MODE": "train", "STRATUM_NODE_INDEX": "99"], checkpoint: checkpoint, network: network, on: placement)
    }

    static func nodes(of declarations: (inout StackContent) -> Void) throws -> [ResolvedResource] {
        var content = StackContent()
        declarations(&content)
        let stack = try StackEvaluator.evaluate(content, name: "contract", environment: "test")
        return stack.resources.filter { $0.address.type.hasSuffix("_node") || $0.address.type == "aws_instance" }
            .sorted { $0.address < $1.address }
            .map { ResolvedResource(address: $0.address, region: $0.region, inputs: $0.inputs, dependencies: []) }
    }

    @Test func localRunsAndAWSRendersTheSameContract() async throws {
        // Local: start each node for real and read back the environment it got.
        let local = try Self.nodes { Self.pool(on: .local, network: nil).declare(into: &$0) }
        #expect(local.count == 3)
        let provider = LocalProvider(root: try TestSupport.temporaryDirectory("node-contract"))
        var localEnv: [Int: [String: String]] = [:]
        for node in local {
            let state = try await provider.create(node, token: "tok-\(node.address.index ?? 0)")
            defer { Task { try? await provider.delete(state) } }
            let directory = try #require(state.attributes["log_path"]?.stringValue.map { URL(fileURLWithPath: $0).deletingLastPathComponent() })
            let file = directory.appendingPathComponent("env.txt")
            let deadline = ContinuousClock.now + .seconds(20)
            while !FileManager.default.fileExists(atPath: file.path), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let text = try String(contentsOf: file, encoding: .utf8)
            localEnv[node.address.index ?? -1] = Dictionary(
                text.split(separator: "\n").compactMap { line in line.firstIndex(of: "=").map { (String(line[..<$0]), String(line[line.index(after: $0)...])) } },
                uniquingKeysWith: { $1 })
            try await provider.delete(state)
        }

        // AWS: the same pool, lowered to instances; each one's user data.
        let placement = Placement.aws(region: "eu-central-1", zones: ["eu-central-1a", "eu-central-1b"])
        let aws = try Self.nodes {
            let network = Network("net", cidr: "10.0.0.0/16", on: placement)
            network.declare(into: &$0)
            Self.pool(on: placement, network: network).declare(into: &$0)
        }
        #expect(aws.count == 3)
        var awsSetups: [Int: NodeSetupDocument] = [:]
        for node in aws {
            let machine = AWSInstanceCatalog.bootstrapMachine(instanceType: "p5.48xlarge", gpus: 8, gpuClass: "H100")
            let userData = try #require(try NodeUserData.render(node, flavour: .aws, machine: machine))
            awsSetups[node.address.index ?? -1] = try NodeSetupDocument(String(decoding: userData.bytes, as: UTF8.self))
        }

        for index in 0..<3 {
            let onLocal = try #require(localEnv[index])
            let setup = try #require(awsSetups[index])
            let script = setup.bootEnv
            let onAWS = setup.environment
            for (name, expected) in [
                (NodeContract.nodeName, "trainer-\(index)"), (NodeContract.nodeIndex, "\(index)"), (NodeContract.nodeCount, "3"),
                (NodeContract.clusterName, "trainer"), (NodeContract.checkpointURLName, Self.checkpoint),
            ] {
                #expect(onLocal[name] == expected, "local \(name)")
                #expect(onAWS[name] == expected, "aws \(name)")
            }
            #expect(onLocal[NodeContract.cloudName] == "local" && onAWS[NodeContract.cloudName] == "aws")
            #expect(onLocal[NodeContract.regionName] == "local" && onAWS[NodeContract.regionName] == "eu-central-1")
            #expect(onLocal[NodeContract.zoneName] == "local")
            // On AWS the zone is the one the instance launched in, read from IMDS at boot.
            #expect(script.contains("export STRATUM_ZONE=\"$(curl -sf -H \"X-aws-ec2-metadata-token: $imds_token\" \"$imds/latest/meta-data/placement/availability-zone\""))
            #expect(onLocal["MODE"] == "train" && onAWS["MODE"] == "train")
            #expect(onLocal[NodeContract.coordinatorName] == "127.0.0.1")
            // On AWS rank 1 and 2 are told rank 0's address (resolved at apply); rank 0 reads its own at boot.
            #expect(script.contains("STRATUM_COORDINATOR") && script.contains("local-ipv4"))
            // Every variable of the contract is there on both.
            for name in NodeContract.variables {
                #expect(onLocal[name] != nil, "local lacks \(name)")
                #expect(onAWS[name] != nil || script.contains("export \(name)="), "aws lacks \(name)")
                #expect(onAWS[name] == nil || !script.contains("export \(name)="), "aws sets \(name) twice")
            }
        }
    }

    @Test func aPoolWithoutCheckpointGetsNoCheckpointVariable() throws {
        let node = try #require(try Self.nodes {
            NodePool("solo", count: 1, command: ["true"], on: .local).declare(into: &$0)
        }.first)
        let env = NodeContract(node: node, cloud: "local", zone: "local").environment
        #expect(env[NodeContract.checkpointURLName] == nil)
        #expect(env[NodeContract.nodeCount] == "1")
        #expect(env[NodeContract.nodeName] == "solo-0")
    }

    /// State written before the pool size was a node input lacks `count`: an upgrade alone must
    /// not replace running nodes, while a real change of size still does (the input forces it).
    @Test func nodesRecordedWithoutAPoolSizeAreNotReplacedForLackingOne() throws {
        let local = LocalProvider(root: URL(fileURLWithPath: "/nonexistent"))
        let keys = StaticCredentials(AWSCredentials(accessKeyId: "k", secretAccessKey: "s", source: "test"))
        let aws = AWSProvider(client: AWSClient(configuration: .init(), credentials: keys, transport: AsyncHTTPTransport()))
        for (provider, type) in [(local as any Provider, "local_node"), (aws, "aws_instance")] {
            let kind = try #require(provider.kinds[type] as (any ResourceKind)?)
            #expect(kind.schema.attributes["count"]?.forceNew == true, "\(type)")
            let address = ResourceAddress(type: type, name: "trainer", index: 0)
            let old = ResourceState(address: address, provider: provider.name, region: "r", id: "n-0", attributes: ["pool": "trainer", "index": 0])
            #expect(kind.review(old, desired: ["pool": "trainer", "index": 0, "count": 4]).prior.attributes["count"] == 4, "\(type)")
            var sized = old
            sized.attributes["count"] = 3
            #expect(kind.review(sized, desired: ["pool": "trainer", "index": 0, "count": 4]).prior.attributes["count"] == 3, "\(type)")
        }
    }
}
