import Foundation
import StratumTesting
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The first word after `marker` in a trainer's output ("weights sha256 ", "p2p sent ").
private func word(_ out: String, after marker: String) -> String? {
    guard let range = out.range(of: marker, options: .backwards) else { return nil }
    return out[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).first.map(String.init)
}

/// Parameters of the tiny model these tests train (1 layer, width 32, 2 heads, context 64).
private func tinyParameterCount() throws -> Int {
    let cfg = try makeConfig(["model.layers": "1", "model.width": "32", "model.heads": "2", "model.context": "64"])
    let model = try #require(tc_model_create(cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.context, 1, 1))
    defer { tc_model_free(model) }
    return Int(tc_model_num_params(model))
}

private func waitFor(_ what: String, seconds: Double, _ cond: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !cond() {
        if Date() > deadline { throw TrainerTestError.timeout(what) }
        try await Task.sleep(for: .milliseconds(20))
    }
}

private func signal(_ child: Child, _ sig: Int32) {
    #if canImport(Glibc)
    _ = Glibc.kill(child.process.processIdentifier, sig)
    #else
    _ = Darwin.kill(child.process.processIdentifier, sig)
    #endif
}

extension TrainerSuite {
    /// DiLoCo's pseudo-gradients exchanged over the workers' own TCP ring (`diloco.exchange:
    /// p2p`), and data-parallel training with its gradients all-reduced over TCP every step.
    @Suite(.timeLimit(.minutes(3))) struct P2PTests {
        static let model = """
            model: {layers: 1, width: 32, heads: 2, context: 64}
            data: {source: synthetic, branching: 4}
            """
        static let diloco = model + """

            train: {batch_size: 8, seq_len: 64, lr: 1e-2, weight_decay: 0, warmup_steps: 10, threads: 1, log_every: 0, eval_batches: 4}
            """

        /// The same three workers with the same inputs, once through the store and once over the
        /// ring: every replica of both runs ends with the same weights, bit for bit, and the ring
        /// run put no pseudo-gradient in the store but moved them over TCP.
        @Test func p2pExchangeMatchesTheStoreBitForBit() async throws {
            let dir = try makeTempDir("p2p-same")
            defer { try? FileManager.default.removeItem(at: dir) }
            let workers = 3, rounds = 4
            let config = try writeYAML(Self.diloco + """

                diloco: {workers: \(workers), inner_steps: 10, rounds: \(rounds), round_timeout_s: 60}
                p2p: {listen: "127.0.0.1:0", timeout_s: 60}
                """, in: dir)
            let binary = try trainerBinary()
            func run(_ exchange: String) async throws -> [String] {
                let children = try (0..<workers).map { rank in
                    try Child(binary, ["--config", config, "--set", "diloco.rank=\(rank)", "--set", "diloco.exchange=\(exchange)",
                                       "--set", "diloco.store=\(dir.appendingPathComponent(exchange).path)"],
                              log: dir.appendingPathComponent("\(exchange)-\(rank).log"))
                }
                var outputs: [String] = []
                for child in children {
                    let status = try await child.wait(seconds: 120)
                    #expect(status == 0, "\(child.output)")
                    outputs.append(child.output)
                }
                return outputs
            }
            let store = try await run("store"), ring = try await run("p2p")
            let digests = (store + ring).compactMap { word($0, after: "weights sha256 ") }
            #expect(digests.count == 2 * workers && Set(digests).count == 1, "\(digests)")
            for out in ring { #expect(out.contains("averaged 3 pseudo-gradients") && !out.contains("failed"), "\(out)") }

            let listing = try FileManager.default.subpathsOfDirectory(atPath: dir.appendingPathComponent("p2p").path)
            #expect(!listing.contains { $0.hasSuffix(".bin") }, "pseudo-gradients went through the store: \(listing)")
            #expect(listing.contains("round-000003/manifest") && listing.contains("peers/worker-002"), "\(listing)")
            // Each round every worker sends its neighbour W-1 blocks of 16 + (4 + 4*ceil(P/64) + P)
            // bytes and receives as many, plus a line to open each link.
            let P = try tinyParameterCount()
            let payload = rounds * (workers - 1) * (16 + 4 + 4 * ((P + 63) / 64) + P)
            for out in ring {
                let sent = word(out, after: "p2p sent ").flatMap(Int.init) ?? 0, received = word(out, after: "received ").flatMap(Int.init) ?? 0
                #expect(sent >= payload && sent < payload + rounds * 200, "sent \(sent), payload \(payload)")
                #expect(received >= payload && received < payload + rounds * 200, "received \(received), payload \(payload)")
            }
        }

        /// Three workers on the ring; worker 2 is frozen right after it says its pseudo-gradient of
        /// round 3 is ready, so the ring stalls mid-round, then killed with SIGKILL. The others drop
        /// it and finish that round among themselves, then go on; restarted from its checkpoint,
        /// it takes the global state from a peer, rejoins, and all three end bit-identical.
        @Test func aWorkerKilledMidRoundIsDroppedAndRejoins() async throws {
            let dir = try makeTempDir("p2p-kill")
            defer { try? FileManager.default.removeItem(at: dir) }
            let store = dir.appendingPathComponent("store")
            let workers = 3, rounds = 10
            let config = try writeYAML(Self.diloco + """

                diloco: {workers: \(workers), inner_steps: 20, rounds: \(rounds), round_timeout_s: 3, exchange: p2p, store: \(store.path)}
                p2p: {listen: "127.0.0.1:0", timeout_s: 3}
                """, in: dir)
            let binary = try trainerBinary()
            let portFile = dir.appendingPathComponent("metrics-0.port")
            func start(_ rank: Int, _ tag: String) throws -> Child {
                var arguments = ["--config", config, "--set", "diloco.rank=\(rank)", "--set", "checkpoint.dir=\(dir.appendingPathComponent("ckpt-\(rank)").path)"]
                if rank == 0 { arguments += ["--set", "metrics.port_file=\(portFile.path)"] }
                return try Child(binary, arguments, log: dir.appendingPathComponent("worker-\(rank)-\(tag).log"))
            }
            func exists(_ rel: String) -> Bool { FileManager.default.fileExists(atPath: store.appendingPathComponent(rel).path) }

            var children = try (0..<workers).map { try start($0, "first") }
            try await waitFor("worker 2 ready in round 3", seconds: 90) { exists("round-000002/ready-002") }
            signal(children[2], SIGSTOP)
            try await waitFor("the others finishing round 3", seconds: 60) { exists("round-000002/manifest") }
            children[2].kill()
            _ = try await children[2].wait(seconds: 10)
            let killedLog = children[2].output
            try await waitFor("the others finishing round 5", seconds: 90) { exists("round-000004/manifest") }

            // The live worker's metrics: round and bytes over its links.
            let port = try #require((try? String(contentsOf: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
            let metrics = try httpGet(port: port, path: "/metrics")
            func sample(_ name: String) -> Double? {
                metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
            }
            #expect((sample("stratum_trainer_diloco_round") ?? 0) >= 4, "\(metrics)")
            #expect((sample("stratum_trainer_p2p_bytes_sent_total") ?? 0) > 0 && (sample("stratum_trainer_p2p_bytes_received_total") ?? 0) > 0, "\(metrics)")
            #expect(metrics.contains("# TYPE stratum_trainer_p2p_bytes_sent_total counter"), "\(metrics)")

            children[2] = try start(2, "rejoined")
            var outputs: [String] = []
            for child in children {
                let status = try await child.wait(seconds: 150)
                outputs.append(child.output)
                #expect(status == 0, "\(child.output)")
            }
            for (rank, out) in outputs.enumerated() { print("worker \(rank):\n\(out.split(separator: "\n").suffix(4).joined(separator: "\n"))") }
            #expect(!killedLog.contains("done"))

            var without = 0
            for r in 0..<rounds {
                let manifest = try String(contentsOf: store.appendingPathComponent(String(format: "round-%06d/manifest", r)), encoding: .utf8)
                let ranks = manifest.split(separator: "\n").compactMap { Int($0) }
                #expect(ranks.count >= 2, "round \(r + 1): \(ranks)")
                if !ranks.contains(2) { without += 1 }
            }
            #expect(without >= 1, "some round must have gone on without the killed worker")
            #expect(outputs[2].contains("caught up from worker"), "\(outputs[2])")
            #expect(outputs[2].contains(" pseudo-gradients, "), "the restarted worker takes part again: \(outputs[2])")
            let digests = outputs.compactMap { word($0, after: "weights sha256 ") }
            #expect(digests.count == workers && Set(digests).count == 1, "\(digests)")
            let floor = tc_markov_entropy_rate(7, 4)
            for loss in outputs.compactMap({ word($0, after: "eval loss ").flatMap(Double.init) }) {
                #expect(loss < floor + 0.35, "eval loss \(loss), floor \(floor)")
            }
        }

        /// Data parallel over TCP: three ranks find each other through records in a directory,
        /// all-reduce every step's gradients, and stay identical; the loss falls, and each rank's
        /// traffic is the ring all-reduce's 2(W-1)/W of the gradient buffer per step. Two ranks
        /// given each other's addresses (p2p.peers) do the same.
        @Test func dataParallelReplicasStayIdenticalOverTCP() async throws {
            let dir = try makeTempDir("p2p-dp")
            defer { try? FileManager.default.removeItem(at: dir) }
            let steps = 30
            let config = try writeYAML(Self.model + """

                train: {batch_size: 8, seq_len: 64, lr: 1e-2, steps: \(steps), weight_decay: 0, warmup_steps: 5, threads: 1, log_every: 10, eval_batches: 4}
                p2p: {listen: "127.0.0.1:0", timeout_s: 60}
                """, in: dir)
            let binary = try trainerBinary()
            let P = try tinyParameterCount()
            func run(_ workers: Int, _ extra: [String]) async throws {
                let children = try (0..<workers).map { rank in
                    try Child(binary, ["--config", config, "--no-resume", "--set", "dp.workers=\(workers)", "--set", "dp.rank=\(rank)"] + extra,
                              log: dir.appendingPathComponent("dp\(workers)-\(rank).log"))
                }
                var outputs: [String] = []
                for child in children {
                    let status = try await child.wait(seconds: 120)
                    #expect(status == 0, "\(child.output)")
                    outputs.append(child.output)
                }
                let digests = outputs.compactMap { word($0, after: "weights sha256 ") }
                #expect(digests.count == workers && Set(digests).count == 1, "\(digests)")
                let count = (P + 1 + workers - 1) / workers * workers  // gradients and the loss, padded
                let perStep = 2 * (workers - 1) * count / workers * 4
                for out in outputs {
                    let losses = out.split(separator: "\n").filter { $0.hasPrefix("step ") }.compactMap { word(String($0), after: " loss ").flatMap(Double.init) }
                    #expect(losses.count == steps / 10 && (losses.last ?? 9) < (losses.first ?? 0) - 0.5, "\(out)")
                    let sent = word(out, after: "p2p sent ").flatMap(Int.init) ?? 0, received = word(out, after: "received ").flatMap(Int.init) ?? 0
                    #expect(sent >= steps * perStep && sent < steps * perStep + 200, "sent \(sent), expected \(steps * perStep) + the link's hello")
                    #expect(received >= steps * perStep && received < steps * perStep + 200, "received \(received)")
                }
            }
            try await run(3, ["--set", "dp.rendezvous=\(dir.appendingPathComponent("rendezvous").path)"])
            try await run(2, ["--set", "p2p.peers=127.0.0.1:\(freeLoopbackPort()),127.0.0.1:\(freeLoopbackPort())"])
        }

        /// Bad p2p and data-parallel settings stop the trainer at once (exit 2) naming the key; a
        /// data-parallel peer that never comes fails within p2p.timeout_s (exit 1), saying whom it
        /// waited for.
        @Test func badSettingsAreRefusedAndAMissingPeerFailsInTime() async throws {
            let dir = try makeTempDir("p2p-config")
            defer { try? FileManager.default.removeItem(at: dir) }
            let config = try writeYAML(Self.diloco, in: dir)
            let diloco = ["--set", "diloco.workers=2", "--set", "diloco.store=\(dir.path)/store"]
            let cases: [([String], String)] = [
                (diloco + ["--set", "diloco.exchange=carrier-pigeon"], "'diloco.exchange' must be 'store' or 'p2p', got 'carrier-pigeon'"),
                (diloco + ["--set", "diloco.exchange=p2p", "--set", "p2p.listen=localhost"], "'p2p.listen' must be host:port"),
                (diloco + ["--set", "diloco.exchange=p2p", "--set", "p2p.peers=127.0.0.1:5000"], "'p2p.peers' names 1 addresses but 'diloco.workers' is 2"),
                (diloco + ["--set", "p2p.peers=127.0.0.1:5000,127.0.0.1:0"], "'p2p.peers' must be a comma-separated list of host:port"),
                (["--set", "p2p.advertise=10.0.0.1:99999"], "'p2p.advertise' must be host or host:port"),
                (["--set", "dp.workers=2"], "'dp.workers' > 1 needs 'p2p.peers' or 'dp.rendezvous'"),
                (["--set", "dp.workers=2", "--set", "dp.rank=2", "--set", "dp.rendezvous=\(dir.path)/rv"], "'dp.rank' (2) must be below 'dp.workers' (2)"),
                (diloco + ["--set", "dp.workers=2", "--set", "dp.rendezvous=\(dir.path)/rv"], "'dp.workers' and 'diloco.workers' are both set"),
                (["--set", "p2p.timeout_s=0"], "'p2p.timeout_s' = '0' is out of range"),
            ]
            for (index, (arguments, message)) in cases.enumerated() {
                let (status, output) = try await runTrainer(["--config", config] + arguments, in: dir, name: "bad-\(index)", seconds: 30)
                #expect(status == 2 && output.contains(message), "\(arguments): \(output)")
            }

            let started = Date()
            let peers = "127.0.0.1:\(freeLoopbackPort()),127.0.0.1:\(freeLoopbackPort())"
            let (status, output) = try await runTrainer(["--config", config, "--set", "dp.workers=2", "--set", "p2p.peers=\(peers)", "--set", "p2p.timeout_s=1"],
                                                  in: dir, name: "alone", seconds: 30)
            #expect(status == 1 && output.contains("could not connect to rank 1 within 1 s"), "\(output)")
            #expect(Date().timeIntervalSince(started) < 15)
        }
    }
}
