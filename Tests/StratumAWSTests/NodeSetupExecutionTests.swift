import Foundation
import StratumAWS
import StratumBootstrap
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing

/// The node setup an AWS p5 worker gets, run for real: its files written and its first-boot
/// commands run as root in a throwaway Debian root (debootstrap, cached), with only what a
/// GPU machine brings stubbed (`nvidia-smi`, the fabric manager's and Docker's services,
/// `nvidia-ctk`, EFA's `fi_info`) and `systemctl` standing in for systemd. The trainer is
/// fetched from moto with role keys from a loopback IMDSv2, checked, built with gcc, started,
/// and trains, checkpoints to moto and answers /healthz.
@Suite(
    "An AWS node setup run in a Debian root", .serialized, .enabled(if: Moto.available, Moto.skipReason),
    .enabled(if: DebianRoot.unavailableReason() == nil, Comment(rawValue: "skipped: \(DebianRoot.unavailableReason() ?? "")")), .timeLimit(.minutes(10)))
struct NodeSetupExecutionTests {
    /// systemd's part: `enable --now` runs a unit's ExecStartPre and ExecStart and restarts
    /// them whenever they stop (Restart=always); the rest answers as systemd would.
    static let systemctl = #"""
        #!/bin/sh
        echo "systemctl $*" >> /var/log/stratum-systemctl.log
        case "$1" in
          is-active) [ "$2" = "--quiet" ] || echo active; exit 0 ;;
          enable)
            [ "$2" = "--now" ] || exit 0
            file=/etc/systemd/system/$3
            [ -f "$file" ] || { echo "not a unit here: $3" >> /var/log/stratum-systemctl.log; exit 0; }
            pre=$(sed -n 's/^ExecStartPre=//p' "$file")
            start=$(sed -n 's/^ExecStart=//p' "$file")
            (
              while true; do
                case "$pre" in
                  "") ;;
                  -*) sh -c "${pre#-}" || true ;;
                  *) sh -c "$pre" || { sleep 1; continue; } ;;
                esac
                sh -c "$start"
                sleep 1
              done
            ) > "/var/log/$3.log" 2>&1 &
            exit 0 ;;
        esac
        exit 0
        """#

    /// What the machine's GPUs would answer.
    static let nvidiaSMI = #"""
        #!/bin/sh
        case "$*" in
          *driver_version*) echo "570.86.15" ;;
          *compute_cap*) echo "9.0" ;;
          *name*) for i in 0 1 2 3 4 5 6 7; do echo "NVIDIA H100 80GB HBM3"; done ;;
        esac
        exit 0
        """#

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

        let port = freeLoopbackPort()
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
                config: "model: {layers: 1, width: 32, heads: 2, context: 32}\ntrain: {batch_size: 4, seq_len: 32, steps: 1000000, threads: 1, log_every: 50}\ndata: {source: synthetic}\ncheckpoint: {every: 20, keep: 2}\n",
                arguments: [
                    "--set", "checkpoint.dir=$STRATUM_CHECKPOINT_URL/worker-$STRATUM_NODE_INDEX", "--set", "s3.endpoint=$STRATUM_S3_ENDPOINT",
                    "--set", "s3.region=$STRATUM_REGION",
                ]),
            machine: AWSInstanceCatalog.bootstrapMachine(instanceType: "p5.48xlarge"), flavour: .aws, metricsPort: port,
            secrets: ["HF_TOKEN": parameter])
        let setup = try NodeSetupDocument(try node.cloudConfig())

        let scratch = try TestSupport.temporaryDirectory("node-root")
        let run = try DebianRoot.Run(lower: try DebianRoot.cached(), scratch: scratch)
        defer { run.stop() }
        for (path, content) in setup.files { try run.write(path, content, mode: path.hasSuffix(".sh") && !path.hasSuffix("fetch.sh") ? 0o755 : 0o644) }
        try run.write("/usr/local/bin/systemctl", Self.systemctl, mode: 0o755)
        try run.write("/usr/local/bin/nvidia-smi", Self.nvidiaSMI, mode: 0o755)
        try run.write("/usr/local/bin/docker", "#!/bin/sh\n[ \"$1\" = run ] && exec sleep 100000\nexit 0\n", mode: 0o755)
        try run.write("/usr/local/bin/nvidia-ctk", "#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.17.0 (stand-in)'\n", mode: 0o755)
        try run.write("/opt/amazon/efa/bin/fi_info", "#!/bin/sh\nexit 0\n", mode: 0o755)
        // Nothing may need installing: the packages are in the root, the rest stands in.
        try run.write("/usr/local/bin/apt-get", "#!/bin/sh\necho \"apt-get $* was called\" >&2\nexit 1\n", mode: 0o755)
        let commands = setup.runcmd.map { $0.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ") }
        try run.start((["set -x"] + commands + ["exec sleep 100000"]).joined(separator: "\n"))

        // The trainer answers, healthy and stepping, within the time a build and a start take.
        let transport = AsyncHTTPTransport()
        func get(_ path: String) async -> String? {
            guard let response = try? await transport.send(HTTPRequestData(method: "GET", url: URL(string: "http://127.0.0.1:\(port)\(path)")!), timeout: .seconds(2)),
                response.status == 200
            else { return nil }
            return String(decoding: response.body, as: UTF8.self)
        }
        var step = 0
        let deadline = ContinuousClock.now + .seconds(420)
        while ContinuousClock.now < deadline, run.isRunning {
            if let metrics = await get("/metrics"),
                let line = metrics.split(separator: "\n").first(where: { $0.hasPrefix("stratum_trainer_step ") }), let value = Int(line.split(separator: " ")[1]), value >= 40
            {
                step = value
                break
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        let workloadLog = run.read("/var/log/stratum-workload.service.log") ?? ""
        let diagnostics = "run:\n\(run.output.suffix(3000))\nworkload:\n\(workloadLog.suffix(3000))\ngpu-setup:\n\(run.read("/var/log/stratum-gpu-setup.log") ?? "")"
        #expect(step >= 40, "the trainer never reached step 40\n\(diagnostics)")
        let health = await get("/healthz")
        #expect(health?.hasPrefix("ok") == true, "\(diagnostics)")

        // Each step of the setup did what it says, in order.
        let env = run.read("/etc/stratum/node.env") ?? ""
        #expect(env.contains("STRATUM_ZONE='us-east-1b'"), "the zone comes from IMDS at boot")
        // Rank 0 learns its own address at boot and is its own coordinator.
        #expect(env.contains("STRATUM_NODE_IP='\(IMDSv2Fake.privateIP)'") && env.contains("STRATUM_COORDINATOR='\(IMDSv2Fake.privateIP)'"), "\(env)")
        let gpu = run.read("/var/log/stratum-gpu-setup.log") ?? ""
        for line in ["the image's NVIDIA driver works: 570.86.15", "fabric manager: active", "persistence mode on for 8 GPU(s)",
                     "containers see the GPUs through NVIDIA Container Toolkit", "EFA: libfabric's efa provider is there", "stratum gpu-setup: done"] {
            #expect(gpu.contains(line), "gpu-setup did not log '\(line)':\n\(gpu)")
        }
        for line in ["fetching s3://\(world.bucketName)/\(archive.objectKey)", "building the CPU trainer", "installed /opt/stratum/bin/stratum-trainer"] {
            #expect(workloadLog.contains(line), "trainer-setup did not log '\(line)'\n\(diagnostics)")
        }
        #expect(run.read("/opt/stratum/trainer.sha256")?.trimmingCharacters(in: .whitespacesAndNewlines) == archive.sha256)
        // The secret was read from Parameter Store with the role's keys into a root-only file,
        // which gives it back to the shell as it was; it is in no document and no log.
        #expect(workloadLog.contains("stratum secrets: 1 secret(s) read"), "\(diagnostics)")
        let secrets = run.layer.appendingPathComponent("etc/stratum/secrets.env")
        let mode = (try? FileManager.default.attributesOfItem(atPath: secrets.path)[.posixPermissions] as? Int) ?? 0
        #expect(mode & 0o077 == 0, "secrets.env is readable by others: \(String(mode, radix: 8))")
        let sourced = try NodeBootstrapShell.source(try String(contentsOf: secrets, encoding: .utf8), printing: "HF_TOKEN")
        #expect(sourced == secret, "\(sourced)")
        #expect(!setup.text.contains(secret) && !workloadLog.contains(secret) && !run.output.contains(secret))
        #expect(imds.credentialFetches.get() >= 2, "both the fetch and the trainer took the role's keys from IMDSv2")
        #expect(imds.unauthorised.get() == 0)
        let systemctl = run.read("/var/log/stratum-systemctl.log") ?? ""
        #expect(systemctl.contains("enable --now stratum-workload.service") && systemctl.contains("enable --now stratum-dcgm-exporter.service"))

        // Checkpoints went to the bucket with the role's keys.
        let listing = try await world.direct.s3("GET", bucket: world.bucketName, query: [("list-type", "2"), ("prefix", "run/worker-0/")], region: "us-east-1", action: "ListObjectsV2")
        #expect(String(decoding: listing.body, as: UTF8.self).contains("<Key>run/worker-0/"), "no checkpoint in the bucket\n\(diagnostics)")
        run.stop()
        try? FileManager.default.removeItem(at: scratch)
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
