import Foundation
import StratumCore
@testable import StratumLocal
import StratumTesting
import Testing

/// Local networks made real: nodes with links in network namespaces on a bridge, measured
/// with small Python peers. Tests that need the kernel skip, saying why, where this process
/// may not make network namespaces (or the kernel lacks a qdisc they need).
@Suite("Local network namespaces")
struct LocalNamespaceTests {
    /// Runs a command off the shared pool: measurements take seconds, and a pool thread held
    /// that long starves every other suite.
    static func execute(_ argv: [String]) async -> LocalNetworking.Outcome {
        await offThePool { LocalNetworking.execute(argv) }
    }

    @Test(.timeLimit(.minutes(3)))
    func aRateCapHoldsSentAndReceivedTraffic() async throws {
        guard let lab = try NamespaceLab.make("netns-rate") else { return }
        try await lab.run { lab in
            let network = try await lab.network("rate", cidr: "10.231.1.0/24")
            let capped = try await lab.node("w", index: 0, count: 2, network: network, link: LinkProfile(rateMbit: 20))
            let peer = try await lab.node("w", index: 1, count: 2, network: network, link: LinkProfile(rateMbit: 80))
            try await lab.ready(capped)
            try await lab.ready(peer)
            let target = try #require(peer.attributes["private_ip"]?.stringValue)

            // What w[0] sends leaves through its tbf; what it receives is capped through its IFB.
            let sent = try await lab.measure(from: capped, ["send", target, "3"])
            let received = try await lab.measure(from: capped, ["receive", target, "3"])
            let sentMbit = try #require(sent["mbit"] as? Double)
            let receivedMbit = try #require(received["mbit"] as? Double)
            print("20 Mbit/s link: sent \(sentMbit) Mbit/s, received \(receivedMbit) Mbit/s")
            #expect(abs(sentMbit - 20) <= 4, "sent at \(sentMbit) Mbit/s, configured 20")
            #expect(abs(receivedMbit - 20) <= 4, "received at \(receivedMbit) Mbit/s, configured 20")
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func delayAndLossAreHeld() async throws {
        guard let lab = try NamespaceLab.make("netns-delay") else { return }
        // Without sch_netem, stratum-netem holds delay and loss (it needs ethtool and the built emulator).
        guard NetworkProbe.shaping?.netem == true || LinkEmulator.available else {
            print("skipped: this kernel has no netem qdisc (sch_netem), and stratum-netem or ethtool is missing")
            return
        }
        try await lab.run { lab in
            let network = try await lab.network("delay", cidr: "10.231.2.0/24")
            let slow = try await lab.node("w", index: 0, count: 3, network: network, link: LinkProfile(rateMbit: 20, delayMs: 50))
            let lossy = try await lab.node("w", index: 1, count: 3, network: network, link: LinkProfile(delayMs: 5, lossPercent: 10))
            let near = try await lab.node("w", index: 2, count: 3, network: network, link: LinkProfile(delayMs: 1))
            for node in [slow, lossy, near] { try await lab.ready(node) }
            let lossyIP = try #require(lossy.attributes["private_ip"]?.stringValue)
            let nearIP = try #require(near.attributes["private_ip"]?.stringValue)

            // Each side delays what it sends: 50 ms one way, 5 ms the other.
            let rtt = try await #require(try lab.measure(from: slow, ["rtt", lossyIP])["min_ms"] as? Double)
            // What w[1] sends back is dropped 10 % of the time.
            let echoed = try await lab.measure(from: slow, ["udp", lossyIP, "1000"])
            let lost = try #require(echoed["lost_percent"] as? Double)
            let throughput = try await #require(try lab.measure(from: slow, ["send", nearIP, "4"])["mbit"] as? Double)
            print("round trip \(rtt) ms (configured 50 + 5 ms), loss \(lost) % (configured 10 %), \(throughput) Mbit/s (configured 20) over 51 ms")
            if NetworkProbe.shaping?.netem == false {
                #expect(slow.attributes["network_mode"]?.stringValue?.contains("stratum-netem") == true, "\(slow.attributes)")
                // Refresh reads what the emulator applies: the declared link, no drift.
                let fresh = try #require(try await lab.provider.read(type: "local_node", resources: [slow]).first ?? nil)
                #expect(fresh.attributes["link"] == slow.attributes["link"], "\(fresh.attributes)")
                // The emulator's own pid is recorded (not that of the setsid that started it), so
                // the refresh finds it running.
                #expect(fresh.failure == nil, "\(fresh.failure.map { "\($0)" } ?? "")")
            }
            #expect(rtt >= 55)
            #expect(abs(lost - 10) <= 4)
            #expect(abs(throughput - 20) <= 4)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func aProfileChangedOutOfBandIsDriftAndTheUpdateHealsItInPlace() async throws {
        guard let lab = try NamespaceLab.make("netns-drift") else { return }
        try await lab.run { lab in
            let network = try await lab.network("drift", cidr: "10.231.3.0/24")
            let link = LinkProfile(rateMbit: 20)
            let node = try await lab.node("d", index: 0, count: 1, network: network, link: link)
            let kind = try #require(lab.provider.kinds["local_node"])
            let namespace = try #require(node.attributes["netns"]?.stringValue)
            let pid = try #require(node.attributes["pid"]?.intValue)
            let desired = lab.resolved(node)

            // As applied: no drift.
            var live = try #require(try await lab.provider.read(type: "local_node", resources: [node]).first ?? nil)
            #expect(live.attributes["link"] == link.value)

            // What it sends, slowed outside Stratum: the refresh reports the link as found.
            try await lab.tc(["-n", namespace, "qdisc", "change", "dev", "eth0", "root", "handle", "1:", "tbf", "rate", "5000kbit", "burst", "5000", "limit", "31250"])
            live = try #require(try await lab.provider.read(type: "local_node", resources: [node]).first ?? nil)
            #expect(live.attributes["link"] == LinkProfile(rateMbit: 5).value)
            #expect(live.failure == nil)
            // A link change is an update in place, never a replacement.
            #expect(kind.schema.attributes["link"]?.forceNew == false)
            #expect(kind.review(live, desired: desired.inputs).replacement == nil)
            var healed = try await lab.provider.update(live, to: desired)
            #expect(healed.attributes["link"] == link.value)
            healed = try #require(try await lab.provider.read(type: "local_node", resources: [healed]).first ?? nil)
            #expect(healed.attributes["link"] == link.value)
            #expect(healed.attributes["pid"]?.intValue == pid)
            #expect(healed.attributes["status"] == "running")

            // What it receives, sped up outside Stratum: drift too.
            try await lab.tc(["-n", namespace, "qdisc", "change", "dev", "ifb0", "root", "handle", "1:", "tbf", "rate", "7000kbit", "burst", "5000", "limit", "43750"])
            live = try #require(try await lab.provider.read(type: "local_node", resources: [healed]).first ?? nil)
            #expect(live.attributes["link"] == LinkProfile(rateMbit: 7).value)
            healed = try await lab.provider.update(live, to: desired)
            live = try #require(try await lab.provider.read(type: "local_node", resources: [healed]).first ?? nil)
            #expect(live.attributes["link"] == link.value)
            #expect(live.attributes["pid"]?.intValue == pid)

            // A declared change is applied live as well.
            var faster = desired
            faster.inputs["link"] = LinkProfile(rateMbit: 40).value
            let changed = try await lab.provider.update(live, to: faster)
            live = try #require(try await lab.provider.read(type: "local_node", resources: [changed]).first ?? nil)
            #expect(live.attributes["link"] == LinkProfile(rateMbit: 40).value)
            #expect(live.attributes["pid"]?.intValue == pid)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func nodesReachEachOtherByTheirNetworkAddressesAndTheProbeReachesThem() async throws {
        guard let lab = try NamespaceLab.make("netns-contract") else { return }
        try await lab.run { lab in
            let network = try await lab.network("contract", cidr: "10.231.4.0/24")
            let first = try await lab.node("c", index: 0, count: 2, network: network, link: LinkProfile(rateMbit: 100))
            let second = try await lab.node("c", index: 1, count: 2, network: network, link: LinkProfile(rateMbit: 100))
            let firstContract = try await lab.ready(first)
            let secondContract = try await lab.ready(second)
            let firstIP = try #require(first.attributes["private_ip"]?.stringValue)
            let secondIP = try #require(second.attributes["private_ip"]?.stringValue)
            let block = try #require(IPv4Block("10.231.4.0/24"))
            for ip in [firstIP, secondIP] {
                let parsed = try #require(IPv4Block.parse(ip))
                #expect(IPv4Block(base: parsed, prefix: 32).overlaps(block) && parsed != block.gateway)
            }
            #expect(firstIP != secondIP)
            // Each workload knows its own address and rank 0's.
            #expect(firstContract["STRATUM_NODE_IP"] == firstIP)
            #expect(secondContract["STRATUM_NODE_IP"] == secondIP)
            #expect(firstContract["STRATUM_COORDINATOR"] == firstIP)
            #expect(secondContract["STRATUM_COORDINATOR"] == firstIP)
            #expect(first.attributes["network_mode"]?.stringValue?.hasPrefix("namespace ") == true)

            // Rank 1 reaches rank 0 at the coordinator's address, from inside its namespace.
            let rtt = try await lab.measure(from: second, ["rtt", firstIP])
            #expect((rtt["min_ms"] as? Double).map { $0 >= 0 } == true)

            // The engine's probe: the node's metrics port, at its address, from the root namespace.
            let live = try #require(try await lab.provider.read(type: "local_node", resources: [second]).first ?? nil)
            let port = try #require(live.attributes["metrics_port"]?.intValue)
            let status = try await lab.python(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).status)", "http://\(secondIP):\(port)/healthz"])
            #expect(status.trimmingCharacters(in: .whitespacesAndNewlines) == "200")
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func deletingNodesAndNetworksOrTheirOrphansLeavesNoNamespaceVethOrBridge() async throws {
        guard let lab = try NamespaceLab.make("netns-cleanup") else { return }
        try await lab.run { lab in
            let owner = Ownership(stack: "netns/dev", lineage: "lineage-netns-cleanup")
            let network = try await lab.network("clean", cidr: "10.231.5.0/24", ownership: owner)
            let node = try await lab.node("k", index: 0, count: 1, network: network, link: LinkProfile(rateMbit: 10), ownership: owner)
            let namespace = try #require(node.attributes["netns"]?.stringValue)
            let veth = "stv-" + namespace.dropFirst(4)
            let bridge = try lab.bridge(workspace: "netns/dev", name: "clean")
            #expect(lab.namespaces().contains(namespace))
            #expect(lab.interfaces().isSuperset(of: [veth, bridge]))
            try await lab.provider.delete(node)
            #expect(!lab.namespaces().contains(namespace))
            #expect(!lab.interfaces().contains(veth))
            try await lab.provider.delete(network)
            #expect(!lab.interfaces().contains(bridge))
            // Deleting what is already gone succeeds.
            try await lab.provider.delete(node)
            try await lab.provider.delete(network)

            // Orphans (no state knows them): what `stratum sweep --delete-orphans` finds and deletes.
            let lost = Ownership(stack: "netns/lost", lineage: "lineage-netns-lost")
            let orphanNetwork = try await lab.network("orphan", cidr: "10.231.6.0/24", ownership: lost)
            let orphan = try await lab.node("o", index: 0, count: 1, network: orphanNetwork, link: LinkProfile(rateMbit: 10), ownership: lost)
            let orphanNamespace = try #require(orphan.attributes["netns"]?.stringValue)
            let orphanBridge = try lab.bridge(workspace: "netns/lost", name: "orphan")
            #expect(lab.interfaces().contains(orphanBridge))
            for type in ["local_node", "local_network"] {
                let owned = try #require(try await lab.provider.kinds[type]?.owned())
                let found = owned.filter { $0.ownership.lineage == lost.lineage }
                #expect(found.count == 1)
                for resource in found { try await lab.provider.delete(resource.state) }
            }
            #expect(!lab.namespaces().contains(orphanNamespace))
            #expect(!lab.interfaces().contains("stv-" + orphanNamespace.dropFirst(4)))
            #expect(!lab.interfaces().contains(orphanBridge))
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func aCreateKilledAfterItsNamespaceIsCompletedAndRecoveryCleansWhatItCannotAdopt() async throws {
        guard let lab = try NamespaceLab.make("netns-crash") else { return }
        try await lab.run { lab in
            let network = try await lab.network("crash", cidr: "10.231.7.0/24")
            let address = ResourceAddress(type: "local_node", name: "r", index: 0)
            let nodes = lab.root.appendingPathComponent("nodes")
            // Killed after `ip netns add`, before the veth: the retry completes that namespace.
            let directory = LocalProcesses.directory(for: address, token: "tok-crash-1", in: nodes)
            let (namespace, _) = LocalNetworking.names(for: directory)
            try await lab.ip(["netns", "add", namespace])
            let node = try await lab.node("r", index: 0, count: 1, network: network, link: LinkProfile(rateMbit: 10), token: "tok-crash-1")
            #expect(node.attributes["netns"]?.stringValue == namespace)
            #expect(lab.namespaces().filter { $0 == namespace }.count == 1)
            try await lab.ready(node)

            // Killed after its process started, before its record: recovery adopts the node
            // with its place on the network.
            let nodeDirectory = try #require(LocalProcesses.directory(of: node))
            try FileManager.default.removeItem(at: nodeDirectory.appendingPathComponent("node.json"))
            let nodeInputs = lab.inputs(pool: "r", index: 0, count: 1, network: network, link: LinkProfile(rateMbit: 10))
            let adopted = try #require(try await lab.provider.recover(operation(address, token: "tok-crash-1", inputs: nodeInputs)))
            #expect(adopted.attributes["pid"] == node.attributes["pid"])
            #expect(adopted.attributes["netns"] == node.attributes["netns"])
            #expect(adopted.attributes["private_ip"] == node.attributes["private_ip"])
            let read = try #require(try await lab.provider.read(type: "local_node", resources: [adopted]).first ?? nil)
            #expect(read.failure == nil)
            #expect(read.attributes["link"] == LinkProfile(rateMbit: 10).value)

            // Another create killed after its namespace, before its process: recovery finds nothing
            // to adopt and removes the namespace.
            let other = ResourceAddress(type: "local_node", name: "q", index: 0)
            let otherDirectory = LocalProcesses.directory(for: other, token: "tok-crash-2", in: nodes)
            let (otherNamespace, _) = LocalNetworking.names(for: otherDirectory)
            try FileManager.default.createDirectory(at: otherDirectory, withIntermediateDirectories: true)
            try await lab.ip(["netns", "add", otherNamespace])
            let inputs = lab.inputs(pool: "q", index: 0, count: 1, network: network, link: LinkProfile(rateMbit: 10))
            #expect(try await lab.provider.recover(operation(other, token: "tok-crash-2", inputs: inputs)) == nil)
            #expect(!lab.namespaces().contains(otherNamespace))
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func aSecondNetworkWithTheSameCIDRIsRefusedNamingTheFirst() async throws {
        guard let lab = try NamespaceLab.make("netns-overlap") else { return }
        try await lab.run { lab in
            let first = try await lab.network("shared", cidr: "10.231.8.0/24", ownership: Ownership(stack: "one/dev", lineage: "lineage-one"))
            let second = try await lab.network("shared", cidr: "10.231.8.0/24", ownership: Ownership(stack: "two/dev", lineage: "lineage-two"))
            let node = try await lab.node("a", index: 0, count: 1, network: first, link: LinkProfile(rateMbit: 10))
            do {
                _ = try await lab.node("b", index: 0, count: 1, network: second, link: LinkProfile(rateMbit: 10))
                Issue.record("the second network's node was created")
            } catch let error as ProviderError {
                #expect(error.kind == .permanent)
                #expect(error.message.contains("overlaps local_network.shared of workspace 'one/dev'"), "\(error.message)")
            }
            #expect(try await lab.provider.read(type: "local_node", resources: [node]).first??.failure == nil)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func whereNamespacesCannotBeMadeNodesRunAsBeforeAndThePlanWarns() async throws {
        let root = try TestSupport.temporaryDirectory("netns-fallback")
        let provider = LocalProvider(root: root, namespaces: .unavailable("simulated by the test"))
        let network = try await provider.create(
            ResolvedResource(address: ResourceAddress(type: "local_network", name: "flat"), region: "local", inputs: ["cidr": "10.231.9.0/24"], dependencies: []),
            token: "tok-flat")
        let address = ResourceAddress(type: "local_node", name: "f", index: 0)
        var inputs: [String: Value] = [
            "pool": "f", "index": 0, "count": 1, "coordinator": "127.0.0.1", "network_id": .string(network.id), "link": LinkProfile(rateMbit: 10).value,
            "command": ["/bin/sh", "-c", "echo \"$STRATUM_COORDINATOR ${STRATUM_NODE_IP:-none}\" > \"$STRATUM_NODE_DIR/contract\"; exec sleep 1000"],
        ]
        let node = try await provider.create(ResolvedResource(address: address, region: "local", inputs: inputs, dependencies: []), token: "tok-flat-node")
        defer { Task { try? await provider.delete(node) } }
        #expect(node.attributes["netns"] == nil)
        #expect(node.attributes["private_ip"] == nil)
        #expect(node.attributes["network_mode"]?.stringValue?.contains("link not applied: this process cannot create network namespaces (simulated by the test)") == true)
        let directory = try #require(LocalProcesses.directory(of: node))
        let contract = directory.appendingPathComponent("contract")
        let deadline = ContinuousClock.now + .seconds(30)
        while !FileManager.default.fileExists(atPath: contract.path), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        // The node contract's addresses on the host network: its own and rank 0's are the loopback.
        #expect(try String(contentsOf: contract, encoding: .utf8) == "127.0.0.1 127.0.0.1\n")
        // The refresh keeps the declared link: nothing to heal where nothing can be applied.
        #expect(try await provider.read(type: "local_node", resources: [node]).first??.attributes["link"] == LinkProfile(rateMbit: 10).value)

        // The plan says so.
        inputs["network_id"] = .reference(AttributeReference(address: network.address, attribute: "id"))
        let stack = [
            DesiredResource(address: network.address, provider: "local", region: "local", inputs: ["cidr": "10.231.9.0/24"]),
            DesiredResource(address: address, provider: "local", region: "local", inputs: inputs),
        ]
        #expect(provider.validate(stack: stack).isEmpty)
        let warnings = provider.warnings(stack: stack)
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("this process cannot create network namespaces (simulated by the test): local_node.f[0] starts on the host network") == true)
        #expect(provider.notes(stack: stack).isEmpty)
        // Where namespaces can be made, the plan says the network is real.
        if case .success = NetworkProbe.machine {
            #expect(LocalProvider(root: root).notes(stack: stack) == [
                "local_network.flat is a real network (a bridge): local_node.f[0] runs in a network namespace of its own, its link held by tc (10 Mbit/s)"
            ])
            #expect(LocalProvider(root: root).warnings(stack: stack).isEmpty)
        }
    }

    @Test func thePlanRefusesNetworksMixingNodesWithAndWithoutLinks() {
        let provider = LocalProvider(root: URL(fileURLWithPath: "/nonexistent"), namespaces: .unavailable("not needed"))
        let network = ResourceAddress(type: "local_network", name: "n")
        let id = Value.reference(AttributeReference(address: network, attribute: "id"))
        func node(_ name: String, _ index: Int, link: LinkProfile?, network: Value? = id) -> DesiredResource {
            var inputs: [String: Value] = ["pool": .string(name), "index": .int(index), "command": ["/bin/true"]]
            if let network { inputs["network_id"] = network }
            if let link { inputs["link"] = link.value }
            return DesiredResource(address: ResourceAddress(type: "local_node", name: name, index: index), provider: "local", region: "local", inputs: inputs)
        }
        let small = DesiredResource(address: network, provider: "local", region: "local", inputs: ["cidr": "10.0.0.0/30"])
        let mixed = [small, node("w", 0, link: .poor), node("w", 1, link: .poor), node("ps", 0, link: nil)]
        let problems = provider.validate(stack: mixed).map(\.description)
        #expect(problems.contains { $0.hasPrefix("local_node.ps[0]: local_network.n carries nodes with a link (local_node.w[0], local_node.w[1]) and nodes without one (local_node.ps[0])") })
        // A /30 holds the bridge's address and one node's.
        #expect(problems.contains { $0.contains("2 nodes with links are on local_network.n, but its CIDR 10.0.0.0/30 holds 1 node address beside the bridge's") })
        // Links off any network are not applied: a warning, not an error.
        let loose = [node("solo", 0, link: .broadband, network: nil)]
        #expect(provider.validate(stack: loose).isEmpty)
        #expect(provider.warnings(stack: loose) == [
            "local_node.solo[0] carries a link but is on no Local network, so its link is not applied: on Local a link is held in a network namespace on the pool's network (declare the pool with network:); it runs on the host network"
        ])
        // Without links, nothing changes.
        #expect(provider.validate(stack: [small, node("ps", 0, link: nil)]).isEmpty)
        #expect(provider.warnings(stack: [small, node("ps", 0, link: nil)]).isEmpty)
    }

    /// `tc -j qdisc show` as iproute2 prints it: netem's times in seconds and shares as
    /// fractions, tbf's rate in bytes per second.
    @Test func theLiveLinkIsReadBackFromTheQdiscs() throws {
        let json = """
            [{"kind":"netem","handle":"1:","dev":"eth0","root":true,"refcnt":2,"options":{"limit":1000,"delay":{"delay":0.1,"jitter":0.01,"correlation":0.25},\
            "loss-random":{"loss":0.01,"correlation":0.25},"reorder":{"reorder":0.05,"correlation":0.25},"ecn":false,"gap":1}},
             {"kind":"tbf","handle":"10:","dev":"eth0","parent":"1:1","options":{"rate":1250000,"burst":2500,"lat":49000}},
             {"kind":"ingress","handle":"ffff:","dev":"eth0","parent":"ffff:fff1","options":{}},
             {"kind":"tbf","handle":"1:","dev":"ifb0","root":true,"refcnt":2,"options":{"rate":1250000,"burst":2500,"lat":49000}},
             {"kind":"noqueue","handle":"0:","dev":"lo","root":true,"refcnt":2,"options":{}}]
            """
        let declared = LinkProfile(rateMbit: 10, delayMs: 100, jitterMs: 10, lossPercent: 1, correlationPercent: 25, reorderPercent: 5)
        let live = try #require(LiveLink.profile(fromQdiscJSON: json, expected: declared))
        #expect(LiveLink.matches(live, declared))
        #expect(live.rateKbit == 10000 && live.delayMs == 100 && live.jitterMs == 10 && live.lossPercent == 1 && live.reorderPercent == 5 && live.correlationPercent == 25)
        // Only the received side changed: that is the rate reported.
        let slowed = json.replacingOccurrences(of: #""dev":"ifb0","root":true,"refcnt":2,"options":{"rate":1250000"#, with: #""dev":"ifb0","root":true,"refcnt":2,"options":{"rate":250000"#)
        #expect(LiveLink.profile(fromQdiscJSON: slowed, expected: declared)?.rateKbit == 2000)
        #expect(LocalNetworking.reportedLink(live: LiveLink.profile(fromQdiscJSON: slowed, expected: declared), recorded: declared.value) != declared.value)
        #expect(LocalNetworking.reportedLink(live: live, recorded: declared.value) == declared.value)
        // No qdisc of ours: no link.
        #expect(LiveLink.profile(fromQdiscJSON: #"[{"kind":"noqueue","handle":"0:","dev":"eth0","root":true,"options":{}}]"#, expected: nil) == nil)
        #expect(LocalNetworking.reportedLink(live: nil, recorded: nil) == nil)
    }
}

/// A Local root, a provider and Python peers for namespace tests; what it makes is deleted
/// when `run` ends, the latest first, however it ends.
final class NamespaceLab {
    let root: URL
    let provider: LocalProvider
    let python: String
    let peer: URL
    let tools: NetworkProbe.Tools
    private var made: [ResourceState] = []

    init(root: URL, provider: LocalProvider, python: String, peer: URL, tools: NetworkProbe.Tools) {
        self.root = root
        self.provider = provider
        self.python = python
        self.peer = peer
        self.tools = tools
    }

    func run(_ body: (NamespaceLab) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            await cleanUp()
            throw error
        }
        await cleanUp()
    }

    func cleanUp() async {
        for state in made.reversed() { try? await provider.delete(state) }
        made = []
    }

    /// The bridge name a network's record holds.
    func bridge(workspace: String, name: String) throws -> String {
        let record = try LocalRecord.load(root.appendingPathComponent("networks/\(workspace)/\(name).json"))
        return try #require(record.attributes["bridge"]?.stringValue)
    }

    /// nil (after printing why) where this process may not make network namespaces.
    static func make(_ name: String) throws -> NamespaceLab? {
        let tools: NetworkProbe.Tools
        switch NetworkProbe.machine {
        case .failure(let why):
            print("skipped: this process cannot create network namespaces (\(why.reason))")
            return nil
        case .success(let found): tools = found
        }
        let root = try TestSupport.temporaryDirectory(name)
        let python = try Self.pythonExecutable()
        let peer = root.appendingPathComponent("peer.py")
        try Data(peerScript.utf8).write(to: peer)
        return NamespaceLab(root: root, provider: LocalProvider(root: root), python: python, peer: peer, tools: tools)
    }

    /// The interpreter itself (not a wrapper that needs the caller's environment).
    static func pythonExecutable() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import sys; print(sys.executable)"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func network(_ name: String, cidr: String, ownership: Ownership = .unowned) async throws -> ResourceState {
        let state = try await provider.create(
            ResolvedResource(address: ResourceAddress(type: "local_network", name: name), region: "local", inputs: ["cidr": .string(cidr)], dependencies: [], ownership: ownership),
            token: UUID().uuidString.lowercased())
        made.append(state)
        return state
    }

    func inputs(pool: String, index: Int, count: Int, network: ResourceState, link: LinkProfile?) -> [String: Value] {
        var inputs: [String: Value] = [
            "pool": .string(pool), "index": .int(index), "count": .int(count), "coordinator": "127.0.0.1", "network_id": .string(network.id),
            "command": .list([.string(python), .string(peer.path)]),
        ]
        if let link { inputs["link"] = link.value }
        return inputs
    }

    func node(
        _ pool: String, index: Int, count: Int, network: ResourceState, link: LinkProfile?, ownership: Ownership = .unowned, token: String? = nil
    ) async throws -> ResourceState {
        let address = ResourceAddress(type: "local_node", name: pool, index: index)
        let resource = ResolvedResource(
            address: address, region: "local", inputs: inputs(pool: pool, index: index, count: count, network: network, link: link), dependencies: [],
            ownership: ownership)
        let state = try await provider.create(resource, token: token ?? UUID().uuidString.lowercased())
        made.append(state)
        return state
    }

    func resolved(_ state: ResourceState) -> ResolvedResource {
        let inputNames = Set(provider.kinds["local_node"]?.schema.inputs ?? [])
        return ResolvedResource(address: state.address, region: state.region, inputs: state.attributes.filter { inputNames.contains($0.key) }, dependencies: [])
    }

    /// Waits for the peer to listen, and returns the contract it was started with.
    @discardableResult
    func ready(_ node: ResourceState) async throws -> [String: String] {
        let directory = try #require(LocalProcesses.directory(of: node))
        let file = directory.appendingPathComponent("contract.json")
        while !FileManager.default.fileExists(atPath: file.path) {
            if let exit = LocalProcesses.exitStatus(in: directory) {
                let log = (try? String(contentsOf: directory.appendingPathComponent("node.log"), encoding: .utf8)) ?? ""
                Issue.record("the peer exited with status \(exit): \(log)")
                return [:]
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        return try JSONDecoder().decode([String: String].self, from: Data(contentsOf: file))
    }

    /// Runs the peer's measuring side in `node`'s namespace; its JSON answer.
    func measure(from node: ResourceState, _ arguments: [String]) async throws -> [String: Any] {
        let namespace = try #require(node.attributes["netns"]?.stringValue)
        let outcome = await LocalNamespaceTests.execute([tools.ip, "netns", "exec", namespace, python, peer.path] + arguments)
        try #require(outcome.status == 0, "\(arguments): \(outcome.error)")
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any])
    }

    func python(_ arguments: [String]) async throws -> String {
        let outcome = await LocalNamespaceTests.execute([python] + arguments)
        try #require(outcome.status == 0, "\(outcome.error)")
        return outcome.output
    }

    func tc(_ arguments: [String]) async throws {
        let outcome = await LocalNamespaceTests.execute([tools.tc] + arguments)
        try #require(outcome.status == 0, "tc \(arguments): \(outcome.error)")
    }

    func ip(_ arguments: [String]) async throws {
        let outcome = await LocalNamespaceTests.execute([tools.ip] + arguments)
        try #require(outcome.status == 0, "ip \(arguments): \(outcome.error)")
    }

    func namespaces() -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []))
    }

    func interfaces() -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")) ?? []))
    }

    /// Each node's workload: echo (TCP 7000), sink (7001), source (7003) and UDP echo (7002)
    /// on every address, a /healthz on a free port it writes to `metrics-port`, and the
    /// contract it was given in `contract.json` once all listen. Run with a mode, it measures
    /// from the namespace it is run in.
    static let peerScript = #"""
        import json, os, socket, statistics, sys, threading, time, http.server

        def listen(port, kind=socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            if kind == socket.SOCK_STREAM:
                s.listen(16)
            return s

        def accept(s, handler):
            while True:
                c, _ = s.accept()
                threading.Thread(target=handler, args=(c,), daemon=True).start()

        def echo(c):
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
            c.close()

        def count(c):
            # Bytes and seconds from the first second on: past slow start.
            start = first = last = None
            counted = 0
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                now = time.monotonic()
                if start is None:
                    start = now
                if now - start >= 1.0:
                    if first is None:
                        first = now
                    else:
                        counted += len(b)
                    last = now
            return counted, (last - first) if first is not None and last is not None else 0.0

        def sink(c):
            counted, seconds = count(c)
            c.sendall(json.dumps({"bytes": counted, "seconds": seconds}).encode())
            c.close()

        def blast(c, seconds):
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 131072)
            chunk = b"\0" * 65536
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                c.sendall(chunk)

        def source(c):
            seconds = float(c.recv(64).decode() or "3")
            blast(c, seconds)
            c.close()

        def udp_echo(s):
            while True:
                data, peer = s.recvfrom(2048)
                s.sendto(data, peer)

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"ok\n" if self.path == "/healthz" else b""
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        def serve():
            for port, handler in ((7000, echo), (7001, sink), (7003, source)):
                threading.Thread(target=accept, args=(listen(port), handler), daemon=True).start()
            threading.Thread(target=udp_echo, args=(listen(7002, socket.SOCK_DGRAM),), daemon=True).start()
            health = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Health)
            threading.Thread(target=health.serve_forever, daemon=True).start()
            directory = os.environ["STRATUM_NODE_DIR"]
            def write(name, text):
                with open(os.path.join(directory, name + ".tmp"), "w") as f:
                    f.write(text)
                os.rename(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))
            write("metrics-port", str(health.server_address[1]))
            keys = ["STRATUM_NODE_IP", "STRATUM_COORDINATOR", "STRATUM_NODE_INDEX"]
            write("contract.json", json.dumps({k: os.environ[k] for k in keys if k in os.environ}))
            threading.Event().wait()

        def connect(target, port):
            c = socket.create_connection((target, port), timeout=30)
            c.settimeout(60)
            return c

        def measure(mode, target, extra):
            if mode == "rtt":
                c = connect(target, 7000)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                samples = []
                for _ in range(20):
                    t = time.monotonic()
                    c.sendall(b"x")
                    c.recv(1)
                    samples.append((time.monotonic() - t) * 1000)
                return {"min_ms": min(samples), "median_ms": statistics.median(samples)}
            if mode == "send":
                c = connect(target, 7001)
                blast(c, float(extra))
                c.shutdown(socket.SHUT_WR)
                answer = json.loads(c.recv(4096).decode())
                return {"mbit": answer["bytes"] * 8 / answer["seconds"] / 1e6}
            if mode == "receive":
                c = connect(target, 7003)
                c.sendall(extra.encode())
                counted, seconds = count(c)
                return {"mbit": counted * 8 / seconds / 1e6}
            if mode == "udp":
                total = int(extra)
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(2)
                seen = set()
                def receive():
                    while True:
                        try:
                            data, _ = s.recvfrom(2048)
                        except socket.timeout:
                            return
                        seen.add(int(data))
                for i in range(total):
                    s.sendto(str(i).encode(), (target, 7002))
                    time.sleep(0.002)
                    if i == 0:
                        listener = threading.Thread(target=receive)
                        listener.start()
                listener.join()
                return {"lost_percent": 100.0 * (total - len(seen)) / total}

        if len(sys.argv) > 1:
            print(json.dumps(measure(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")))
        else:
            serve()
        """#
}
