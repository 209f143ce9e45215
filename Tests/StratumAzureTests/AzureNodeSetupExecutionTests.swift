import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumAzure

/// The node setup of a Standard_ND96isr_H100_v5 worker, run for real (`NodeSetupRun`, with
/// InfiniBand's `ibv_devinfo` standing in too): rendered by `azure_virtual_machine` on the ARM
/// fake with the user-assigned identity `azure_node_identity` made, and the archive put in the
/// Blob fake by `azure_blob`. A loopback IMDS gives the VM its zone and address, and the
/// identity's tokens, the only ones the Blob fake accepts. The trainer is fetched with them,
/// checked, built with gcc, started, and trains, checkpoints to the container and answers
/// /healthz.
@Suite(
    "An Azure node setup run in a Debian root", .serialized,
    .enabled(if: DebianRoot.unavailableReason() == nil, Comment(rawValue: "skipped: \(DebianRoot.unavailableReason() ?? "")")), .timeLimit(.minutes(10)))
struct AzureNodeSetupExecutionTests {
    /// Eight ConnectX HCAs, as `ibv_devinfo -l` lists them.
    static let ibvDevinfo = "#!/bin/sh\n[ \"$1\" = -l ] && { echo '8 HCAs found:'; for i in 0 1 2 3 4 5 6 7; do echo \"\tmlx5_ib$i\"; done; }\nexit 0\n"

    /// `s3`: a worker of a cluster whose bucket is on AWS checkpoints to S3 (moto) with keys
    /// STS gives for its managed identity's Entra token from IMDS.
    @Test(arguments: ["az", "s3"]) func anNDH100WorkerFetchesBuildsAndRunsTheTrainer(checkpoints: String) async throws {
        let moto = ProcessInfo.processInfo.environment["STRATUM_TEST_S3_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
        if checkpoints == "s3", moto == nil {
            print("skipped the S3 case: STRATUM_TEST_S3_ENDPOINT is unset (start moto_server and export it)")
            return
        }
        try await AzureStorageWorld.run { world in
            let archive = TrainerArchive.bundled, account = AzureStorageWorld.account, container = AzureStorageWorld.container
            let identity = try await world.provider.create(world.identity(), token: "t1")
            let id = try #require(identity.attributes["id"]?.stringValue)
            let clientID = try #require(identity.attributes["client_id"]?.stringValue)
            _ = try await world.provider.create(world.archive(), token: "t2")
            #expect(await world.blob.blob(container, archive.objectKey) == archive.data)
            let blob = world.blob
            let imds = try await AzureIMDSFake.start(zone: "2", clientID: clientID) { await blob.token }
            defer { Task { await imds.server.shutdown() } }

            // The VM as azure_virtual_machine renders its setup.
            let url = "az://\(account)/\(container)/\(archive.objectKey)"
            var checkpointURL = "az://\(account)/\(container)/run", config = NodeSetupRun.smallTrainerConfig
            var federation: [String: Value] = [:]
            var s3: FederatedS3Bucket?
            if checkpoints == "s3", let moto {
                let made = try await FederatedS3Bucket.make(endpoint: moto)
                (s3, checkpointURL, config) = (made, made.checkpointURL, config + made.trainerConfig)
                federation = made.environment(source: "azure", audience: "api://AzureADTokenExchange")
            }
            let run = TrainerRun(config: config, arguments: ["--set", "checkpoint.dir=$STRATUM_CHECKPOINT_URL/worker-$STRATUM_NODE_INDEX"])
            let vm = AzureVMWorld.vm(
                "worker-0", run.inputs(url: url, sha256: archive.sha256).merging([
                    "size": "Standard_ND96isr_H100_v5", "zones": ["2"], "identity": .string(id), "identity_client_id": .string(clientID), "pool": "worker", "index": 0, "count": 1,
                    "checkpoint_url": .string(checkpointURL),
                    // Where this test's fakes stand instead of Azure (and AWS): the fetch's endpoint, the trainer's.
                    "env": .map(federation.merging([
                        "AZURE_POD_IDENTITY_AUTHORITY_HOST": .string(imds.url.absoluteString), "STRATUM_AZURE_BLOB_ENDPOINT": .string(blob.blobEndpoint(world.blobServer)),
                        "AZURE_STORAGE_CONNECTION_STRING": .string(blob.connectionString(world.blobServer, withKey: false)),
                    ]) { $1 }),
                ]) { $1 }, world: world.vms)
            let state = try await world.provider.create(vm, token: "t3")
            let body = try world.vms.sentBody(state.id)
            let setup = try NodeSetupDocument(base64: try #require(body["properties"]?["osProfile"]?["customData"]?.string))

            // The blob service refuses a request without the identity's token.
            let anonymous = try await AsyncHTTPTransport().send(
                HTTPRequestData(method: "GET", url: URL(string: "\(blob.blobEndpoint(world.blobServer))/\(container)/\(archive.objectKey)")!), timeout: .seconds(5))
            #expect(anonymous.status == 401)

            let node = try NodeSetupRun(setup, standIns: ["/usr/local/bin/ibv_devinfo": Self.ibvDevinfo])
            defer { node.finish() }
            let step = try await node.waitForStep(40, within: .seconds(420))
            #expect(step >= 40, "the trainer never reached step 40\n\(node.diagnostics)")
            let problems = await node.trainerProblems(url: url, sha256: archive.sha256, gpuSetup: ["InfiniBand: 8 device(s)"])
            #expect(problems.isEmpty, "\(problems)\n\(node.diagnostics)")

            // The VM learnt its zone and address from IMDS; rank 0 is its own coordinator.
            let env = node.nodeEnv
            for line in ["STRATUM_ZONE='2'", "STRATUM_NODE_IP='\(AzureIMDSFake.privateIP)'", "STRATUM_COORDINATOR='\(AzureIMDSFake.privateIP)'"] {
                #expect(env.contains(line), "node.env lacks \(line):\n\(env)")
            }
            // The fetch and the trainer asked IMDS for the user-assigned identity's tokens; the
            // blob service refused nothing else.
            let requests = imds.tokenRequests.get()
            #expect(requests.count >= (checkpoints == "az" ? 2 : 1) && requests.allSatisfy { $0 == clientID }, "\(requests)")
            #expect(imds.refused.get() == 0)
            #expect(await blob.refused == 1)
            if let s3 {
                // Its checkpoints are in S3, written with the role's keys for the identity's token.
                #expect(imds.federationRequests.get().contains(clientID), "no Entra token was asked for\n\(node.diagnostics)")
                #expect(try await s3.holds(prefix: "run/worker-0/"), "no checkpoint in the S3 bucket\n\(node.diagnostics)")
            } else {
                // Its checkpoints are in the container.
                let stored = await blob.blobNames(container).filter { $0.hasPrefix("run/worker-0/") }
                #expect(!stored.isEmpty, "no checkpoint in the container\n\(node.diagnostics)")
            }
        }
    }
}
