import Foundation
import Yams

/// A `#cloud-config` node setup read back as cloud-init reads it: the files it writes, the
/// node contract in its node.env, the commands it runs at first boot.
public struct NodeSetupDocument: Sendable {
    public let text: String
    /// Contents by path.
    public let files: [String: String]
    /// Modes by path (`permissions:`, octal; 0644 where a file has none).
    public let permissions: [String: Int]
    public let runcmd: [[String]]

    public init(_ text: String) throws {
        self.text = text
        guard text.hasPrefix("#cloud-config\n"), let parsed = try Yams.load(yaml: text) as? [String: Any] else {
            throw DocumentError(message: "not a #cloud-config document: \(text.prefix(80))")
        }
        let entries = parsed["write_files"] as? [[String: Any]] ?? []
        files = Dictionary(entries.compactMap { file in (file["path"] as? String).map { ($0, file["content"] as? String ?? "") } }) { $1 }
        permissions = Dictionary(entries.compactMap { file in
            (file["path"] as? String).map { ($0, (file["permissions"] as? String).flatMap { Int($0, radix: 8) } ?? 0o644) }
        }) { $1 }
        runcmd = (parsed["runcmd"] as? [Any] ?? []).map { ($0 as? [Any])?.map { "\($0)" } ?? ["\($0)"] }
    }

    /// Reads user data as a cloud sends it: base64, possibly gzipped.
    public init(base64 encoded: String) throws {
        guard let data = Data(base64Encoded: encoded) else { throw DocumentError(message: "user data is not base64") }
        try self.init(String(decoding: data, as: UTF8.self))
    }

    /// node.env's `KEY='value'` lines, unquoted as the shell does.
    public var environment: [String: String] {
        var env: [String: String] = [:]
        for line in (files["/etc/stratum/node.env"] ?? "").split(separator: "\n") where !line.hasPrefix("#") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            var value = String(line[line.index(after: equals)...])
            if value.hasPrefix("'"), value.hasSuffix("'") { value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "'\\''", with: "'") }
            env[String(line[..<equals])] = value
        }
        return env
    }

    /// The script the workload unit runs.
    public var workload: String { files["/usr/local/lib/stratum/workload.sh"] ?? "" }
    /// The script that adds what only the running machine knows.
    public var bootEnv: String { files["/usr/local/lib/stratum/boot-env.sh"] ?? "" }

    public struct DocumentError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }
}
