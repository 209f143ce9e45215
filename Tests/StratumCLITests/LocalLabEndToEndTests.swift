import Foundation
import StratumTesting
import Testing

/// The local-lab stack run for real through the built `stratum`: two labs side by side, one
/// with two workers on 10 Mbit/s, 100 ms, 1 % loss links and one with every worker on the
/// fast link, each four workers in network namespaces on a bridge exchanging DiLoCo
/// pseudo-gradients over TCP. Skipped, saying why, where this process cannot make network
/// namespaces or the kernel cannot hold the slow link.
@Suite("local-lab end to end", .serialized)
struct LocalLabEndToEndTests {
    struct Report: Decodable {
        var address: String
        var endpoint: String
        var health: String
        var link: String?
        var p2pBytesSent: Int?
        var p2pBytesReceived: Int?
        var dilocoRound: Int?
    }

    /// One lab: its own directory (state and Local root), network and bucket.
    struct Lab {
        let name: String
        let directory: URL
        let cli: CLI
        let common: [String]
        let rounds: Int

        init(_ parent: URL, _ name: String, rounds: Int, config: String) throws {
            self.name = name
            self.rounds = rounds
            directory = parent.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let file = directory.appendingPathComponent("lab.yaml")
            try config.write(to: file, atomically: true, encoding: .utf8)
            cli = CLI("stratum", in: directory)
            common = ["--stack", "local-lab", "--config", file.path]
        }

        var nodes: URL { directory.appendingPathComponent(".stratum/local/nodes") }
        var bucket: URL { directory.appendingPathComponent(".stratum/local/buckets/lab-\(name)") }

        /// Worker `rank`'s node directory (its log and record).
        func nodeDirectory(_ rank: Int) -> URL? {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: nodes.path)) ?? []
            return names.first { $0.hasPrefix("local_node.worker_\(rank)_-") }.map { nodes.appendingPathComponent($0) }
        }

        func log(_ rank: Int) -> String {
            nodeDirectory(rank).flatMap { try? String(contentsOf: $0.appendingPathComponent("node.log"), encoding: .utf8) } ?? ""
        }

        /// The held-out loss worker `rank` ended with, once it has.
        func finalLoss(_ rank: Int) -> Double? {
            let text = log(rank)
            guard let range = text.range(of: "worker \(rank): eval loss ") else { return nil }
            return text[range.upperBound...].split(separator: ",").first.flatMap { Double($0) }
        }

        /// The bytes worker `rank` sent to and received from its peers, as its last round line says.
        func p2pBytes(_ rank: Int) -> (sent: Int, received: Int)? {
            let text = log(rank)
            guard let range = text.range(of: "p2p sent ", options: .backwards) else { return nil }
            let words = text[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard words.count >= 3, let sent = Int(words[0]), words[1] == "received", let received = Int(words[2]) else { return nil }
            return (sent, received)
        }

        /// Worker `rank`'s place on the network from its node record: `hostVeth` (the host end of
        /// its veth pair), `address`.
        func network(_ rank: Int, _ key: String) -> String? {
            guard let directory = nodeDirectory(rank), let data = try? Data(contentsOf: directory.appendingPathComponent("node.json")),
                let record = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let network = record["network"] as? [String: Any]
            else { return nil }
            return network[key] as? String
        }

        var finished: Bool { (0..<4).allSatisfy { finalLoss($0) != nil } }

        func status() async throws -> [Report] {
            let run = try await cli.run(["status", "--json", "--timeout", "5"] + common)
            return (try? JSONDecoder().decode([Report].self, from: Data(run.stdout.utf8))) ?? []
        }
    }

    static func config(impaired: Bool, cidr: String, bucket: String, rounds: Int) -> String {
        """
        workers: 4
        fast_workers: 2
        impaired: \(impaired)
        cidr: \(cidr)
        bucket_name: \(bucket)
        inner_steps: 20
        rounds: \(rounds)
        width: 32
        round_timeout_s: 60
        p2p_timeout_s: 30
        """
    }

    @Test(.timeLimit(.minutes(4)))
    func theLabTrainsOverSlowLinksToTheUnimpairedLossPeerToPeer() async throws {
        let parent = try TestSupport.temporaryDirectory("lab-e2e")
        let rounds = 8
        let slow = try Lab(parent, "impaired", rounds: rounds, config: Self.config(impaired: true, cidr: "10.47.0.0/24", bucket: "lab-impaired", rounds: rounds))
        let fast = try Lab(parent, "unimpaired", rounds: rounds, config: Self.config(impaired: false, cidr: "10.48.0.0/24", bucket: "lab-unimpaired", rounds: rounds))

        let plan = try await slow.cli.run(["plan"] + slow.common)
        let said = plan.stdout + plan.stderr
        if let line = said.split(separator: "\n").first(where: { $0.contains("cannot create network namespaces") || $0.contains("cannot be held on this machine") }) {
            print("skipped: the lab's links cannot be made here: \(line)")
            return
        }
        #expect(plan.status == 0, "\(said)")
        #expect(said.contains("local_network.lab is a real network (a bridge)") && said.contains("10 Mbit/s, 100 ms, 1 % loss"), "\(said)")

        var failure: (any Error)?
        var veths: [String] = [], namespaces: [String] = []
        do {
            try await run(slow: slow, fast: fast, veths: &veths, namespaces: &namespaces)
        } catch {
            failure = error
        }
        // Whatever happened: destroy both, and nothing of either is left.
        for lab in [slow, fast] {
            let destroyed = try await lab.cli.run(["destroy", "--auto-approve"] + lab.common)
            #expect(destroyed.status == 0, "\(destroyed.stdout)\(destroyed.stderr)")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: lab.nodes.path)) ?? []
            #expect(left.isEmpty, "node directories left: \(left)")
            #expect(!FileManager.default.fileExists(atPath: lab.bucket.path))
            #expect(Self.processes(mentioning: lab.directory.path).isEmpty, "processes left: \(Self.processes(mentioning: lab.directory.path))")
            let state = try await lab.cli.run(["state", "list"] + lab.common)
            #expect(!state.stdout.contains("local_"), "\(state.stdout)")
        }
        for veth in veths { #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(veth)"), "\(veth) is left") }
        for namespace in namespaces {
            #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(namespace)"), "\(namespace) is left")
            // The link emulator of a slow worker (where the kernel has no sch_netem) ends on SIGTERM.
            #expect(await eventually(seconds: 10) { Self.processes(mentioning: "/\(namespace).").isEmpty }, "\(Self.processes(mentioning: namespace))")
        }
        if let failure { throw failure }
    }

    func run(slow: Lab, fast: Lab, veths: inout [String], namespaces: inout [String]) async throws {
        // Both labs' times run from the start of their applies.
        let started = ContinuousClock.now
        async let appliedSlow = slow.cli.run(["apply", "--auto-approve"] + slow.common)
        async let appliedFast = fast.cli.run(["apply", "--auto-approve"] + fast.common)
        for applied in try await [appliedSlow, appliedFast] {
            #expect(applied.status == 0, "\(applied.stdout)\(applied.stderr)")
            try #require(applied.status == 0)
        }

        // Until training ends in both labs (each worker prints its held-out loss): while the slow
        // lab trains, status shows each worker's link, bytes and round, read from the worker at
        // its address on the lab network.
        var reports: [Report] = [], shown: [Report] = [], table = ""
        var ended: [String: Duration] = [:]
        while ContinuousClock.now < started + .seconds(150) {
            for lab in [slow, fast] where ended[lab.name] == nil && lab.finished { ended[lab.name] = ContinuousClock.now - started }
            if ended.count == 2 { break }
            if shown.isEmpty, ended[slow.name] == nil {
                reports = try await slow.status()
                if reports.count == 4, reports.allSatisfy({ ($0.dilocoRound ?? 0) >= 1 && ($0.p2pBytesSent ?? 0) > 0 && ($0.p2pBytesReceived ?? 0) > 0 }) {
                    shown = reports
                    table = try await slow.cli.run(["status", "--timeout", "5"] + slow.common).stdout
                }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        print("status during training: \(reports.map { "\($0.address) \($0.endpoint) \($0.health) \($0.link ?? "-") round \($0.dilocoRound ?? 0) sent \($0.p2pBytesSent ?? 0) received \($0.p2pBytesReceived ?? 0)" })")
        print(table)
        #expect(!shown.isEmpty, "status never showed every worker past round 1 with bytes exchanged: \(reports)")
        #expect(reports.map(\.link) == ["1000 Mbit/s", "1000 Mbit/s", "10 Mbit/s, 100 ms, 1 % loss", "10 Mbit/s, 100 ms, 1 % loss"])
        #expect(shown.allSatisfy { $0.health == "ok" && $0.endpoint.hasPrefix("10.47.0.") }, "\(shown)")
        if !shown.isEmpty {
            #expect(table.contains("ROUND") && table.contains("P2P SENT") && table.contains("10 Mbit/s, 100 ms, 1 % loss"), "\(table)")
        }
        for lab in [slow, fast] {
            #expect(ended[lab.name] != nil, "\(lab.name): \((0..<4).map { lab.log($0).suffix(600) })")
        }
        try #require(ended.count == 2)
        let slowLoss = (0..<4).compactMap(slow.finalLoss), fastLoss = (0..<4).compactMap(fast.finalLoss)
        let slowBytes = (0..<4).compactMap(slow.p2pBytes)
        func digests(_ lab: Lab) -> Set<String> {
            Set((0..<4).compactMap { rank in lab.log(rank).range(of: "weights sha256 ").map { String(lab.log(rank)[$0.upperBound...].prefix(64)) } })
        }
        print("""
            local-lab: \(slow.rounds) rounds of 20 steps, 4 workers, seconds from apply to the last eval loss; impaired (2 on 10 Mbit/s, 100 ms, 1 % loss): \
            \(ended[slow.name].map { "\($0)" } ?? "-"), loss \(slowLoss), p2p bytes \(slowBytes); \
            unimpaired: \(ended[fast.name].map { "\($0)" } ?? "-"), loss \(fastLoss), p2p bytes \((0..<4).compactMap(fast.p2pBytes)); \
            weights: \(digests(slow) == digests(fast) ? "identical" : "differ: \(digests(slow)) against \(digests(fast))")
            """)
        // Within 5 % of the unimpaired lab's loss, worker by worker.
        #expect(slowLoss.count == 4 && fastLoss.count == 4)
        for (impaired, unimpaired) in zip(slowLoss, fastLoss) {
            #expect(abs(impaired - unimpaired) <= 0.05 * unimpaired, "impaired \(impaired), unimpaired \(unimpaired)")
        }

        // The pseudo-gradients went from namespace to namespace: every worker sent and received
        // at least its share of the ring's all-gathers, each namespace's veth carried at least
        // what its worker sent, and no pseudo-gradient is in the store, only the records.
        #expect(slowBytes.count == 4 && slowBytes.allSatisfy { $0.sent > 0 && $0.received > 0 }, "\(slowBytes)")
        for rank in 0..<4 {
            let veth = try #require(slow.network(rank, "hostVeth"), "worker \(rank) has no veth in its record")
            veths.append(veth)
            namespaces.append(try #require(slow.network(rank, "namespace")))
            // The host end receives what the namespace sends.
            let carried = try #require(Int(try String(contentsOfFile: "/sys/class/net/\(veth)/statistics/rx_bytes", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(carried >= (slowBytes.count == 4 ? slowBytes[rank].sent : 1), "\(veth) carried \(carried) bytes")
            let record = try String(contentsOf: slow.bucket.appendingPathComponent("rounds/peers/worker-00\(rank)"), encoding: .utf8)
            let address = try #require(slow.network(rank, "address"))
            #expect(address.hasPrefix("10.47.0.") && record.hasSuffix(" \(address) \(29600 + rank)\n"), "worker \(rank)'s rendezvous record: \(record)")
        }
        let stored = FileManager.default.enumerator(atPath: slow.bucket.appendingPathComponent("rounds").path)?.compactMap { $0 as? String } ?? []
        #expect(!stored.contains { $0.hasSuffix(".bin") }, "\(stored.filter { $0.hasSuffix(".bin") })")
        #expect(stored.contains("round-000000/manifest") && stored.contains(String(format: "round-%06d/manifest", slow.rounds - 1)), "\(stored.sorted().prefix(20))")
    }

    /// Processes whose command line mentions `text`.
    static func processes(mentioning text: String) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        return pids.filter { pid in
            guard pid != getpid(), let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
            return cmdline.contains(text)
        }
    }
}
