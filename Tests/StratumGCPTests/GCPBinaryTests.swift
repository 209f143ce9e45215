import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

/// A loopback GCP for a provider made from the environment: the Compute fake, a token endpoint
/// that hands out tokens for a service-account key, and the environment that points there.
struct GCPEnvironmentWorld {
    static let project = "stratum-test"

    let fake: GCPComputeFake
    let compute: LoopbackHTTPServer
    let tokenServer: LoopbackHTTPServer
    let tokenRequests: ReceivedRequests
    let scratch: ScratchDirectory
    let environment: [String: String]

    static func make() async throws -> GCPEnvironmentWorld {
        let fake = try GCPComputeFake(project: project, pace: .afterPolls(0))
        let compute = try await fake.serve()
        let received = ReceivedRequests()
        let tokenServer = try await LoopbackHTTPServer.start { request in
            received.append(request)
            return jsonResponse(200, ["access_token": "ya29.loopback", "expires_in": 3600, "token_type": "Bearer"])
        }
        let scratch = try ScratchDirectory()
        let tokenURI = tokenServer.url.appendingPathComponent("token")
        let keyPath = try scratch.write("key.json", try TestServiceAccount().keyFile(tokenURI: tokenURI, project: project))
        let environment = [
            "GOOGLE_APPLICATION_CREDENTIALS": keyPath, "STRATUM_GCP_TOKEN_URI": tokenURI.absoluteString,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": compute.url.appendingPathComponent("compute/v1").absoluteString + "/",
            "NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": scratch.path, "HOME": scratch.path,
        ]
        return GCPEnvironmentWorld(fake: fake, compute: compute, tokenServer: tokenServer, tokenRequests: received, scratch: scratch, environment: environment)
    }

    func shutdown() async {
        await compute.shutdown()
        await tokenServer.shutdown()
        scratch.remove()
    }

    /// What Compute would refuse among the requests the fake saw.
    func problems() async -> [String] {
        await fake.violations + fake.mutatingCallsWithoutRequestID.map { "no requestId: \($0)" }
    }
}

@Suite("GCP from the environment (the binary's provider)", .timeLimit(.minutes(3)))
struct GCPProviderFactoryTests {
    @Test func theFactoryWiresGCPAndResolvesCredentialsOnlyWhenACallNeedsThem() async throws {
        #expect(ProviderFactory.gcp.wiring?.cloud == "gcp" && ProviderFactory.gcp.wiring?.product == "StratumGCP")
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        // No credentials anywhere: the schemas are there all the same.
        let provider = GCPProvider.fromEnvironment(["NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": scratch.path, "HOME": scratch.path])
        #expect(provider.name == "gcp")
        #expect(["gcp_network", "gcp_subnetwork", "gcp_firewall"].allSatisfy { provider.schema(for: $0) != nil })
        let network = ResourceState(address: ResourceAddress(type: "gcp_network", name: "n"), provider: "gcp", region: "us-central1", id: "projects/p/global/networks/n", attributes: [:])
        do {
            _ = try await provider.read(type: "gcp_network", resources: [network])
            Issue.record("a read without credentials succeeded")
        } catch let error as ProviderError {
            #expect(error.kind == .auth)
            #expect(error.message.contains("no GCP credentials found"))
        }
    }

    @Test func callsResolveTheClientOnceFromTheEnvironment() async throws {
        let world = try await GCPEnvironmentWorld.make()
        defer { Task { await world.shutdown() } }
        let provider = GCPProvider.fromEnvironment(world.environment)
        #expect(world.tokenRequests.all.isEmpty)
        let made = try await provider.create(
            ResolvedResource(address: ResourceAddress(type: "gcp_network", name: "n"), region: "us-central1", inputs: ["name": "env-net"], dependencies: []),
            token: UUID().uuidString.lowercased())
        #expect(made.id == "projects/stratum-test/global/networks/env-net")
        let read = try await provider.read(type: "gcp_network", resources: [made])
        #expect(read.first??.id == made.id)
        // One token for both calls; the project came from the key file.
        #expect(world.tokenRequests.all.count == 1)
        #expect(await world.fake.paths(of: "networks") == ["projects/stratum-test/global/networks/env-net"])
        #expect(await world.problems().isEmpty)
    }
}

/// The built `stratum` binary run against the loopback GCP.
@Suite("stratum with GCP through the built binary", .serialized, .timeLimit(.minutes(3)))
struct GCPBinaryTests {
    typealias Run = BuiltBinary.Run

    /// Runs the built `stratum` in `directory` and waits for it without blocking a thread.
    static func stratum(_ arguments: [String], in directory: URL, environment: [String: String]) async throws -> BuiltBinary.Run {
        try await BuiltBinary.run("stratum", arguments, in: directory, environment: environment)
    }

    @Test func planOfTheGCPStackShowsTheCreatesAndAppliedNetworkingIsSeenAsIs() async throws {
        let world = try await GCPEnvironmentWorld.make()
        defer { Task { await world.shutdown() } }
        let directory = try TestSupport.temporaryDirectory("gcp-binary")
        let environment = world.environment.merging(["GOOGLE_CLOUD_PROJECT": GCPEnvironmentWorld.project]) { $1 }
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/gcp-gpu-cluster.dev.yaml").standardized.path
        let stack = ["--stack", "gcp-gpu-cluster", "--env", "dev", "--config", config]

        // Everything is to be made: no call to GCP is needed to know that.
        let first = try await Self.stratum(["plan"] + stack + ["--detailed-exitcode"], in: directory, environment: environment)
        #expect(first.status == 2, "\(first.stdout)\n\(first.stderr)")
        for address in ["gcp_network.cluster", "gcp_subnetwork.cluster", "gcp_firewall.cluster", "gcp_bucket.stratum-checkpoints-dev", "gcp_instance.worker[0]", "gcp_instance.worker[1]"] {
            #expect(first.stdout.contains(address), "plan lacks \(address):\n\(first.stdout)")
        }
        #expect(world.tokenRequests.all.isEmpty)

        // The network part made for real through Compute, then planned again: only the rest is new.
        let apply = try await Self.stratum(
            ["apply"] + stack + ["--target", "gcp_subnetwork.cluster", "--target", "gcp_firewall.cluster", "--auto-approve"],
            in: directory, environment: environment)
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        #expect(await world.fake.paths(of: "networks").count == 1)
        #expect(await world.fake.paths(of: "subnetworks").count == 1)
        #expect(await world.fake.paths(of: "firewalls").count == 1)
        let second = try await Self.stratum(["plan"] + stack + ["--detailed-exitcode"], in: directory, environment: environment)
        #expect(second.status == 2, "\(second.stdout)\n\(second.stderr)")
        let planned = second.stdout.split(separator: "\n").filter { $0.contains("gcp_") }
        #expect(!planned.contains { $0.contains("gcp_network.cluster") || $0.contains("gcp_subnetwork.cluster") || $0.contains("gcp_firewall.cluster") }, "\(second.stdout)")
        #expect(planned.contains { $0.contains("gcp_instance.worker[0]") })
        // The refresh read the networking with list calls; no token, key or request was refused.
        #expect(await world.fake.calls["compute.networks.list", default: 0] >= 1)
        #expect(!world.tokenRequests.all.isEmpty)
        #expect(!(apply.stdout + apply.stderr + second.stdout + second.stderr).contains("ya29.loopback"))
        #expect(await world.problems().isEmpty)
    }
}
