import Foundation
import StratumTesting
import Testing

/// A project directory running the `local-shell` fixture stack through the built binary.
private struct ShellProject {
    let dir: URL
    let cli: CLI

    init(_ label: String, isolation: String? = nil) throws {
        dir = try TestSupport.temporaryDirectory(label)
        var cli = CLI("stratum-fixture", in: dir)
        if let isolation { cli.environment["STRATUM_LOCAL_ISOLATION"] = isolation }
        self.cli = cli
    }

    var nodes: URL { dir.appendingPathComponent(".stratum/local/nodes") }
    var config: URL { dir.appendingPathComponent("shell.yaml") }

    func configure(count: Int = 1, script: String, bucket: String? = nil) throws {
        // A YAML block scalar keeps the script's lines as they are.
        let block = script.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
        var text = "count: \(count)\nscript: |\n\(block)\n"
        if let bucket { text += "bucket: \(bucket)\n" }
        try text.write(to: config, atomically: true, encoding: .utf8)
    }

    @discardableResult
    func run(_ command: [String], _ extra: [String] = [], environment: [String: String] = [:]) async throws -> CLI.Result {
        try await cli.run(command + ["--stack", "local-shell", "--config", config.path] + extra, extraEnvironment: environment)
    }

    /// Node instance directories, by name.
    func directories() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: nodes.path)) ?? []).sorted()
    }

    func directory(of index: Int) throws -> URL {
        let names = directories().filter { $0.hasPrefix("local_node.job_\(index)_-") }
        #expect(names.count == 1, "\(names)")
        return nodes.appendingPathComponent(try #require(names.first))
    }

    func leader(of index: Int) throws -> Int32 {
        let text = try String(contentsOf: try directory(of: index).appendingPathComponent("pid"), encoding: .utf8)
        return try #require(Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    /// Live processes carrying a node marker of this project, with the node directory they name.
    func markedProcesses() -> [Int32: String] {
        var found: [Int32: String] = [:]
        let prefix = Array("STRATUM_NODE_DIR=\(nodes.path)/".utf8)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), isAlive(pid), let data = FileManager.default.contents(atPath: "/proc/\(name)/environ") else { continue }
            if let item = data.split(separator: 0).first(where: { $0.starts(with: prefix) }) {
                found[pid] = URL(fileURLWithPath: String(decoding: item.dropFirst(17), as: UTF8.self)).lastPathComponent
            }
        }
        return found
    }

    /// Session leaders (node supervisors) among the marked processes, by node directory.
    func supervisors() -> [String: [Int32]] {
        var leaders: [String: [Int32]] = [:]
        for (pid, directory) in markedProcesses() {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 3, Int32(fields[3]) == pid { leaders[directory, default: []].append(pid) }
        }
        return leaders
    }

    /// An attribute of a node as `state show` prints it (`name = value`), quotes removed.
    func attribute(_ name: String, of address: String, env: String = "dev") async throws -> String? {
        let shown = try await cli.run(["state", "show", address, "--stack", "local-shell", "--env", env]).stdout
        let line = shown.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("\(name) = ") }
        return line.map { String($0.split(separator: "=", maxSplits: 1)[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\" ")) }
    }

    /// Kills whatever a failed test left behind.
    func cleanUp() {
        for pid in markedProcesses().keys { kill(pid, SIGKILL) }
    }
}

/// A node and every process it starts belong to Stratum for life: through the built binary,
/// with real process trees.
@Suite("Local nodes own their process trees", .serialized, .timeLimit(.minutes(2)))
struct LocalHardeningTests {
    /// A workload with children: a background sleep and a foreground one.
    static let withChildren = "sleep 1000 & sleep 1000"

    @Test(arguments: ["cgroup", "process-group"])
    func killingTheLeaderIsDriftAndApplyLeavesNoOrphan(isolation: String) async throws {
        let project = try ShellProject("kill-leader", isolation: isolation)
        defer { project.cleanUp() }
        // One child leaves the node's session and process group: it is still the node's.
        try project.configure(script: "setsid sleep 1000 & " + Self.withChildren)
        let apply = try await project.run(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        let first = try project.directory(of: 0).lastPathComponent
        #expect(await eventually(seconds: 20) { project.markedProcesses().count >= 4 }, "\(project.markedProcesses())")
        #expect(try await project.attribute("status", of: "local_node.job[0]") == "running")
        let leader = try project.leader(of: 0)
        // The node runs in its own cgroup where the machine allows one, and says which mode it got.
        let mode = try await #require(try project.attribute("isolation", of: "local_node.job[0]"))
        if isolation == "process-group" || !mode.hasPrefix("cgroup ") {
            #expect(mode == "process-group \(leader)")
        } else {
            let procs = String(mode.dropFirst("cgroup ".count)) + "/cgroup.procs"
            func members() -> Set<Int32> {
                Set(((try? String(contentsOfFile: procs, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) })
            }
            // Every process of the node, the one that left its session too, is in the cgroup.
            #expect(await eventually(seconds: 10) { members().contains(leader) && members() == Set(project.markedProcesses().keys) })
        }
        let children = Set(project.markedProcesses().keys).subtracting([leader])
        kill(leader, SIGKILL)
        #expect(await eventually(seconds: 10) { !isAlive(leader) })
        #expect(children.allSatisfy(isAlive))

        let drift = try await project.run(["plan", "--detailed-exitcode"])
        #expect(drift.status == 2, "\(drift.stdout)\(drift.stderr)")
        #expect(drift.stdout.contains("local_node.job[0] must be replaced because its leader process \(leader) was killed outside Stratum"), "\(drift.stdout)")

        let heal = try await project.run(["apply", "--auto-approve"])
        #expect(heal.status == 0, "\(heal.stdout)\(heal.stderr)")
        // The old tree is gone: no process names the old directory, and it was removed.
        #expect(children.allSatisfy { !isAlive($0) })
        let second = try project.directory(of: 0).lastPathComponent
        #expect(second != first)
        #expect(Set(project.markedProcesses().values) == [second])
        #expect(isAlive(try project.leader(of: 0)))
        #expect(try await project.run(["plan", "--detailed-exitcode"]).status == 0)

        let destroy = try await project.run(["destroy", "--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stderr)")
        #expect(project.markedProcesses().isEmpty)
        #expect(project.directories().isEmpty)
    }

    @Test func aDeletedDirectoryOrCorruptRecordNeverMakesASecondWorker() async throws {
        let project = try ShellProject("edit-files")
        defer { project.cleanUp() }
        try project.configure(count: 2, script: Self.withChildren)
        #expect(try await project.run(["apply", "--auto-approve"]).status == 0)
        #expect(await eventually(seconds: 20) { project.supervisors().count == 2 })
        let before = Set(project.markedProcesses().keys)

        try FileManager.default.removeItem(at: try project.directory(of: 0))
        try "{ not json".write(to: try project.directory(of: 1).appendingPathComponent("node.json"), atomically: true, encoding: .utf8)

        let plan = try await project.run(["plan", "--detailed-exitcode"])
        #expect(plan.status == 2, "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("local_node.job[0] must be replaced because its directory"), "\(plan.stdout)")
        #expect(plan.stdout.contains("local_node.job[1] must be replaced because its record"), "\(plan.stdout)")

        let apply = try await project.run(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        // Exactly one worker per address: one supervisor in one directory each, none of the old processes.
        let supervisors = project.supervisors()
        #expect(supervisors.count == 2, "\(supervisors)")
        #expect(supervisors.values.allSatisfy { $0.count == 1 })
        #expect(Set(supervisors.keys) == Set(project.directories()))
        #expect(before.allSatisfy { !isAlive($0) })

        let destroy = try await project.run(["destroy", "--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stderr)")
        #expect(project.markedProcesses().isEmpty)
        #expect(project.directories().isEmpty)
    }

    @Test func anotherEnvironmentsNodeAtTheSameAddressIsNeverTouched() async throws {
        let project = try ShellProject("two-envs")
        defer { project.cleanUp() }
        try project.configure(script: Self.withChildren)
        #expect(try await project.run(["apply", "--auto-approve", "--env", "prod"]).status == 0)
        #expect(try await project.run(["apply", "--auto-approve", "--env", "dev"]).status == 0)
        #expect(await eventually(seconds: 20) { project.supervisors().count == 2 })
        let processes = project.markedProcesses()
        let devLog = try await #require(try project.attribute("log_path", of: "local_node.job[0]", env: "dev"))
        let devLeader = try await #require(try project.attribute("pid", of: "local_node.job[0]", env: "dev").flatMap { Int32($0) })
        let devDirectory = URL(fileURLWithPath: devLog).deletingLastPathComponent().lastPathComponent
        let prod = processes.filter { $0.value != devDirectory }
        #expect(!prod.isEmpty && prod.count < processes.count)

        // dev loses its leader, is replaced, then destroyed: prod's tree and directory stay.
        kill(devLeader, SIGKILL)
        #expect(try await project.run(["apply", "--auto-approve", "--env", "dev"]).status == 0)
        #expect(try await project.run(["destroy", "--auto-approve", "--env", "dev"]).status == 0)
        #expect(prod.keys.allSatisfy(isAlive))
        #expect(Set(project.markedProcesses().values) == Set(prod.values))
        #expect(project.directories() == Array(Set(prod.values)))
        #expect(try await project.run(["plan", "--detailed-exitcode", "--env", "prod"]).status == 0)
        #expect(try await project.run(["destroy", "--auto-approve", "--env", "prod"]).status == 0)
        #expect(project.markedProcesses().isEmpty)
    }

    @Test func sigkillDuringDestroyThenRerunLeavesNothing() async throws {
        let project = try ShellProject("kill-destroy")
        defer { project.cleanUp() }
        // A tree that outlives SIGTERM: a child ignoring it, and a shell that notes it and goes on.
        try project.configure(script: """
            (trap '' TERM; exec sleep 1000) &
            trap 'touch "$STRATUM_NODE_DIR/term"' TERM
            while :; do sleep 1000 & wait $!; done
            """)
        #expect(try await project.run(["apply", "--auto-approve"]).status == 0)
        let directory = try project.directory(of: 0)
        #expect(await eventually(seconds: 20) { project.markedProcesses().count >= 3 })

        // The destroy waits out a long grace after SIGTERM; it is killed in the middle of it.
        let (destroy, _, _) = try project.cli.start(
            ["destroy", "--auto-approve", "--stack", "local-shell", "--config", project.config.path], extraEnvironment: ["STRATUM_LOCAL_STOP_GRACE": "60"])
        #expect(await eventually(seconds: 30) { FileManager.default.fileExists(atPath: directory.appendingPathComponent("term").path) })
        kill(destroy.processIdentifier, SIGKILL)
        destroy.waitUntilExit()
        #expect(!project.markedProcesses().isEmpty)
        #expect(FileManager.default.fileExists(atPath: directory.path))

        let rerun = try await project.run(["destroy", "--auto-approve"], environment: ["STRATUM_LOCAL_STOP_GRACE": "1"])
        #expect(rerun.status == 0, "\(rerun.stdout)\(rerun.stderr)")
        #expect(project.markedProcesses().isEmpty, "\(project.markedProcesses())")
        #expect(project.directories().isEmpty, "\(project.directories())")
        let listed = try await project.cli.run(["state", "list", "--stack", "local-shell"])
        #expect(listed.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(listed.stdout)")
    }

    @Test func askingForMoreNodesThanTheMachineHoldsFailsAtPlanTime() async throws {
        let project = try ShellProject("node-limit")
        try project.configure(count: 20_000, script: "sleep 1000")
        let derived = try await project.run(["plan"])
        #expect(derived.status == 1)
        #expect(derived.stderr.contains("asks the local provider for 20000 nodes"), "\(derived.stderr)")
        #expect(derived.stderr.contains("STRATUM_LOCAL_MAX_NODES"))
        let limitText = try #require(derived.stderr.components(separatedBy: "holds at most ").dropFirst().first?.prefix { $0.isNumber })
        let limit = try #require(Int(limitText))
        #expect(limit < 20_000)
        #expect(derived.stderr.contains("per CPU"))

        try project.configure(count: 3, script: "sleep 1000")
        let overridden = try await project.run(["plan"], environment: ["STRATUM_LOCAL_MAX_NODES": "2"])
        #expect(overridden.status == 1)
        #expect(overridden.stderr.contains("holds at most 2 (set by STRATUM_LOCAL_MAX_NODES=2)"), "\(overridden.stderr)")
        #expect(try await project.run(["plan"], environment: ["STRATUM_LOCAL_MAX_NODES": "3"]).status == 0)
        let malformed = try await project.run(["validate"], environment: ["STRATUM_LOCAL_MAX_NODES": "lots"])
        #expect(malformed.status == 1)
        #expect(malformed.stderr.contains("STRATUM_LOCAL_MAX_NODES must be a whole number"), "\(malformed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: project.nodes.path))
    }

    @Test func aBucketCreateOverAnUnmanagedDirectoryLeavesItAlone() async throws {
        let project = try ShellProject("bucket-foreign")
        let foreign = project.dir.appendingPathComponent(".stratum/local/buckets/data")
        try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
        try project.configure(count: 0, script: "true", bucket: "data")

        for _ in 0..<2 {
            let apply = try await project.run(["apply", "--auto-approve"])
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("already exists and is not managed by this stack"), "\(apply.stderr)")
            var isDirectory: ObjCBool = false
            #expect(FileManager.default.fileExists(atPath: foreign.path, isDirectory: &isDirectory) && isDirectory.boolValue)
        }
        let listed = try await project.cli.run(["state", "list", "--stack", "local-shell"])
        #expect(!listed.stdout.contains("local_bucket.data"))
    }

    @Test func aWorkloadThatFailsIsReportedFailedAndOneThatFinishesIsNot() async throws {
        let project = try ShellProject("exit-status")
        defer { project.cleanUp() }
        // Runs until the test says go, then exits with the status the test wrote.
        try project.configure(script: #"while [ ! -e "$STRATUM_NODE_DIR/go" ]; do sleep 0.05; done; exit "$(cat "$STRATUM_NODE_DIR/go")""#)
        #expect(try await project.run(["apply", "--auto-approve"]).status == 0)
        #expect(try await project.run(["plan", "--detailed-exitcode"]).status == 0)

        let directory = try project.directory(of: 0)
        try "3".write(to: directory.appendingPathComponent("go"), atomically: true, encoding: .utf8)
        #expect(await eventually(seconds: 20) { FileManager.default.fileExists(atPath: directory.appendingPathComponent("exit-status").path) })
        let refresh = try await project.run(["refresh"])
        #expect(refresh.status == 0, "\(refresh.stderr)")
        #expect(refresh.stdout.contains("local_node.job[0]: failed: its workload exited with status 3"), "\(refresh.stdout)")
        #expect(refresh.stdout.contains("1 failed"))
        let shown = try await project.cli.run(["state", "show", "local_node.job[0]", "--stack", "local-shell"])
        #expect(shown.stdout.contains("failed(3)"), "\(shown.stdout)")
        let plan = try await project.run(["plan", "--detailed-exitcode"])
        #expect(plan.status == 2, "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("local_node.job[0] must be replaced because its workload exited with status 3"), "\(plan.stdout)")

        // The replacement finishes its work with status 0: done, not failed, and left as it is.
        #expect(try await project.run(["apply", "--auto-approve"]).status == 0)
        let replacement = try project.directory(of: 0)
        #expect(replacement != directory)
        try "0".write(to: replacement.appendingPathComponent("go"), atomically: true, encoding: .utf8)
        #expect(await eventually(seconds: 20) { FileManager.default.fileExists(atPath: replacement.appendingPathComponent("exit-status").path) })
        #expect(try await project.run(["refresh"]).status == 0)
        let finished = try await project.cli.run(["state", "show", "local_node.job[0]", "--stack", "local-shell"])
        #expect(finished.stdout.contains("exited(0)"), "\(finished.stdout)")
        let settled = try await project.run(["plan", "--detailed-exitcode"])
        #expect(settled.status == 0, "\(settled.stdout)")
        #expect(try await project.run(["destroy", "--auto-approve"]).status == 0)
        #expect(project.directories().isEmpty)
    }
}
