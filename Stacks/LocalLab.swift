import Foundation
import Stratum

/// A network lab on one machine: Local workers on a real network (a bridge, each worker in a
/// network namespace of its own), some on a fast link and some on a slow, lossy one, training
/// the bundled GPT with DiLoCo whose pseudo-gradients go from worker to worker over TCP. The
/// checkpoints and the workers' rendezvous records are in a Local bucket. `stratum status`
/// shows each worker's link, the bytes it moved to and from its peers, and its round.
public struct LocalLab: Stack {
    public static let name = "local-lab"
    public static let summary = "4 CPU workers on a real Local network, 2 on slow lossy links, training with DiLoCo peer to peer (Local provider)"

    public struct Config: StackConfiguration {
        /// DiLoCo workers, one node each.
        public var workers = 4
        /// Workers 0..<fast_workers are on the fast link, the others on the slow one.
        public var fastWorkers = 2
        /// The fast link: a rate cap alone (every node on a real network needs a link).
        public var fastRateMbit = 1000.0
        /// The slow link: rate, one-way delay, jitter and loss of what each slow worker sends.
        public var slowRateMbit = 10.0
        public var slowDelayMs = 100.0
        public var slowJitterMs = 0.0
        public var slowLossPercent = 1.0
        /// false: every worker on the fast link, the unimpaired run the slow links are compared with.
        public var impaired = true
        /// The lab network's CIDR: the bridge takes its first host address, the workers the next.
        /// Two labs at once (two environments) need CIDRs that do not overlap.
        public var cidr = "10.43.0.0/24"
        /// The Local bucket with the checkpoints and the rendezvous records (one per environment).
        public var bucketName = "lab-checkpoints"
        /// Inner AdamW steps per DiLoCo round.
        public var innerSteps = 50
        /// Outer DiLoCo rounds before training ends.
        public var rounds = 10
        /// CPU threads per worker.
        public var threads = 1
        /// Transformer blocks and width of the model (the tiny default trains in seconds).
        public var layers = 1
        public var width = 32
        /// Worker i listens for its peers on p2p_port + i, at its address on the network.
        public var p2pPort = 29600
        /// How long a round waits for a late worker, and how long one peer exchange may take.
        public var roundTimeoutS = 120
        public var p2pTimeoutS = 60
        /// Bytes of the interconnect check the workers run at start (a ring all-reduce).
        public var checkBytes = 65536
        /// First worker's fixed /metrics port; worker i uses port + i. 0: each worker serves its
        /// metrics on a free port of its own, which `stratum status` finds in the node's directory.
        public var metricsPort = 0
        /// The lab's churn schedule, run by `stratum chaos churn --stack local-lab`: every
        /// churn_every_s seconds churn_kill workers are stopped for churn_down_s seconds, then
        /// brought back by reconcile. churn_every_s 0: the lab declares no schedule.
        /// How the workers combine what they learn: `p2p` (DiLoCo, pseudo-gradients from worker
        /// to worker over TCP), `store` (DiLoCo, pseudo-gradients through the bucket) or `dp`
        /// (data parallel: gradients all-reduced over TCP every step, the baseline DiLoCo is
        /// measured against; the same steps and tokens per worker).
        public var exchange = "p2p"
        public var churnKill = 1
        public var churnEveryS = 120
        public var churnDownS = 30
        public init() {}

        /// The declared churn schedule, or nil when churn_every_s is 0.
        public var churn: Churn? {
            churnEveryS > 0 ? Churn(kill: churnKill, every: .seconds(churnEveryS), down: .seconds(churnDownS), pool: "worker") : nil
        }

        /// The fast link.
        public var fastLink: LinkProfile { LinkProfile(rateMbit: fastRateMbit) }
        /// The slow link.
        public var slowLink: LinkProfile {
            LinkProfile(rateMbit: slowRateMbit, delayMs: slowDelayMs, jitterMs: slowJitterMs, lossPercent: slowLossPercent)
        }

        /// Worker `index`'s link.
        public func link(_ index: Int) -> LinkProfile { impaired && index >= fastWorkers ? slowLink : fastLink }

        /// Every value reaches the trainer or a link (see `trainerConfig`, `link(_:)`): each must
        /// be one they accept.
        public func problems() -> [ConfigProblem] {
            var check = ConfigCheck()
            check.trainer("workers", workers, TrainerLimits.workers)
            check.require(workers >= 2, "workers", workers, "the lab needs at least 2 workers to exchange anything")
            check.require(fastWorkers >= 0 && fastWorkers <= workers, "fast_workers", fastWorkers, "must be 0...workers (\(workers))")
            // Each link setting alone, before a profile is made of them (LinkProfile holds the rate in whole kbit/s).
            func number(_ key: String, _ value: Double, _ range: ClosedRange<Double>, _ what: String) {
                check.require(range.contains(value), key, value, "must be \(String(format: "%g", range.lowerBound))...\(String(format: "%g", range.upperBound)) (\(what))")
            }
            number("fast_rate_mbit", fastRateMbit, Self.rates, "the fast link's rate in Mbit/s; a link's rate is at least 8 kbit/s")
            number("slow_rate_mbit", slowRateMbit, Self.rates, "the slow link's rate in Mbit/s; a link's rate is at least 8 kbit/s")
            number("slow_delay_ms", slowDelayMs, 0...60_000, "the slow link's one-way delay in ms")
            number("slow_jitter_ms", slowJitterMs, 0...60_000, "the slow link's jitter in ms")
            check.require(slowJitterMs <= 0 || slowDelayMs > 0, "slow_jitter_ms", slowJitterMs, "a jitter needs a delay to vary around: set slow_delay_ms")
            number("slow_loss_percent", slowLossPercent, 0...100, "the share of packets the slow link drops")
            if let problem = CIDR.problem(in: cidr) {
                check.require(false, "cidr", cidr, problem)
            } else if let prefix = Int(cidr.split(separator: "/").last ?? "") {
                // The network address, the bridge's and the broadcast address are not the workers'.
                let room = prefix >= 31 ? 0 : (1 << min(32 - prefix, 24)) - 3
                check.require(room >= workers, "cidr", cidr, "holds \(room) worker addresses beside the bridge's; \(workers) workers need a larger block")
            }
            check.require(ResourceAddress.isName(bucketName), "bucket_name", bucketName, "a Local bucket's name uses letters, digits, '-' and '_'")
            check.trainer("inner_steps", innerSteps, TrainerLimits.innerSteps)
            check.trainer("rounds", rounds, TrainerLimits.rounds)
            check.trainer("threads", threads, TrainerLimits.threads)
            check.range("layers", layers, 1...1024, "the trainer's model.layers")
            check.trainer("width", width, TrainerLimits.width)
            check.require(width % LocalLab.heads == 0, "width", width, "must be divisible by the model's \(LocalLab.heads) attention heads (the trainer's model.width)")
            check.range("p2p_port", p2pPort, 1...65535, "a TCP port")
            if workers > 0, (1...65535).contains(p2pPort) {
                check.require(p2pPort + workers - 1 <= 65535, "p2p_port", p2pPort,
                              "worker i listens on p2p_port + i, so the last of \(workers) workers would need port \(p2pPort + workers - 1), above 65535")
            }
            check.range("round_timeout_s", roundTimeoutS, 1...10_000_000, "the trainer's diloco.round_timeout_s")
            check.range("p2p_timeout_s", p2pTimeoutS, 1...10_000_000, "the trainer's p2p.timeout_s")
            check.range("check_bytes", checkBytes, 1024...(1 << 30), "the interconnect check's --bytes")
            check.workerPorts("metrics_port", metricsPort, workers: workers)
            check.schedule(innerSteps: innerSteps, rounds: rounds)
            check.require(["p2p", "store", "dp"].contains(exchange), "exchange", exchange, "must be p2p, store or dp")
            check.range("churn_every_s", churnEveryS, 0...86_400, "seconds between churn cycles; 0 declares no churn")
            if churnEveryS > 0, workers >= 2 {
                check.require(churnKill >= 1 && churnKill < workers, "churn_kill", churnKill, "workers stopped a cycle: at least 1 and fewer than the \(workers) workers")
            }
            if churnEveryS > 0 {
                check.require(churnDownS >= 1 && churnDownS < churnEveryS, "churn_down_s", churnDownS, "seconds a stopped worker stays down: at least 1 and less than churn_every_s (\(churnEveryS))")
            }
            return check.problems
        }

        /// Link rates the lab takes, in Mbit/s: from LinkProfile's least (8 kbit/s) to 100 Gbit/s.
        static let rates: ClosedRange<Double> = 0.008...100_000
    }

    /// Attention heads of the lab's model.
    static let heads = 2

    public init() {}

    public func body(config: Config) -> StackContent {
        let trainer = BundledTrainer.path()
        Requirement(
            FileManager.default.isExecutableFile(atPath: trainer),
            "the trainer binary is missing at \(trainer); build it with `swift build --product stratum-trainer` or set STRATUM_TRAINER")

        let network = Network("lab", cidr: config.cidr)
        let bucket = Bucket(config.bucketName)
        network
        bucket
        Self.workers(config, trainer: trainer, network: network, bucket: bucket)
        // Workers leave and come back while the lab trains (`stratum chaos churn --stack local-lab`).
        if let churn = config.churn { churn }
        Output("bucket_path", bucket.path)
        Output("workers", config.workers)
        Output("links", (0..<max(config.workers, 0)).map { "worker[\($0)]: \(config.link($0).summary)" }.joined(separator: "; "))
    }

    /// The workers: every one has a link, so the network is a real one (a bridge, and each
    /// worker in a network namespace with its address from the CIDR, its STRATUM_NODE_IP).
    static func workers(_ config: Config, trainer: String, network: Network, bucket: Bucket) -> NodePool {
        var pool = NodePool(
            "worker", count: config.workers,
            command: ["/bin/sh", "-c", workerScript],
            env: [
                "TRAINER": trainer,
                "TRAINER_CONFIG": trainerConfig(config),
                "BUCKET": bucket.path,
                "P2P_PORT": String(config.p2pPort),
                "METRICS_PORT": String(config.metricsPort),
                "CHECK_BYTES": String(config.checkBytes),
                "EXCHANGE": config.exchange,
            ],
            labels: ["role": "diloco-worker", "lab": config.impaired ? "impaired" : "unimpaired"],
            network: network, link: config.fastLink)
        if config.impaired, config.fastWorkers < config.workers {
            pool = pool.link(config.slowLink, nodes: max(config.fastWorkers, 0)..<config.workers)
        }
        return pool
    }

    /// The trainer's YAML; each node adds its rank, round store, peer address and checkpoint
    /// directory.
    static func trainerConfig(_ config: Config) -> String {
        let exchange = config.exchange == "dp"
            ? "dp: {workers: \(config.workers)}"
            : "diloco: {workers: \(config.workers), inner_steps: \(config.innerSteps), rounds: \(config.rounds), round_timeout_s: \(config.roundTimeoutS), exchange: \(config.exchange)}"
        return """
            model: {layers: \(config.layers), width: \(config.width), heads: \(heads), context: 64}
            train: {batch_size: 16, seq_len: 64, steps: \(config.innerSteps * config.rounds), lr: 1e-2, weight_decay: 0, warmup_steps: 20, threads: \(config.threads), log_every: \(config.innerSteps)}
            data: {source: synthetic, branching: 4}
            checkpoint: {every: \(config.innerSteps), keep: 2}
            \(exchange)
            p2p: {timeout_s: \(config.p2pTimeoutS)}
            """
    }

    /// Writes the node's trainer config, checks the interconnect with the other workers (a
    /// small ring all-reduce over the links, once per node start; rank 0's port goes through
    /// the bucket), then trains, listening for its peers at its own address on the network
    /// (the node contract's STRATUM_NODE_IP) and advertising it in the bucket's rendezvous
    /// records, resuming from the node's checkpoints in the bucket. The node and its log stay
    /// until it is destroyed.
    static let workerScript = """
        cfg="$STRATUM_NODE_DIR/trainer.yaml"
        printf '%s\\n' "$TRAINER_CONFIG" > "$cfg"
        ip="${STRATUM_NODE_IP:-127.0.0.1}"
        peer_port=$((P2P_PORT + STRATUM_NODE_INDEX))
        port=0
        if [ "$METRICS_PORT" -gt 0 ]; then port=$((METRICS_PORT + STRATUM_NODE_INDEX)); fi
        [ "$STRATUM_NODE_INDEX" -gt 0 ] || rm -f "$BUCKET/allreduce-port"
        "$TRAINER" allreduce-check --world "$STRATUM_NODE_COUNT" --rank "$STRATUM_NODE_INDEX" --coordinator "${STRATUM_COORDINATOR:-127.0.0.1}" \\
          --port-file "$BUCKET/allreduce-port" --bytes "$CHECK_BYTES" --iterations 1 --timeout 30 --output "$STRATUM_NODE_DIR/allreduce.prom" \\
          || echo "the interconnect check failed; training anyway"
        if [ "$EXCHANGE" = dp ]; then
          set -- --set dp.rank="$STRATUM_NODE_INDEX" --set dp.rendezvous="$BUCKET/dp"
        else
          set -- --set diloco.rank="$STRATUM_NODE_INDEX" --set diloco.store="$BUCKET/rounds"
        fi
        "$TRAINER" --config "$cfg" "$@" \\
          --set p2p.listen="$ip:$peer_port" \\
          --set p2p.advertise="$ip:$peer_port" \\
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
