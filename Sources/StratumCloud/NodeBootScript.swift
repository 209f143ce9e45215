import StratumCore

/// What each cloud contributes to a node's first boot that only the running machine knows (its
/// zone, and for a node of a gang its rank), and shell quoting; the node setup itself is
/// StratumBootstrap's.
public enum NodeBootScript {
    /// What a cloud's node learns at boot from its metadata service.
    public struct AtBoot: Sendable {
        /// Shell lines run before the command; they export `variables`.
        public var lines: [String]
        /// The contract variables the lines export (passed into a container).
        public var variables: [String]

        public init(lines: [String], variables: [String]) {
            self.lines = lines
            self.variables = variables
        }
    }

    /// `text` as one single-quoted shell word.
    public static func quote(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
