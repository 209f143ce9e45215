import Foundation
import Testing
import TrainerCore

extension TrainerSuite {
    @Suite struct DiLoCoTests {
        /// A DiLoCo worker told to stop (preemption, `stratum destroy`) ends promptly, and a
        /// restart resumes from the checkpoint of its last finished round.
        @Test func workerStopsOnSIGTERMAndResumes() async throws {
            let dir = try makeTempDir("diloco-term")
            defer { try? FileManager.default.removeItem(at: dir) }
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 64}
                train: {batch_size: 8, seq_len: 64, threads: 1, log_every: 0}
                data: {source: synthetic}
                diloco: {workers: 1, inner_steps: 10, rounds: 100000, store: \(dir.appendingPathComponent("store").path)}
                checkpoint: {dir: \(dir.appendingPathComponent("ckpt").path)}
                """
            let config = try writeYAML(yaml, in: dir)
            let child = try Child(try trainerBinary(), ["--config", config], log: dir.appendingPathComponent("first.log"))
            let secondRound = dir.appendingPathComponent("store/round-000002/manifest").path
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: secondRound), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(FileManager.default.fileExists(atPath: secondRound))
            _ = kill(child.process.processIdentifier, SIGTERM)
            _ = try await child.wait(seconds: 10)
            #expect(child.process.terminationReason == .uncaughtSignal)
            #expect(child.process.terminationStatus == SIGTERM)

            // Two more rounds than were finished: the restart must only run those two.
            let finished = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("store").path)
                .filter { FileManager.default.fileExists(atPath: dir.appendingPathComponent("store/\($0)/manifest").path) }.count
            let target = finished + 2
            let resumed = try Child(try trainerBinary(), ["--config", config, "--set", "diloco.rounds=\(target)"], log: dir.appendingPathComponent("second.log"))
            #expect(try await resumed.wait(seconds: 60) == 0, "\(resumed.output)")
            #expect(!resumed.output.contains("round 1/\(target)"), "\(resumed.output)")
            #expect(resumed.output.contains("round \(target)/\(target)"), "\(resumed.output)")
        }

        /// Three worker processes share a directory store; worker 2 is killed with SIGKILL after
        /// publishing round 2 and restarted two rounds later. The survivors skip it after the
        /// round deadline, it catches up from its checkpoint and rejoins, and all three finish
        /// with bit-identical weights and a loss far below ln(256).
        @Test func workersConvergeAndSurviveAKilledWorker() async throws {
            let dir = try makeTempDir("diloco")
            defer { try? FileManager.default.removeItem(at: dir) }
            let store = dir.appendingPathComponent("store")
            let rounds = 12, inner = 20, workers = 3
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 64}
                train: {batch_size: 8, seq_len: 64, lr: 1e-2, weight_decay: 0, warmup_steps: 10, threads: 1, log_every: 0}
                data: {source: synthetic, branching: 4}
                diloco: {workers: \(workers), inner_steps: \(inner), rounds: \(rounds), round_timeout_s: 3, store: \(store.path)}
                """
            let config = try writeYAML(yaml, in: dir)
            let binary = try trainerBinary()
            func start(_ rank: Int, _ tag: String) throws -> Child {
                try Child(binary, ["--config", config, "--set", "diloco.rank=\(rank)",
                                   "--set", "checkpoint.dir=\(dir.appendingPathComponent("ckpt-\(rank)").path)"],
                          log: dir.appendingPathComponent("worker-\(rank)-\(tag).log"))
            }
            func exists(_ rel: String) -> Bool { FileManager.default.fileExists(atPath: store.appendingPathComponent(rel).path) }
            func waitFor(_ what: String, seconds: Double, _ cond: () -> Bool) async throws {
                let deadline = Date().addingTimeInterval(seconds)
                while !cond() {
                    if Date() > deadline { throw TrainerTestError.timeout(what) }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }

            var children = try (0..<workers).map { try start($0, "first") }
            try await waitFor("worker 2 publishing round 2", seconds: 90) { exists("round-000002/worker-002.bin") }
            children[2].kill()
            _ = try await children[2].wait(seconds: 10)
            let killedLog = children[2].output
            try await waitFor("survivors finishing round 4", seconds: 90) { exists("round-000004/manifest") }
            children[2] = try start(2, "rejoined")

            var outputs: [String] = []
            for c in children {
                let status = try await c.wait(seconds: 150)
                outputs.append(c.output)
                #expect(status == 0, "\(c.output)")
            }
            for (rank, out) in outputs.enumerated() { print("worker \(rank):\n\(out.split(separator: "\n").suffix(3).joined(separator: "\n"))") }
            #expect(!killedLog.contains("done"))

            // A round without worker 2, and every replica agrees on the final weights.
            var short = 0
            for r in 0..<rounds {
                let manifest = try String(contentsOf: store.appendingPathComponent(String(format: "round-%06d/manifest", r)), encoding: .utf8)
                let ranks = manifest.split(separator: "\n")
                #expect(ranks.count >= 2)
                if ranks.count < workers { short += 1 }
            }
            #expect(short >= 1, "some round must have skipped the killed worker")
            func field(_ out: String, after marker: String) -> String? {
                guard let range = out.range(of: marker) else { return nil }
                return out[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).first.map(String.init)
            }
            let digests = outputs.compactMap { field($0, after: "weights sha256 ") }
            #expect(digests.count == workers && Set(digests).count == 1, "\(digests)")
            #expect(outputs[2].contains("caught up"), "\(outputs[2])")
            let losses = outputs.compactMap { field($0, after: "eval loss ").flatMap(Double.init) }
            #expect(losses.count == workers)
            let floor = tc_markov_entropy_rate(7, 4)
            for loss in losses { #expect(loss < floor + 0.35, "eval loss \(loss), floor \(floor)") }

            // Bytes: int8 pseudo-gradients each round vs fp32 ring all-reduce every step.
            let cfg = try makeConfig(["model.layers": "1", "model.width": "32", "model.heads": "2", "model.context": "64"])
            let model = try #require(tc_model_create(cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.context, 1, 1))
            let P = Double(tc_model_num_params(model))
            tc_model_free(model)
            let bytes = outputs.compactMap { field($0, after: "bytes exchanged ").flatMap(Double.init) }
            #expect(bytes.count == workers)
            let dataParallel = Double(rounds * inner) * 2 * Double(workers - 1) / Double(workers) * P * 4
            for b in bytes {
                #expect(b > P * Double(rounds) * 0.5, "each round moves at least an int8 copy of the model")
                print("diloco bytes \(Int(b)) vs data-parallel \(Int(dataParallel)): \(dataParallel / b)x fewer")
                #expect(dataParallel / b > 5)
            }
        }
    }
}
