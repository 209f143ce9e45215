import StratumCore

/// The boot script of a cloud node built from its `command`, `env` and `container_image`
/// inputs (unless the stack gives `user_data` itself): the node contract's variables, then the
/// cloud's own lines that export what is known only once the machine runs (its zone, and for
/// a node of a gang its rank), then the command, in a container when an image is given.
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

    /// The script, or nil when the node has no `command` and no `user_data`. `cloud` names the
    /// provider in `STRATUM_CLOUD`; variables `atBoot` exports are left out of the fixed ones.
    public static func render(_ resource: ResolvedResource, cloud: String, atBoot: AtBoot) -> String? {
        if let raw = resource.inputs["user_data"]?.stringValue, !raw.isEmpty { return raw }
        let command = (resource.inputs["command"]?.listValue ?? []).compactMap(\.stringValue)
        guard !command.isEmpty else { return nil }
        var env = NodeContract(node: resource, cloud: cloud, zone: nil).environment(over: NodeContract.stackEnvironment(of: resource))
        env["STRATUM_NODE_ADDRESS"] = resource.address.description
        for name in atBoot.variables { env[name] = nil }
        var lines = ["#!/bin/sh", "# Stratum node \(resource.address)", "set -e"]
        for key in env.keys.sorted() { lines.append("export \(key)=\(quote(env[key] ?? ""))") }
        lines += atBoot.lines
        if let image = resource.inputs["container_image"]?.stringValue, !image.isEmpty {
            let passes = Set(env.keys).union(atBoot.variables).sorted().map { "-e \($0)" }.joined(separator: " ")
            lines.append("exec docker run --rm --gpus all --network host \(passes) \(quote(image)) \(command.map(quote).joined(separator: " "))")
        } else {
            lines.append("exec \(command.map(quote).joined(separator: " "))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `text` as one single-quoted shell word.
    public static func quote(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
