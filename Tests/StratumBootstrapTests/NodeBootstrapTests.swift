import Foundation
import StratumAWS
import StratumAzure
import StratumBootstrap
import StratumCloud
import StratumCore
import StratumGCP
import StratumTesting
import Testing
import Yams

/// One node setup of each kind the clouds render, checked by Debian's cloud-init, by golden
/// files, and by the shell.
struct BootstrapCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bootstrap: NodeBootstrap
    var testDescription: String { name }

    static let contract: [String: String] = [
        "STRATUM_NODE_NAME": "worker-1", "STRATUM_NODE_INDEX": "1", "STRATUM_NODE_COUNT": "2", "STRATUM_CLUSTER": "worker",
        "STRATUM_CHECKPOINT_URL": "s3://stratum-checkpoints-dev/worker", "WORKERS": "2", "NOTE": "it's quoted",
    ]
    static let trainer = NodeWorkload.trainer(
        TrainerArtifact(url: "s3://stratum-checkpoints-dev/stratum/trainer/9f2c.zip", sha256: String(repeating: "9f2c", count: 16)),
        config: "model: {layers: 2, width: 64, heads: 4, context: 128}\ntrain: {steps: 1000}\n",
        arguments: ["--set", "diloco.workers=$STRATUM_NODE_COUNT", "--set", "diloco.rank=${STRATUM_NODE_INDEX}", "--set", "diloco.store=$STRATUM_CHECKPOINT_URL/rounds"])

    static func env(_ cloud: String, _ region: String) -> [String: String] {
        contract.merging(["STRATUM_CLOUD": cloud, "STRATUM_REGION": region]) { $1 }
    }

    static let all: [BootstrapCase] = [
        BootstrapCase(
            name: "aws-p5-trainer",
            bootstrap: NodeBootstrap(
                address: "aws_instance.worker[1]", environment: env("aws", "us-east-1"), workload: trainer,
                machine: AWSInstanceCatalog.bootstrapMachine(instanceType: "p5.48xlarge", gpus: 8, gpuClass: "H100"), flavour: .aws)),
        BootstrapCase(
            name: "aws-cpu-command",
            bootstrap: NodeBootstrap(
                address: "aws_instance.api[0]", environment: env("aws", "us-east-1"), workload: .command(["/usr/bin/env", "echo", "up"]),
                machine: AWSInstanceCatalog.bootstrapMachine(instanceType: "m7i.large", gpus: 0, gpuClass: nil), flavour: .aws,
                secrets: ["HF_TOKEN": "/stratum/node-role/api-0/HF_TOKEN"])),
        BootstrapCase(
            name: "gcp-a3-container",
            bootstrap: NodeBootstrap(
                address: "gcp_instance_gang.worker", environment: env("gcp", "us-central1"),
                workload: .container(image: "registry.example.com/team/trainer:1.4", command: ["python3", "train.py", "--steps", "1000"]),
                machine: GCPMachineCatalog.bootstrapMachine(machineType: "a3-highgpu-8g", gpus: 8, gpuClass: "H100"),
                flavour: .gcpGangMember(cluster: "worker"))),
        BootstrapCase(
            name: "gcp-g2-trainer",
            bootstrap: NodeBootstrap(
                address: "gcp_instance.worker[1]", environment: env("gcp", "us-central1"), workload: trainer,
                machine: GCPMachineCatalog.bootstrapMachine(machineType: "g2-standard-8", gpus: 1, gpuClass: "L4"), flavour: .gcp)),
        BootstrapCase(
            name: "azure-ndh100-trainer",
            bootstrap: NodeBootstrap(
                // A VM of a user-assigned identity: its client id is in node.env.
                address: "azure_virtual_machine.worker[1]",
                environment: env("azure", "eastus").merging(["AZURE_CLIENT_ID": "5c7a1e2f-0d3b-4c8e-9f61-2a4b6c8d0e1f"]) { $1 },
                workload: .trainer(
                    TrainerArtifact(url: "az://stratumckptdev/ckpt/stratum/trainer/9f2c.zip", sha256: String(repeating: "9f2c", count: 16)),
                    config: "model: {layers: 2, width: 64, heads: 4, context: 128}\n", arguments: ["--set", "diloco.rank=$STRATUM_NODE_INDEX"]),
                machine: AzureMachineCatalog.bootstrapMachine(size: "Standard_ND96isr_H100_v5", gpus: 8, gpuClass: "H100"), flavour: .azure)),
        BootstrapCase(
            name: "azure-t4-container",
            bootstrap: NodeBootstrap(
                address: "azure_virtual_machine.worker[0]", environment: env("azure", "eastus"),
                workload: .container(image: "registry.example.com/team/trainer:1.4", command: []),
                machine: AzureMachineCatalog.bootstrapMachine(size: "Standard_NC4as_T4_v3", gpus: 1, gpuClass: "T4"), flavour: .azure)),
        BootstrapCase(
            // A CPU trainer held to a poor link: every setting of a profile.
            name: "gcp-cpu-trainer-link",
            bootstrap: NodeBootstrap(
                address: "gcp_instance.edge[1]", environment: env("gcp", "us-central1"), workload: trainer,
                machine: GCPMachineCatalog.bootstrapMachine(machineType: "n2-standard-8", gpus: 0, gpuClass: nil), flavour: .gcp,
                link: LinkProfile(rateMbit: 10, delayMs: 100, jitterMs: 10, lossPercent: 1, correlationPercent: 25, reorderPercent: 5))),
    ]
}

@Suite("Node setup rendered as #cloud-config", .timeLimit(.minutes(3)))
struct NodeBootstrapTests {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    /// Runs a command; its exit status and output together.
    /// `runBlocking` off the shared pool (cloud-init and builds take seconds).
    static func run(_ arguments: [String], input: Data? = nil) async throws -> (status: Int32, output: String) {
        try await offThePool { try runBlocking(arguments, input: input) }
    }

    static func runBlocking(_ arguments: [String], input: Data? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    /// The files the document writes, by path, as cloud-init reads them.
    static func files(of document: String) throws -> [String: String] { try NodeSetupDocument(document).files }

    @Test(arguments: BootstrapCase.all)
    func debiansCloudInitAcceptsTheDocument(_ node: BootstrapCase) async throws {
        let document = try node.bootstrap.cloudConfig()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-\(node.name)-\(UUID().uuidString).yaml")
        try document.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let check = try await Self.run(["cloud-init", "schema", "--config-file", file.path])
        #expect(check.status == 0, "cloud-init schema (installed by .ci/run) refused \(node.name):\n\(check.output)")
        #expect(check.output.contains("Valid cloud-config"), "\(check.output)")
    }

    /// The documents as they were reviewed; `STRATUM_UPDATE_GOLDEN=1` writes them anew.
    @Test(arguments: BootstrapCase.all)
    func theDocumentIsTheReviewedOne(_ node: BootstrapCase) throws {
        let document = try node.bootstrap.cloudConfig()
        let path = Self.golden.appendingPathComponent("\(node.name).yaml")
        if ProcessInfo.processInfo.environment["STRATUM_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: Self.golden, withIntermediateDirectories: true)
            try document.write(to: path, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: path, encoding: .utf8)
        #expect(document == expected, "\(node.name) differs from Golden/\(node.name).yaml; rerun with STRATUM_UPDATE_GOLDEN=1 and review the diff")
    }

    /// Every script the document writes parses in the shell cloud-init and systemd run it with.
    @Test(arguments: BootstrapCase.all)
    func everyScriptIsValidShell(_ node: BootstrapCase) async throws {
        let files = try Self.files(of: try node.bootstrap.cloudConfig())
        let scripts = files.filter { $0.key.hasSuffix(".sh") }
        #expect(scripts.count >= 2)
        for (path, content) in scripts {
            let check = try await Self.run(["sh", "-n"], input: Data(content.utf8))
            #expect(check.status == 0, "\(path) of \(node.name): \(check.output)")
        }
        // node.env is sourced by the workload: it must parse too, and give back the values.
        let env = try #require(files[NodeBootstrap.nodeEnvPath])
        let sourced = try await Self.run(["sh", "-c", "set -a; eval \"$(cat)\"; printf '%s|%s' \"$NOTE\" \"$STRATUM_CLUSTER\""], input: Data(env.utf8))
        #expect(sourced.output == "it's quoted|worker", "\(sourced.output)")
    }

    @Test func whatEachMachineGetsFollowsItsHardware() throws {
        func files(_ node: String) throws -> [String: String] {
            try Self.files(of: try #require(BootstrapCase.all.first { $0.name == node }).bootstrap.cloudConfig())
        }
        let p5 = try files("aws-p5-trainer")
        let p5Setup = try #require(p5["\(NodeBootstrap.libexec)/gpu-setup.sh"])
        #expect(p5Setup.contains("nvidia-fabricmanager") && p5Setup.contains("aws-efa-installer-1.41.0") && p5Setup.contains("nvidia-smi -pm 1"))
        #expect(p5Setup.contains("nvidia-driver-$branch-server") && p5Setup.contains("branch=\(NodeBootstrap.driverBranch)"))
        #expect(p5["/etc/systemd/system/stratum-dcgm-exporter.service"]?.contains(NodeBootstrap.dcgmExporterImage) == true)
        #expect(p5["\(NodeBootstrap.libexec)/trainer-setup.sh"] != nil && p5["\(NodeBootstrap.libexec)/fetch.sh"]?.contains("--aws-sigv4") == true)
        #expect(p5["/etc/systemd/system/stratum-workload.service"]?.contains("ExecStartPre=\(NodeBootstrap.libexec)/trainer-setup.sh") == true)
        #expect(p5["/etc/systemd/system/stratum-workload.service"]?.contains("Restart=always") == true)
        #expect(p5[NodeBootstrap.nodeEnvPath]?.contains("STRATUM_TRAINER_SHA256=") == true)
        #expect(p5[NodeBootstrap.trainerConfigPath]?.hasPrefix("model: {layers: 2") == true)
        // The zone is only known at boot: it is not in node.env, boot-env.sh adds it.
        #expect(p5[NodeBootstrap.nodeEnvPath]?.contains("STRATUM_ZONE") == false)
        #expect(p5["\(NodeBootstrap.libexec)/boot-env.sh"]?.contains("STRATUM_ZONE") == true)

        let cpu = try files("aws-cpu-command")
        // A secret: its name and parameter listed, read before each start, never its value.
        #expect(cpu[NodeBootstrap.secretsListPath] == "HF_TOKEN /stratum/node-role/api-0/HF_TOKEN\n")
        #expect(cpu["/etc/systemd/system/stratum-workload.service"]?.contains("ExecStartPre=\(NodeBootstrap.libexec)/secrets.sh") == true)
        #expect(cpu["\(NodeBootstrap.libexec)/fetch.sh"]?.contains("AmazonSSM.GetParameter") == true)
        // On GCP a secret is read from Secret Manager with the instance's account.
        var gcpSecret = try #require(BootstrapCase.all.first { $0.name == "gcp-g2-trainer" }).bootstrap
        gcpSecret.secrets = ["HF_TOKEN": "projects/p/secrets/hf"]
        let gcpFiles = try NodeSetupDocument(try gcpSecret.cloudConfig()).files
        #expect(gcpFiles[NodeBootstrap.secretsListPath] == "HF_TOKEN projects/p/secrets/hf\n")
        #expect(gcpFiles["\(NodeBootstrap.libexec)/fetch.sh"]?.contains("/versions/latest:access") == true)
        // A flavour that has no way to read secrets refuses a node with one.
        var unread = gcpSecret
        unread.flavour.secret = nil
        #expect(throws: ProviderError.self) { _ = try unread.cloudConfig() }
        #expect(cpu["\(NodeBootstrap.libexec)/gpu-setup.sh"] == nil && cpu["/etc/systemd/system/stratum-dcgm-exporter.service"] == nil)
        #expect(cpu["\(NodeBootstrap.libexec)/workload.sh"]?.contains("exec '/usr/bin/env' 'echo' 'up'") == true)

        let a3 = try files("gcp-a3-container")
        let a3Setup = try #require(a3["\(NodeBootstrap.libexec)/gpu-setup.sh"])
        #expect(a3Setup.contains("nvidia-fabricmanager") && a3Setup.contains("nvidia-container-toolkit") && !a3Setup.contains("efa"))
        let a3Workload = try #require(a3["\(NodeBootstrap.libexec)/workload.sh"])
        #expect(a3Workload.contains("--gpus all --network host --ipc host") && a3Workload.contains("'registry.example.com/team/trainer:1.4' 'python3'"))
        #expect(a3["\(NodeBootstrap.libexec)/boot-env.sh"]?.contains("STRATUM_NODE_INDEX") == true)

        let g2 = try files("gcp-g2-trainer")
        #expect(g2["\(NodeBootstrap.libexec)/gpu-setup.sh"]?.contains("fabricmanager") == false)
        #expect(g2["\(NodeBootstrap.libexec)/fetch.sh"]?.contains("service-accounts/default/token") == true)

        let nd = try files("azure-ndh100-trainer")
        #expect(nd["\(NodeBootstrap.libexec)/gpu-setup.sh"]?.contains("rdma-core") == true)
        #expect(nd["\(NodeBootstrap.libexec)/fetch.sh"]?.contains("metadata/identity/oauth2/token") == true)
        // The token is the user-assigned identity's that node.env names.
        #expect(nd["\(NodeBootstrap.libexec)/fetch.sh"]?.contains("${AZURE_CLIENT_ID:+&client_id=$AZURE_CLIENT_ID}") == true)
        #expect(nd[NodeBootstrap.nodeEnvPath]?.contains("AZURE_CLIENT_ID='5c7a1e2f-0d3b-4c8e-9f61-2a4b6c8d0e1f'") == true)
    }

    /// The trainer's arguments reach it with the node's variables expanded and nothing else
    /// interpreted: the workload script run by the shell with a stand-in trainer.
    @Test func trainerArgumentsExpandTheNodesVariablesAndNothingElse() async throws {
        var node = try #require(BootstrapCase.all.first { $0.name == "aws-p5-trainer" }).bootstrap
        node.workload = .trainer(
            TrainerArtifact(url: "s3://b/t.zip", sha256: "00"), config: "",
            arguments: ["--set", "diloco.rank=$STRATUM_NODE_INDEX", "--set", "note=$(touch /tmp/stratum-pwned) `id` \"q\" \\"])
        let files = try Self.files(of: try node.cloudConfig())
        let script = try #require(files["\(NodeBootstrap.libexec)/workload.sh"])
        // Run the exec line with `printf` standing in for the trainer and node.env as given.
        let exec = try #require(script.split(separator: "\n").last).replacingOccurrences(of: "exec /opt/stratum/bin/stratum-trainer", with: "printf '%s\\n'")
        let env = try #require(files[NodeBootstrap.nodeEnvPath])
        let run = try await Self.run(["sh", "-c", "set -a; eval \"$(cat)\"; set +a; \(exec)"], input: Data(env.utf8))
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.split(separator: "\n").map(String.init) == [
            "--config", NodeBootstrap.trainerConfigPath, "--set", "diloco.rank=1", "--set", "note=$(touch /tmp/stratum-pwned) `id` \"q\" \\",
            "--set", "metrics.port=9464", "--set", "metrics.include=\(NodeBootstrap.allreduceMetricsPath)",
        ], "\(run.output)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/stratum-pwned"))
    }

    /// No key, token or secret of any kind is in a document: credentials come from the
    /// machine's identity at boot.
    @Test(arguments: BootstrapCase.all)
    func noCredentialIsInTheDocument(_ node: BootstrapCase) throws {
        let document = try node.bootstrap.cloudConfig()
        for word in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AZURE_CLIENT_SECRET", "AZURE_STORAGE_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "private_key"] {
            #expect(!document.contains(word), "\(node.name) mentions \(word)")
        }
    }

    @Test func userDataOverTheLimitIsGzippedWhereTheCloudAllowsItAndRefusedWhereNot() throws {
        // 20 KB of env: over EC2's 16 KB as text, well under it gzipped.
        let large = (0..<400).reduce(into: BootstrapCase.env("aws", "us-east-1")) { env, i in env["SETTING_\(i)"] = "value number \(i) of a long list" }
        var node = NodeBootstrap(
            address: "aws_instance.worker[0]", environment: large, workload: .command(["/bin/true"]), machine: .cpu, flavour: .aws)
        let data = try node.userData()
        #expect(data.gzipped && data.documentSize > 16 * 1024 && data.bytes.count <= 16 * 1024)
        #expect(Array(data.bytes.prefix(2)) == [0x1f, 0x8b])
        #expect(String(decoding: try UserDataLimit.gunzip(data.bytes), as: UTF8.self) == (try node.cloudConfig()))

        // Small documents go as they are.
        node.environment = BootstrapCase.env("aws", "us-east-1")
        #expect(try node.userData().gzipped == false)

        // Over the limit even gzipped: the error names the node, the sizes and the limit.
        let random = (0..<300).reduce(into: [String: String]()) { env, i in
            env["NOISE_\(i)"] = Data((0..<96).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        }
        node.environment = random
        let error = #expect(throws: ProviderError.self) { _ = try node.userData() }
        #expect(error?.message.contains("aws_instance.worker[0]") == true && error?.message.contains("gzipped") == true)
        #expect(error?.message.contains("EC2 user data holds at most 16384 bytes") == true, "\(error?.message ?? "")")

        // A GCE metadata value is text: never gzipped.
        let gcp = NodeBootstrap(
            address: "gcp_instance.worker[0]", environment: (0..<4000).reduce(into: [String: String]()) { $0["SETTING_\($1)"] = String(repeating: "x", count: 64) },
            workload: .command(["/bin/true"]), machine: .cpu, flavour: .gcp)
        let refused = #expect(throws: ProviderError.self) { _ = try gcp.userData() }
        #expect(refused?.message.contains("cannot be gzipped") == true, "\(refused?.message ?? "")")
    }

    @Test func machineProfilesComeFromEachCloudsCatalog() {
        #expect(AWSInstanceCatalog.bootstrapMachine(instanceType: "p5.48xlarge", gpus: 8, gpuClass: "H100") == MachineProfile(gpus: 8, gpuClass: "H100", nvswitch: true, interconnect: .efa))
        #expect(AWSInstanceCatalog.bootstrapMachine(instanceType: "p4d.24xlarge", gpus: 8, gpuClass: "A100").nvswitch)
        #expect(AWSInstanceCatalog.bootstrapMachine(instanceType: "g5.48xlarge", gpus: 8, gpuClass: "A10G") == MachineProfile(gpus: 8, gpuClass: "A10G"))
        #expect(GCPMachineCatalog.bootstrapMachine(machineType: "a3-megagpu-8g", gpus: 8, gpuClass: "H100").nvswitch)
        #expect(!GCPMachineCatalog.bootstrapMachine(machineType: "a2-highgpu-1g", gpus: 1, gpuClass: "A100").nvswitch)
        #expect(AzureMachineCatalog.bootstrapMachine(size: "Standard_ND96isr_H200_v5", gpus: 8, gpuClass: "H200").interconnect == .infiniband)
        #expect(AzureMachineCatalog.bootstrapMachine(size: "Standard_NC24ads_A100_v4", gpus: 1, gpuClass: "A100") == MachineProfile(gpus: 1, gpuClass: "A100"))
    }
}
