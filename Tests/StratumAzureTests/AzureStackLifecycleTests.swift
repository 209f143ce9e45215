import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumAzure

/// A loopback Azure for the built binary: the ARM fake, a Microsoft Entra token endpoint that
/// hands out tokens for a service principal's secret, the Blob Storage fake of the stack's
/// storage account (whose key the ARM fake's `listKeys` answers), and the environment that
/// points there.
struct AzureEnvironmentWorld {
    static let secret = "loopback-client-secret-7f3a"
    static let token = "eyJ0eXAi.loopback-arm-token.sig"
    static let subscription = "00000000-0000-4000-8000-00000000a21e"

    let fake: AzureARMFake
    let arm: LoopbackHTTPServer
    let entra: LoopbackHTTPServer
    let blob: AzureBlobFake
    let storage: LoopbackHTTPServer
    let tokenRequests: RecordedRequests
    let environment: [String: String]

    /// The container's name in the fakes: the config's `bucket_name` as the stack lowers it.
    static func container(_ env: String) -> String { AzureNaming.containerName("stratum-checkpoints-\(env)") ?? "" }

    static func make(env: String = "dev") async throws -> AzureEnvironmentWorld {
        let fake = try AzureARMFake(subscription: subscription, pace: .afterPolls(1))
        let blob = AzureBlobFake(account: AzureNaming.storageAccountName("stratum-checkpoints-\(env)"), containers: [container(env)])
        let storage = try await blob.serve()
        await fake.set(storageKey: blob.accountKey, forAccount: blob.account)
        // Operations name no wait: the binary runs on the system clock.
        await fake.set(retryAfter: 0)
        let arm = try await fake.serve()
        let received = RecordedRequests()
        let entra = try await LoopbackHTTPServer.start { request in
            received.append(request)
            return jsonAnswer(200, ["access_token": .string(token), "expires_in": 3600, "token_type": "Bearer"])
        }
        let environment = [
            "AZURE_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "client-1", "AZURE_CLIENT_SECRET": secret, "AZURE_CLIENT_CERTIFICATE_PATH": "",
            "AZURE_SUBSCRIPTION_ID": subscription, "AZURE_AUTHORITY_HOST": entra.url.absoluteString,
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": entra.url.absoluteString, "STRATUM_AZURE_RESOURCE_MANAGER_ENDPOINT": arm.url.absoluteString,
            "STRATUM_AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:\(storage.port)",
        ]
        return AzureEnvironmentWorld(fake: fake, arm: arm, entra: entra, blob: blob, storage: storage, tokenRequests: received, environment: environment)
    }

    func shutdown() async {
        await arm.shutdown()
        await entra.shutdown()
        await storage.shutdown()
    }

    func ids(_ type: String) async -> [String] { await fake.ids(ofType: type) }

    static func config(_ env: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/azure-gpu-cluster.\(env).yaml").standardized.path
    }

    static func stratum(_ arguments: [String], in directory: URL, environment: [String: String]) async throws -> BuiltBinary.Run {
        try await BuiltBinary.run("stratum", arguments, in: directory, environment: environment)
    }

    /// Whether any file under `directory` (state, journal, logs) holds `text`.
    static func anyFile(under directory: URL, contains text: String) -> Bool {
        let files = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        return files.contains { (try? Data(contentsOf: $0))?.range(of: Data(text.utf8)) != nil }
    }
}

/// The whole azure-gpu-cluster stack through the built `stratum` binary on the ARM fake (every
/// body checked against the Azure SDK's models): apply, a plan that finds nothing to change,
/// a VM deleted out of band and made again, zone failover, a kill while an operation is
/// polled, destroy leaving nothing.
@Suite("azure-gpu-cluster through the built binary", .serialized, .timeLimit(.minutes(3)))
struct AzureStackLifecycleTests {
    @Test(arguments: ["dev", "prod"])
    func applyPlanHealDestroyLeavesNothing(env: String) async throws {
        let world = try await AzureEnvironmentWorld.make(env: env)
        defer { Task { await world.shutdown() } }
        let directory = try TestSupport.temporaryDirectory("azure-stack")
        let stack = ["--stack", "azure-gpu-cluster", "--env", env, "--config", AzureEnvironmentWorld.config(env)]
        func run(_ arguments: [String]) async throws -> BuiltBinary.Run {
            try await AzureEnvironmentWorld.stratum(arguments, in: directory, environment: world.environment)
        }

        let apply = try await run(["apply"] + stack + ["--auto-approve"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let workers = env == "prod" ? 8 : 2
        let vms = await world.ids(AzureVirtualMachineKind.vmType)
        #expect(vms.count == workers)
        #expect(await world.ids(AzureVirtualMachineKind.nicType).count == workers)
        #expect(await world.ids("Microsoft.Compute/proximityPlacementGroups").count == (env == "prod" ? 1 : 0))
        #expect(await world.ids("Microsoft.Storage/storageAccounts").count == 1)
        let containers = await world.ids("Microsoft.Storage/storageAccounts/blobServices/containers")
        #expect(containers.count == 1)
        // The nodes' identity, its one role on the container, and the trainer's archive in it:
        // the exact bytes this binary carries.
        let identities = await world.ids("Microsoft.ManagedIdentity/userAssignedIdentities")
        #expect(identities.count == 1)
        let assignments = await world.ids("Microsoft.Authorization/roleAssignments")
        #expect(assignments.count == 1 && assignments.allSatisfy { $0.hasPrefix(containers.first ?? "-") }, "\(assignments)")
        let archive = TrainerArchive.bundled
        #expect(await world.blob.blob(AzureEnvironmentWorld.container(env), archive.objectKey) == archive.data)
        #expect(await world.blob.refused == 0)
        // Every VM carries the stack's ownership tags, the identity as its only one, and the
        // node setup of the trainer with the identity's client id.
        let identityID = try #require(identities.first)
        let identity = try #require(await world.fake.resource(identityID)?.mapValue)
        let clientID = try #require(identity["properties"]?.mapValue?["clientId"]?.stringValue)
        for id in vms {
            let vm = try #require(await world.fake.resource(id)?.mapValue)
            #expect(vm["tags"]?.mapValue?["stratum-stack"]?.stringValue == "azure-gpu-cluster/\(env)", "\(id)")
            #expect(vm["identity"]?.mapValue?["type"] == "UserAssigned", "\(id)")
            let named = vm["identity"]?.mapValue?["userAssignedIdentities"]?.mapValue ?? [:]
            #expect(named.keys.map { $0.lowercased() } == identities.map { $0.lowercased() }, "\(id)")
            #expect(named.values.first?.mapValue?["clientId"]?.stringValue == clientID)
            // The customData as sent: a node setup Debian's cloud-init accepts.
            let setup = try NodeSetupDocument(base64: try #require(await world.fake.customData(of: id), "\(id) was sent no customData"))
            let problems = try await setup.schemaProblems()
            #expect(problems == nil, "\(id): \(problems ?? "")")
            #expect(setup.environment["AZURE_CLIENT_ID"] == clientID)
        }
        // One token for the whole run, fetched with the secret; the secret and the token are in
        // no output and no file the run wrote.
        #expect(world.tokenRequests.all.count == 1)
        #expect(String(decoding: try #require(world.tokenRequests.all.first).body, as: UTF8.self).contains("client_secret="))

        let plan = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(plan.status == 0, "\(plan.stdout)\n\(plan.stderr)")
        let output = try await run(["output"] + stack + ["checkpoint_container"])
        #expect(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("az://"), "\(output.stdout)")

        // A worker deleted behind Stratum's back: the next plan recreates that one worker, and
        // apply makes it again under its name (its NIC, still there, is reused).
        let victim = try #require(vms.last)
        await world.fake.deleteOutOfBand(victim)
        let drift = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(drift.status == 2, "\(drift.stdout)\n\(drift.stderr)")
        let planned = Set(drift.stdout.matches(of: /azure_[a-z_]+\.[A-Za-z0-9_\-\[\]]+/).map { String($0.output) })
        #expect(planned.count == 1, "\(drift.stdout)")
        #expect(planned.allSatisfy { $0.hasPrefix("azure_virtual_machine.worker[") }, "\(drift.stdout)")
        let heal = try await run(["apply"] + stack + ["--auto-approve"])
        #expect(heal.status == 0, "\(heal.stdout)\n\(heal.stderr)")
        #expect(await world.ids(AzureVirtualMachineKind.vmType) == vms, "the VM is made again under its name")
        #expect(await world.ids(AzureVirtualMachineKind.nicType).count == workers)
        let settled = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(settled.status == 0, "\(settled.stdout)\n\(settled.stderr)")

        // The nodes' role assignment deleted behind Stratum's back: the identity is planned as
        // the one change (an update: no VM is replaced), and apply makes the same assignment again.
        await world.fake.deleteOutOfBand(try #require(assignments.first))
        let lost = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(lost.status == 2, "\(lost.stdout)\n\(lost.stderr)")
        let touched = Set(lost.stdout.matches(of: /azure_[a-z_]+\.[A-Za-z0-9_\-\[\]]+/).map { String($0.output) })
        #expect(touched == ["azure_node_identity.azure-gpu-cluster-node"], "\(lost.stdout)")
        let regrant = try await run(["apply"] + stack + ["--auto-approve"])
        #expect(regrant.status == 0, "\(regrant.stdout)\n\(regrant.stderr)")
        #expect(await world.ids("Microsoft.Authorization/roleAssignments") == assignments)
        #expect(await world.ids(AzureVirtualMachineKind.vmType) == vms)
        let regranted = try await run(["plan"] + stack + ["--detailed-exitcode"])
        #expect(regranted.status == 0, "\(regranted.stdout)\n\(regranted.stderr)")

        let destroy = try await run(["destroy"] + stack + ["--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stdout)\n\(destroy.stderr)")
        let left = await world.fake.allIDs
        #expect(left.isEmpty, "left: \(left)")
        #expect(await world.blob.blobNames(AzureEnvironmentWorld.container(env)).isEmpty)
        let printed = [apply, plan, output, drift, heal, settled, lost, regrant, regranted, destroy].map { $0.stdout + $0.stderr }.joined()
        for secret in [AzureEnvironmentWorld.secret, AzureEnvironmentWorld.token, world.blob.accountKey] {
            #expect(!printed.contains(secret))
            #expect(!AzureEnvironmentWorld.anyFile(under: directory, contains: secret), "a file holds \(secret)")
        }
        let violations = await world.fake.violations
        #expect(violations.isEmpty, "\(violations)")
    }

    /// Zone 1 has no capacity for the size: each dev worker's VM lands in zone 2, the next the
    /// config lists, and the failed VMs are gone.
    @Test func anAllocationFailureInTheFirstZoneMovesTheWorkersToTheNext() async throws {
        let world = try await AzureEnvironmentWorld.make()
        defer { Task { await world.shutdown() } }
        await world.fake.set(allocationFailures: ["1": "ZonalAllocationFailed"])
        let directory = try TestSupport.temporaryDirectory("azure-stockout")
        let stack = ["--stack", "azure-gpu-cluster", "--env", "dev", "--config", AzureEnvironmentWorld.config("dev")]

        let apply = try await AzureEnvironmentWorld.stratum(["apply"] + stack + ["--auto-approve"], in: directory, environment: world.environment)
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let vms = await world.ids(AzureVirtualMachineKind.vmType)
        #expect(vms.count == 2)
        for id in vms {
            let zones = await world.fake.resource(id)?.mapValue?["zones"]?.listValue?.compactMap(\.stringValue)
            #expect(zones == ["2"], "\(id): \(zones ?? [])")
        }
        // Each worker asked zone 1 first, then zone 2.
        #expect(await world.fake.calls["PUT Microsoft.Compute/virtualMachines", default: 0] == 4)
        #expect(await world.ids(AzureVirtualMachineKind.nicType).count == 2)
        let destroy = try await AzureEnvironmentWorld.stratum(["destroy"] + stack + ["--auto-approve"], in: directory, environment: world.environment)
        #expect(destroy.status == 0, "\(destroy.stdout)\n\(destroy.stderr)")
        let left = await world.fake.allIDs
        #expect(left.isEmpty, "left: \(left)")
        let violations = await world.fake.violations
        #expect(violations.isEmpty, "\(violations)")
    }

    /// `stratum apply` killed while it polls rank 0's VM operation (rank 1 waits for rank 0,
    /// whose address is its coordinator): the next run finds the operation's URL in the journal
    /// and waits on it; rank 0's PUT is not sent again, and rank 1 is made after it.
    @Test func aKillDuringOperationPollingResumesTheSameOperations() async throws {
        let world = try await AzureEnvironmentWorld.make()
        defer { Task { await world.shutdown() } }
        // Everything but the VMs answers at once; the VMs' operations run until told to finish.
        for type in AzureARMFake.defaultStyles.keys where type != AzureVirtualMachineKind.vmType {
            await world.fake.set(style: .synchronous, for: type)
        }
        await world.fake.set(pace: .onDemand)
        let directory = try TestSupport.temporaryDirectory("azure-kill")
        let stack = ["--stack", "azure-gpu-cluster", "--env", "dev", "--config", AzureEnvironmentWorld.config("dev")]

        let process = try BuiltBinary.start("stratum", ["apply"] + stack + ["--auto-approve"], in: directory, environment: world.environment)
        func looks() async -> Int { await world.fake.calls["GET operation", default: 0] }
        func puts() async -> Int { await world.fake.calls["PUT Microsoft.Compute/virtualMachines", default: 0] }
        // Rank 0's PUT is sent and its operation looked at: the run is polling it.
        let deadline = ContinuousClock.now + .seconds(90)
        func polling() async -> Bool {
            let (seen, sent) = (await looks(), await puts())
            return seen >= 2 && sent >= 1
        }
        while await !polling(), ContinuousClock.now < deadline, process.isRunning {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await looks() >= 2, "the apply never polled rank 0's operation")
        process.kill()
        _ = try await process.finish()
        #expect(await puts() == 1, "rank 1 was created before rank 0, its coordinator")
        let running = await world.fake.operationStatuses().filter { $0.value == "InProgress" }
        #expect(running.count == 1, "\(running)")

        // Azure finishes the operations meanwhile; from now on operations finish at once.
        await world.fake.set(pace: .afterPolls(0))
        #expect(await world.fake.finishOperations() == 1)
        let looksBefore = await looks()
        let rerun = try await AzureEnvironmentWorld.stratum(["apply"] + stack + ["--auto-approve"], in: directory, environment: world.environment)
        #expect(rerun.status == 0, "\(rerun.stdout)\n\(rerun.stderr)")
        #expect(await puts() == 2, "rank 0's PUT was sent again (or rank 1's never)")
        #expect(await looks() > looksBefore, "the recorded operation was not looked at again")
        #expect(await world.ids(AzureVirtualMachineKind.vmType).count == 2)
        let plan = try await AzureEnvironmentWorld.stratum(["plan"] + stack + ["--detailed-exitcode"], in: directory, environment: world.environment)
        #expect(plan.status == 0, "\(plan.stdout)\n\(plan.stderr)")
        let violations = await world.fake.violations
        #expect(violations.isEmpty, "\(violations)")
    }
}
