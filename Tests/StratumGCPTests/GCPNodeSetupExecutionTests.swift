import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumGCP

/// The node setup of an a3-highgpu-8g gang member, run for real (`NodeSetupRun`): rendered by
/// `gcp_instance_gang` on the Compute fake, with the archive put in the Storage fake by
/// `gcp_storage_object` and the service account made by `gcp_service_account`. A loopback
/// metadata server gives the member its zone, name (so its rank) and address, and the
/// account's token, the only one the Storage fake then accepts. The trainer is fetched with
/// it, checked, built with gcc, started, and trains, checkpoints to the bucket and answers
/// /healthz. As a member of a cluster whose bucket is on AWS (`s3`), it checkpoints to S3
/// (moto) instead, with keys STS gives for the account's ID token from the metadata server.
@Suite(
    "A GCP node setup run in a Debian root", .serialized,
    .enabled(if: DebianRoot.unavailableReason() == nil, Comment(rawValue: "skipped: \(DebianRoot.unavailableReason() ?? "")")), .timeLimit(.minutes(10)))
struct GCPNodeSetupExecutionTests {
    @Test(arguments: ["gs", "s3"]) func anA3GangMemberFetchesBuildsAndRunsTheTrainer(checkpoints: String) async throws {
        let moto = ProcessInfo.processInfo.environment["STRATUM_TEST_S3_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
        if checkpoints == "s3", moto == nil {
            print("skipped the S3 case: STRATUM_TEST_S3_ENDPOINT is unset (start moto_server and export it)")
            return
        }
        try await GCPIdentityWorld.run { storage in
            try await GCPFakeWorld.run { compute in
                let archive = TrainerArchive.bundled, bucket = GCPIdentityWorld.bucket
                let account = try await storage.provider.create(GCPIdentityWorld.account(), token: UUID().uuidString.lowercased())
                let email = try #require(account.attributes["email"]?.stringValue)
                _ = try await storage.provider.create(GCPIdentityWorld.archive(), token: UUID().uuidString.lowercased())
                let storageServer = try #require(storage.servers.first)

                // Member 1 of a gang of two, as gcp_instance_gang renders its setup.
                let url = "gs://\(bucket)/\(archive.objectKey)"
                // The S3 case: the cluster's bucket in moto, its role's keys from moto's STS.
                var checkpointURL = "gs://\(bucket)/run", config = NodeSetupRun.smallTrainerConfig
                var federation: [String: Value] = [:]
                var s3: FederatedS3Bucket?
                if checkpoints == "s3", let moto {
                    let made = try await FederatedS3Bucket.make(endpoint: moto)
                    (s3, checkpointURL, config) = (made, made.checkpointURL, config + made.trainerConfig)
                    federation = made.environment(source: "gcp", audience: "stratum:\(made.name)")
                }
                let run = TrainerRun(config: config, arguments: ["--set", "checkpoint.dir=$STRATUM_CHECKPOINT_URL/worker-$STRATUM_NODE_INDEX"])
                let zone = "us-central1-a"
                let metadata = try await GCEMetadataFake.start(zone: zone, name: "worker-1", email: email)
                defer { Task { await metadata.server.shutdown() } }
                let subnet = try await compute.subnetwork()
                let gang = try await compute.provider.create(
                    GCPFakeWorld.instance("worker", run.inputs(url: url, sha256: archive.sha256).merging([
                        "machine_type": "a3-highgpu-8g", "name_prefix": "worker", "count": 2, "pool": "worker", "service_account": .string(email),
                        "checkpoint_url": .string(checkpointURL),
                        // Where this test's fakes stand instead of Google (and AWS).
                        "env": .map(federation.merging([
                            "STORAGE_EMULATOR_HOST": .string(storageServer.url.absoluteString), "GCE_METADATA_HOST": .string(metadata.host),
                        ]) { $1 }),
                    ]) { $1 }, subnetwork: subnet, type: "gcp_instance_gang"),
                    token: UUID().uuidString.lowercased())
                // The first zone has room: the gang is where the metadata server says.
                #expect(gang.id == "projects/\(GCPFakeWorld.project)/zones/\(zone)/instances/worker-*")
                let member = "projects/\(GCPFakeWorld.project)/zones/\(zone)/instances/worker-1"
                let items = try #require(try await compute.live(member)["metadata"]?.mapValue?["items"]?.listValue)
                let userData = try #require(items.first { $0.mapValue?["key"] == "user-data" }?.mapValue?["value"]?.stringValue)
                let setup = try NodeSetupDocument(userData)

                // From here on the bucket serves the instance's account alone.
                await storage.storage.require(bearer: metadata.token)
                let anonymous = try await AsyncHTTPTransport().send(
                    HTTPRequestData(method: "GET", url: URL(string: "\(storageServer.url)/storage/v1/b/\(bucket)/o/\(archive.objectKey)?alt=media")!), timeout: .seconds(5))
                #expect(anonymous.status == 401)

                let node = try NodeSetupRun(setup)
                defer { node.finish() }
                let step = try await node.waitForStep(40, within: .seconds(420))
                #expect(step >= 40, "the trainer never reached step 40\n\(node.diagnostics)")
                let problems = await node.trainerProblems(url: url, sha256: archive.sha256)
                #expect(problems.isEmpty, "\(problems)\n\(node.diagnostics)")

                // The member learnt its zone, rank, name and coordinator from the metadata server.
                let env = node.nodeEnv
                for line in ["STRATUM_ZONE='\(zone)'", "STRATUM_NODE_INDEX='1'", "STRATUM_NODE_NAME='worker-1'", "STRATUM_COORDINATOR='worker-0'",
                             "STRATUM_NODE_IP='\(GCEMetadataFake.privateIP)'"] {
                    #expect(env.contains(line), "node.env lacks \(line):\n\(env)")
                }
                // The fetch and the trainer took the account's token from the metadata server;
                // nothing the bucket saw came without it (beyond this test's own probe).
                #expect(metadata.tokenGrants.get() >= (checkpoints == "gs" ? 2 : 1), "\(metadata.tokenGrants.get()) token grant(s)")
                #expect(metadata.refused.get() == 0)
                #expect(await storage.storage.refused == 1)
                // Rank 1's checkpoints are in the bucket.
                if let s3 {
                    // ... in S3, written with the role's keys for the account's ID token.
                    #expect(metadata.identityAudiences.get().contains("stratum:\(s3.name)"), "no ID token was asked for\n\(node.diagnostics)")
                    #expect(try await s3.holds(prefix: "run/worker-1/"), "no checkpoint in the S3 bucket\n\(node.diagnostics)")
                } else {
                    let stored = await storage.storage.storedObjects(in: bucket).filter { $0.name.hasPrefix("run/worker-1/") }
                    #expect(!stored.isEmpty, "no checkpoint in the bucket\n\(node.diagnostics)")
                }
            }
        }
    }
}
