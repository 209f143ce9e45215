import Foundation
import StratumTesting
import Testing
import TrainerCore

extension TrainerSuite {
    @Suite struct CheckpointTests {
        struct Snapshot: Equatable {
            var params: [Float], m: [Float], v: [Float]
        }

        func snapshot(_ t: OpaquePointer) throws -> Snapshot {
            let model = try #require(tc_trainer_model(t))
            let n = tc_model_num_params(model)
            return Snapshot(params: Array(UnsafeBufferPointer(start: tc_model_params(model), count: n)),
                            m: Array(UnsafeBufferPointer(start: tc_model_adam_m(model), count: n)),
                            v: Array(UnsafeBufferPointer(start: tc_model_adam_v(model), count: n)))
        }

        func steps(_ t: OpaquePointer, _ n: Int) throws -> [Float] {
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            var out: [Float] = []
            for _ in 0..<n {
                var loss: Float = 0
                try #require(tc_trainer_step(t, &loss, &err, err.count) == 0, "\(errorText(err))")
                out.append(loss)
            }
            return out
        }

        /// 2N steps straight == N steps, checkpoint, a fresh trainer resumes, N more steps:
        /// the same loss sequence and bit-identical weights and AdamW moments.
        @Test(arguments: ["synthetic", "file"])
        func resumeIsBitExact(source: String) async throws {
            let dir = try makeTempDir("resume")
            defer { try? FileManager.default.removeItem(at: dir) }
            var overrides = tinyModel.merging(["train.steps": "40", "checkpoint.dir": dir.appendingPathComponent("ckpt").path]) { $1 }
            if source == "file" {
                // A corpus bigger than one chunk so the cursor crosses chunk boundaries and wraps.
                let corpus = dir.appendingPathComponent("corpus.txt")
                var text = ""
                for i in 0..<3000 { text += "line \(i): the quick brown fox \(i * 7919 % 1000)\n" }
                try text.write(to: corpus, atomically: true, encoding: .utf8)
                overrides["data.source"] = corpus.path
                overrides["data.chunk_bytes"] = "4096"
            }
            let N = 20
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))

            var straightCfg = try makeConfig(overrides.merging(["checkpoint.dir": ""]) { $1 })
            let straight = try #require(tc_trainer_create(&straightCfg, &err, err.count), "\(errorText(err))")
            let straightLosses = try steps(straight, 2 * N)
            let straightState = try snapshot(straight)
            tc_trainer_free(straight)

            var cfg = try makeConfig(overrides)
            let first = try #require(tc_trainer_create(&cfg, &err, err.count), "\(errorText(err))")
            var losses = try steps(first, N)
            try #require(tc_trainer_save_checkpoint(first, &err, err.count) == 0, "\(errorText(err))")
            tc_trainer_free(first)

            let ckpt = dir.appendingPathComponent("ckpt/step-\(String(format: "%010d", N))")
            #expect(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent("DONE").path))
            #expect(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent("state.bin").path))

            let second = try #require(tc_trainer_create(&cfg, &err, err.count), "\(errorText(err))")
            defer { tc_trainer_free(second) }
            #expect(tc_trainer_resume(second, &err, err.count) == 1, "\(errorText(err))")
            #expect(tc_trainer_step_count(second) == N)
            losses += try steps(second, N)
            let sameLosses = losses == straightLosses
            #expect(sameLosses, "loss sequences differ")
            let sameState = try snapshot(second) == straightState
            #expect(sameState, "weights or AdamW moments differ")
        }

        /// A checkpoint without its DONE marker is ignored; a corrupted one is refused by checksum.
        @Test func incompleteAndCorruptCheckpoints() async throws {
            let dir = try makeTempDir("incomplete")
            defer { try? FileManager.default.removeItem(at: dir) }
            let ckptDir = dir.appendingPathComponent("ckpt")
            var cfg = try makeConfig(tinyModel.merging(["checkpoint.dir": ckptDir.path, "checkpoint.keep": "0"]) { $1 })
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let t = try #require(tc_trainer_create(&cfg, &err, err.count), "\(errorText(err))")
            _ = try steps(t, 3)
            try #require(tc_trainer_save_checkpoint(t, &err, err.count) == 0)
            _ = try steps(t, 3)
            try #require(tc_trainer_save_checkpoint(t, &err, err.count) == 0)
            tc_trainer_free(t)
            // Step 6 loses its DONE marker (crash between the two writes): resume picks step 3.
            try FileManager.default.removeItem(at: ckptDir.appendingPathComponent("step-0000000006/DONE"))
            let r = try #require(tc_trainer_create(&cfg, &err, err.count))
            #expect(tc_trainer_resume(r, &err, err.count) == 1)
            #expect(tc_trainer_step_count(r) == 3)
            tc_trainer_free(r)
            // A different model shape refuses the checkpoint and says why.
            var wider = try makeConfig(tinyModel.merging(["checkpoint.dir": ckptDir.path, "model.width": "64"]) { $1 })
            let w = try #require(tc_trainer_create(&wider, &err, err.count))
            #expect(tc_trainer_resume(w, &err, err.count) == -1)
            #expect(errorText(err).contains("does not match the config"), "\(errorText(err))")
            tc_trainer_free(w)
            // Flip one byte of step 3's weights: the checksum catches it.
            let state = ckptDir.appendingPathComponent("step-0000000003/state.bin")
            var bytes = try Data(contentsOf: state)
            bytes[bytes.count / 2] ^= 0xFF
            try bytes.write(to: state)
            let c = try #require(tc_trainer_create(&cfg, &err, err.count))
            defer { tc_trainer_free(c) }
            #expect(tc_trainer_resume(c, &err, err.count) == -1)
            #expect(errorText(err).contains("checksum"), "\(errorText(err))")
        }

        /// A trainer process serves /healthz and /metrics while training, and SIGTERM (spot
        /// preemption) makes it write a checkpoint and exit 0; the next start resumes from it.
        @Test func sigtermCheckpointsAndMetricsAreServedWhileTraining() async throws {
            let dir = try makeTempDir("sigterm")
            defer { try? FileManager.default.removeItem(at: dir) }
            let port = freeLoopbackPort()
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 32}
                train: {batch_size: 4, seq_len: 32, steps: 1000000, threads: 1, log_every: 1}
                data: {source: synthetic}
                checkpoint: {dir: \(dir.appendingPathComponent("ckpt").path)}
                metrics: {port: \(port)}
                """
            let path = try writeYAML(yaml, in: dir)
            let child = try Child(try trainerBinary(), ["--config", path], log: dir.appendingPathComponent("run.log"))
            let deadline = Date().addingTimeInterval(60)
            var metrics = ""
            while Date() < deadline {
                if loopbackAccepts(port), let text = try? httpGet(port: port, path: "/metrics"),
                   let line = text.split(separator: "\n").first(where: { $0.hasPrefix("stratum_trainer_step ") }),
                   let step = Int(line.split(separator: " ")[1]), step >= 5 {
                    metrics = text
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(metrics.contains("stratum_trainer_loss "), "\(child.output)")
            #expect(try httpGet(port: port, path: "/healthz").hasSuffix("ok\n"))
            child.process.terminate()  // SIGTERM
            #expect(try await child.wait(seconds: 30) == 0, "\(child.output)")
            let stopped = child.output
            #expect(stopped.contains("checkpoint written at step"), "\(stopped)")
            let steps = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("ckpt").path)
            #expect(steps.count == 1)
            let (status, resumed) = try await runTrainer(["--config", path, "--until-step", "1", "--set", "metrics.port=0"], in: dir, name: "again")
            #expect(status == 0)
            #expect(resumed.contains("resumed from checkpoint at step"), "\(resumed)")
        }

        /// Fresh processes through the CLI: 2N straight and N + resume + N write byte-identical
        /// final checkpoints and print the same per-step losses; keep bounds what stays on disk.
        @Test func cliResumesAutomaticallyInAFreshProcess() async throws {
            let dir = try makeTempDir("cli-resume")
            defer { try? FileManager.default.removeItem(at: dir) }
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 32}
                train: {batch_size: 4, seq_len: 32, steps: 30, lr: 3e-3, warmup_steps: 5, threads: 2, log_every: 1}
                data: {source: synthetic}
                checkpoint: {every: 10, keep: 2}
                """
            let path = try writeYAML(yaml, in: dir)
            let a = dir.appendingPathComponent("a").path, b = dir.appendingPathComponent("b").path
            let (s1, straight) = try await runTrainer(["--config", path, "--set", "checkpoint.dir=\(a)"], in: dir, name: "straight")
            #expect(s1 == 0, "\(straight)")
            let (s2, firstHalf) = try await runTrainer(["--config", path, "--set", "checkpoint.dir=\(b)", "--until-step", "15"], in: dir, name: "half")
            #expect(s2 == 0, "\(firstHalf)")
            let (s3, secondHalf) = try await runTrainer(["--config", path, "--set", "checkpoint.dir=\(b)"], in: dir, name: "resume")
            #expect(s3 == 0, "\(secondHalf)")
            #expect(secondHalf.contains("resumed from checkpoint at step 15"), "\(secondHalf)")

            func lossLines(_ s: String) -> [String] {
                s.split(separator: "\n").filter { $0.hasPrefix("step ") }.map { String($0.split(separator: " ")[1...3].joined(separator: " ")) }
            }
            #expect(lossLines(firstHalf) + lossLines(secondHalf) == lossLines(straight))
            #expect(lossLines(straight).count == 30)
            let finalA = try Data(contentsOf: URL(fileURLWithPath: a + "/step-0000000030/state.bin"))
            let finalB = try Data(contentsOf: URL(fileURLWithPath: b + "/step-0000000030/state.bin"))
            let sameFile = finalA == finalB
            #expect(sameFile, "final checkpoints differ (\(finalA.count) vs \(finalB.count) bytes)")
            let kept = try FileManager.default.contentsOfDirectory(atPath: a).filter { $0.hasPrefix("step-") }.sorted()
            #expect(kept == ["step-0000000020", "step-0000000030"])
        }
    }
}
