import Foundation
import StratumAWS
import StratumBootstrap
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing

/// The node setup an AWS p5 worker gets, run for real (`NodeSetupRun`: its files written and
/// its first-boot commands run as root in a throwaway Debian root, with what a GPU machine
/// brings standing in, and EFA's `fi_info`). The trainer is
/// fetched from moto with role keys from a loopback IMDSv2, checked, built with gcc, started,
/// and trains, checkpoints to moto and answers /healthz.
@Suite(
    "An AWS node setup run in a Debian root", .serialized, .enabled(if: Moto.available, Moto.skipReason),
    .enabled(if: DebianRoot.unavailableReason() == nil, Comment(rawValue: "skipped: \(DebianRoot.unavailableReason() ?? "")")), .timeLimit(.minutes(10)))
struct NodeSetupExecutionTests {
    @Test func aP5WorkerFetchesBuildsAndRunsTheTrainer() async throws {
        let world = try await AWSWorld.make(region: "us-east-1")
        defer { Task { await world.shutdown() } }
        let imds = try await IMDSv2Fake.start(expiresIn: 3600, region: "us-east-1", zone: "us-east-1b")
        defer { Task { await imds.server.shutdown() } }
        let moto = try #require(Moto.endpoint)

        // The cluster's bucket with the trainer archive in it, as an apply leaves them.
        let archive = TrainerArchive.bundled
        _ = try await world.direct.s3("PUT", bucket: world.bucketName, region: "us-east-1", action: "CreateBucket")
        _ = try await world.direct.s3("PUT", bucket: world.bucketName, key: archive.objectKey, body: archive.data, region: "us-east-1", action: "PutObject")

        // A secret of the node's, in Parameter Store as an apply leaves it.
        let secret = "hf_node-secret-'quoted'-4c1a", parameter = "/stratum/node-role/worker-0/HF_TOKEN"
        _ = try await world.direct.json(
            service: "ssm", target: "AmazonSSM.PutParameter", ["Name": parameter, "Value": secret, "Type": "SecureString", "Overwrite": true],
            region: "us-east-1", idempotent: true)

        var environment = NodeContract(cluster: "worker", index: 0, count: 1, cloud: "aws", region: "us-east-1", zone: nil,
                                       checkpointURL: "s3://\(world.bucketName)/run").environment
        // Where this test's fakes stand instead of AWS.
        environment["STRATUM_AWS_METADATA"] = imds.url.absoluteString
        environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url.absoluteString
        environment["STRATUM_S3_ENDPOINT"] = moto.absoluteString
        environment["STRATUM_SSM_ENDPOINT"] = moto.absoluteString
        let node = NodeBootstrap(
            address: "aws_instance.worker[0]", environment: environment,
            workload: .trainer(
                TrainerArtifact(url: "s3://\(world.bucketName)/\(archive.objectKey)", sha256: archive.sha256),
                config: NodeSetupRun.smallTrainerConfig,
                arguments: [
                    "--set", "checkpoint.dir=$STRATUM_CHECKPOINT_URL/worker-$STRATUM_NODE_INDEX", "--set", "s3.endpoint=$STRATUM_S3_ENDPOINT",
                    "--set", "s3.region=$STRATUM_REGION",
                ]),
            machine: AWSInstanceCatalog.bootstrapMachine(instanceType: "p5.48xlarge"), flavour: .aws,
            secrets: ["HF_TOKEN": parameter])
        let setup = try NodeSetupDocument(try node.cloudConfig())

        let run = try NodeSetupRun(setup, standIns: ["/opt/amazon/efa/bin/fi_info": "#!/bin/sh\nexit 0\n"])
        defer { run.finish() }

        // The trainer answers, healthy and stepping, within the time a build and a start take.
        let step = try await run.waitForStep(40, within: .seconds(420))
        #expect(step >= 40, "the trainer never reached step 40\n\(run.diagnostics)")
        let problems = await run.trainerProblems(
            url: "s3://\(world.bucketName)/\(archive.objectKey)", sha256: archive.sha256, gpuSetup: ["EFA: libfabric's efa provider is there"])
        #expect(problems.isEmpty, "\(problems)\n\(run.diagnostics)")

        // Each step of the setup did what it says, in order.
        let env = run.nodeEnv
        #expect(env.contains("STRATUM_ZONE='us-east-1b'"), "the zone comes from IMDS at boot")
        // Rank 0 learns its own address at boot and is its own coordinator.
        #expect(env.contains("STRATUM_NODE_IP='\(IMDSv2Fake.privateIP)'") && env.contains("STRATUM_COORDINATOR='\(IMDSv2Fake.privateIP)'"), "\(env)")
        // The secret was read from Parameter Store with the role's keys into a root-only file,
        // which gives it back to the shell as it was; it is in no document and no log.
        let workloadLog = run.workloadLog
        #expect(workloadLog.contains("stratum secrets: 1 secret(s) read"), "\(run.diagnostics)")
        let secrets = run.root.layer.appendingPathComponent("etc/stratum/secrets.env")
        let mode = (try? FileManager.default.attributesOfItem(atPath: secrets.path)[.posixPermissions] as? Int) ?? 0
        #expect(mode & 0o077 == 0, "secrets.env is readable by others: \(String(mode, radix: 8))")
        let sourced = try NodeBootstrapShell.source(try String(contentsOf: secrets, encoding: .utf8), printing: "HF_TOKEN")
        #expect(sourced == secret, "\(sourced)")
        #expect(!setup.text.contains(secret) && !workloadLog.contains(secret) && !run.root.output.contains(secret))
        #expect(imds.credentialFetches.get() >= 2, "both the fetch and the trainer took the role's keys from IMDSv2")
        #expect(imds.unauthorised.get() == 0)

        // Checkpoints went to the bucket with the role's keys.
        let listing = try await world.direct.s3("GET", bucket: world.bucketName, query: [("list-type", "2"), ("prefix", "run/worker-0/")], region: "us-east-1", action: "ListObjectsV2")
        #expect(String(decoding: listing.body, as: UTF8.self).contains("<Key>run/worker-0/"), "no checkpoint in the bucket\n\(run.diagnostics)")
    }
}

/// Runs `text` through the shell (`set -a; eval`) and prints one variable, as the workload
/// script sources its files.
enum NodeBootstrapShell {
    static func source(_ text: String, printing name: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "set -a; eval \"$(cat)\"; printf '%s' \"$\(name)\""]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
