import Foundation
import StratumTesting
import Testing
import TrainerCore

extension TrainerSuite {
    @Suite struct ConfigTests {
        func parse(_ yaml: String) -> (Int32, String, tc_config) {
            var cfg = tc_config()
            tc_config_defaults(&cfg)
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let bytes = Array(yaml.utf8CString)
            let rc = tc_config_parse_yaml(&cfg, bytes, bytes.count - 1, &err, err.count)
            return (rc, errorText(err), cfg)
        }

        @Test func parsesEverySection() {
            let (rc, err, cfg) = parse("""
                model: {layers: 2, width: 64, heads: 4, context: 128}
                train:
                  batch_size: 3
                  seq_len: 100
                  lr: 2.5e-4
                  schedule: constant
                  seed: 99
                data: {source: /tmp/corpus.txt, chunk_bytes: 65536}
                checkpoint: {dir: s3://bucket/run1, every: 50, keep: 2}
                s3: {endpoint: "http://127.0.0.1:9000", region: eu-west-1}
                metrics: {port: 9100}
                diloco: {workers: 3, rank: 1, inner_steps: 25, compress: none, store: /tmp/d}
                """)
            #expect(rc == 0, "\(err)")
            #expect(cfg.n_layer == 2 && cfg.n_embd == 64 && cfg.n_head == 4 && cfg.context == 128)
            #expect(cfg.batch_size == 3 && cfg.seq_len == 100 && abs(cfg.lr - 2.5e-4) < 1e-9 && cfg.cosine == 0)
            #expect(cfg.seed == 99 && cfg.chunk_bytes == 65536 && cfg.checkpoint_every == 50 && cfg.checkpoint_keep == 2)
            #expect(cfg.metrics_port == 9100 && cfg.diloco_workers == 3 && cfg.diloco_rank == 1 && cfg.diloco_compress == 0)
            let source = withUnsafeBytes(of: cfg.data_source) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            #expect(source == "/tmp/corpus.txt")
        }

        @Test(arguments: [
            ("train:\n  lrr: 0.1\n", "train.lrr"),
            ("modle:\n  layers: 2\n", "modle"),
            ("model:\n  layers: two\n", "model.layers"),
            ("model:\n  layers: 0\n", "model.layers"),
            ("train:\n  lr: fast\n", "train.lr"),
            ("train:\n  schedule: linear\n", "train.schedule"),
            ("train:\n  seed: -4\n", "train.seed"),
            ("metrics:\n  port: 70000\n", "metrics.port"),
            ("data:\n  branching: [1, 2]\n", "data.branching"),
            ("diloco:\n  compress: zstd\n", "diloco.compress"),
        ])
        func badConfigNamesTheKey(yaml: String, key: String) {
            let (rc, err, _) = parse(yaml)
            #expect(rc != 0)
            #expect(err.contains("'\(key)'"), "error '\(err)' should name '\(key)'")
        }

        @Test func crossFieldErrorsNameTheKeys() async throws {
            var cfg = try makeConfig(["model.width": "30", "model.heads": "4"])
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            #expect(tc_config_validate(&cfg, &err, err.count) != 0)
            #expect(errorText(err).contains("'model.width'") && errorText(err).contains("'model.heads'"))
            cfg = try makeConfig(["train.seq_len": "512", "model.context": "256"])
            #expect(tc_config_validate(&cfg, &err, err.count) != 0)
            #expect(errorText(err).contains("'train.seq_len'"))
        }

        @Test func malformedYAMLReportsTheLine() {
            let (rc, err, _) = parse("model:\n  layers: 2\n   width: [\n")
            #expect(rc != 0)
            #expect(err.contains("line"), "\(err)")
        }

        @Test func cliRejectsABadConfigWithTheKeyAndExitCode2() async throws {
            let dir = try makeTempDir("badcfg")
            defer { try? FileManager.default.removeItem(at: dir) }
            let path = try writeYAML("model:\n  layers: 1\ntrain:\n  learning_rate: 0.1\n", in: dir)
            let (status, out) = try await runTrainer(["--config", path], in: dir, name: "bad")
            #expect(status == 2)
            #expect(out.contains("unknown key 'train.learning_rate'"), "\(out)")
            let (status2, out2) = try await runTrainer(["--config", path, "--set", "train.nope=1"], in: dir, name: "bad2")
            #expect(status2 == 2)
            #expect(out2.contains("'train.learning_rate'") || out2.contains("'train.nope'"), "\(out2)")
        }

        @Test func unreachableDataSourcesGiveClearErrors() async throws {
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            var cfg = try makeConfig(tinyModel.merging(["data.source": "/nonexistent/corpus.bin"]) { $1 })
            #expect(tc_trainer_create(&cfg, &err, err.count) == nil)
            #expect(errorText(err).contains("cannot open '/nonexistent/corpus.bin'"), "\(errorText(err))")

            let port = freeLoopbackPort()
            cfg = try makeConfig(tinyModel.merging(["data.source": "http://127.0.0.1:\(port)/corpus.txt"]) { $1 })
            #expect(tc_trainer_create(&cfg, &err, err.count) == nil)
            let text = errorText(err)
            #expect(text.contains("cannot fetch 'http://127.0.0.1:\(port)/corpus.txt'"), "\(text)")
            #expect(text.lowercased().contains("connect"), "\(text)")

            let dir = try makeTempDir("unreach")
            defer { try? FileManager.default.removeItem(at: dir) }
            let path = try writeYAML("data:\n  source: /nonexistent/corpus.bin\n", in: dir)
            let (status, out) = try await runTrainer(["--config", path], in: dir, name: "unreach")
            #expect(status == 1)
            #expect(out.contains("data: cannot open '/nonexistent/corpus.bin'"), "\(out)")
        }

        @Test func helpListsEveryKey() async throws {
            let dir = try makeTempDir("help")
            defer { try? FileManager.default.removeItem(at: dir) }
            let (status, out) = try await runTrainer(["--help"], in: dir, name: "help")
            #expect(status == 0)
            for key in ["model.layers", "train.lr", "data.source", "checkpoint.dir", "metrics.port", "diloco.outer_lr"] {
                #expect(out.contains(key))
            }
        }
    }
}
