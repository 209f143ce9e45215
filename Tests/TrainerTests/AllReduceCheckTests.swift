import Foundation
import StratumTesting
import Testing
import TrainerCore

extension TrainerSuite {
    /// The interconnect check run as the nodes run it: `stratum-trainer allreduce-check`
    /// processes, one per rank, meeting over loopback TCP.
    @Suite(.timeLimit(.minutes(2))) struct AllReduceCheckTests {
        static func start(world: Int, ranks: [Int], port: Int, in dir: URL, extra: [String] = []) throws -> [Int: Child] {
            var children: [Int: Child] = [:]
            for rank in ranks {
                let arguments = [
                    "allreduce-check", "--world", String(world), "--rank", String(rank), "--coordinator", "127.0.0.1", "--port", String(port),
                    "--bytes", String(4 << 20), "--iterations", "3", "--output", dir.appendingPathComponent("rank-\(rank).prom").path,
                ] + extra
                children[rank] = try Child(try trainerBinary(), arguments, log: dir.appendingPathComponent("rank-\(rank).log"))
            }
            return children
        }

        /// Four ranks: each reports a bus bandwidth, the all-reduce's sums check out (the check
        /// fails otherwise), and the Prometheus file says so; the trainer serves that file with
        /// its own metrics.
        @Test func fourRanksMeasureTheirBusBandwidth() async throws {
            let dir = try makeTempDir("allreduce")
            let children = try Self.start(world: 4, ranks: [0, 1, 2, 3], port: freeLoopbackPort(), in: dir)
            for (rank, child) in children.sorted(by: { $0.key < $1.key }) {
                #expect(try await child.wait(seconds: 60) == 0, "rank \(rank): \(child.output)")
                #expect(child.output.contains("allreduce: rank \(rank) of 4: bus bandwidth "), "\(child.output)")
                let metrics = try String(contentsOf: dir.appendingPathComponent("rank-\(rank).prom"), encoding: .utf8)
                #expect(metrics.contains("\nstratum_allreduce_ok 1\n") && metrics.contains("\nstratum_allreduce_world_size 4\n"), "\(metrics)")
                let bandwidth = metrics.split(separator: "\n").first { $0.hasPrefix("stratum_allreduce_bus_bandwidth_bytes_per_second ") }
                    .flatMap { Double($0.split(separator: " ")[1]) } ?? 0
                #expect(bandwidth > 0, "\(metrics)")
            }

            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let m = try #require(tc_metrics_start(0, 1, &err, err.count))
            defer { tc_metrics_stop(m) }
            tc_metrics_include(m, dir.appendingPathComponent("rank-2.prom").path)
            let served = try httpGet(port: Int(tc_metrics_port(m)), path: "/metrics")
            #expect(served.contains("\nstratum_trainer_step ") && served.contains("\nstratum_allreduce_ok 1\n"), "\(served)")
            tc_metrics_include(m, dir.appendingPathComponent("absent.prom").path)
            #expect(!(try httpGet(port: Int(tc_metrics_port(m)), path: "/metrics")).contains("stratum_allreduce"))
        }

        /// A rank that never comes (its node cannot be reached): the others give up within the
        /// timeout, say what they waited for, and record the failure for the metrics.
        @Test func aMissingRankFailsWithinTheTimeoutAndSaysSo() async throws {
            let dir = try makeTempDir("allreduce-missing")
            let children = try Self.start(world: 3, ranks: [0, 1], port: freeLoopbackPort(), in: dir, extra: ["--timeout", "2"])
            let started = Date()
            for (rank, child) in children.sorted(by: { $0.key < $1.key }) {
                #expect(try await child.wait(seconds: 30) == 1, "rank \(rank): \(child.output)")
                let metrics = try String(contentsOf: dir.appendingPathComponent("rank-\(rank).prom"), encoding: .utf8)
                #expect(metrics.contains("\nstratum_allreduce_ok 0\n"), "\(metrics)")
            }
            #expect(Date().timeIntervalSince(started) < 20)
            #expect(children[0]?.output.contains("timed out waiting for 1 of 2 other ranks to connect") == true, "\(children[0]?.output ?? "")")
            // Rank 1 hears from the coordinator that it gave up (or times out itself).
            #expect(children[1]?.output.contains("the coordinator, which waits for every rank to join,") == true, "\(children[1]?.output ?? "")")
        }

        /// Something else that connects to rank 0's port (a stray client, a scanner) is
        /// dropped, and the ranks still meet and pass.
        @Test func aStrayConnectionDoesNotBreakTheCheck() async throws {
            let dir = try makeTempDir("allreduce-stray")
            let port = freeLoopbackPort()
            var children = try Self.start(world: 3, ranks: [0], port: port, in: dir)
            // Once rank 0 listens, a client that sends it nonsense and one that says nothing.
            let deadline = Date().addingTimeInterval(20)
            while !loopbackAccepts(port), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let noisy = socket(AF_INET, streamSocket, 0), silent = socket(AF_INET, streamSocket, 0)
            defer { close(noisy); close(silent) }
            #expect(connectLoopback(noisy, port: port) == 0 && connectLoopback(silent, port: port) == 0)
            _ = "GET / HTTP/1.0\r\n\r\n".withCString { send(noisy, $0, strlen($0), 0) }
            children.merge(try Self.start(world: 3, ranks: [1, 2], port: port, in: dir)) { $1 }
            for (rank, child) in children.sorted(by: { $0.key < $1.key }) {
                #expect(try await child.wait(seconds: 60) == 0, "rank \(rank): \(child.output)")
            }
        }

        @Test func badArgumentsAreNamed() async throws {
            let dir = try makeTempDir("allreduce-args")
            let (status, output) = try await runTrainer(["allreduce-check", "--world", "1", "--rank", "0"], in: dir, name: "one")
            #expect(status == 2 && output.contains("--world of at least 2"), "\(output)")
            let (bad, text) = try await runTrainer(["allreduce-check", "--world", "two"], in: dir, name: "two")
            #expect(bad == 2 && text.contains("--world takes a number, not 'two'"), "\(text)")
            let (help, usage) = try await runTrainer(["allreduce-check", "--help"], in: dir, name: "help")
            #expect(help == 0 && usage.contains("bus bandwidth"), "\(usage)")
        }
    }
}
