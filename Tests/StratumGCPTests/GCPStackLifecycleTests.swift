import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

/// The whole gcp-gpu-cluster stack through the built `stratum` binary on the Compute and
/// Storage fakes: apply, a plan that finds nothing to change, the checkpoint URL, destroy.
@Suite("gcp-gpu-cluster through the built binary", .serialized, .timeLimit(.minutes(2)))
struct GCPStackLifecycleTests {
    @Test(arguments: ["dev", "prod"])
    func applyPlanDestroyLeavesNothing(env: String) async throws {
        let world = try await GCPEnvironmentWorld.make()
        let storage = try GCSBucketFake(project: GCPEnvironmentWorld.project)
        let storageServer = try await storage.serve()
        defer { Task { await storageServer.shutdown(); await world.shutdown() } }
        let directory = try TestSupport.temporaryDirectory("gcp-stack")
        var environment = world.environment
        environment["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = storageServer.url.appendingPathComponent("storage/v1").absoluteString + "/"
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/gcp-gpu-cluster.\(env).yaml").standardized.path
        let stack = ["--stack", "gcp-gpu-cluster", "--env", env, "--config", config]
        func run(_ arguments: [String]) async throws -> GCPBinaryTests.Run {
            try await GCPBinaryTests.stratum(arguments, in: directory, environment: environment)
        }

        let apply = try await run(["apply"] + stack + ["--auto-approve"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let workers = env == "prod" ? 8 : 2
        #expect(await world.fake.paths(of: "instances").count == workers)
        #expect(await world.fake.paths(of: "resourcePolicies").count == (env == "prod" ? 1 : 0))
        #expect(await storage.bucketNames() == ["stratum-checkpoints-\(env)"])

        let plan = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(plan.status == 0, "\(plan.stdout)\n\(plan.stderr)")
        let output = try await run(["output"] + stack + ["checkpoint_bucket"])
        #expect(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "gs://stratum-checkpoints-\(env)")

        let destroy = try await run(["destroy"] + stack + ["--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stdout)\n\(destroy.stderr)")
        for kind in ["instances", "resourcePolicies", "firewalls", "subnetworks", "networks"] {
            #expect(await world.fake.paths(of: kind).isEmpty, "\(kind) left")
        }
        #expect(await storage.bucketNames().isEmpty)
        #expect(!(apply.stdout + apply.stderr + plan.stdout + destroy.stdout).contains("ya29.loopback"))
        #expect(await world.problems().isEmpty)
        #expect(await storage.violations.isEmpty)
    }
}
