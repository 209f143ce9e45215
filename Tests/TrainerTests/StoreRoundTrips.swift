import Foundation
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// What every object-store backend must carry: a checkpoint and a DiLoCo run.

/// Polls `ready` until it holds; throws when the emulator child exits or 30 s pass.
func waitUntilReady(_ child: Child, _ what: String, _ ready: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(30)
    while !ready() {
        if !child.process.isRunning || Date() > deadline {
            throw TrainerTestError.timeout("\(what) did not start: \(child.output)")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// Stops an emulator child with SIGKILL: the test runner's threads block SIGTERM, and a child
/// process inherits that mask, so `terminate()` alone leaves the emulator running.
func stopEmulator(_ child: Child) {
    guard child.process.isRunning else { return }
    child.kill()
    child.process.waitUntilExit()  // SIGKILL: it ends at once
}

/// Five steps, a checkpoint to `checkpoint.dir` (in `overrides`), then a fresh trainer resumes
/// it: step count, weights and AdamW v identical.
func expectCheckpointRoundTrip(_ overrides: [String: String]) throws {
    var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
    var cfg = try makeConfig(tinyModel.merging(overrides) { $1 })
    let t = try #require(tc_trainer_create(&cfg, &err, err.count), "\(errorText(err))")
    for _ in 0..<5 {
        var loss: Float = 0
        try #require(tc_trainer_step(t, &loss, &err, err.count) == 0)
    }
    try #require(tc_trainer_save_checkpoint(t, &err, err.count) == 0, "\(errorText(err))")
    let model = try #require(tc_trainer_model(t))
    let n = tc_model_num_params(model)
    let saved = Array(UnsafeBufferPointer(start: tc_model_params(model), count: n))
    let savedV = Array(UnsafeBufferPointer(start: tc_model_adam_v(model), count: n))
    tc_trainer_free(t)

    let r = try #require(tc_trainer_create(&cfg, &err, err.count))
    defer { tc_trainer_free(r) }
    #expect(tc_trainer_resume(r, &err, err.count) == 1, "\(errorText(err))")
    #expect(tc_trainer_step_count(r) == 5)
    let rm = try #require(tc_trainer_model(r))
    let sameParams = Array(UnsafeBufferPointer(start: tc_model_params(rm), count: n)) == saved
    #expect(sameParams)
    let sameV = Array(UnsafeBufferPointer(start: tc_model_adam_v(rm), count: n)) == savedV
    #expect(sameV)
}

/// Two DiLoCo workers (trainer processes) run three rounds through `store`; their final
/// weights agree and round 2 holds a manifest and both pseudo-gradients. `yamlExtra` adds
/// config lines (e.g. the S3 endpoint), `s3Endpoint` opens the store for the check.
func expectTwoWorkerDiLoCo(store: String, yamlExtra: String = "", s3Endpoint: String? = nil) async throws {
    let dir = try makeTempDir("store-diloco")
    defer { try? FileManager.default.removeItem(at: dir) }
    let yaml = """
        model: {layers: 1, width: 32, heads: 2, context: 32}
        train: {batch_size: 4, seq_len: 32, lr: 3e-3, warmup_steps: 2, threads: 1, log_every: 0, eval_batches: 2}
        data: {source: synthetic}
        diloco: {workers: 2, inner_steps: 5, rounds: 3, round_timeout_s: 30, store: "\(store)"}
        \(yamlExtra)
        """
    let config = try writeYAML(yaml, in: dir)
    let workers = try (0..<2).map {
        try Child(try trainerBinary(), ["--config", config, "--set", "diloco.rank=\($0)"],
                  log: dir.appendingPathComponent("worker-\($0).log"))
    }
    var digests: Set<String> = []
    for w in workers {
        #expect(try await w.wait(seconds: 120) == 0, "\(w.output)")
        #expect(w.output.contains("round 3/3") && w.output.contains("averaged 2 pseudo-gradients"), "\(w.output)")
        if let r = w.output.range(of: "weights sha256 ") { digests.insert(String(w.output[r.upperBound...].prefix(64))) }
    }
    #expect(digests.count == 1, "replicas must agree: \(digests)")
    var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
    let roundStore = try #require(tc_store_open(store, s3Endpoint, "us-east-1", &err, err.count), "\(errorText(err))")
    defer { tc_store_free(roundStore) }
    var roundKeys: UnsafeMutablePointer<CChar>?
    #expect(tc_store_list(roundStore, "round-000002/", &roundKeys, &err, err.count) == 0, "\(errorText(err))")
    #expect(String(cString: try #require(roundKeys)) == "round-000002/manifest\nround-000002/worker-000.bin\nround-000002/worker-001.bin\n")
    free(roundKeys)
}
