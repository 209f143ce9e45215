import Foundation
import Stratum
import StratumAWS
import StratumCloud
import StratumCore
import StratumEngine
import StratumStacks
import StratumTesting
import Testing

/// EC2 user data is plain text that anyone allowed to describe an instance can read, so a
/// `Secret` must never reach it: a stack that puts one in a node's env is invalid, and a secret
/// that arrives through a reference at apply time is refused by the executor before RunInstances.
@Suite("AWS: no secret in user data")
struct AWSSecretUserDataTests {
    static let secret = "hf_stratum-secret-0b9d2c"

    @Test func aSecretInANodesEnvIsAValidationErrorNamingTheKey() throws {
        let placement = Placement.aws(region: "us-east-1", zones: ["us-east-1a"])
        var content = StackContent()
        let network = Network("net", cidr: "10.0.0.0/16", on: placement)
        network.declare(into: &content)
        NodePool(
            "gpu", count: 1, machine: .gpu("H100", count: 8), command: ["train"],
            env: ["HF_TOKEN": Secret(Self.secret), "MODE": "train"], network: network, on: placement
        ).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: "t", environment: "dev")
        let provider = AWSProvider.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
        let error = try #require(throws: ValidationError.self) { try Planner(providers: ProviderRegistry([provider])).validate(stack) }
        let messages = error.diagnostics.map(\.description)
        #expect(messages.count == 1, "\(messages)")
        #expect(messages.first?.contains("aws_instance.gpu[0]") == true, "\(messages)")
        #expect(messages.first?.contains("env.HF_TOKEN holds a Secret") == true, "\(messages)")
        #expect(!error.description.contains(Self.secret))
    }

    @Test(.enabled(if: Moto.available, Moto.skipReason), .timeLimit(.minutes(2)))
    func aSecretArrivingAtApplyTimeIsNeverSentAsUserData() async throws {
        let world = try await AWSWorld.make(region: "ap-south-1")
        defer { Task { await world.shutdown() } }
        let placement = Placement.aws(region: world.region, zones: ["\(world.region)a"])
        var content = StackContent()
        let network = Network("net", cidr: "10.0.0.0/16", on: placement)
        network.declare(into: &content)
        NodePool("plain", count: 1, machine: .gpu("H100", count: 8), image: "ami-12c6146b", command: ["train"], env: ["MODE": "train"], network: network, on: placement)
            .declare(into: &content)
        NodePool("leaky", count: 1, machine: .gpu("H100", count: 8), image: "ami-12c6146b", command: ["train"], env: ["HF_TOKEN": Secret(Self.secret)], network: network, on: placement)
            .declare(into: &content)
        // Not validated, as if the secret had come through a reference that resolves only at apply time.
        let stack = try StackEvaluator.evaluate(content, name: AWSGPUCluster.name, environment: world.environment)
        let launchesBefore = await world.faults.forwarded["RunInstances", default: 0]
        let result = try await world.apply(try await world.plan(stack))

        // The executor refused the leaky node before any call; everything else was made.
        #expect(result.failed.map(\.step.address.description) == ["aws_instance.leaky[0]"])
        let refusal = result.failed.first.map { "\($0.error)" } ?? ""
        #expect(refusal.contains("env.HF_TOKEN holds a Secret"), "\(refusal)")
        #expect(!refusal.contains(Self.secret))
        #expect(await world.faults.forwarded["RunInstances", default: 0] == launchesBefore + 1)
        let snapshot = await world.store.read(workspace: world.workspace)
        let plain = try #require(snapshot.resources[ResourceAddress(type: "aws_instance", name: "plain", index: 0)])
        #expect(snapshot.resources[ResourceAddress(type: "aws_instance", name: "leaky", index: 0)] == nil)

        // Read back the user data of every instance of this state in moto: the plain node's boot
        // script is there (so the check reads real user data), and the secret is nowhere.
        let ids = try await world.tagged("DescribeInstances", items: "", lineage: snapshot.lineage).compactMap { $0.string("instanceId") }
        #expect(ids.contains(plain.id))
        var scripts: [String: String] = [:]
        for id in ids {
            let attribute = try await world.direct.ec2(
                "DescribeInstanceAttribute", [("InstanceId", id), ("Attribute", "userData")], region: world.region, idempotent: true)
            let encoded = attribute.string("userData/value") ?? ""
            scripts[id] = Data(base64Encoded: encoded).map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
        #expect(scripts[plain.id].flatMap { try? NodeSetupDocument($0) }?.environment["MODE"] == "train", "\(scripts[plain.id] ?? "none")")
        #expect(scripts.values.allSatisfy { !$0.contains(Self.secret) })
        #expect(try await world.apply(try await world.destroyPlan()).ok)
    }

    /// With a role to read it with, a node's secret goes to SSM Parameter Store as a
    /// SecureString under the role's path; the user data names the parameter, never the value;
    /// destroy deletes it.
    @Test(.enabled(if: Moto.available, Moto.skipReason), .timeLimit(.minutes(3)))
    func aSecretReachesTheNodeThroughParameterStore() async throws {
        let world = try await AWSWorld.make(region: "eu-north-1")
        defer { Task { await world.shutdown() } }
        let placement = Placement.aws(region: world.region, zones: ["\(world.region)a"])
        var content = StackContent()
        let network = Network("net", cidr: "10.0.0.0/16", on: placement)
        let bucket = Bucket(world.bucketName, on: placement)
        let role = AWS.InstanceRole("node", bucket: bucket, region: world.region)
        network.declare(into: &content)
        bucket.declare(into: &content)
        role.declare(into: &content)
        AWS.InstanceGroup(
            "worker", count: 1,
            AWS.LaunchSpec(
                ami: "ami-12c6146b", instanceType: "g5.xlarge", subnets: AWSLowering.subnets(of: network), command: ["train"],
                env: ["HF_TOKEN": Secret(Self.secret), "MODE": "train"], instanceProfile: role.instanceProfile),
            region: world.region
        ).declare(into: &content)
        let stack = try StackEvaluator.evaluate(content, name: AWSGPUCluster.name, environment: world.environment)
        let result = try await world.apply(try await world.plan(stack))
        #expect(result.ok, "\(result.failed.map { "\($0.step.address): \($0.error)" })")

        let snapshot = await world.store.read(workspace: world.workspace)
        let worker = try #require(snapshot.resources[ResourceAddress(type: "aws_instance", name: "worker", index: 0)])
        let attribute = try await world.direct.ec2("DescribeInstanceAttribute", [("InstanceId", worker.id), ("Attribute", "userData")], region: world.region, idempotent: true)
        let encoded = attribute.string("userData/value") ?? ""
        let setup = try NodeSetupDocument(base64: encoded)
        #expect(!setup.text.contains(Self.secret) && !encoded.contains(Self.secret))
        #expect(setup.environment["MODE"] == "train" && setup.environment["HF_TOKEN"] == nil)
        let list = try #require(setup.files["/etc/stratum/secrets.list"])
        let parameter = try #require(list.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        let profile = try #require(worker.attributes["iam_instance_profile"]?.stringValue)
        #expect(list.hasPrefix("HF_TOKEN /stratum/\(profile)/"), "\(list)")
        #expect(setup.files["/etc/systemd/system/stratum-workload.service"]?.contains("ExecStartPre=/usr/local/lib/stratum/secrets.sh") == true)

        // The parameter holds the value, encrypted at rest; the role may read its path.
        let stored = try await world.direct.json(
            service: "ssm", target: "AmazonSSM.GetParameter", ["Name": parameter, "WithDecryption": true], region: world.region, idempotent: true)
        let found = stored["Parameter"] as? [String: Any]
        #expect(found?["Value"] as? String == Self.secret && found?["Type"] as? String == "SecureString")
        let policy = try await world.direct.iam("GetRolePolicy", [("RoleName", profile), ("PolicyName", "stratum-bucket")], idempotent: true)
        let document = (policy["GetRolePolicyResult"]?.string("PolicyDocument")).flatMap { $0.removingPercentEncoding } ?? ""
        #expect(document.contains("parameter/stratum/\(profile)/*"), "\(document)")

        #expect(try await world.apply(try await world.destroyPlan()).ok)
        let gone = try await world.direct.json(
            service: "ssm", target: "AmazonSSM.GetParameters", ["Names": [parameter]], region: world.region, idempotent: true)
        #expect((gone["Parameters"] as? [Any])?.isEmpty == true, "\(gone)")
    }
}
