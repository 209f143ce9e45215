import Foundation
import StratumTesting
import Testing

/// A spot worker of the Local demo is preempted (its capacity reclaimed: a notice, then
/// SIGTERM, as a cloud does it); the plan replaces it, and the replacement resumes training
/// from the checkpoint its predecessor wrote.
@Suite("Spot preemption on the Local provider (CLI, end to end)")
struct CLIPreemptionTests {
    @Test(.timeLimit(.minutes(4)))
    func aPreemptedWorkerIsReplacedAndResumesFromItsCheckpoint() async throws {
        let dir = try TestSupport.temporaryDirectory("preempt")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 2\ninner_steps: 20\nrounds: 200\nspot: true\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]
        let apply = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        defer { _ = try? cli.runBlocking(["destroy", "--auto-approve"] + common) }

        let nodes = dir.appendingPathComponent(".stratum/local/nodes")
        func nodeDirectories(_ index: Int) async throws -> [URL] {
            try FileManager.default.contentsOfDirectory(atPath: nodes.path).filter { $0.hasPrefix("local_node.worker_\(index)_-") }.map { nodes.appendingPathComponent($0) }
        }
        let first = try await #require(try nodeDirectories(0).first)
        let pid = try #require(Int32(String(contentsOf: first.appendingPathComponent("pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))

        // Worker 0 checkpoints into the bucket before it is preempted.
        let checkpoints = dir.appendingPathComponent(".stratum/local/buckets/demo-checkpoints/worker-0")
        #expect(await eventually(seconds: 120) {
            hasCompleteCheckpoint(checkpoints)
        }, "no checkpoint of worker 0 in \(checkpoints.path)")

        // The notice, then SIGTERM: the worker checkpoints and stops.
        try Data("2026-11-29T08:00:00Z\n".utf8).write(to: first.appendingPathComponent("preempted"))
        kill(pid, SIGTERM)
        #expect(await eventually(seconds: 30) { !isAlive(pid) })

        let plan = try await cli.run(["plan", "--detailed-exitcode"] + common)
        #expect(plan.status == 2, "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("local_node.worker[0] must be replaced because it was preempted: its spot capacity was reclaimed at 2026-11-29T08:00:00Z"), "\(plan.stdout)")
        #expect(plan.stdout.contains("Plan: 1 to add, 0 to change, 1 to destroy."))

        let heal = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(heal.status == 0, "\(heal.stdout)\(heal.stderr)")
        let replacement = try await #require(try nodeDirectories(0).first { $0 != first })
        let log = replacement.appendingPathComponent("node.log")
        var resumedAt: Int?
        #expect(await eventually(seconds: 60) {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").first(where: { $0.contains("worker 0: resumed from its checkpoint at step ") }) else { return false }
            resumedAt = Int(line.split(separator: " ")[8])
            return true
        }, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "no log")")
        #expect((resumedAt ?? 0) >= 20, "the replacement resumed at step \(resumedAt ?? -1)")
        #expect(try await cli.run(["plan", "--detailed-exitcode"] + common).status == 0)
    }
}
