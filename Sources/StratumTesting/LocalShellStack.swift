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
        /// A Local network (its CIDR) to put the nodes on, if set.
        public var network: String?
        /// The nodes' link, when any of these is set: rate cap (Mbit/s), delay (ms), loss (%).
        public var rateMbit: Double?
        public var delayMs: Double?
        public var lossPercent: Double?
        public init() {}

        var link: LinkProfile? {
            guard rateMbit != nil || delayMs != nil || lossPercent != nil else { return nil }
            return LinkProfile(rateMbit: rateMbit, delayMs: delayMs ?? 0, lossPercent: lossPercent ?? 0)
        }
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        if let name = config.bucket { Bucket(name) }
        let network = config.network.map { Network("net", cidr: $0) }
        if let network { network }
        NodePool("job", count: config.count, command: ["/bin/sh", "-c", config.script], network: network, link: config.link)
    }
}
