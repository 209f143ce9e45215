import Foundation
import CStratumSpawn
import StratumCore

#if canImport(Glibc)
import Glibc
#endif

/// Nodes as detached OS processes: each runs in its own session with its log and pid record
/// under `nodes/<address>/`.
enum LocalProcesses {
    struct NodeRecord: Codable {
        var pid: Int32
        /// The kernel's start time of the process (clock ticks since boot): guards against pid reuse.
        var startTicks: UInt64
        var token: String
        var labels: [String: Value]
        var startedAt: Date
    }

    /// Each node instance gets its own directory, named after its address and create token, so
    /// a replacement created before its predecessor is deleted never touches the old one's files.
    static func directory(for address: ResourceAddress, token: String, in nodes: URL) -> URL {
        let slug = address.description.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }
        return nodes.appendingPathComponent(String(slug) + "-" + token.prefix(8))
    }

    /// Removes directories of earlier instances of `address` whose process is gone (a node
    /// killed out of band and since recreated), keeping `keep`.
    static func sweepDeadInstances(of address: ResourceAddress, in nodes: URL, keeping keep: URL?) {
        let prefix = directory(for: address, token: "", in: nodes).lastPathComponent
        let names = (try? FileManager.default.contentsOfDirectory(atPath: nodes.path)) ?? []
        for name in names where name.hasPrefix(prefix) && name.count == prefix.count + 8 {
            let candidate = nodes.appendingPathComponent(name)
            guard candidate.standardizedFileURL != keep?.standardizedFileURL else { continue }
            if let record = loadRecord(in: candidate),
                isRunning(pid: record.pid, startTicks: record.startTicks)
            {
                continue
            }
            try? FileManager.default.removeItem(at: candidate)
        }
    }

    /// The directory of a node already in state: where its log lives.
    static func directory(of state: ResourceState) -> URL? {
        state.attributes["log_path"]?.stringValue.map { URL(fileURLWithPath: $0).deletingLastPathComponent() }
    }

    static func recordFile(_ directory: URL) -> URL { directory.appendingPathComponent("node.json") }

    /// The node record in `directory`, or nil if there is none or it cannot be read.
    static func loadRecord(in directory: URL) -> NodeRecord? {
        try? JSONDecoder().decode(NodeRecord.self, from: Data(contentsOf: recordFile(directory)))
    }

    /// Which of `resources` still run: one pass over the process table for all of them.
    static func liveness(of resources: [ResourceState]) -> [ResourceState?] {
        resources.map { state in
            guard let directory = directory(of: state), let record = loadRecord(in: directory),
                "\(record.pid)" == state.attributes["pid"].map(pidText) ?? "", isRunning(pid: record.pid, startTicks: record.startTicks)
            else { return nil }
            var fresh = state
            fresh.attributes["labels"] = .map(record.labels)
            return fresh
        }
    }

    private static func pidText(_ value: Value) -> String {
        switch value {
        case .int(let i): return String(i)
        case .string(let s): return s
        default: return ""
        }
    }

    static func start(_ resource: ResolvedResource, token: String, nodesDirectory: URL) throws -> ResourceState {
        let address = resource.address
        let directory = directory(for: address, token: token, in: nodesDirectory)
        let fm = FileManager.default

        // A retried create with the same token adopts the process it already started.
        if let existing = loadRecord(in: directory),
            existing.token == token, isRunning(pid: existing.pid, startTicks: existing.startTicks)
        {
            return state(for: resource, record: existing, directory: directory)
        }
        sweepDeadInstances(of: address, in: nodesDirectory, keeping: directory)
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ProviderError(.transient, "cannot create \(directory.path): \(error.localizedDescription)", address: address)
        }

        guard case .list(let argvValues)? = resource.inputs["command"], !argvValues.isEmpty else {
            throw ProviderError(.permanent, "command must be a non-empty list of strings", address: address)
        }
        let argv = argvValues.map { $0.stringValue ?? $0.description }
        var environment: [String: String] = [:]
        // Only a minimal, credential-free environment reaches the workload.
        for key in ["PATH", "HOME", "LANG", "TMPDIR", "USER"] {
            if let value = ProcessInfo.processInfo.environment[key] { environment[key] = value }
        }
        environment["PATH"] = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        if case .map(let env)? = resource.inputs["env"] {
            for (key, value) in env { environment[key] = value.stringValue ?? value.description }
        }
        environment["STRATUM_NODE_NAME"] = "\(address.name)-\(address.index ?? 0)"
        environment["STRATUM_NODE_INDEX"] = "\(address.index ?? 0)"
        environment["STRATUM_NODE_ADDRESS"] = address.description
        environment["STRATUM_NODE_DIR"] = directory.path

        let logPath = directory.appendingPathComponent("node.log").path
        let pid = try spawnDetached(argv: argv, environment: environment, logPath: logPath, workingDirectory: directory.path, address: address)
        guard let ticks = startTicks(of: pid) else {
            throw ProviderError(.transient, "process \(pid) for \(address) exited immediately; see \(logPath)", address: address)
        }
        let record = NodeRecord(pid: pid, startTicks: ticks, token: token, labels: resource.inputs["labels"]?.mapValue ?? [:], startedAt: Date())
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(record).write(to: recordFile(directory), options: .atomic)
            try "\(pid)\n".write(to: directory.appendingPathComponent("pid"), atomically: true, encoding: .utf8)
        } catch {
            terminate(pid: pid, startTicks: ticks, grace: 2)
            throw ProviderError(.transient, "cannot record node \(address): \(error.localizedDescription)", address: address)
        }
        return state(for: resource, record: record, directory: directory)
    }

    /// The node an interrupted create started, if it runs: found by its record, or, when the
    /// process was spawned but the record never written, by the `STRATUM_NODE_DIR` it carries in
    /// its environment (its ownership tag). A directory with no live process is removed.
    static func recover(_ resource: ResolvedResource, token: String, nodesDirectory: URL) -> ResourceState? {
        let directory = directory(for: resource.address, token: token, in: nodesDirectory)
        if let record = loadRecord(in: directory), record.token == token, isRunning(pid: record.pid, startTicks: record.startTicks) {
            return state(for: resource, record: record, directory: directory)
        }
        if let pid = processCarrying(environment: "STRATUM_NODE_DIR=\(directory.path)"), let ticks = startTicks(of: pid) {
            let record = NodeRecord(pid: pid, startTicks: ticks, token: token, labels: resource.inputs["labels"]?.mapValue ?? [:], startedAt: Date())
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            if (try? encoder.encode(record).write(to: recordFile(directory), options: .atomic)) != nil {
                try? "\(pid)\n".write(to: directory.appendingPathComponent("pid"), atomically: true, encoding: .utf8)
                return state(for: resource, record: record, directory: directory)
            }
            terminate(pid: pid, startTicks: ticks, grace: 2)
        }
        try? FileManager.default.removeItem(at: directory)
        return nil
    }

    /// A process whose environment holds `entry` exactly (one pass over /proc).
    static func processCarrying(environment entry: String) -> Int32? {
        let needle = Array(entry.utf8)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), pid != getpid(),
                let data = FileManager.default.contents(atPath: "/proc/\(name)/environ")
            else { continue }
            for item in data.split(separator: 0) where item.elementsEqual(needle) { return pid }
        }
        return nil
    }

    static func state(for resource: ResolvedResource, record: NodeRecord, directory: URL) -> ResourceState {
        var attributes = resource.inputs
        attributes["id"] = .string("pid-\(record.pid)")
        attributes["pid"] = .int(Int(record.pid))
        attributes["log_path"] = .string(directory.appendingPathComponent("node.log").path)
        attributes["started_at"] = .string(ISO8601DateFormatter().string(from: record.startedAt))
        return ResourceState(address: resource.address, provider: "local", region: resource.region, id: "pid-\(record.pid)", attributes: attributes)
    }

    static func updateLabels(_ state: ResourceState) throws {
        guard let directory = directory(of: state) else {
            throw ProviderError(.notFound, "node \(state.address) has no recorded directory", address: state.address)
        }
        let file = recordFile(directory)
        do {
            var record = try JSONDecoder().decode(NodeRecord.self, from: Data(contentsOf: file))
            record.labels = state.attributes["labels"]?.mapValue ?? [:]
            try JSONEncoder().encode(record).write(to: file, options: .atomic)
        } catch {
            throw ProviderError(.notFound, "node record \(file.path) is unreadable: \(error.localizedDescription)", address: state.address)
        }
    }

    static func stop(_ state: ResourceState) async throws {
        guard let directory = directory(of: state) else { return }
        defer { sweepDeadInstances(of: state.address, in: directory.deletingLastPathComponent(), keeping: nil) }
        if let record = loadRecord(in: directory) {
            terminate(pid: record.pid, startTicks: record.startTicks, grace: 10)
        }
        if FileManager.default.fileExists(atPath: directory.path) {
            do {
                try FileManager.default.removeItem(at: directory)
            } catch {
                throw ProviderError(.transient, "cannot remove \(directory.path): \(error.localizedDescription)", address: state.address)
            }
        }
    }

    // MARK: processes

    /// Starts `argv` in a new session (so it outlives the CLI and can be signalled as a group)
    /// with stdin from /dev/null and stdout/stderr appended to `logPath`.
    static func spawnDetached(argv: [String], environment: [String: String], logPath: String, workingDirectory: String, address: ResourceAddress) throws -> Int32 {
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = cArgs.withUnsafeBufferPointer { args in
            cEnv.withUnsafeBufferPointer { env in
                stratum_spawn_detached(args.baseAddress, env.baseAddress, logPath, workingDirectory, &pid)
            }
        }
        guard status == 0 else {
            throw ProviderError(.permanent, "cannot start '\(argv[0])': \(String(cString: strerror(status)))", address: address)
        }
        return pid
    }

    /// The process's start time in clock ticks since boot, or nil if it is gone or a zombie.
    static func startTicks(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, starttime field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else {
            reap(pid)
            return nil
        }
        return UInt64(fields[19])
    }

    static func isRunning(pid: Int32, startTicks expected: UInt64) -> Bool {
        startTicks(of: pid) == expected
    }

    /// Collects the exit status if the process is our own child, so it does not linger as a zombie.
    static func reap(_ pid: Int32) {
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
    }

    /// SIGTERM to the node's process group, then SIGKILL after `grace` seconds.
    static func terminate(pid: Int32, startTicks: UInt64, grace: Double) {
        guard isRunning(pid: pid, startTicks: startTicks) else { return }
        kill(-pid, SIGTERM)
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline {
            if !isRunning(pid: pid, startTicks: startTicks) { return }
            usleep(20_000)
        }
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        for _ in 0..<100 where isRunning(pid: pid, startTicks: startTicks) { usleep(10_000) }
    }
}
