import Foundation
import StratumBootstrap
import StratumCore
import StratumTesting
import Testing

/// The interconnect check as the node setup renders it, run for real: three nodes' own
/// `allreduce-check.sh` (their node.env, the built `stratum-trainer`), moved off the machine's
/// paths onto scratch ones, meeting over loopback.
@Suite("The rendered interconnect check, run", .serialized, .timeLimit(.minutes(2)))
struct InterconnectCheckTests {
    /// The setup of node `index` of a pool of `count`, as a cloud node of `aws-p5-trainer`'s kind.
    static func files(index: Int, count: Int) throws -> [String: String] {
        var node = try #require(BootstrapCase.all.first { $0.name == "aws-p5-trainer" }).bootstrap
        node.address = "aws_instance.worker[\(index)]"
        node.environment[NodeContract.nodeIndex] = String(index)
        node.environment[NodeContract.nodeCount] = String(count)
        node.environment[NodeContract.coordinatorName] = index > 0 ? "127.0.0.1" : nil
        return try NodeSetupDocument(try node.cloudConfig()).files
    }

    /// Writes node `index`'s check with its paths moved under `root` and the port changed;
    /// answers the script to run.
    static func stage(index: Int, count: Int, root: URL, port: Int, metricsPort: Int = freeLoopbackPort()) throws -> URL {
        let files = try files(index: index, count: count)
        let node = root.appendingPathComponent("node-\(index)")
        try FileManager.default.createDirectory(at: node, withIntermediateDirectories: true)
        func moved(_ text: String) -> String {
            text.replacingOccurrences(of: NodeBootstrap.nodeEnvPath, with: node.path + "/node.env")
                .replacingOccurrences(of: "/run/stratum", with: node.path + "/run")
                .replacingOccurrences(of: NodeBootstrap.allreduceMetricsPath, with: node.path + "/allreduce.prom")
                .replacingOccurrences(of: "/opt/stratum/bin/stratum-trainer", with: BuiltBinary.url("stratum-trainer").path)
                .replacingOccurrences(of: "--port \(NodeBootstrap.allreducePort)", with: "--port \(port)")
                .replacingOccurrences(of: "--timeout 900", with: "--timeout 30")
        }
        // Where rank 0's metrics answer (a late joiner looks there for the pool's check).
        let env = try #require(files[NodeBootstrap.nodeEnvPath]).replacingOccurrences(
            of: "STRATUM_METRICS_PORT='\(NodeBootstrap.defaultMetricsPort)'", with: "STRATUM_METRICS_PORT='\(metricsPort)'")
        try Data(env.utf8).write(to: node.appendingPathComponent("node.env"))
        let script = node.appendingPathComponent("allreduce-check.sh")
        try Data(moved(try #require(files["\(NodeBootstrap.libexec)/allreduce-check.sh"])).utf8).write(to: script)
        return script
    }

    static func run(_ scripts: [URL], seconds: Double = 60) async throws -> [(status: Int32, output: String)] {
        var processes: [(Process, URL)] = []
        for script in scripts {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = [script.path]
            let log = script.deletingLastPathComponent().appendingPathComponent("check-\(UUID().uuidString).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            processes.append((process, log))
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while processes.contains(where: { $0.0.isRunning }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        for (process, _) in processes where process.isRunning { process.terminate() }
        return processes.map { process, log in
            process.waitUntilExit()
            return (process.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }
    }

    @Test func threeNodesCheckTheirInterconnectOncePerBoot() async throws {
        let root = try TestSupport.temporaryDirectory("interconnect")
        defer { try? FileManager.default.removeItem(at: root) }
        let port = freeLoopbackPort()
        let scripts = try (0..<3).map { try Self.stage(index: $0, count: 3, root: root, port: port) }
        let runs = try await Self.run(scripts)
        for (index, run) in runs.enumerated() {
            #expect(run.status == 0 && run.output.contains("stratum allreduce-check: passed"), "node \(index): \(run.output)")
            let metrics = try String(contentsOf: root.appendingPathComponent("node-\(index)/allreduce.prom"), encoding: .utf8)
            #expect(metrics.contains("\nstratum_allreduce_ok 1\n") && metrics.contains("\nstratum_allreduce_world_size 3\n"), "\(metrics)")
        }
        // Once per boot: a restart of the workload does not run it again.
        let again = try await Self.run([scripts[1]], seconds: 10)
        #expect(again.first?.status == 0 && again.first?.output.isEmpty == true, "\(again)")
    }

    /// A node whose peers never come: the check says so and exits 0 (training starts anyway),
    /// with the failure in the metrics for `stratum status`.
    @Test func aFailedCheckIsReportedAndDoesNotStopTheWorkload() async throws {
        let root = try TestSupport.temporaryDirectory("interconnect-failed")
        defer { try? FileManager.default.removeItem(at: root) }
        let script = try Self.stage(index: 1, count: 2, root: root, port: freeLoopbackPort())
        let text = try String(contentsOf: script, encoding: .utf8).replacingOccurrences(of: "--timeout 30", with: "--timeout 2")
        try Data(text.utf8).write(to: script)
        let run = try #require(try await Self.run([script], seconds: 30).first)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("FAILED") && run.output.contains("cannot reach the coordinator"), "\(run.output)")
        let metrics = try String(contentsOf: root.appendingPathComponent("node-1/allreduce.prom"), encoding: .utf8)
        #expect(metrics.contains("\nstratum_allreduce_ok 0\n"), "\(metrics)")
    }

    /// A node that joins its pool after the pool's check (replaced, or rebooted alone) finds
    /// the check in rank 0's metrics, skips its own at once and says so.
    @Test func aLateJoinerSkipsTheCheck() async throws {
        let root = try TestSupport.temporaryDirectory("interconnect-late")
        defer { try? FileManager.default.removeItem(at: root) }
        let rankZero = try await LoopbackHTTPServer.start { request in
            request.uri == "/metrics"
                ? ProxyResponse(status: 200, body: Data("stratum_trainer_step 900\nstratum_allreduce_ok 1\nstratum_allreduce_check_timestamp_seconds 1790000000\n".utf8))
                : ProxyResponse(status: 404)
        }
        defer { Task { await rankZero.shutdown() } }
        let script = try Self.stage(index: 1, count: 2, root: root, port: freeLoopbackPort(), metricsPort: try #require(rankZero.url.port))
        let started = ContinuousClock.now
        let run = try #require(try await Self.run([script], seconds: 30).first)
        #expect(run.status == 0 && run.output.contains("skipped"), "\(run.output)")
        #expect(ContinuousClock.now - started < .seconds(15))
        let metrics = try String(contentsOf: root.appendingPathComponent("node-1/allreduce.prom"), encoding: .utf8)
        #expect(metrics.contains("\nstratum_allreduce_skipped 1\n") && !metrics.contains("stratum_allreduce_ok"), "\(metrics)")
    }

    /// Only a trainer node of a pool of more than one checks: one node alone has nothing to check.
    @Test func aSingleNodeHasNoCheck() throws {
        let files = try Self.files(index: 0, count: 1)
        #expect(files["\(NodeBootstrap.libexec)/allreduce-check.sh"] == nil)
        #expect(files["/etc/systemd/system/stratum-workload.service"]?.contains("allreduce-check") == false)
        #expect(files["\(NodeBootstrap.libexec)/workload.sh"]?.contains("metrics.include") == false)
        #expect(files["/etc/systemd/system/stratum-allreduce-check.service"] == nil)
        let pool = try Self.files(index: 0, count: 2)
        // A unit of its own, started once the workload has started (the trainer built), never
        // holding the trainer back.
        let unit = try #require(pool["/etc/systemd/system/stratum-allreduce-check.service"])
        #expect(unit.contains("After=network-online.target stratum-workload.service") && unit.contains("Type=oneshot"), "\(unit)")
        #expect(pool["/etc/systemd/system/stratum-workload.service"]?.contains("allreduce") == false)
    }
}
