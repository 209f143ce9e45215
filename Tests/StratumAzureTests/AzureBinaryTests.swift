import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

/// The built `stratum` binary with the Azure provider, run without Azure credentials: a loopback
/// server stands where Resource Manager and the instance metadata service would be, and must
/// hear nothing.
@Suite("stratum with Azure through the built binary", .serialized, .timeLimit(.minutes(3)))
struct AzureBinaryTests {
    static func stratum(_ arguments: [String], in directory: URL, environment: [String: String]) async throws -> BuiltBinary.Run {
        try await BuiltBinary.run("stratum", arguments, in: directory, environment: environment)
    }

    /// An environment with no Azure credentials whose endpoints all lead to `server`.
    static func noCredentials(_ server: LoopbackHTTPServer) -> [String: String] {
        [
            "AZURE_TENANT_ID": "", "AZURE_CLIENT_ID": "", "AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": "", "AZURE_SUBSCRIPTION_ID": "",
            "STRATUM_AZURE_RESOURCE_MANAGER_ENDPOINT": server.url.absoluteString, "AZURE_POD_IDENTITY_AUTHORITY_HOST": server.url.absoluteString,
            "AZURE_AUTHORITY_HOST": server.url.absoluteString,
        ]
    }

    /// Needs the kinds (`azure_*` registered in `AzureProvider`): the plan checks every resource
    /// against its kind's schema.
    @Test func planOfTheAzureStackWithoutCredentialsShowsOnlyCreates() async throws {
        let received = RecordedRequests()
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            return ProxyResponse(status: 500)
        }
        defer { Task { await server.shutdown() } }
        let directory = try TestSupport.temporaryDirectory("azure-binary")
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/azure-gpu-cluster.dev.yaml").standardized.path
        let plan = try await Self.stratum(
            ["plan", "--stack", "azure-gpu-cluster", "--env", "dev", "--config", config, "--detailed-exitcode"], in: directory,
            environment: Self.noCredentials(server))
        #expect(plan.status == 2, "\(plan.stdout)\n\(plan.stderr)")
        let expected = [
            "azure_resource_group.eastus", "azure_virtual_network.cluster", "azure_subnet.cluster", "azure_network_security_group.cluster",
            "azure_storage_account.stratum-checkpoints-dev", "azure_blob_container.stratum-checkpoints-dev", "azure_node_identity.azure-gpu-cluster-node",
            "azure_blob.trainer", "azure_virtual_machine.worker[0]", "azure_virtual_machine.worker[1]",
        ]
        for address in expected {
            #expect(plan.stdout.contains(address), "plan lacks \(address):\n\(plan.stdout)")
        }
        let planned = plan.stdout.split(separator: "\n").filter { $0.contains("azure_") }
        #expect(!planned.contains { $0.contains("update") || $0.contains("destroy") || $0.contains("replace") }, "\(plan.stdout)")
        #expect(received.all.isEmpty, "the plan called \(received.all.map(\.uri))")
    }

    @Test func theBinaryListsTheAzureStack() async throws {
        let directory = try TestSupport.temporaryDirectory("azure-stacks")
        let run = try await Self.stratum(["stacks"], in: directory, environment: [:])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("azure-gpu-cluster"))
    }
}

@Suite("Azure provider from the environment")
struct AzureProviderFactoryTests {
    @Test func theFactoryWiresAzure() {
        #expect(ProviderFactory.azure.wiring?.cloud == "azure" && ProviderFactory.azure.wiring?.product == "StratumAzure")
        #expect(ProviderFactory.azure.wiring?.factory == ".azure")
        #expect(ProviderFactory.azure.wiring?.stackNames == ["example-azure"])
        let provider = AzureProvider.fromEnvironment(["AZURE_SUBSCRIPTION_ID": ""])
        #expect(provider.name == "azure")
        #expect(provider.validate(stack: []).isEmpty)
    }

    @Test func theOfflineClientNeverGetsAToken() async throws {
        let client = try AzureProvider.offlineClient(environment: ["AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555"], transport: AsyncHTTPTransport())
        #expect(client.subscription == "11111111-2222-3333-4444-555555555555")
        await #expect(throws: ProviderError.self) { _ = try await client.credentials.tokens.token() }
        let placeholder = try AzureProvider.offlineClient(environment: [:], transport: AsyncHTTPTransport())
        #expect(placeholder.subscription == "00000000-0000-0000-0000-000000000000")
    }
}
