import Stratum

/// Nodes running a shell script under a churn schedule the stack declares: for tests of
/// `stratum chaos churn` and of how plans show and check a schedule.
struct ChurnShellStack: Stack {
    static let name = "churn-shell"
    static let summary = "Local nodes running a shell script under a declared churn schedule (tests)"

    struct Config: StackConfiguration {
        /// Nodes of the pool `job`.
        var count = 2
        /// The script each node runs with /bin/sh -c.
        var script = "sleep 1000"
        /// The provider the pool is placed on.
        var provider = "local"
        /// Whether the stack declares a schedule.
        var declared = true
        var kill = 1
        var everySeconds = 2.0
        var downSeconds = 1.0
        var cycles: Int? = 1
        var seed: UInt64?
        /// Declare the schedule on the pool (`NodePool(churn:)`) rather than on its own.
        var onPool = false
        /// The pool a stack-level schedule names.
        var pool: String?
        init() {}
    }

    func body(config: Config) -> StackContent {
        let churn = !config.declared ? nil : Optional(config.kill).map { kill in
            Churn(
                kill: kill, every: .milliseconds(Int64(config.everySeconds * 1000)), down: .milliseconds(Int64(config.downSeconds * 1000)),
                cycles: config.cycles, seed: config.seed, pool: config.onPool ? nil : config.pool)
        }
        NodePool(
            "job", count: config.count, command: ["/bin/sh", "-c", config.script], churn: config.onPool ? churn : nil,
            on: Placement(provider: config.provider, region: config.provider == "local" ? "local" : "default"))
        if !config.onPool, let churn { churn }
    }
}
