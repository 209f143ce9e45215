import Foundation
import StratumTesting
import Testing

/// `stratum status` against local-demo through the built binary: each node's trainer reports
/// its step through the port it wrote into its node directory.
@Suite("stratum status on local-demo", .serialized, .timeLimit(.minutes(3)))
struct CLIStatusTests {
    struct Report: Decodable {
        var address: String
        var provider: String
        var zone: String
        var endpoint: String
        var health: String
        var step: Int?
        var loss: Double?
        var tokensPerSecond: Double?
        var allreduceBusGbps: Double?
    }

    @Test func stepsGrowBetweenTwoCallsAndAStuckNodeIsUnreachableNotAHang() async throws {
        let dir = try TestSupport.temporaryDirectory("status")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        // Long enough to be training through the whole test.
        try "workers: 2\ninner_steps: 100\nrounds: 200\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]
        let apply = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        defer { _ = try? cli.runBlocking(["destroy", "--auto-approve"] + common) }

        func status(_ extra: [String] = []) async throws -> [Report] {
            let run = try await cli.run(["status", "--json"] + common + extra)
            #expect(run.status == 0, "\(run.stderr)")
            return (try? JSONDecoder().decode([Report].self, from: Data(run.stdout.utf8))) ?? []
        }
        // Both trainers serve metrics once they start, with the bus bandwidth of the
        // interconnect check the two workers ran first.
        var first: [Report] = []
        #expect(await eventually(seconds: 60) {
            first = (try? await status()) ?? []
            return first.count == 2 && first.allSatisfy { $0.health == "ok" && ($0.step ?? 0) > 0 }
        }, "\(first)")
        #expect(first.allSatisfy { ($0.allreduceBusGbps ?? 0) > 0 }, "\(first.map(\.allreduceBusGbps))")
        #expect(first.map(\.address) == ["local_node.worker[0]", "local_node.worker[1]"])
        #expect(first.allSatisfy { $0.provider == "local" && $0.zone == "local" && $0.endpoint.hasPrefix("127.0.0.1:") && $0.loss != nil })
        #expect(Set(first.map(\.endpoint)).count == 2, "each node has its own port")
        // A second call sees both further on.
        var second: [Report] = []
        #expect(await eventually(seconds: 60) {
            second = (try? await status()) ?? []
            return second.count == 2 && zip(first, second).allSatisfy { ($1.step ?? 0) > ($0.step ?? 0) }
        }, "first \(first.map(\.step)), then \(second.map(\.step))")

        // The table names every column and node.
        let table = try await cli.run(["status"] + common)
        #expect(table.status == 0)
        #expect(table.stdout.contains("NODE") && table.stdout.contains("TOKENS/S") && table.stdout.contains("local_node.worker[1]"), "\(table.stdout)")

        // A trainer that stops answering (SIGSTOP): that node is unreachable within the
        // timeout, the other still answers, and the command returns.
        // Worker 0's trainer: the one whose port file is in worker 0's node directory.
        let nodes = dir.appendingPathComponent(".stratum/local/nodes").path
        let pids = pgrep("\(nodes)/local_node.worker_0_-")
        #expect(pids.count == 1, "\(pids)")
        let stuck = try #require(pids.first)
        kill(stuck, SIGSTOP)
        defer { kill(stuck, SIGCONT) }
        let started = Date()
        let during = try await status(["--timeout", "1"])
        #expect(Date().timeIntervalSince(started) < 20)
        #expect(during.first { $0.address == "local_node.worker[0]" }?.health.hasPrefix("unreachable") == true, "\(during.map(\.health))")
        #expect(during.first { $0.address == "local_node.worker[1]" }?.health == "ok", "\(during.map(\.health))")
    }

    /// `apply --wait-for-nodes` returns once both workers answer and have run their
    /// interconnect check, and shows them with its bus bandwidth.
    @Test func applyWaitsForTheNodesAndShowsThem() async throws {
        let dir = try TestSupport.temporaryDirectory("wait-for-nodes")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 2\ninner_steps: 100\nrounds: 200\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]
        let apply = try await cli.run(["apply", "--auto-approve", "--wait-for-nodes", "90"] + common)
        defer { _ = try? cli.runBlocking(["destroy", "--auto-approve"] + common) }
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        let rows = apply.stdout.split(separator: "\n").filter { $0.hasPrefix("local_node.worker[") && $0.contains(" 127.0.0.1:") }
        #expect(rows.count == 2 && apply.stdout.contains("ALL-REDUCE GB/S"), "\(apply.stdout)")
        // Every row has a bus bandwidth: its last column is a number.
        #expect(rows.allSatisfy { Double($0.split(separator: " ").last ?? "") != nil }, "\(rows)")

        let refused = try await cli.run(["apply", "--auto-approve", "--wait-for-nodes", "0"] + common)
        #expect(refused.status != 0 && refused.stderr.contains("--wait-for-nodes must be more than 0"), "\(refused.stderr)")
    }

    /// Trainer processes whose command line mentions `text`.
    func pgrep(_ text: String) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        return pids.filter { pid in
            guard let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
            return cmdline.contains("stratum-trainer") && cmdline.contains(text)
        }
    }
}
