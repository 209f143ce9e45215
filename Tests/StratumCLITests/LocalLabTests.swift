import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumLocal
import StratumStacks
import StratumTesting
import Testing
@testable import StratumCLI

/// The local-lab stack without running it: its configuration's problems, what it lowers to,
/// and the columns `stratum status` adds for it.
@Suite("local-lab: configuration, lowering and status columns")
struct LocalLabTests {
    static func problems(_ yaml: String) throws -> [String] {
        do {
            _ = try StackConfigLoader.decode(LocalLab.Config.self, yaml: yaml, file: "lab.yaml")
            return []
        } catch let error as StackConfigLoader.ConfigError {
            return [error.message]
        }
    }

    /// The keys a configuration's problems name.
    static func keys(_ change: (inout LocalLab.Config) -> Void) -> [String] {
        var config = LocalLab.Config()
        change(&config)
        return config.problems().map(\.key)
    }

    @Test func theShippedConfigurationsAndTheDefaultsAreValid() throws {
        #expect(LocalLab.Config().problems().isEmpty)
        let stacks = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Stacks")
        let dev = try StackConfigLoader.load(LocalLab.Config.self, from: stacks.appendingPathComponent("local-lab.dev.yaml"))
        #expect(dev.workers == 4 && dev.fastWorkers == 2 && dev.impaired)
        #expect(dev.slowLink == .poor, "the dev lab's slow link is 10 Mbit/s, 100 ms, 1 % loss")
        let unimpaired = try StackConfigLoader.load(LocalLab.Config.self, from: stacks.appendingPathComponent("local-lab.unimpaired.yaml"))
        #expect(!unimpaired.impaired && (0..<4).allSatisfy { unimpaired.link($0) == unimpaired.fastLink })
        // The two environments can run at once: their own network and bucket.
        #expect(unimpaired.cidr != dev.cidr && unimpaired.bucketName != dev.bucketName)
        #expect(BundledStacks.all.contains { $0.name == LocalLab.name })
    }

    @Test func everyValueOutOfRangeIsAProblemNamingItsKey() throws {
        #expect(Self.keys { $0.workers = 1; $0.fastWorkers = 1 } == ["workers"])
        #expect(Self.keys { $0.fastWorkers = 5 } == ["fast_workers"])
        #expect(Self.keys { $0.fastWorkers = -1 } == ["fast_workers"])
        #expect(Self.keys { $0.fastRateMbit = 0.004 } == ["fast_rate_mbit"])
        #expect(Self.keys { $0.slowRateMbit = 1e300 } == ["slow_rate_mbit"])
        #expect(Self.keys { $0.slowDelayMs = -1 } == ["slow_delay_ms"])
        #expect(Self.keys { $0.slowJitterMs = 70_000 } == ["slow_jitter_ms"])
        #expect(Self.keys { $0.slowLossPercent = 101 } == ["slow_loss_percent"])
        #expect(Self.keys { $0.slowDelayMs = 0; $0.slowJitterMs = 5 } == ["slow_jitter_ms"])
        #expect(Self.keys { $0.cidr = "10.43.0.0/33" } == ["cidr"])
        #expect(Self.keys { $0.cidr = "10.43.0.1/24" } == ["cidr"])
        // A /29 holds 5 workers beside the bridge; a /30, 1.
        #expect(Self.keys { $0.cidr = "10.43.0.0/29"; $0.workers = 5 }.isEmpty)
        #expect(Self.keys { $0.cidr = "10.43.0.0/30" } == ["cidr"])
        #expect(Self.keys { $0.bucketName = "lab checkpoints" } == ["bucket_name"])
        #expect(Self.keys { $0.width = 33 } == ["width"])
        #expect(Self.keys { $0.layers = 0 } == ["layers"])
        #expect(Self.keys { $0.p2pPort = 65534 } == ["p2p_port"])
        #expect(Self.keys { $0.p2pPort = 0 } == ["p2p_port"])
        #expect(Self.keys { $0.roundTimeoutS = 0 } == ["round_timeout_s"])
        #expect(Self.keys { $0.p2pTimeoutS = 0 } == ["p2p_timeout_s"])
        #expect(Self.keys { $0.checkBytes = 10 } == ["check_bytes"])
        #expect(Self.keys { $0.metricsPort = 65534 } == ["metrics_port"])
        #expect(Self.keys { $0.innerSteps = 0 } == ["inner_steps"])
        #expect(Self.keys { $0.innerSteps = 1_000_000_000; $0.rounds = 1_000_000 }.isEmpty)
        #expect(Self.keys { $0.innerSteps = 1_000_000_000; $0.rounds = 1_000_001 } == ["rounds"])
        // The churn schedule: a worker always left training, a down time inside the cycle.
        #expect(Self.keys { $0.churnKill = 4 } == ["churn_kill"])
        #expect(Self.keys { $0.churnKill = 0 } == ["churn_kill"])
        #expect(Self.keys { $0.churnDownS = 120 } == ["churn_down_s"])
        #expect(Self.keys { $0.churnEveryS = -1 } == ["churn_every_s"])
        #expect(Self.keys { $0.churnEveryS = 0; $0.churnKill = 9; $0.churnDownS = 500 }.isEmpty)
        #expect(LocalLab.Config().churn?.schedule == ChurnSchedule(kill: 1, every: .seconds(120), down: .seconds(30), pool: "worker"))
        // Through a file: the snake_case key, its value and why.
        let message = try #require(try Self.problems("slow_loss_percent: 150\nfast_workers: 7\n").first)
        #expect(message.contains("slow_loss_percent = 150.0: must be 0...100") && message.contains("fast_workers = 7"), "\(message)")
        #expect(try Self.problems("impaired: false\nslow_delay_ms: 20\n").isEmpty)
    }

    static func evaluate(_ config: LocalLab.Config) throws -> EvaluatedStack {
        try StackEvaluator.evaluate(LocalLab().body(config: config), name: LocalLab.name, environment: "dev")
    }

    /// The three exchanges the lab can train with: DiLoCo over TCP (the default), DiLoCo through
    /// the bucket, and data parallel over TCP (no DiLoCo settings; each worker's rank and its
    /// rendezvous in the bucket); anything else is a problem naming the key.
    @Test func eachExchangeGivesTheTrainerItsSettings() throws {
        #expect(Self.keys { $0.exchange = "ring" } == ["exchange"])
        func parts(_ exchange: String) throws -> (config: String, script: String, exchange: String?) {
            var config = LocalLab.Config()
            config.exchange = exchange
            let worker = try #require(try Self.evaluate(config).resources.first { $0.address.type == "local_node" })
            let env = try #require(worker.inputs["env"]?.mapValue)
            return (try #require(env["TRAINER_CONFIG"]?.stringValue), try #require(worker.inputs["command"]?.listValue?.last?.stringValue), env["EXCHANGE"]?.stringValue)
        }
        let store = try parts("store"), dp = try parts("dp"), p2p = try parts("p2p")
        #expect(store.config.contains("exchange: store") && store.exchange == "store")
        #expect(p2p.config.contains("exchange: p2p") && p2p.exchange == "p2p")
        #expect(dp.exchange == "dp" && dp.config.contains("dp: {workers: 4}") && !dp.config.contains("diloco"))
        // Both DiLoCo exchanges and data parallel train for inner_steps x rounds steps.
        #expect([store, dp, p2p].allSatisfy { $0.config.contains("steps: 500,") })
        #expect(dp.script.contains(#"dp.rank="$STRATUM_NODE_INDEX" --set dp.rendezvous="$BUCKET/dp""#))
        #expect(dp.script.contains(#"diloco.rank="$STRATUM_NODE_INDEX" --set diloco.store="$BUCKET/rounds""#))
    }

    @Test func theLabIsFourWorkersOnARealNetworkTwoOnTheSlowLink() throws {
        let stack = try Self.evaluate(LocalLab.Config())
        let workers = stack.resources.filter { $0.address.type == "local_node" }.sorted { $0.address < $1.address }
        let network = try #require(stack.resources.first { $0.address.type == "local_network" })
        #expect(network.inputs["cidr"] == "10.43.0.0/24")
        #expect(workers.map(\.address.description) == (0..<4).map { "local_node.worker[\($0)]" })
        #expect(workers.map { $0.inputs["link"] } == [LinkProfile(rateMbit: 1000).value, LinkProfile(rateMbit: 1000).value, LinkProfile.poor.value, LinkProfile.poor.value])
        #expect(workers.allSatisfy { $0.inputs["network_id"] == .reference(AttributeReference(address: network.address, attribute: "id")) })
        // Each worker listens at its node-contract address and finds its peers through the bucket.
        let env = try #require(workers.first?.inputs["env"]?.mapValue)
        let script = try #require(workers.first?.inputs["command"]?.listValue?.last?.stringValue)
        #expect(script.contains(#"p2p.advertise="$ip:$peer_port""#) && script.contains(#"ip="${STRATUM_NODE_IP:-127.0.0.1}""#))
        #expect(script.contains(#"diloco.store="$BUCKET/rounds""#) && script.contains(#"checkpoint.dir="$BUCKET/worker-$STRATUM_NODE_INDEX""#))
        let trainerConfig = try #require(env["TRAINER_CONFIG"]?.stringValue)
        #expect(trainerConfig.contains("exchange: p2p") && trainerConfig.contains("workers: 4") && !trainerConfig.contains("peers"))
        #expect(FileManager.default.isExecutableFile(atPath: try #require(env["TRAINER"]?.stringValue)))
        #expect(stack.outputs["links"] == "worker[0]: 1000 Mbit/s; worker[1]: 1000 Mbit/s; worker[2]: 10 Mbit/s, 100 ms, 1 % loss; worker[3]: 10 Mbit/s, 100 ms, 1 % loss")

        // Unimpaired: every worker on the fast link, still a real network.
        var config = LocalLab.Config()
        config.impaired = false
        let flat = try Self.evaluate(config).resources.filter { $0.address.type == "local_node" }
        #expect(flat.count == 4 && flat.allSatisfy { $0.inputs["link"] == LinkProfile(rateMbit: 1000).value })

        // The Local provider's plan: a real network holding both profiles, or, where this
        // process cannot make namespaces, a warning that the links are not applied.
        let provider = LocalProvider(root: try TestSupport.temporaryDirectory("lab-plan"))
        let resolved = stack.resources
        let problems = provider.validate(stack: resolved)
        if !problems.isEmpty {
            // A kernel without sch_netem and no stratum-netem or ethtool: the slow links cannot be held, and the plan says so.
            #expect(problems.allSatisfy { $0.message.contains("10 Mbit/s, 100 ms, 1 % loss) cannot be held on this machine") }, "\(problems)")
            return
        }
        let notes = provider.notes(stack: resolved), warnings = provider.warnings(stack: resolved)
        if let note = notes.first {
            #expect(note.hasPrefix("local_network.lab is a real network (a bridge): local_node.worker[0], local_node.worker[1], local_node.worker[2] and 1 more run in network namespaces"))
            #expect(note.contains("(1000 Mbit/s; 10 Mbit/s, 100 ms, 1 % loss)"), "\(note)")
            #expect(warnings.isEmpty)
        } else {
            #expect(warnings.first?.contains("cannot create network namespaces") == true, "\(warnings)")
        }
    }

    /// Status reads the link from the node and bytes and round from the trainer's /metrics; a
    /// node with neither shows "-", in the table and (absent) in JSON.
    @Test(.timeLimit(.minutes(2))) func statusShowsLinkBytesAndRound() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            switch request.uri {
            case "/healthz": return ProxyResponse(status: 200, body: Data("ok\n".utf8))
            case "/metrics":
                let text = """
                    # TYPE stratum_trainer_step counter
                    stratum_trainer_step 140
                    stratum_trainer_loss 1.52
                    stratum_trainer_p2p_bytes_sent_total 1234567
                    stratum_trainer_p2p_bytes_received_total 987
                    stratum_trainer_diloco_round 7
                    """
                return ProxyResponse(status: 200, body: Data(text.utf8))
            default: return ProxyResponse(status: 404)
            }
        }
        let quiet = try await LoopbackHTTPServer.start { request in
            switch request.uri {
            case "/healthz": return ProxyResponse(status: 200, body: Data("ok\n".utf8))
            case "/metrics":
                return ProxyResponse(status: 200, body: Data("stratum_trainer_step 3\nstratum_trainer_p2p_bytes_sent_total 0\nstratum_trainer_p2p_bytes_received_total 0\nstratum_trainer_diloco_round 0\n".utf8))
            default: return ProxyResponse(status: 404)
            }
        }
        defer {
            Task {
                await server.shutdown()
                await quiet.shutdown()
            }
        }
        func node(_ index: Int, port: Int, _ extra: [String: Value]) -> ResourceState {
            ResourceState(
                address: ResourceAddress(type: "local_node", name: "worker", index: index), provider: "local", region: "local", id: "n\(index)",
                attributes: ["metrics_port": .int(port)].merging(extra) { $1 })
        }
        let slow = node(0, port: try #require(server.url.port), ["link": LinkProfile.poor.value, "network_mode": "namespace stn-1, 127.0.0.1/24 on bridge stb-1"])
        let onHost = node(1, port: try #require(server.url.port), ["link": LinkProfile(rateMbit: 20).value, "network_mode": "host; link not applied: the node is on no Local network"])
        let plain = node(2, port: try #require(quiet.url.port), [:])
        let reports = await NodeProbe(transport: AsyncHTTPTransport(), timeout: .seconds(5)).reports(
            for: [slow, onHost, plain], live: [slow.address: slow, onHost.address: onHost, plain.address: plain])
        #expect(reports.map(\.link) == ["10 Mbit/s, 100 ms, 1 % loss", "20 Mbit/s (not applied)", nil])
        #expect(reports.map(\.p2pBytesSent) == [1_234_567, 1_234_567, nil] && reports.map(\.p2pBytesReceived) == [987, 987, nil])
        #expect(reports.map(\.dilocoRound) == [7, 7, nil])

        let table = NodeProbe.table(reports).split(separator: "\n").map(String.init)
        #expect(table.first?.contains("ROUND  LINK") == true && table.first?.contains("P2P SENT  P2P RECEIVED  ALL-REDUCE GB/S") == true, "\(table)")
        // Columns are two or more spaces apart: round, link, sent, received, bus bandwidth last.
        func cells(_ row: String) -> [String] { row.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        #expect(cells(table[1]).suffix(5) == ["7", "10 Mbit/s, 100 ms, 1 % loss", "1.23 MB", "987 B", "-"], "\(table[1])")
        #expect(cells(table[2]).suffix(5) == ["7", "20 Mbit/s (not applied)", "1.23 MB", "987 B", "-"], "\(table[2])")
        // The plain node: no round, link or bytes.
        #expect(cells(table[3]).suffix(5) == ["-", "-", "-", "-", "-"], "\(table[3])")

        let json = try #require(try JSONSerialization.jsonObject(with: Data(jsonText(reports).utf8)) as? [[String: Any]])
        #expect(json[0]["link"] as? String == "10 Mbit/s, 100 ms, 1 % loss")
        #expect(json[0]["p2pBytesSent"] as? Int == 1_234_567 && json[0]["p2pBytesReceived"] as? Int == 987 && json[0]["dilocoRound"] as? Int == 7)
        #expect(json[2]["link"] == nil && json[2]["p2pBytesSent"] == nil && json[2]["dilocoRound"] == nil && json[2]["step"] as? Int == 3)
    }
}
