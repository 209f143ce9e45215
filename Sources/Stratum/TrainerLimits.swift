/// The values the bundled trainer (`stratum-trainer`) accepts, key by key, as its config table
/// declares them (`Sources/TrainerCore/config.c`). Stacks that configure the trainer check their
/// configuration against these, so a value the trainer would refuse at start-up is a
/// validation error at `validate` and `plan` instead. A test runs the built trainer at every
/// bound to prove the two agree.
public enum TrainerLimits {
    /// One trainer key and its inclusive range.
    public struct Key: Sendable, Hashable {
        /// The trainer's own name for it, `section.key`.
        public var name: String
        public var range: ClosedRange<Int64>

        public init(_ name: String, _ range: ClosedRange<Int64>) {
            self.name = name
            self.range = range
        }
    }

    public static let threads = Key("train.threads", 1...1024)
    public static let width = Key("model.width", 1...65536)
    public static let heads = Key("model.heads", 1...1024)
    public static let steps = Key("train.steps", 0...1_000_000_000_000_000)
    public static let logEvery = Key("train.log_every", 0...1_000_000_000)
    public static let checkpointEvery = Key("checkpoint.every", 0...1_000_000_000_000_000)
    public static let metricsPort = Key("metrics.port", 0...65535)
    public static let workers = Key("diloco.workers", 0...4096)
    public static let rank = Key("diloco.rank", 0...4095)
    public static let innerSteps = Key("diloco.inner_steps", 1...1_000_000_000)
    public static let rounds = Key("diloco.rounds", 1...1_000_000_000)

    /// Every key above.
    public static let all: [Key] = [threads, width, heads, steps, logEvery, checkpointEvery, metricsPort, workers, rank, innerSteps, rounds]
}

/// One configuration value a stack cannot use, named by its YAML key.
public struct ConfigProblem: Sendable, Hashable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var message: String

    public init(key: String, value: String, message: String) {
        self.key = key
        self.value = value
        self.message = message
    }

    public var description: String { "\(key) = \(value): \(message)" }
}

/// Collects the problems of a configuration's values (see `StackConfiguration.problems()`).
public struct ConfigCheck: Sendable {
    public private(set) var problems: [ConfigProblem] = []

    public init() {}

    /// `value` of `key` must be in `range`; `what` says whose limit it is.
    public mutating func range(_ key: String, _ value: Int, _ range: ClosedRange<Int64>, _ what: String) {
        if !range.contains(Int64(value)) {
            problems.append(ConfigProblem(key: key, value: String(value), message: "must be \(range.lowerBound)...\(range.upperBound) (\(what))"))
        }
    }

    /// `value` of `key` becomes the trainer's `limit` key, so it must be in its range.
    public mutating func trainer(_ key: String, _ value: Int, _ limit: TrainerLimits.Key) {
        range(key, value, limit.range, "the trainer's \(limit.name)")
    }

    /// `port` of `key` is the first of `workers` consecutive trainer metrics ports (worker i
    /// listens on port + i; 0 picks free ports): it and the last must be ports the trainer takes.
    public mutating func workerPorts(_ key: String, _ port: Int, workers: Int) {
        trainer(key, port, TrainerLimits.metricsPort)
        let limit = TrainerLimits.metricsPort.range
        if port > 0, workers > 0, limit.contains(Int64(port)) {
            let last = Int64(port) + Int64(workers) - 1
            require(last <= limit.upperBound, key, port,
                    "worker i listens on \(key) + i, so the last of \(workers) workers would need port \(last), above \(limit.upperBound)")
        }
    }

    /// The trainer's schedule is `inner_steps` x `rounds` steps long: it must fit `train.steps`
    /// (the problem names `rounds`).
    public mutating func schedule(innerSteps: Int, rounds: Int) {
        let (steps, overflow) = innerSteps.multipliedReportingOverflow(by: rounds)
        if innerSteps >= 1, rounds >= 1 {
            require(!overflow && TrainerLimits.steps.range.contains(Int64(steps)), "rounds", rounds,
                    "inner_steps x rounds is the trainer's train.steps, at most \(TrainerLimits.steps.range.upperBound)")
        }
    }

    /// Records a problem unless `condition` holds.
    public mutating func require(_ condition: Bool, _ key: String, _ value: some CustomStringConvertible, _ message: String) {
        if !condition { problems.append(ConfigProblem(key: key, value: value.description, message: message)) }
    }
}
