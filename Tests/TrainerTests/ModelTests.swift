import Foundation
import Testing
import TrainerCore

extension TrainerSuite {
    @Suite struct ModelTests {
        /// Backward against central finite differences on a 2-layer, 16-wide model.
        /// float32 forward, eps = 1e-2: truncation error ~eps^2 and rounding ~1e-7/eps keep
        /// the expected error near 1e-4; we allow |num - ana| <= 1e-3 + 5% |ana| per entry and
        /// a relative L2 error below 1e-2 over every 5th parameter (all tensors are covered).
        @Test func gradientMatchesFiniteDifferences() async throws {
            let B: Int32 = 2, T: Int32 = 8
            let model = try #require(tc_model_create(2, 16, 2, 8, 42, 1))
            defer { tc_model_free(model) }
            var rng = tc_rng()
            tc_rng_seed(&rng, 7)
            var inputs = (0..<Int(B * T)).map { _ in UInt8(tc_rng_u64(&rng) % 256) }
            var targets = (0..<Int(B * T)).map { _ in UInt8(tc_rng_u64(&rng) % 256) }
            let P = tc_model_num_params(model)
            let params = try #require(tc_model_params(model))
            // Move LayerNorm gains and biases off 1 and 0 so every path carries gradient.
            for i in 0..<P { params[i] += 0.05 * tc_rng_normal(&rng) }

            let loss = tc_model_forward(model, &inputs, &targets, B, T)
            #expect(abs(Double(loss) - log(256.0)) < 0.5)
            tc_model_zero_grad(model)
            tc_model_backward(model)
            let grads = Array(UnsafeBufferPointer(start: try #require(tc_model_grads(model)), count: P))

            let eps: Float = 1e-2
            var diff2 = 0.0, num2 = 0.0, checked = 0, worst = 0.0
            for i in stride(from: 0, to: P, by: 5) {
                let saved = params[i]
                params[i] = saved + eps
                let plus = Double(tc_model_forward(model, &inputs, &targets, B, T))
                params[i] = saved - eps
                let minus = Double(tc_model_forward(model, &inputs, &targets, B, T))
                params[i] = saved
                let numeric = (plus - minus) / (2 * Double(eps))
                let analytic = Double(grads[i])
                let d = abs(numeric - analytic)
                #expect(d <= 1e-3 + 0.05 * abs(analytic), "param \(i): numeric \(numeric) analytic \(analytic)")
                diff2 += d * d
                num2 += numeric * numeric
                worst = max(worst, d)
                checked += 1
            }
            #expect(checked > 2000)
            #expect(num2.squareRoot() > 1e-3, "gradient too small for the check to mean anything")
            let rel = (diff2 / num2).squareRoot()
            #expect(rel < 1e-2, "relative L2 error \(rel), worst entry \(worst)")
        }

        /// Same seed and config: the same losses and bit-identical weights, whatever the thread count.
        @Test func trainingIsDeterministicAcrossThreadCounts() async throws {
            var losses: [[Float]] = []
            var weights: [[Float]] = []
            for threads in ["1", "2"] {
                var overrides = tinyModel
                overrides["train.threads"] = threads
                var cfg = try makeConfig(overrides)
                var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
                let t = try #require(tc_trainer_create(&cfg, &err, err.count), "\(errorText(err))")
                defer { tc_trainer_free(t) }
                var run: [Float] = []
                for _ in 0..<20 {
                    var loss: Float = 0
                    try #require(tc_trainer_step(t, &loss, &err, err.count) == 0, "\(errorText(err))")
                    run.append(loss)
                }
                let m = try #require(tc_trainer_model(t))
                weights.append(Array(UnsafeBufferPointer(start: tc_model_params(m), count: tc_model_num_params(m))))
                losses.append(run)
            }
            let sameLosses = losses[0] == losses[1]
            #expect(sameLosses, "\(losses)")
            let sameWeights = weights[0] == weights[1]
            #expect(sameWeights)
            #expect(losses[0].last! < losses[0].first!)
        }

        /// From ~ln(256) to within 0.06 nats of the source's entropy floor in under 60 s on 2 threads.
        @Test func lossReachesTheMarkovEntropyFloor() async throws {
            var cfg = try makeConfig([
                "model.layers": "1", "model.width": "32", "model.heads": "2", "model.context": "64",
                "train.batch_size": "32", "train.seq_len": "64", "train.steps": "700", "train.lr": "1e-2",
                "train.weight_decay": "0", "train.warmup_steps": "20", "train.threads": "2",
                "data.source": "synthetic", "data.branching": "4", "data.markov_seed": "7",
            ])
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let t = try #require(tc_trainer_create(&cfg, &err, err.count), "\(errorText(err))")
            defer { tc_trainer_free(t) }
            let floor = tc_data_entropy_floor(tc_trainer_data(t))
            #expect(floor > 0.5 && floor < log(4.0), "floor \(floor) must lie between 0 and ln(branching)")
            #expect(abs(floor - tc_markov_entropy_rate(7, 4)) < 1e-12)

            let start = Date()
            var first: Float = 0
            var loss: Float = 0
            for step in 0..<Int(cfg.steps) {
                try #require(tc_trainer_step(t, &loss, &err, err.count) == 0, "\(errorText(err))")
                if step == 0 { first = loss }
            }
            let eval = tc_trainer_eval(t, 8, &err, err.count)
            let seconds = Date().timeIntervalSince(start)
            print("convergence: first loss \(first), eval loss \(eval), floor \(floor), gap \(eval - floor), \(seconds) s")
            #expect(abs(Double(first) - log(256.0)) < 0.15, "first loss \(first) should be near ln(256)")
            #expect(eval >= floor - 0.02, "eval loss \(eval) cannot beat the entropy floor \(floor)")
            #expect(eval - floor < 0.06, "eval loss \(eval) is not within 0.06 nats of the floor \(floor)")
            #expect(seconds < 60, "took \(seconds) s")
        }

        /// Warmup rises linearly to the peak, cosine decays to min_lr_ratio, constant stays flat.
        @Test func learningRateSchedule() async throws {
            var cfg = try makeConfig(["train.lr": "1e-3", "train.warmup_steps": "10", "train.steps": "110", "train.min_lr_ratio": "0.1"])
            #expect(abs(tc_trainer_lr(&cfg, 0) - 1e-4) < 1e-9)
            #expect(abs(tc_trainer_lr(&cfg, 9) - 1e-3) < 1e-9)
            #expect(abs(tc_trainer_lr(&cfg, 60) - 5.5e-4) < 1e-7, "halfway through the decay")
            #expect(abs(tc_trainer_lr(&cfg, 109) - 1e-4) < 1e-6)
            #expect(abs(tc_trainer_lr(&cfg, 500) - 1e-4) < 1e-9, "clamped after the schedule")
            cfg = try makeConfig(["train.lr": "1e-3", "train.warmup_steps": "10", "train.schedule": "constant"])
            #expect(tc_trainer_lr(&cfg, 500) == 1e-3)
        }

        /// The entropy rate is a property of the chain: more successors means more entropy.
        @Test func markovFloorGrowsWithBranching() {
            let h1 = tc_markov_entropy_rate(3, 1)
            let h2 = tc_markov_entropy_rate(3, 2)
            let h8 = tc_markov_entropy_rate(3, 8)
            #expect(abs(h1) < 1e-9, "one successor is deterministic")
            #expect(h2 > 0.3 && h2 <= log(2.0) + 1e-9)
            #expect(h8 > h2 && h8 <= log(8.0) + 1e-9)
        }
    }
}
