import StratumCore

/// The bundled trainer as the workload of a cloud node: its sources reach the node as an
/// artifact in the cluster's bucket (each provider declares the object and the identity that
/// reads it), are built there for the machine, and run under systemd with `config` as
/// /etc/stratum/trainer.yaml and `arguments` after it. An argument may name the node's
/// variables as `$NAME` (`--set diloco.rank=$STRATUM_NODE_INDEX`); nothing else in it is
/// interpreted.
public struct TrainerRun: Sendable, Hashable {
    public var config: String
    public var arguments: [String]

    public init(config: String = TrainerRun.defaultConfig, arguments: [String] = TrainerRun.dilocoArguments) {
        self.config = config
        self.arguments = arguments
    }

    /// A small byte-level model on synthetic data, checkpointing every 200 steps and serving
    /// /metrics and /healthz (the port comes from the node setup).
    public static let defaultConfig = """
        model: {layers: 4, width: 256, heads: 8, context: 256}
        train: {batch_size: 16, seq_len: 256, lr: 0.0006, warmup_steps: 100, log_every: 10}
        data: {source: synthetic}
        checkpoint: {every: 200, keep: 3}
        diloco: {inner_steps: 100, rounds: 1000}
        """

    /// DiLoCo across the pool from the node contract: rank and size, pseudo-gradients and each
    /// worker's checkpoints under the pool's checkpoint URL.
    public static let dilocoArguments = [
        "--set", "diloco.workers=$STRATUM_NODE_COUNT", "--set", "diloco.rank=$STRATUM_NODE_INDEX",
        "--set", "diloco.store=$STRATUM_CHECKPOINT_URL/rounds", "--set", "checkpoint.dir=$STRATUM_CHECKPOINT_URL/worker-$STRATUM_NODE_INDEX",
    ]

    /// The inputs a node resource takes for this run, with the archive at `url` named `sha256`.
    public func inputs(url: any StringExpression, sha256: String) -> [String: Value] {
        [
            "trainer_url": url.value, "trainer_sha256": .string(sha256), "trainer_config": .string(config),
            "trainer_arguments": .list(arguments.map(Value.string)),
        ]
    }
}

/// A trainer run bound to where its archive lies: what a node resource takes as its workload.
/// A provider's archive declaration (`AWS.TrainerArchive`) makes one.
public struct TrainerWorkload: Sendable {
    public var run: TrainerRun
    /// The archive's URL in the bucket (a reference to the object's `url`).
    public var url: Ref<String>
    /// The archive's SHA-256: a new trainer is a new archive and new nodes.
    public var sha256: String

    public init(run: TrainerRun, url: Ref<String>, sha256: String) {
        self.run = run
        self.url = url
        self.sha256 = sha256
    }

    public var inputs: [String: Value] { run.inputs(url: url, sha256: sha256) }

    /// What is wrong with a node spec that runs `trainer`: it also runs a command, container or
    /// boot script of its own (`otherWorkload`), or it has no identity of its own to fetch the
    /// archive with (`hasIdentity` false; `hint` names the resource that gives one).
    public static func problems(_ trainer: TrainerWorkload?, otherWorkload: Bool, hasIdentity: Bool, hint: String) -> [String] {
        guard trainer != nil else { return [] }
        var problems: [String] = []
        if otherWorkload { problems.append("a node runs one workload: the trainer, or a command or container, not both") }
        if !hasIdentity { problems.append("a node running the trainer fetches it with its own identity: give it \(hint)") }
        return problems
    }
}

/// Rank 0's address for node `index` of a pool whose rank 0 is `rankZero`: a reference to its
/// private IP for every other rank (the node contract's `STRATUM_COORDINATOR`); nothing for
/// rank 0, which reads its own address at boot.
public func coordinatorInput(index: Int, rankZero: ResourceAddress) -> [String: Value] {
    index > 0 ? ["coordinator": Ref<String>(rankZero, "private_ip").value] : [:]
}
