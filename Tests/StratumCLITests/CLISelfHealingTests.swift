import Foundation
import StratumTesting
import Testing

/// The watch loop of `stratum reconcile` heals the Local demo: one worker killed, another hung
/// (stopped: its /healthz never answers); both are replaced — the hung one once its grace has
/// passed — and the replacements resume from their checkpoints. SIGTERM ends the loop.
@Suite("Self-healing on the Local provider (CLI, end to end)")
struct CLISelfHealingTests {
    @Test(.timeLimit(.minutes(5)))
    func aKilledAndAHungWorkerAreReplacedAndResume() async throws {
        let dir = try TestSupport.temporaryDirectory("self-heal")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 2\ninner_steps: 20\nrounds: 200\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]
        let apply = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        defer { _ = try? cli.runBlocking(["destroy", "--auto-approve"] + common) }

        let nodes = dir.appendingPathComponent(".stratum/local/nodes")
        func nodeDirectories(_ index: Int) throws -> [URL] {
            try FileManager.default.contentsOfDirectory(atPath: nodes.path).filter { $0.hasPrefix("local_node.worker_\(index)_-") }.map { nodes.appendingPathComponent($0) }
        }
        func leader(_ directory: URL) throws -> Int32 {
            try #require(Int32(String(contentsOf: directory.appendingPathComponent("pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        // Both workers checkpoint before anything happens to them.
        for index in 0..<2 {
            let checkpoints = dir.appendingPathComponent(".stratum/local/buckets/demo-checkpoints/worker-\(index)")
            #expect(await eventually(seconds: 120) {
                hasCompleteCheckpoint(checkpoints)
            }, "no checkpoint of worker \(index)")
        }
        let killed = try #require(try nodeDirectories(0).first), hung = try #require(try nodeDirectories(1).first)
        let killedPid = try leader(killed), hungPid = try leader(hung)
        killpg(killedPid, SIGKILL)
        killpg(hungPid, SIGSTOP)
        defer { killpg(hungPid, SIGKILL) }

        let report = dir.appendingPathComponent("drift.json")
        let (watcher, out, err) = try cli.start(["reconcile", "--watch", "--interval", "2s", "--grace", "15s", "--report", report.path] + common)
        defer { if watcher.isRunning { watcher.terminate() } }

        // Both are replaced, and each replacement resumes from its predecessor's checkpoint.
        for (index, old) in [(0, killed), (1, hung)] {
            var replacement: URL?
            #expect(await eventually(seconds: 120) {
                replacement = (try? nodeDirectories(index))?.first { $0 != old }
                return replacement != nil
            }, "worker \(index) was not replaced")
            guard let replacement else { continue }
            let log = replacement.appendingPathComponent("node.log")
            #expect(await eventually(seconds: 90) {
                ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("worker \(index): resumed from its checkpoint at step ")
            }, "worker \(index)'s replacement did not resume: \((try? String(contentsOf: log, encoding: .utf8)) ?? "no log")")
        }
        // The hung worker was replaced for its health, after the grace.
        let history = try await cli.run(["state", "history"] + common).stdout
        #expect(history.contains("local_node.worker[1]"), "\(history)")

        kill(watcher.processIdentifier, SIGTERM)
        await exited(watcher)
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(watcher.terminationStatus == 0, "\(stdout)\(stderr)")
        #expect(stdout.contains("local_node.worker[1]: failed, unhealthy: its /healthz has not answered since"), "\(stdout)")
        #expect(stdout.contains("local_node.worker[0]: failed,"), "\(stdout)")
        #expect(try await cli.run(["plan", "--detailed-exitcode"] + common).status == 0)
    }
}
