import Foundation
import Stratum
import StratumAWS
import StratumAzure
import StratumCore
import StratumEngine
import StratumGCP
import Testing

/// A `GPUCluster` that may land on several clouds keeps one checkpoint bucket, and every node,
/// wherever it lands, is given an identity that may use it.
@Suite("GPU clusters: one checkpoint bucket every landing reaches")
struct CrossCloudCheckpointTests {
    static let clouds: [Placement] = [
        .gcp(project: "stratum-test", region: "us-central1", zones: ["us-central1-a"]), .aws(region: "us-east-1", zones: ["us-east-1a"]),
        .azure(subscription: "11111111-2222-3333-4444-555555555555", location: "eastus", zones: ["1"]),
    ]

    static func registry() -> ProviderRegistry {
        ProviderRegistry([
            AWSProvider.fromEnvironment(["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_EC2_METADATA_DISABLED": "true"]),
            GCPProvider.fromEnvironment(["GOOGLE_CLOUD_PROJECT": "stratum-test", "NO_GCE_CHECK": "true"]),
            AzureProvider.fromEnvironment(["AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555"]),
            StratumBuiltinProvider(),
        ])
    }

    static func evaluate(_ cluster: GPUCluster, landing: Landing?) throws -> EvaluatedStack {
        var content = StackContent()
        let decisions = landing.map { ["train": PlacementDecision(request: "r", landing: $0, runnersUp: [], reason: "test")] } ?? [:]
        ClusterDecisions.$current.withValue(decisions) { cluster.declare(into: &content) }
        return try StackEvaluator.evaluate(content, name: "t", environment: "dev")
    }

    static func cluster(_ clouds: [Placement] = clouds, checkpoint: (any StringExpression)? = nil) -> GPUCluster {
        GPUCluster("train", gpu: .h100, count: 16, clouds: clouds, command: ["true"], checkpoint: checkpoint, checkpointBucket: "stratum-test-train-ckpt")
    }

    static func ref(_ type: String, _ name: String, _ attribute: String) -> Value {
        .reference(AttributeReference(address: ResourceAddress(type: type, name: name), attribute: attribute))
    }

    @Test func landedOnGCPTheNodesAssumeARoleOfTheBucketOnAWSWithTheirAccountsTokens() async throws {
        let landing = Landing(cloud: "gcp", region: "us-central1", zone: "us-central1-a", instanceType: "a3-highgpu-8g", machines: 2, gpusPerMachine: 8, spot: false, hourly: 100)
        let stack = try Self.evaluate(Self.cluster(), landing: landing)
        // The bucket is on AWS, the one cloud here whose buckets other clouds' nodes are let into.
        let bucket = try #require(stack.resources.first { $0.address.type == "aws_s3_bucket" })
        #expect(bucket.address.name == "stratum-test-train-ckpt" && bucket.region == "us-east-1")
        // The nodes run as an account bound to no GCP bucket ...
        let account = try #require(stack.resources.first { $0.address == ResourceAddress(type: "gcp_service_account", name: "train") })
        #expect(account.inputs["bucket"] == nil)
        // ... which the bucket's role trusts, and nothing else.
        let role = try #require(stack.resources.first { $0.address == ResourceAddress(type: "aws_instance_role", name: "train") })
        #expect(role.inputs["bucket"] == Self.ref("aws_s3_bucket", "stratum-test-train-ckpt", "id"))
        #expect(role.inputs["web_identities"] == .list([.map([
            "issuer": "accounts.google.com", "subject": Self.ref("gcp_service_account", "train", "unique_id"), "audience": "stratum:stratum-test-train-ckpt",
        ])]))
        #expect(role.dependencies.contains(account.address))
        let nodes = stack.resources.filter { $0.address.type == "gcp_instance" }
        #expect(nodes.count == 2)
        for node in nodes {
            #expect(node.inputs["service_account"] == Self.ref("gcp_service_account", "train", "email"))
            #expect(node.inputs["checkpoint_url"] == Self.ref("aws_s3_bucket", "stratum-test-train-ckpt", "url"))
            guard case .map(let env)? = node.inputs["env"] else {
                Issue.record("no env on \(node.address)")
                continue
            }
            #expect(env["AWS_ROLE_ARN"] == Self.ref("aws_instance_role", "train", "role_arn"))
            #expect(env["STRATUM_WEB_IDENTITY"] == "gcp" && env["STRATUM_WEB_IDENTITY_AUDIENCE"] == "stratum:stratum-test-train-ckpt")
            #expect(env["AWS_REGION"] == "us-east-1")
            #expect(node.dependencies.contains(role.address))
        }
        try Planner(providers: Self.registry()).validate(stack)
    }

    /// A lowering whose buckets no other cloud's nodes may use.
    struct Loner: PlacementLowering {
        func sharesBuckets(with clouds: Set<String>) -> Bool { clouds.count == 1 }
        func grant(_ bucket: Bucket, to identity: WorkloadIdentity, as name: String, into content: inout StackContent) -> [String: any StringExpression]? { nil }
    }

    @Test func onGCPAndAzureTheBucketIsAContainerWhoseIdentityTrustsTheGCPNodesAccount() async throws {
        let clouds = [Self.clouds[0], Self.clouds[2]]
        let landing = Landing(cloud: "gcp", region: "us-central1", zone: "us-central1-a", instanceType: "a3-highgpu-8g", machines: 2, gpusPerMachine: 8, spot: false, hourly: 100)
        let stack = try Self.evaluate(Self.cluster(clouds), landing: landing)
        // The bucket is a container on Azure (GCP's buckets are not shared with Azure's nodes).
        let container = try #require(stack.resources.first { $0.address.type == "azure_blob_container" })
        #expect(container.address.name == "stratum-test-train-ckpt")
        // An identity assigned on the container, which trusts the GCP account's ID tokens.
        let holder = try #require(stack.resources.first { $0.address == ResourceAddress(type: "azure_node_identity", name: "train") })
        #expect(holder.inputs["scope"] == Self.ref("azure_blob_container", "stratum-test-train-ckpt", "id"))
        let credential = try #require(stack.resources.first { $0.address == ResourceAddress(type: "azure_federated_credential", name: "train") })
        #expect(credential.inputs["identity"] == Self.ref("azure_node_identity", "train", "id"))
        #expect(credential.inputs["issuer"] == "https://accounts.google.com")
        #expect(credential.inputs["subject"] == Self.ref("gcp_service_account", "train", "unique_id"))
        #expect(credential.inputs["audiences"] == .list(["api://AzureADTokenExchange"]))
        let nodes = stack.resources.filter { $0.address.type == "gcp_instance" }
        #expect(nodes.count == 2)
        for node in nodes {
            #expect(node.inputs["checkpoint_url"] == Self.ref("azure_blob_container", "stratum-test-train-ckpt", "url"))
            guard case .map(let env)? = node.inputs["env"] else {
                Issue.record("no env on \(node.address)")
                continue
            }
            #expect(env["AZURE_CLIENT_ID"] == Self.ref("azure_node_identity", "train", "client_id"))
            #expect(env["AZURE_TENANT_ID"] == Self.ref("azure_node_identity", "train", "tenant_id"))
            #expect(env["STRATUM_WEB_IDENTITY"] == "gcp" && env["STRATUM_WEB_IDENTITY_AUDIENCE"] == "api://AzureADTokenExchange")
            #expect(node.dependencies.contains(credential.address) || node.dependencies.contains(holder.address))
        }
        try Planner(providers: Self.registry()).validate(stack)

        // Listed the other way round, the bucket is still on Azure; on AWS and Azure, on AWS.
        let flipped = try Self.evaluate(Self.cluster([Self.clouds[2], Self.clouds[0]]), landing: nil)
        #expect(flipped.resources.map(\.address.type).contains("azure_blob_container"))
        let awsAzure = try Self.evaluate(Self.cluster([Self.clouds[2], Self.clouds[1]]), landing: nil)
        #expect(awsAzure.resources.map(\.address.type) == ["aws_s3_bucket"])
    }

    @Test func landedOnAWSTheNodesUseAnInstanceRoleOfTheBucket() async throws {
        let landing = Landing(cloud: "aws", region: "us-east-1", zone: "us-east-1a", instanceType: "p5.48xlarge", machines: 2, gpusPerMachine: 8, spot: false, hourly: 100)
        let stack = try Self.evaluate(Self.cluster(), landing: landing)
        let role = try #require(stack.resources.first { $0.address == ResourceAddress(type: "aws_instance_role", name: "train") })
        #expect(role.inputs["web_identities"] == nil)
        let nodes = stack.resources.filter { $0.address.type == "aws_instance" }
        #expect(nodes.count == 2 && nodes.allSatisfy { $0.inputs["iam_instance_profile"] == Self.ref("aws_instance_role", "train", "instance_profile") })
        #expect(!stack.resources.contains { $0.address.type.hasPrefix("gcp_") })
        try Planner(providers: Self.registry()).validate(stack)
    }

    @Test func landedOnAzureTheNodesAssumeARoleOfTheBucketWithTheirManagedIdentitysTokens() async throws {
        let landing = Landing(cloud: "azure", region: "eastus", zone: "1", instanceType: "Standard_ND96isr_H100_v5", machines: 2, gpusPerMachine: 8, spot: false, hourly: 100)
        let stack = try Self.evaluate(Self.cluster(), landing: landing)
        // An identity with no assignment on Azure ...
        let identity = try #require(stack.resources.first { $0.address == ResourceAddress(type: "azure_node_identity", name: "train") })
        #expect(identity.inputs["scope"] == nil)
        // ... whose tenant's issuer the account registers, and which the bucket's role trusts.
        let provider = try #require(stack.resources.first { $0.address == ResourceAddress(type: "aws_oidc_provider", name: "entra") })
        #expect(provider.inputs["url"] == Self.ref("azure_node_identity", "train", "issuer"))
        #expect(provider.inputs["client_ids"] == .list(["api://AzureADTokenExchange"]))
        let role = try #require(stack.resources.first { $0.address == ResourceAddress(type: "aws_instance_role", name: "train") })
        #expect(role.inputs["web_identities"] == .list([.map([
            "issuer": Self.ref("azure_node_identity", "train", "issuer"), "subject": Self.ref("azure_node_identity", "train", "principal_id"),
            "audience": "api://AzureADTokenExchange", "provider_arn": Self.ref("aws_oidc_provider", "entra", "arn"),
        ])]))
        let vms = stack.resources.filter { $0.address.type == "azure_virtual_machine" }
        #expect(vms.count == 2)
        for vm in vms {
            #expect(vm.inputs["identity"] == Self.ref("azure_node_identity", "train", "id"))
            #expect(vm.inputs["identity_client_id"] == Self.ref("azure_node_identity", "train", "client_id"))
            guard case .map(let env)? = vm.inputs["env"] else {
                Issue.record("no env on \(vm.address)")
                continue
            }
            #expect(env["AWS_ROLE_ARN"] == Self.ref("aws_instance_role", "train", "role_arn"))
            #expect(env["STRATUM_WEB_IDENTITY"] == "azure" && env["STRATUM_WEB_IDENTITY_AUDIENCE"] == "api://AzureADTokenExchange")
        }
        try Planner(providers: Self.registry()).validate(stack)
    }

    @Test func withoutALandingTheBucketIsStillThereAndCloudsThatCannotShareOneSaySo() async throws {
        // Before placement the cluster holds its bucket (it stays put when the cluster moves).
        let undecided = try Self.evaluate(Self.cluster(), landing: nil)
        #expect(undecided.resources.map(\.address) == [ResourceAddress(type: "aws_s3_bucket", name: "stratum-test-train-ckpt")])

        // Clouds none of which shares a bucket with the others: refused up front, unless
        // checkpoint names one.
        let loners = [Placement(provider: "one", region: "r", lowering: Loner()), Placement(provider: "two", region: "r", lowering: Loner())]
        var neither = StackContent()
        Self.cluster(loners).declare(into: &neither)
        #expect(neither.diagnostics.contains { $0.message.contains("pass checkpoint: a URL of your own") }, "\(neither.diagnostics)")
        var own = StackContent()
        Self.cluster(loners, checkpoint: "s3://elsewhere/train").declare(into: &own)
        #expect(own.diagnostics.isEmpty && own.resources.isEmpty)
    }
}
