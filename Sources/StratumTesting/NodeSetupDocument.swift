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

    /// Debian's `cloud-init schema --config-file` on the document: nil when cloud-init calls it
    /// valid, else what it said (installed by .ci/run). Waited for off the shared pool.
    public func schemaProblems() async throws -> String? {
        let text = text
        return try await offThePool { try Self.schemaProblems(of: text) }
    }

    static func schemaProblems(of text: String) throws -> String? {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-user-data-\(UUID().uuidString).yaml")
        try Data(text.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["cloud-init", "schema", "--config-file", file.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 && said.contains("Valid cloud-config") ? nil : said
    }

    /// What `readSecrets` found: the script's exit status and output, and the secrets file it
    /// wrote (nil when none) with its permissions.
    public struct SecretsRun: Sendable {
        public var status: Int32
        public var output: String
        public var secretsEnv: String?
        public var permissions: Int?
    }

    /// Runs the document's `secrets.sh` for real, outside a machine: its files are written under
    /// a scratch directory, with `/etc/stratum` and `/usr/local/lib/stratum` moved there, and the
    /// script is run by `/bin/sh` with `environment` added (where the cloud's metadata service
    /// and secret store are, for loopback fakes). Waits at most `timeout`.
    public func readSecrets(environment: [String: String], timeout: Duration = .seconds(60)) async throws -> SecretsRun {
        let root = try TestSupport.temporaryDirectory("node-secrets")
        defer { try? FileManager.default.removeItem(at: root) }
        func moved(_ text: String) -> String {
            text.replacingOccurrences(of: "/etc/stratum", with: root.path + "/etc/stratum")
                .replacingOccurrences(of: "/usr/local/lib/stratum", with: root.path + "/usr/local/lib/stratum")
        }
        for (path, content) in files where path.hasPrefix("/etc/stratum/") || path.hasPrefix("/usr/local/lib/stratum/") {
            let url = URL(fileURLWithPath: moved(path))
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(moved(content).utf8).write(to: url)
        }
        let script = moved("/usr/local/lib/stratum/secrets.sh")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [script]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let env = moved("/etc/stratum/secrets.env")
        let permissions = (try? FileManager.default.attributesOfItem(atPath: env)[.posixPermissions]) as? Int
        return SecretsRun(
            status: process.terminationStatus, output: text, secretsEnv: try? String(contentsOfFile: env, encoding: .utf8), permissions: permissions)
    }

    public struct DocumentError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }
}
