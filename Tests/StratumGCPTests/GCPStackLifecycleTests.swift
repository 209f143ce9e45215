import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

/// The whole gcp-gpu-cluster stack through the built `stratum` binary on the Compute and
/// Storage fakes: apply, a plan that finds nothing to change, the checkpoint URL, destroy.
@Suite("gcp-gpu-cluster through the built binary", .serialized, .timeLimit(.minutes(3)))
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

        // A worker deleted behind Stratum's back: the next plan recreates it (dev: that one
        // instance; prod: the gang, which is made whole or not at all), apply heals it.
        let victim = try #require(await world.fake.paths(of: "instances").last)
        await world.fake.deleteOutOfBand(victim)
        let drift = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(drift.status == 2, "\(drift.stdout)\n\(drift.stderr)")
        let healed = env == "prod" ? "gcp_instance_gang.worker" : "gcp_instance.worker[1]"
        let planned = drift.stdout.split(separator: "\n").filter { $0.contains("gcp_") }
        #expect(planned.contains { $0.contains(healed) }, "\(drift.stdout)")
        #expect(!planned.contains { $0.contains("gcp_network") || $0.contains("gcp_bucket") || $0.contains("gcp_instance.worker[0]") }, "\(drift.stdout)")
        let heal = try await run(["apply"] + stack + ["--auto-approve"])
        #expect(heal.status == 0, "\(heal.stdout)\n\(heal.stderr)")
        #expect(await world.fake.paths(of: "instances").count == workers)
        #expect(await world.fake.resource(victim) != nil, "the instance is made again under its name")
        let settled = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(settled.status == 0, "\(settled.stdout)\n\(settled.stderr)")

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

    /// The first zone the stack allows is out of the machine type: the workers land in the next
    /// one (dev: each worker on its own; prod: the whole gang, together with its policy).
    @Test(arguments: ["dev", "prod"])
    func aStockoutInTheFirstZoneMovesTheWorkersToTheNext(env: String) async throws {
        let world = try await GCPEnvironmentWorld.make()
        let storage = try GCSBucketFake(project: GCPEnvironmentWorld.project)
        let storageServer = try await storage.serve()
        defer { Task { await storageServer.shutdown(); await world.shutdown() } }
        await world.fake.set(zonesWithoutCapacity: ["us-central1-a"], code: "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
        let directory = try TestSupport.temporaryDirectory("gcp-stockout")
        var environment = world.environment
        environment["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = storageServer.url.appendingPathComponent("storage/v1").absoluteString + "/"
        let stack = ["--stack", "gcp-gpu-cluster", "--env", env, "--config", Self.config(env)]

        let apply = try await GCPBinaryTests.stratum(["apply"] + stack + ["--auto-approve"], in: directory, environment: environment)
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let instances = await world.fake.paths(of: "instances")
        let next = env == "prod" ? "us-central1-c" : "us-central1-b"  // the next zone each config lists
        #expect(instances.count == (env == "prod" ? 8 : 2))
        #expect(instances.allSatisfy { $0.contains("/zones/\(next)/") }, "\(instances)")
        // The first zone was asked (and refused) before the next one was.
        let inserts = await world.fake.calls[env == "prod" ? "compute.instances.bulkInsert" : "compute.instances.insert", default: 0]
        #expect(inserts == (env == "prod" ? 2 : 4))
        let destroy = try await GCPBinaryTests.stratum(["destroy"] + stack + ["--auto-approve"], in: directory, environment: environment)
        #expect(destroy.status == 0, "\(destroy.stdout)\n\(destroy.stderr)")
        #expect(await world.fake.paths(of: "instances").isEmpty)
        #expect(await world.problems().isEmpty)
    }

    /// `stratum apply` killed while it polls an operation: the next run finds the operation's
    /// name in the journal and waits for that operation; the insert is never sent again.
    @Test func aKillDuringOperationPollingResumesTheSameOperation() async throws {
        let world = try await GCPEnvironmentWorld.make()
        let storage = try GCSBucketFake(project: GCPEnvironmentWorld.project)
        let storageServer = try await storage.serve()
        defer { Task { await storageServer.shutdown(); await world.shutdown() } }
        await world.fake.set(pace: .onDemand)
        let directory = try TestSupport.temporaryDirectory("gcp-kill")
        var environment = world.environment
        environment["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = storageServer.url.appendingPathComponent("storage/v1").absoluteString + "/"
        let stack = ["--stack", "gcp-gpu-cluster", "--env", "dev", "--config", Self.config("dev")]

        let process = try BuiltBinary.start("stratum", ["apply"] + stack + ["--auto-approve"], in: directory, environment: environment)
        // The network's insert is sent, and its operation looked at: the run is polling it.
        let deadline = ContinuousClock.now + .seconds(60)
        func looks() async -> Int {
            let calls = await world.fake.calls
            return calls["compute.globalOperations.get", default: 0] + calls["compute.globalOperations.wait", default: 0]
        }
        while await looks() < 2, ContinuousClock.now < deadline, process.isRunning {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await looks() >= 2, "the apply never polled an operation")
        process.kill()
        _ = try await process.finish()
        #expect(await world.fake.calls["compute.networks.insert", default: 0] == 1)
        #expect(await world.fake.paths(of: "networks").isEmpty, "the network's operation is still running")
        let running = await world.fake.operationStatuses().filter { $0.value != "DONE" }.map(\.key)
        #expect(running.count == 1, "\(running)")

        // The cloud finishes the operation meanwhile; from now on operations finish at once.
        await world.fake.set(pace: .afterPolls(0))
        #expect(await world.fake.finishOperations() == 1)
        let looksBefore = await looks()
        let rerun = try await GCPBinaryTests.stratum(["apply"] + stack + ["--auto-approve"], in: directory, environment: environment)
        #expect(rerun.status == 0, "\(rerun.stdout)\n\(rerun.stderr)")
        #expect(await world.fake.calls["compute.networks.insert", default: 0] == 1, "the network's insert was sent again")
        #expect(await looks() > looksBefore, "the recorded operation was not looked at again")
        #expect(await world.fake.paths(of: "networks").count == 1)
        #expect(await world.fake.paths(of: "instances").count == 2)
        let plan = try await GCPBinaryTests.stratum(["plan"] + stack + ["--detailed-exitcode"], in: directory, environment: environment)
        #expect(plan.status == 0, "\(plan.stdout)\n\(plan.stderr)")
        #expect(await world.problems().isEmpty)
    }

    static func config(_ env: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/gcp-gpu-cluster.\(env).yaml").standardized.path
    }
}
