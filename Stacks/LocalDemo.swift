import Foundation
import Stratum

/// Two local worker processes training the bundled GPT together with DiLoCo, exchanging
/// pseudo-gradients and keeping checkpoints in a Local bucket: the stack the README tour
/// runs, on a machine with no cloud account and no GPU.
public struct LocalDemo: Stack {
    public static let name = "local-demo"
    public static let summary = "A bucket and 2 CPU workers training the bundled GPT with DiLoCo (Local provider)"

    public struct Config: StackConfiguration {
        /// DiLoCo workers, one node each.
        public var workers = 2
        /// Inner AdamW steps per DiLoCo round.
        public var innerSteps = 50
        /// Outer DiLoCo rounds before training ends.
        public var rounds = 20
        /// CPU threads per worker.
        public var threads = 1
        /// Model width (the tiny default trains in seconds).
        public var width = 32
        /// First worker's fixed /metrics port; worker i uses port + i. 0: each worker serves its metrics on a
        /// free port of its own, which `stratum status` finds in the node's directory.
        public var metricsPort = 0
        /// Run the workers as spot nodes: a preempted worker is replaced and resumes from its
        /// checkpoint (on Local, preemption is rehearsed; see docs/providers-local.md).
        public var spot = false
        public init() {}

        /// Every value reaches the trainer (see `trainerConfig`): each must be one it accepts.
        public func problems() -> [ConfigProblem] {
            var check = ConfigCheck()
            check.trainer("workers", workers, TrainerLimits.workers)
            check.trainer("inner_steps", innerSteps, TrainerLimits.innerSteps)
            check.trainer("rounds", rounds, TrainerLimits.rounds)
            check.trainer("threads", threads, TrainerLimits.threads)
            check.trainer("width", width, TrainerLimits.width)
            check.require(width % LocalDemo.heads == 0, "width", width, "must be divisible by the model's \(LocalDemo.heads) attention heads (the trainer's model.width)")
            check.workerPorts("metrics_port", metricsPort, workers: workers)
            check.schedule(innerSteps: innerSteps, rounds: rounds)
            return check.problems
        }
    }

    /// Attention heads of the demo's model.
    static let heads = 2

    public init() {}

    public func body(config: Config) -> StackContent {
        let trainer = BundledTrainer.path()
        Requirement(
            FileManager.default.isExecutableFile(atPath: trainer),
            "the trainer binary is missing at \(trainer); build it with `swift build --product stratum-trainer` or set STRATUM_TRAINER")

        let network = Network("demo", cidr: "10.42.0.0/16")
        let bucket = Bucket("demo-checkpoints")
        network
        bucket
        NodePool(
            "worker", count: config.workers, machine: MachineRequest(spot: config.spot),
            command: ["/bin/sh", "-c", Self.workerScript],
            env: [
                "TRAINER": trainer,
                "TRAINER_CONFIG": Self.trainerConfig(config),
                "BUCKET": bucket.path,
                "METRICS_PORT": String(config.metricsPort),
            ],
            labels: ["role": "diloco-worker"],
            network: network)
        Output("bucket_path", bucket.path)
        Output("workers", config.workers)
    }

    /// The trainer's YAML; each node adds its rank, round store and checkpoint directory.
    static func trainerConfig(_ config: Config) -> String {
        """
        model: {layers: 1, width: \(config.width), heads: \(heads), context: 64}
        train: {batch_size: 16, seq_len: 64, steps: \(config.innerSteps * config.rounds), lr: 1e-2, weight_decay: 0, warmup_steps: 20, threads: \(config.threads), log_every: \(config.innerSteps)}
        data: {source: synthetic, branching: 4}
        checkpoint: {every: \(config.innerSteps), keep: 2}
        diloco: {workers: \(config.workers), inner_steps: \(config.innerSteps), rounds: \(config.rounds), round_timeout_s: 120}
        """
    }

    /// Writes the node's trainer config, checks the interconnect with the other workers (a
    /// ring all-reduce of 8 MiB, once per node start; rank 0's port goes through the bucket),
    /// trains (resuming from the node's checkpoints in the bucket), then keeps the node and its
    /// log until it is destroyed.
    static let workerScript = """
        cfg="$STRATUM_NODE_DIR/trainer.yaml"
        printf '%s\\n' "$TRAINER_CONFIG" > "$cfg"
        port=0
        if [ "$METRICS_PORT" -gt 0 ]; then port=$((METRICS_PORT + STRATUM_NODE_INDEX)); fi
        if [ "$STRATUM_NODE_COUNT" -gt 1 ]; then
          [ "$STRATUM_NODE_INDEX" -gt 0 ] || rm -f "$BUCKET/allreduce-port"
          "$TRAINER" allreduce-check --world "$STRATUM_NODE_COUNT" --rank "$STRATUM_NODE_INDEX" --coordinator 127.0.0.1 \\
            --port-file "$BUCKET/allreduce-port" --bytes 8388608 --timeout 30 --output "$STRATUM_NODE_DIR/allreduce.prom" \\
            || echo "the interconnect check failed; training anyway"
        fi
        "$TRAINER" --config "$cfg" \\
          --set diloco.rank="$STRATUM_NODE_INDEX" \\
          --set diloco.store="$BUCKET/rounds" \\
          --set checkpoint.dir="$BUCKET/worker-$STRATUM_NODE_INDEX" \\
          --set metrics.port="$port" \\
          --set metrics.port_file="$STRATUM_NODE_DIR/metrics-port" \\
          --set metrics.include="$STRATUM_NODE_DIR/allreduce.prom" &
        child=$!
        trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM
        wait "$child"
        echo "training finished (status $?); the node stays up until it is destroyed"
        while true; do sleep 3600 & wait $!; done
        """
}

/// Where the `stratum-trainer` binary is: `STRATUM_TRAINER`, else beside the running binary.
public enum BundledTrainer {
    public static func path() -> String {
        if let configured = ProcessInfo.processInfo.environment["STRATUM_TRAINER"] { return configured }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("stratum-trainer").path
    }
}

/// Every stack the bundled `stratum` binary carries.
public enum BundledStacks {
    public static let all: [any Stack.Type] = [LocalDemo.self, LocalLab.self, AWSGPUCluster.self, GCPGPUCluster.self, AzureGPUCluster.self]
}
