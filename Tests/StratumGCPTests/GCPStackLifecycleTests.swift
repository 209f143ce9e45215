import Crypto
import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumGCP

/// The Storage and IAM fakes beside a Compute world, and the environment that points the
/// binary at all three.
struct GCPStackFakes {
    let storage: GCSBucketFake
    let iam: GCPIAMFake
    let servers: [LoopbackHTTPServer]
    let environment: [String: String]

    static func make(_ world: GCPEnvironmentWorld) async throws -> GCPStackFakes {
        let storage = try GCSBucketFake(project: GCPEnvironmentWorld.project)
        let iam = try GCPIAMFake(project: GCPEnvironmentWorld.project)
        await storage.link(iam: iam)
        let storageServer = try await storage.serve(), iamServer = try await iam.serve()
        var environment = world.environment
        environment["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = storageServer.url.appendingPathComponent("storage/v1").absoluteString + "/"
        environment["CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM"] = iamServer.url.appendingPathComponent("v1").absoluteString + "/"
        return GCPStackFakes(storage: storage, iam: iam, servers: [storageServer, iamServer], environment: environment)
    }

    func shutdown() async { for server in servers { await server.shutdown() } }

    /// What Storage or IAM would refuse among the requests they saw.
    func problems() async -> [String] { await storage.violations + iam.violations }
}

/// The whole gcp-gpu-cluster stack through the built `stratum` binary on the Compute, Storage
/// and IAM fakes: apply, a plan that finds nothing to change, the checkpoint URL, drift healed,
/// destroy.
@Suite("gcp-gpu-cluster through the built binary", .serialized, .timeLimit(.minutes(3)))
struct GCPStackLifecycleTests {
    @Test(arguments: ["dev", "prod"])
    func applyPlanDestroyLeavesNothing(env: String) async throws {
        let world = try await GCPEnvironmentWorld.make()
        let fakes = try await GCPStackFakes.make(world)
        let storage = fakes.storage
        defer { Task { await fakes.shutdown(); await world.shutdown() } }
        let directory = try TestSupport.temporaryDirectory("gcp-stack")
        let environment = fakes.environment
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
        // The nodes' identity: one service account, bound to objectAdmin on the bucket alone;
        // every worker runs as it, and fetches the trainer archive that lies in the bucket.
        let accounts = await fakes.iam.emails()
        #expect(accounts.count == 1)
        let member = "serviceAccount:\(accounts.first ?? "")"
        #expect(await storage.members(of: "roles/storage.objectAdmin", on: "stratum-checkpoints-\(env)") == [member])
        let archive = try #require(await storage.objectData(TrainerArchive.bundled.objectKey, in: "stratum-checkpoints-\(env)"))
        #expect(SHA256.hash(data: archive).map { String(format: "%02x", $0) }.joined() == TrainerArchive.bundled.sha256)
        for path in await world.fake.paths(of: "instances") {
            let instance = try #require(await world.fake.resource(path)?.mapValue)
            #expect(instance["serviceAccounts"]?.listValue?.first?.mapValue?["email"] == .string(accounts.first ?? ""))
            let userData = instance["metadata"]?.mapValue?["items"]?.listValue?.first { $0.mapValue?["key"] == "user-data" }?.mapValue?["value"]?.stringValue
            #expect(userData?.contains("gs://stratum-checkpoints-\(env)/\(TrainerArchive.bundled.objectKey)") == true, "\(path) does not fetch the archive")
            #expect(userData?.contains("stratum/worker") == false)
            // As Compute holds it, a document Debian's cloud-init accepts.
            let problems = try await NodeSetupDocument(try #require(userData)).schemaProblems()
            #expect(problems == nil, "\(path): \(problems ?? "")")
        }

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

        // The account's binding removed behind Stratum's back: the plan rebinds it in place
        // (no worker is replaced), and apply does.
        await storage.removeOutOfBand(member: member, from: "stratum-checkpoints-\(env)")
        let unbound = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(unbound.status == 2, "\(unbound.stdout)\n\(unbound.stderr)")
        let changes = unbound.stdout.split(separator: "\n").filter { $0.contains("gcp_") }
        #expect(changes.contains { $0.contains("gcp_service_account.gcp-gpu-cluster-node") }, "\(unbound.stdout)")
        #expect(!changes.contains { $0.contains("gcp_instance") }, "\(unbound.stdout)")
        let rebound = try await run(["apply"] + stack + ["--auto-approve"])
        #expect(rebound.status == 0, "\(rebound.stdout)\n\(rebound.stderr)")
        #expect(await storage.members(of: "roles/storage.objectAdmin", on: "stratum-checkpoints-\(env)") == [member])

        let destroy = try await run(["destroy"] + stack + ["--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stdout)\n\(destroy.stderr)")
        for kind in ["instances", "resourcePolicies", "firewalls", "subnetworks", "networks"] {
            #expect(await world.fake.paths(of: kind).isEmpty, "\(kind) left")
        }
        #expect(await storage.bucketNames().isEmpty)
        #expect(await fakes.iam.emails().isEmpty, "the service account was left")
        #expect(!(apply.stdout + apply.stderr + plan.stdout + destroy.stdout).contains("ya29.loopback"))
        #expect(await world.problems().isEmpty)
        #expect(await fakes.problems().isEmpty)
    }

    /// The first zone the stack allows is out of the machine type: the workers land in the next
    /// one (dev: each worker on its own; prod: the whole gang, together with its policy).
    @Test(arguments: ["dev", "prod"])
    func aStockoutInTheFirstZoneMovesTheWorkersToTheNext(env: String) async throws {
        let world = try await GCPEnvironmentWorld.make()
        let fakes = try await GCPStackFakes.make(world)
        defer { Task { await fakes.shutdown(); await world.shutdown() } }
        await world.fake.set(zonesWithoutCapacity: ["us-central1-a"], code: "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
        let directory = try TestSupport.temporaryDirectory("gcp-stockout")
        let environment = fakes.environment
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
        let fakes = try await GCPStackFakes.make(world)
        defer { Task { await fakes.shutdown(); await world.shutdown() } }
        await world.fake.set(pace: .onDemand)
        let directory = try TestSupport.temporaryDirectory("gcp-kill")
        let environment = fakes.environment
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
