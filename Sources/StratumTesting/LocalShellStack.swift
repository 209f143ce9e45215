import Stratum

/// Local nodes running a shell script, and optionally a bucket: for tests of how the Local
/// provider owns process trees, reports failed workloads and limits node counts.
public struct LocalShellStack: Stack {
    public static let name = "local-shell"
    public static let summary = "Local nodes running a shell script (tests)"

    public struct Config: StackConfiguration {
        /// How many nodes.
        public var count = 1
        /// The script each node runs with /bin/sh -c.
        public var script = "sleep 1000"
        /// A bucket to declare beside the nodes, if set.
        public var bucket: String?
        public init() {}
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        if let name = config.bucket { Bucket(name) }
        NodePool("job", count: config.count, command: ["/bin/sh", "-c", config.script])
    }
}
