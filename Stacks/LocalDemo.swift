import Stratum

/// A bucket and a pool of local worker processes that report into it: the stack the README
/// tour runs, on a machine with no cloud account.
public struct LocalDemo: Stack {
    public static let name = "local-demo"
    public static let summary = "A bucket and 2 worker processes writing heartbeats into it (Local provider)"

    public struct Config: StackConfiguration {
        /// How many worker processes.
        public var workers = 2
        /// Seconds between heartbeats.
        public var heartbeatSeconds = 5
        /// Shown in every heartbeat line.
        public var message = "training soon"
        public init() {}
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        let network = Network("demo", cidr: "10.42.0.0/16")
        let bucket = Bucket("demo-checkpoints")
        network
        bucket
        NodePool(
            "worker", count: config.workers,
            command: ["/bin/sh", "-c", Self.heartbeatScript],
            env: [
                "BUCKET": bucket.path,
                "INTERVAL": String(config.heartbeatSeconds),
                "MESSAGE": config.message,
            ],
            labels: ["role": "worker"],
            network: network)
        Output("bucket_path", bucket.path)
        Output("workers", config.workers)
    }

    /// Writes a heartbeat line to the node's log and its latest heartbeat into the bucket.
    static let heartbeatScript = """
        trap 'echo "stopping $STRATUM_NODE_NAME"; exit 0' TERM
        n=0
        while true; do
          n=$((n+1))
          line="heartbeat $n node=$STRATUM_NODE_NAME time=$(date +%s) msg=$MESSAGE"
          echo "$line"
          echo "$line" > "$BUCKET/$STRATUM_NODE_NAME.heartbeat"
          sleep "$INTERVAL" & wait $!
        done
        """
}

/// Every stack the bundled `stratum` binary carries.
public enum BundledStacks {
    public static let all: [any Stack.Type] = [LocalDemo.self]
}
