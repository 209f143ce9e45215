import Foundation
import StratumCloud

/// A node setup run for real, as cloud-init runs it on a GPU machine of a cloud: its files
/// written with their modes and its first-boot commands run as root in a `DebianRoot`, with
/// only what a GPU machine brings standing in (`nvidia-smi`, `nvidia-ctk`, Docker, and
/// `systemctl` for systemd, which runs a unit's `ExecStartPre` and `ExecStart` and restarts them
/// as `Restart=always` does); `apt-get` fails if called, since everything the setup needs is
/// in the root. The root shares the host's network, so the setup reaches loopback fakes, and
/// the node's metrics port is moved to a free loopback one.
public final class NodeSetupRun: Sendable {
    public let setup: NodeSetupDocument
    public let root: DebianRoot.Run
    /// Where the trainer serves /metrics and /healthz.
    public let metricsPort: Int
    let scratch: URL

    /// systemd's part: `enable --now` runs a unit's ExecStartPre and ExecStart and restarts
    /// them whenever they stop (Restart=always); the rest answers as systemd would.
    public static let systemctl = #"""
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
                  *) sh -c "$pre" || { echo "$3: ExecStartPre failed" >> /var/log/stratum-systemctl.log; sleep 1; continue; } ;;
                esac
                sh -c "$start"
                sleep 1
              done
            ) > "/var/log/$3.log" 2>&1 &
            exit 0 ;;
        esac
        exit 0
        """#

    /// What the machine's eight H100s would answer.
    public static let nvidiaSMI = #"""
        #!/bin/sh
        case "$*" in
          *driver_version*) echo "570.86.15" ;;
          *compute_cap*) echo "9.0" ;;
          *name*) for i in 0 1 2 3 4 5 6 7; do echo "NVIDIA H100 80GB HBM3"; done ;;
        esac
        exit 0
        """#

    /// The stand-ins of every GPU machine, by path.
    public static let standIns = [
        "/usr/local/bin/systemctl": systemctl,
        "/usr/local/bin/nvidia-smi": nvidiaSMI,
        "/usr/local/bin/docker": "#!/bin/sh\n[ \"$1\" = run ] && exec sleep 100000\nexit 0\n",
        "/usr/local/bin/nvidia-ctk": "#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.17.0 (stand-in)'\n",
        // Nothing may need installing: the packages are in the root, the rest stands in.
        "/usr/local/bin/apt-get": "#!/bin/sh\necho \"apt-get $* was called\" >&2\nexit 1\n",
    ]

    /// A trainer configuration small enough to step fast on one core: checkpoints every 20
    /// steps, metrics every 50.
    public static let smallTrainerConfig = """
        model: {layers: 1, width: 32, heads: 2, context: 32}
        train: {batch_size: 4, seq_len: 32, steps: 1000000, threads: 1, log_every: 50}
        data: {source: synthetic}
        checkpoint: {every: 20, keep: 2}

        """

    /// What the GPU setup logs on an NVSwitch machine with eight GPUs, whatever the cloud.
    public static let gpuSetupLines = [
        "the image's NVIDIA driver works: 570.86.15", "fabric manager: active", "persistence mode on for 8 GPU(s)",
        "containers see the GPUs through NVIDIA Container Toolkit", "stratum gpu-setup: done",
    ]

    /// Writes `setup` into a fresh root with the stand-ins (and the cloud's own, `standIns`, by
    /// path) and starts its first-boot commands.
    public init(_ setup: NodeSetupDocument, standIns extra: [String: String] = [:]) throws {
        self.setup = setup
        metricsPort = freeLoopbackPort()
        scratch = try TestSupport.temporaryDirectory("node-root")
        root = try DebianRoot.Run(lower: try DebianRoot.cached(), scratch: scratch)
        for (path, content) in setup.files {
            var content = content
            if path == "/etc/stratum/node.env" {
                let port = setup.environment["STRATUM_METRICS_PORT"] ?? ""
                content = content.replacingOccurrences(of: "STRATUM_METRICS_PORT='\(port)'", with: "STRATUM_METRICS_PORT='\(metricsPort)'")
                    .replacingOccurrences(of: "127.0.0.1:\(port)/", with: "127.0.0.1:\(metricsPort)/")
            }
            try root.write(path, content, mode: setup.permissions[path] ?? 0o644)
        }
        for (path, content) in Self.standIns.merging(extra, uniquingKeysWith: { $1 }) { try root.write(path, content, mode: 0o755) }
        let commands = setup.runcmd.map { $0.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ") }
        try root.start((["set -x"] + commands + ["exec sleep 100000"]).joined(separator: "\n"))
    }

    /// The body of GET `path` from the trainer when it answers 200.
    public func get(_ path: String) async -> String? {
        let url = URL(string: "http://127.0.0.1:\(metricsPort)\(path)")!
        guard let response = try? await AsyncHTTPTransport().send(HTTPRequestData(method: "GET", url: url), timeout: .seconds(2)), response.status == 200 else {
            return nil
        }
        return String(decoding: response.body, as: UTF8.self)
    }

    /// Polls the trainer's /metrics until its step reaches `step`, the run ends, the workload's
    /// setup has failed three times (it would go on failing) or `limit` passes; the last step
    /// it reported (0 if none).
    public func waitForStep(_ step: Int, within limit: Duration) async throws -> Int {
        var reached = 0
        let deadline = ContinuousClock.now + limit
        func setupFailures() -> Int {
            (root.read("/var/log/stratum-systemctl.log") ?? "").components(separatedBy: "stratum-workload.service: ExecStartPre failed").count - 1
        }
        while ContinuousClock.now < deadline, root.isRunning, setupFailures() < 3 {
            if let metrics = await get("/metrics"),
                let line = metrics.split(separator: "\n").first(where: { $0.hasPrefix("stratum_trainer_step ") }), let value = Int(line.split(separator: " ")[1])
            {
                reached = value
                if value >= step { break }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        return reached
    }

    /// The workload unit's output (trainer-setup's, then the trainer's).
    public var workloadLog: String { root.read("/var/log/stratum-workload.service.log") ?? "" }

    /// The node's environment as its boot left it (node.env with what it added).
    public var nodeEnv: String { root.read("/etc/stratum/node.env") ?? "" }

    /// The ends of the run's, the workload's and the GPU setup's output, for a failure message.
    public var diagnostics: String {
        "run:\n\(root.output.suffix(3000))\nworkload:\n\(workloadLog.suffix(3000))\ngpu-setup:\n\(root.read("/var/log/stratum-gpu-setup.log") ?? "")"
    }

    /// What is wrong with a run that should have set up the GPUs (logging each of
    /// `gpuSetupLines` and the cloud's `gpuSetup`), fetched the trainer from `url`, checked it
    /// against `sha256`, built it with gcc, installed and started it under systemd, and whose
    /// trainer answers /healthz; empty when nothing is.
    public func trainerProblems(url: String, sha256: String, gpuSetup: [String] = []) async -> [String] {
        var problems: [String] = []
        let gpu = root.read("/var/log/stratum-gpu-setup.log") ?? ""
        for line in Self.gpuSetupLines + gpuSetup where !gpu.contains(line) { problems.append("gpu-setup did not log '\(line)'") }
        let workload = workloadLog
        for line in ["fetching \(url)", "building the CPU trainer", "installed /opt/stratum/bin/stratum-trainer"] where !workload.contains(line) {
            problems.append("trainer-setup did not log '\(line)'")
        }
        if workload.contains("not building it") { problems.append("the fetched archive's SHA-256 was not \(sha256)") }
        let installed = root.read("/opt/stratum/trainer.sha256")?.trimmingCharacters(in: .whitespacesAndNewlines)
        if installed != sha256 { problems.append("the installed trainer is of \(installed ?? "nothing"), not \(sha256)") }
        let systemctl = root.read("/var/log/stratum-systemctl.log") ?? ""
        for unit in ["stratum-workload.service", "stratum-dcgm-exporter.service"] where !systemctl.contains("enable --now \(unit)") {
            problems.append("\(unit) was not started")
        }
        let health = await get("/healthz")
        if health?.hasPrefix("ok") != true { problems.append("/healthz answered \(health ?? "nothing")") }
        return problems
    }

    /// Ends the run and every process in it, and removes its files.
    public func finish() {
        root.stop()
        try? FileManager.default.removeItem(at: scratch)
    }
}
