import Foundation
import CStratumSpawn
import StratumCore

#if canImport(Glibc)
import Glibc
#endif

/// Whether the Local provider may run nodes in network namespaces.
public enum LocalNamespaces: Sendable, Equatable {
    /// Where this machine allows it (see `NetworkProbe`).
    case automatic
    /// Never: every node runs on the host network, as on a machine that forbids namespaces.
    case unavailable(String)
}

/// What the machine offers for real Local networks, found once per process: iproute2's `ip`
/// and `tc`, and the privilege to make network namespaces (tried in a namespace that vanishes
/// with the probe, so nothing is left behind).
enum NetworkProbe {
    /// `STRATUM_LOCAL_NETNS=off` keeps every node on the host network.
    static let variable = "STRATUM_LOCAL_NETNS"

    struct Tools: Sendable {
        var ip: String
        var tc: String
    }

    /// The tools, when installed (used to clean up even where namespaces are turned off).
    static let tools: Tools? = {
        guard let ip = find("ip"), let tc = find("tc") else { return nil }
        return Tools(ip: ip, tc: tc)
    }()

    /// The tools, or why this process cannot make network namespaces.
    static let machine: Result<Tools, Unavailable> = probe()

    struct Unavailable: Error, Sendable {
        var reason: String
    }

    static func probe() -> Result<Tools, Unavailable> {
        if ProcessInfo.processInfo.environment[variable] == "off" { return .failure(Unavailable(reason: "\(variable)=off")) }
        guard let tools else { return .failure(Unavailable(reason: "iproute2's ip and tc commands are not installed")) }
        // CAP_NET_ADMIN (12) makes interfaces and qdiscs; CAP_SYS_ADMIN (21) mounts /run/netns.
        let effective = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("CapEff:") }.flatMap { UInt64($0.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
        guard effective & (1 << 12) != 0, effective & (1 << 21) != 0 else {
            return .failure(Unavailable(reason: "this process lacks CAP_NET_ADMIN and CAP_SYS_ADMIN; run stratum as root"))
        }
        switch runInNewNamespace([tools.ip, "link", "set", "lo", "up"]) {
        case .failure(let failure): return .failure(Unavailable(reason: "the kernel refused a new network namespace (\(String(cString: strerror(failure.code))))"))
        case .success(let status) where status != 0: return .failure(Unavailable(reason: "ip could not set up a new network namespace (exit status \(status))"))
        case .success: return .success(tools)
        }
    }

    /// Which traffic-control parts the kernel has (each tried in a throwaway namespace).
    struct Shaping: Sendable {
        var netem: Bool
        var tbf: Bool
        /// IFB devices with an ingress qdisc and a mirred redirect: how received traffic is capped.
        var ifb: Bool

        /// Why `profile` cannot be applied on this kernel, or nil.
        func missing(for profile: LinkProfile) -> String? {
            var parts: [String] = []
            if profile.netemArguments != nil, !netem {
                parts.append("the netem qdisc (sch_netem, CONFIG_NET_SCH_NETEM) that delay, jitter, loss and reordering need")
            }
            if profile.rateKbit != nil, !tbf { parts.append("the tbf qdisc (sch_tbf) that the rate cap needs") }
            if profile.rateKbit != nil, !ifb { parts.append("IFB devices with ingress redirection (ifb, sch_ingress, act_mirred) that capping received traffic needs") }
            guard !parts.isEmpty else { return nil }
            return "this kernel lacks " + parts.joined(separator: ", and ") + "; load the module (modprobe) or declare a link without it"
        }
    }

    /// Why `profile` cannot be held on this machine, or nil: what tc cannot do, less what the
    /// link emulator does instead.
    static func missing(for profile: LinkProfile) -> String? {
        guard var shaping else { return nil }
        if !shaping.netem, LinkEmulator.available { shaping.netem = true }
        return shaping.missing(for: profile)
    }

    static let shaping: Shaping? = {
        guard case .success(let tools) = machine else { return nil }
        func works(_ argv: [String]) -> Bool { (try? runInNewNamespace(argv).get()) == 0 }
        let ifb = [
            "\(tools.ip) link add ifb0 type ifb", "\(tools.ip) link set ifb0 up", "\(tools.tc) qdisc add dev lo handle ffff: ingress",
            "\(tools.tc) filter add dev lo parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ifb0",
        ].joined(separator: " && ")
        return Shaping(
            netem: works([tools.tc, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]),
            tbf: works([tools.tc, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "3000"]),
            ifb: works(["/bin/sh", "-c", ifb]))
    }()

    struct Errno: Error {
        var code: Int32
    }

    static func runInNewNamespace(_ argv: [String]) -> Result<Int32, Errno> {
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var error: Int32 = 0
        let status = cArgs.withUnsafeBufferPointer { stratum_run_in_new_netns(argv[0], $0.baseAddress, &error) }
        return status < 0 ? .failure(Errno(code: error)) : .success(status)
    }

    static func find(_ program: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// An IPv4 block: a network's CIDR.
struct IPv4Block: Sendable, Equatable {
    var base: UInt32
    var prefix: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = Self.parse(String(parts[0])), let prefix = Int(parts[1]), (0...32).contains(prefix) else { return nil }
        self.prefix = prefix
        self.base = address & Self.mask(prefix)
    }

    init(base: UInt32, prefix: Int) {
        self.prefix = prefix
        self.base = base & Self.mask(prefix)
    }

    static func mask(_ prefix: Int) -> UInt32 { prefix == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix) }

    static func parse(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var address: UInt32 = 0
        for octet in octets {
            guard let n = UInt32(octet), n <= 255 else { return nil }
            address = address << 8 | n
        }
        return address
    }

    static func format(_ address: UInt32) -> String {
        [24, 16, 8, 0].map { String((address >> UInt32($0)) & 0xff) }.joined(separator: ".")
    }

    var description: String { "\(Self.format(base))/\(prefix)" }
    var last: UInt32 { base | ~Self.mask(prefix) }
    /// The bridge's address: the first host address.
    var gateway: UInt32 { base + 1 }
    /// Node addresses: after the gateway, up to the last before the broadcast address.
    var nodeAddresses: ClosedRange<UInt32>? { prefix <= 30 ? (base + 2)...(last - 1) : nil }

    func overlaps(_ other: IPv4Block) -> Bool { base <= other.last && other.base <= last }
}

/// A namespaced node's place on its network, kept in its record.
struct NodeNetwork: Codable, Equatable, Sendable {
    /// `stn-<8 hex>`: the node's network namespace (`/run/netns/<name>`).
    var namespace: String
    /// `stv-<8 hex>`: the root namespace's end of the node's veth pair, on the bridge; the
    /// other end is `eth0` in the namespace.
    var hostVeth: String
    /// `stb-<8 hex>`: the network's bridge.
    var bridge: String
    var address: String
    var prefix: Int
    var gateway: String
    /// Rank 0's address on the network.
    var coordinator: String

    static let interface = "eth0"
    static let ifb = "ifb0"

    var mode: String { "namespace \(namespace), \(address)/\(prefix) on bridge \(bridge)" + (LinkEmulator.running(self) ? ", link held by stratum-netem" : "") }

    /// The hash the node's interface names share.
    var suffix: String { String(hostVeth.dropFirst("stv-".count)) }
}

/// Where the kernel has no sch_netem, a node's link is held by `stratum-netem` instead of tc:
/// the host veth `stv-…` leaves the bridge, and the emulator copies frames between it and
/// `stw-…`, one end of a second veth pair whose other end, `stx-…`, is on the bridge. Its
/// profile, the profile it reports applying, and its pid are kept in `/run/stratum-netem/`,
/// named after the namespace. Frames cross user space whole, so the segmentation and checksum
/// offloads of the network's interfaces are turned off (ethtool).
enum LinkEmulator {
    static let directory = URL(fileURLWithPath: "/run/stratum-netem")

    /// The emulator binary: `STRATUM_NETEM`, beside the running program, or on the PATH.
    static let binary: String? = {
        if let set = ProcessInfo.processInfo.environment["STRATUM_NETEM"], FileManager.default.isExecutableFile(atPath: set) { return set }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("stratum-netem").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return NetworkProbe.find("stratum-netem")
    }()

    static let ethtool: String? = NetworkProbe.find("ethtool")

    /// Whether links that need netem can be held by the emulator here.
    static var available: Bool { binary != nil && ethtool != nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/setsid") }

    static func file(_ network: NodeNetwork, _ kind: String) -> URL { directory.appendingPathComponent("\(network.namespace).\(kind)") }
    static func emulatorVeth(_ network: NodeNetwork) -> String { "stw-" + network.suffix }
    static func bridgeVeth(_ network: NodeNetwork) -> String { "stx-" + network.suffix }

    static func pid(_ network: NodeNetwork) -> Int32? {
        guard let text = try? String(contentsOf: file(network, "pid"), encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    static func running(_ network: NodeNetwork) -> Bool { LocalNetworking.interfaceExists(emulatorVeth(network)) && pid(network) != nil }

    /// The profile the emulator says it applies; nil when it says nothing.
    static func applied(_ network: NodeNetwork) -> LinkProfile? {
        guard let text = try? String(contentsOf: file(network, "state"), encoding: .utf8) else { return nil }
        return try? LinkProfile(emulatorText: text)
    }

    /// Turns off the offloads that would hand the emulator frames without checksums or larger
    /// than the link's MTU.
    static func offloadsOff(_ interface: String, namespace: String?, tools: NetworkProbe.Tools) {
        guard let ethtool else { return }
        let command = [ethtool, "-K", interface, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]
        _ = LocalNetworking.execute(namespace.map { [tools.ip, "netns", "exec", $0] + command } ?? command)
    }

    /// Holds the node to `profile` through the emulator: the second veth pair, then the
    /// emulator started (or told to reload its profile).
    static func hold(_ network: NodeNetwork, to profile: LinkProfile, tools: NetworkProbe.Tools, address: ResourceAddress) throws {
        guard let binary else { throw ProviderError(.permanent, "stratum-netem is not built (swift build --product stratum-netem)", address: address) }
        let wide = emulatorVeth(network), bridged = bridgeVeth(network)
        func run(_ argv: [String]) throws {
            let outcome = LocalNetworking.execute(argv)
            if let failure = outcome.failure, !failure.contains("File exists") { throw ProviderError(.transient, "\(argv.joined(separator: " ")): \(failure)", address: address) }
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if !LocalNetworking.interfaceExists(wide) { try run([tools.ip, "link", "add", wide, "type", "veth", "peer", "name", bridged]) }
        // The node's veth leaves the bridge: frames reach it only through the emulator.
        try run([tools.ip, "link", "set", "dev", network.hostVeth, "nomaster", "up"])
        try run([tools.ip, "link", "set", "dev", bridged, "master", network.bridge, "up"])
        try run([tools.ip, "link", "set", "dev", wide, "up"])
        for interface in [network.hostVeth, wide, bridged, network.bridge] { offloadsOff(interface, namespace: nil, tools: tools) }
        offloadsOff(NodeNetwork.interface, namespace: network.namespace, tools: tools)
        let profileFile = file(network, "profile"), state = file(network, "state")
        try profile.emulatorText.write(to: profileFile, atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(at: state)
        var started = false
        if let pid = pid(network) {
            kill(pid, SIGHUP)
        } else {
            started = true
            // In a session of its own, so a terminal's Ctrl-C to stratum does not stop it.
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            process.arguments = [binary, "--node", network.hostVeth, "--net", wide, "--profile", profileFile.path, "--state", state.path]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            _ = FileManager.default.createFile(atPath: file(network, "log").path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: file(network, "log"))
            try process.run()
            try "\(process.processIdentifier)\n".write(to: file(network, "pid"), atomically: true, encoding: .utf8)
        }
        // Up once it reports the profile it applies.
        for _ in 0..<300 where applied(network) == nil { usleep(10_000) }
        guard applied(network) != nil else {
            let log = (try? String(contentsOf: file(network, "log"), encoding: .utf8)) ?? ""
            throw ProviderError(.transient, "stratum-netem did not start for \(network.namespace): \(log.trimmingCharacters(in: .whitespacesAndNewlines))", address: address)
        }
        // setsid forks when the process it runs in leads its process group, and then exits: the
        // emulator is the process whose command line names this state file.
        if started, let emulator = emulatorPid(state: state) {
            try "\(emulator)\n".write(to: file(network, "pid"), atomically: true, encoding: .utf8)
        }
    }

    /// The running emulator that writes `state`.
    static func emulatorPid(state: URL) -> Int32? {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        return pids.first { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let argv = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return argv.first.map { URL(fileURLWithPath: $0).lastPathComponent == "stratum-netem" } == true
                && zip(argv, argv.dropFirst()).contains { $0 == "--state" && $1 == state.path }
        }
    }

    /// Stops the emulator and removes its veth pair and files, as far as they exist.
    static func release(namespace: String, suffix: String) {
        let files = ["pid", "profile", "state", "log"].map { directory.appendingPathComponent("\(namespace).\($0)") }
        if let text = try? String(contentsOf: files[0], encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
            kill(pid, SIGTERM)
        }
        if LocalNetworking.interfaceExists("stw-" + suffix), let tools = NetworkProbe.tools { _ = LocalNetworking.execute([tools.ip, "link", "del", "dev", "stw-" + suffix]) }
        for file in files { try? FileManager.default.removeItem(at: file) }
    }
}

/// Real Local networks: a `local_network` whose nodes carry a link becomes a Linux bridge in
/// the root namespace holding the CIDR's first host address, and each of its nodes runs in a
/// network namespace of its own, joined to the bridge by a veth pair, with the node's link
/// applied by traffic control on its side (`LinkProfile.tcCommands`: `eth0`, and `ifb0` for
/// what it receives). Node addresses are allocated from the CIDR in the network's record, by
/// node address, so a replacement keeps its predecessor's address.
struct LocalNetworking: Sendable {
    let paths: LocalPaths
    let policy: LocalNamespaces

    /// The tools, or why nodes stay on the host network.
    var support: Result<NetworkProbe.Tools, NetworkProbe.Unavailable> {
        if case .unavailable(let reason) = policy { return .failure(NetworkProbe.Unavailable(reason: reason)) }
        return NetworkProbe.machine
    }

    static func namespaceFile(_ name: String) -> String { "/run/netns/\(name)" }
    static func interfaceExists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: "/sys/class/net/\(name)") }

    /// 8 hex digits of FNV-1a: short, stable names (interface names hold at most 15 bytes).
    static func hash(_ text: String) -> String {
        var hash: UInt32 = 0x811c_9dc5
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The namespace and host veth of the node instance in `directory`: derived from it, so
    /// a create retried with the same token finds what its first try made, and never makes a
    /// second namespace for one node.
    static func names(for directory: URL) -> (namespace: String, hostVeth: String) {
        let hash = hash(directory.standardizedFileURL.path)
        return ("stn-" + hash, "stv-" + hash)
    }

    /// The bridge of the network recorded in `file`: the name its record holds, else the one
    /// derived from the record's path (what a first node makes).
    static func bridgeName(for file: URL) -> String {
        (try? LocalRecord.load(file))?.attributes["bridge"]?.stringValue ?? "stb-" + hash(file.standardizedFileURL.path)
    }

    // MARK: which nodes

    enum Mode {
        /// On the host network, as before; `note` says why a link is not applied.
        case host(note: String?)
        case namespaced(record: URL, block: IPv4Block, link: LinkProfile)
    }

    /// The link a node carries, nil when none (or unimpaired).
    static func link(of inputs: [String: Value], address: ResourceAddress) throws -> LinkProfile? {
        do {
            let profile = try LinkProfile(value: inputs["link"])
            return profile?.isUnimpaired == true ? nil : profile
        } catch {
            throw ProviderError(.permanent, "\(error)", address: address)
        }
    }

    /// The Local network record a node's `network_id` names.
    func networkRecord(id: Value?) -> (record: LocalRecord, file: URL)? {
        guard let id = id?.stringValue, !id.isEmpty else { return nil }
        return paths.networkRecords().lazy.compactMap { file in (try? LocalRecord.load(file)).flatMap { $0.id == id ? ($0, file) : nil } }.first
    }

    /// Where a node runs: in a namespace on its network when it carries a link, its network
    /// is a Local network and the machine allows namespaces; otherwise on the host.
    func mode(of resource: ResolvedResource) throws -> Mode {
        guard let link = try Self.link(of: resource.inputs, address: resource.address) else { return .host(note: nil) }
        guard let (record, file) = networkRecord(id: resource.inputs["network_id"]) else {
            return .host(note: "link not applied: the node is on no Local network (a link is applied in a network namespace on the pool's network)")
        }
        switch support {
        case .failure(let why):
            return .host(note: "link not applied: this process cannot create network namespaces (\(why.reason))")
        case .success:
            guard let cidr = record.attributes["cidr"]?.stringValue, let block = IPv4Block(cidr) else {
                throw ProviderError(.permanent, "the network's record \(file.path) holds no valid cidr", address: resource.address)
            }
            return .namespaced(record: file, block: block, link: link)
        }
    }

    /// What an interrupted create left of the node's place on its network, to adopt with the
    /// node: nil when its namespace does not exist.
    func existing(_ resource: ResolvedResource, directory: URL) -> NodeNetwork? {
        let (namespace, hostVeth) = Self.names(for: directory)
        guard FileManager.default.fileExists(atPath: Self.namespaceFile(namespace)), let (record, file) = networkRecord(id: resource.inputs["network_id"]),
            let block = record.attributes["cidr"]?.stringValue.flatMap(IPv4Block.init), let addresses = record.attributes["addresses"]?.mapValue,
            let own = addresses[resource.address.description]?.stringValue
        else { return nil }
        let rank0 = ResourceAddress(type: resource.address.type, name: resource.address.name, index: resource.address.index == nil ? nil : 0)
        return NodeNetwork(
            namespace: namespace, hostVeth: hostVeth, bridge: Self.bridgeName(for: file), address: own, prefix: block.prefix,
            gateway: IPv4Block.format(block.gateway), coordinator: addresses[rank0.description]?.stringValue ?? own)
    }

    // MARK: attach and detach

    /// Makes (or completes) the node's place on its network: its address, the bridge, the
    /// namespace with its veth pair and routes, and the link. Every step first looks for what
    /// an interrupted try left.
    func attach(_ resource: ResolvedResource, directory: URL, record file: URL, block: IPv4Block, link: LinkProfile) throws -> NodeNetwork {
        guard case .success(let tools) = support else { throw ProviderError(.permanent, "network namespaces are unavailable", address: resource.address) }
        guard let hosts = block.nodeAddresses else {
            throw ProviderError(.permanent, "the network's CIDR \(block.description) has no room for nodes beside its gateway (use a prefix of /30 or shorter)", address: resource.address)
        }
        if let missing = NetworkProbe.missing(for: link) {
            throw ProviderError(.permanent, "cannot hold the node to its link (\(link.summary)): \(missing)", address: resource.address)
        }
        let address = resource.address
        let rank0 = ResourceAddress(type: address.type, name: address.name, index: address.index == nil ? nil : 0)
        let bridge = Self.bridgeName(for: file)
        let (own, coordinator) = try withLock {
            var record = try LocalRecord.load(file)
            var addresses = record.attributes["addresses"]?.mapValue ?? [:]
            func allocate(_ node: ResourceAddress) throws -> UInt32 {
                if let text = addresses[node.description]?.stringValue, let known = IPv4Block.parse(text) { return known }
                let used = Set(addresses.values.compactMap { $0.stringValue.flatMap(IPv4Block.parse) })
                guard let free = hosts.first(where: { !used.contains($0) }) else {
                    throw ProviderError(.permanent, "the network's CIDR \(block.description) has no address left for \(node) (\(used.count) are taken)", address: address)
                }
                addresses[node.description] = .string(IPv4Block.format(free))
                return free
            }
            let own = try allocate(address)
            let coordinator = try allocate(rank0)
            try ensureBridge(bridge, block: block, record: file, tools: tools, address: address)
            record.attributes["addresses"] = .map(addresses)
            record.attributes["bridge"] = .string(bridge)
            try record.save(file)
            return (own, coordinator)
        }
        let (namespace, hostVeth) = Self.names(for: directory)
        let network = NodeNetwork(
            namespace: namespace, hostVeth: hostVeth, bridge: bridge, address: IPv4Block.format(own), prefix: block.prefix,
            gateway: IPv4Block.format(block.gateway), coordinator: IPv4Block.format(coordinator))
        if !FileManager.default.fileExists(atPath: Self.namespaceFile(namespace)) {
            try run([tools.ip, "netns", "add", namespace], address: address, tolerating: "File exists")
        }
        if !Self.interfaceExists(hostVeth) {
            try run([tools.ip, "link", "add", hostVeth, "type", "veth", "peer", "name", NodeNetwork.interface, "netns", namespace], address: address)
        }
        try run([tools.ip, "link", "set", "dev", hostVeth, "master", bridge, "up"], address: address)
        try run([tools.ip, "-n", namespace, "addr", "replace", "\(network.address)/\(block.prefix)", "dev", NodeNetwork.interface], address: address)
        try run([tools.ip, "-n", namespace, "link", "set", "dev", NodeNetwork.interface, "up"], address: address)
        try run([tools.ip, "-n", namespace, "link", "set", "dev", "lo", "up"], address: address)
        try run([tools.ip, "-n", namespace, "route", "replace", "default", "via", network.gateway], address: address)
        try apply(link, to: network, tools: tools, address: address)
        return network
    }

    /// Holds the node's side of its link to `profile` (nil: unimpaired): clears what is there,
    /// then runs the profile's `tc` commands in the namespace.
    func apply(_ profile: LinkProfile?, to network: NodeNetwork, address: ResourceAddress) throws {
        guard let tools = NetworkProbe.tools else { throw ProviderError(.permanent, "iproute2's tc is not installed", address: address) }
        if let profile, let missing = NetworkProbe.missing(for: profile) {
            throw ProviderError(.permanent, "cannot hold the node to its link (\(profile.summary)): \(missing)", address: address)
        }
        try apply(profile, to: network, tools: tools, address: address)
    }

    private func apply(_ profile: LinkProfile?, to network: NodeNetwork, tools: NetworkProbe.Tools, address: ResourceAddress) throws {
        let ns = network.namespace
        // Absent qdiscs make these fail; that is fine.
        _ = Self.execute([tools.tc, "-n", ns, "qdisc", "del", "dev", NodeNetwork.interface, "root"])
        _ = Self.execute([tools.tc, "-n", ns, "qdisc", "del", "dev", NodeNetwork.interface, "ingress"])
        _ = Self.execute([tools.tc, "-n", ns, "qdisc", "del", "dev", NodeNetwork.ifb, "root"])
        // Without sch_netem, a link that needs it is held by the emulator (and one that does not
        // by tc, with the emulator gone and the veth back on the bridge).
        if let profile, !profile.isUnimpaired, profile.netemArguments != nil, NetworkProbe.shaping?.netem == false, LinkEmulator.available {
            try LinkEmulator.hold(network, to: profile, tools: tools, address: address)
            return
        }
        if LinkEmulator.running(network) || Self.interfaceExists(LinkEmulator.emulatorVeth(network)) {
            LinkEmulator.release(namespace: network.namespace, suffix: network.suffix)
            try run([tools.ip, "link", "set", "dev", network.hostVeth, "master", network.bridge, "up"], address: address)
        }
        guard let profile, !profile.isUnimpaired else { return }
        if profile.rateKbit != nil {
            try run([tools.ip, "-n", ns, "link", "add", NodeNetwork.ifb, "type", "ifb"], address: address, tolerating: "File exists")
            try run([tools.ip, "-n", ns, "link", "set", "dev", NodeNetwork.ifb, "up"], address: address)
        }
        for command in profile.tcCommands(interface: NodeNetwork.interface, ifb: NodeNetwork.ifb) {
            try run([tools.tc, "-n", ns] + command, address: address)
        }
    }

    /// Removes the namespace and veth pair of the node instance in `directory`, as far as they
    /// exist (its processes must be stopped first: a namespace lives on while one runs in it).
    @discardableResult
    static func detach(directory: URL) -> String? {
        let (namespace, hostVeth) = names(for: directory)
        LinkEmulator.release(namespace: namespace, suffix: String(hostVeth.dropFirst("stv-".count)))
        let hasVeth = interfaceExists(hostVeth)
        let hasNamespace = FileManager.default.fileExists(atPath: namespaceFile(namespace))
        guard hasVeth || hasNamespace else { return nil }
        guard let tools = NetworkProbe.tools else { return "iproute2's ip is not installed, so \(namespace) cannot be removed" }
        // Deleting one end of a veth pair deletes both.
        if hasVeth, let failure = execute([tools.ip, "link", "del", "dev", hostVeth]).failure, interfaceExists(hostVeth) { return failure }
        if hasNamespace, let failure = execute([tools.ip, "netns", "del", namespace]).failure,
            FileManager.default.fileExists(atPath: namespaceFile(namespace))
        {
            return failure
        }
        return nil
    }

    /// Removes the bridge of the network recorded in `record`, if it exists.
    static func removeBridge(of record: URL) throws {
        let bridge = bridgeName(for: record)
        guard interfaceExists(bridge) else { return }
        guard let tools = NetworkProbe.tools else { throw ProviderError(.permanent, "iproute2's ip is not installed, so the bridge \(bridge) cannot be removed") }
        if let failure = execute([tools.ip, "link", "del", "dev", bridge]).failure, interfaceExists(bridge) {
            throw ProviderError(.transient, "cannot remove the network's bridge \(bridge): \(failure)")
        }
    }

    // MARK: the bridge

    /// Makes the network's bridge, holding the gateway address, unless it exists. A CIDR that
    /// overlaps an address or route of the host (another workspace's Local network included) is
    /// refused: two bridges routing one block would break each other.
    private func ensureBridge(_ bridge: String, block: IPv4Block, record: URL, tools: NetworkProbe.Tools, address: ResourceAddress) throws {
        if !Self.interfaceExists(bridge) {
            if let conflict = conflict(with: block, bridge: bridge, tools: tools) {
                throw ProviderError(
                    .permanent,
                    "the network's CIDR \(block.description) overlaps \(conflict) on this machine; give one of them another CIDR, or destroy the other first",
                    address: address)
            }
            try run([tools.ip, "link", "add", "name", bridge, "type", "bridge"], address: address, tolerating: "File exists")
        }
        try run([tools.ip, "addr", "replace", "\(IPv4Block.format(block.gateway))/\(block.prefix)", "dev", bridge], address: address)
        try run([tools.ip, "link", "set", "dev", bridge, "up"], address: address)
    }

    /// What on the host already uses part of `block`, in words; nil when nothing does.
    func conflict(with block: IPv4Block, bridge: String, tools: NetworkProbe.Tools) -> String? {
        /// Another Local network's bridge, named by its record; nil for other interfaces.
        func network(_ interface: String, holding address: String) -> String? {
            guard interface.hasPrefix("stb-"),
                let (record, file) = paths.networkRecords().lazy.compactMap({ file in (try? LocalRecord.load(file)).map { ($0, file) } })
                    .first(where: { $0.0.attributes["bridge"]?.stringValue == interface })
            else { return nil }
            let name = record.address ?? "local_network.\(file.deletingPathExtension().lastPathComponent)"
            let workspace = record.ownership?.stack ?? file.deletingLastPathComponent().lastPathComponent
            return "\(name) of workspace '\(workspace)' (bridge \(interface) at \(address), record \(file.path))"
        }
        let addresses = Self.execute([tools.ip, "-j", "-4", "addr", "show"])
        for entry in (try? JSONSerialization.jsonObject(with: Data(addresses.output.utf8))) as? [[String: Any]] ?? [] {
            guard let interface = entry["ifname"] as? String, interface != bridge else { continue }
            for info in entry["addr_info"] as? [[String: Any]] ?? [] {
                guard let local = info["local"] as? String, let length = info["prefixlen"] as? Int, let ip = IPv4Block.parse(local) else { continue }
                if IPv4Block(base: ip, prefix: length).overlaps(block) {
                    return network(interface, holding: "\(local)/\(length)") ?? "the address \(local)/\(length) of the host's interface \(interface)"
                }
            }
        }
        let routes = Self.execute([tools.ip, "-j", "-4", "route", "show"])
        for entry in (try? JSONSerialization.jsonObject(with: Data(routes.output.utf8))) as? [[String: Any]] ?? [] {
            guard let destination = entry["dst"] as? String, destination != "default", let device = entry["dev"] as? String, device != bridge else { continue }
            let parts = destination.split(separator: "/")
            guard let ip = IPv4Block.parse(String(parts[0])) else { continue }
            let length = parts.count > 1 ? Int(parts[1]) ?? 32 : 32
            if IPv4Block(base: ip, prefix: length).overlaps(block) { return "the host's route to \(destination) through \(device)" }
        }
        return nil
    }

    // MARK: refresh

    /// What is wrong with a namespaced node's network (nil: nothing), and its link as found.
    static func observe(_ network: NodeNetwork, expected: LinkProfile?) -> (failure: String?, link: LinkProfile?) {
        guard FileManager.default.fileExists(atPath: namespaceFile(network.namespace)) else {
            return ("its network namespace \(network.namespace) was removed outside Stratum", nil)
        }
        guard interfaceExists(network.hostVeth) else { return ("its veth \(network.hostVeth) to the network was removed outside Stratum", nil) }
        if interfaceExists(LinkEmulator.emulatorVeth(network)) {
            guard LinkEmulator.pid(network) != nil else { return ("its link emulator (stratum-netem) stopped", nil) }
            let bridged = LinkEmulator.bridgeVeth(network)
            let master = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/class/net/\(bridged)/master")).map { ($0 as NSString).lastPathComponent }
            guard master == network.bridge else { return ("its veth \(bridged) is no longer on the network's bridge \(network.bridge)", nil) }
            return (nil, LinkEmulator.applied(network))
        }
        let master = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/class/net/\(network.hostVeth)/master")).map { ($0 as NSString).lastPathComponent }
        guard master == network.bridge else {
            return ("its veth \(network.hostVeth) is no longer on the network's bridge \(network.bridge) (the bridge was removed or the veth moved outside Stratum)", nil)
        }
        guard let tools = NetworkProbe.tools else { return (nil, nil) }
        let shown = execute([tools.tc, "-n", network.namespace, "-j", "qdisc", "show"])
        guard shown.status == 0 else { return ("its qdiscs cannot be read: \(shown.error.trimmingCharacters(in: .whitespacesAndNewlines))", nil) }
        return (nil, LiveLink.profile(fromQdiscJSON: shown.output, expected: expected))
    }

    /// The `link` attribute refresh reports: the recorded value while the live qdiscs hold it
    /// (tc stores times and percentages with limited precision), else the live profile.
    static func reportedLink(live: LinkProfile?, recorded: Value?) -> Value? {
        let expected = ((try? LinkProfile(value: recorded)) ?? nil).flatMap { $0.isUnimpaired ? nil : LiveLink.effective($0) }
        let found = live.flatMap { $0.isUnimpaired ? nil : $0 }
        if LiveLink.matches(found, expected) { return recorded }
        return found?.value
    }

    // MARK: commands

    struct Outcome: Sendable {
        var status: Int32
        var output: String
        var error: String

        var failure: String? {
            status == 0 ? nil : (error.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? "exit status \(status)" : error.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// Runs `argv` (an absolute path first) and waits for it.
    static func execute(_ argv: [String]) -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.environment = ["PATH": "/usr/sbin:/sbin:/usr/bin:/bin", "LC_ALL": "C"]
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return Outcome(status: -1, output: "", error: "cannot run \(argv[0]): \(error.localizedDescription)")
        }
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: out, as: UTF8.self), error: String(decoding: err, as: UTF8.self))
    }

    /// Runs a step of a node's network setup; a failure (other than `tolerating`) is the create's.
    private func run(_ argv: [String], address: ResourceAddress, tolerating: String? = nil) throws {
        let outcome = Self.execute(argv)
        guard let failure = outcome.failure else { return }
        if let tolerating, failure.contains(tolerating) { return }
        let command = ([(argv[0] as NSString).lastPathComponent] + argv.dropFirst()).joined(separator: " ")
        throw ProviderError(.permanent, "cannot set up the node's network: `\(command)` failed: \(failure)", address: address)
    }

    /// Serialises changes to network records and bridges: machine-wide (bridges of every Local
    /// root share the host's routes) where `/run/lock` is writable, else for this Local root.
    private func withLock<T>(_ body: () throws -> T) throws -> T {
        try? FileManager.default.createDirectory(at: paths.networks, withIntermediateDirectories: true)
        var file = "/run/lock/stratum-local-networks.lock"
        var fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 {
            file = paths.networks.appendingPathComponent(".netns.lock").path
            fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        }
        guard fd >= 0 else { throw ProviderError(.transient, "cannot open \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw ProviderError(.transient, "cannot lock \(file): \(String(cString: strerror(errno)))") }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}

/// A link profile read back from the qdiscs `tc -j qdisc show` lists in a node's namespace:
/// netem on `eth0` (delay in seconds, loss, reordering and correlations as fractions), tbf on
/// `eth0` and, behind `eth0`'s ingress qdisc, on `ifb0` (rates in bytes per second).
enum LiveLink {
    static func profile(fromQdiscJSON text: String, expected: LinkProfile?) -> LinkProfile? {
        guard let entries = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]] else { return nil }
        return profile(from: entries, expected: expected)
    }

    /// What of `profile` the qdiscs hold: a correlation counts only for what it correlates.
    static func effective(_ profile: LinkProfile) -> LinkProfile {
        var profile = profile
        if profile.jitterMs == 0, profile.lossPercent == 0, profile.reorderPercent == 0 { profile.correlationPercent = 0 }
        return profile
    }

    static func number(_ value: Any?) -> Double? {
        switch value {
        case let number as NSNumber: return number.doubleValue
        case let text as String: return Double(text)
        default: return nil
        }
    }

    static func profile(from entries: [[String: Any]], expected: LinkProfile?) -> LinkProfile? {
        let egress = entries.filter { $0["dev"] as? String == NodeNetwork.interface }
        let ifb = entries.filter { $0["dev"] as? String == NodeNetwork.ifb }
        let netem = egress.first { $0["kind"] as? String == "netem" }?["options"] as? [String: Any]
        func rateKbit(_ qdiscs: [[String: Any]]) -> Int? {
            guard let options = qdiscs.first(where: { $0["kind"] as? String == "tbf" })?["options"] as? [String: Any],
                let bytes = number(options["rate"])
            else { return nil }
            return Int((bytes * 8 / 1000).rounded())
        }
        let egressRate = rateKbit(egress)
        let hooked = egress.contains { $0["kind"] as? String == "ingress" }
        let ingressRate = hooked ? rateKbit(ifb) : nil
        guard netem != nil || egressRate != nil || ingressRate != nil else { return nil }

        var profile = LinkProfile()
        // One rate stands for both directions: report the direction that is off, if one is.
        if egressRate != ingressRate {
            profile.rateKbit = egressRate != expected?.rateKbit ? egressRate : ingressRate
            if profile.rateKbit == nil { profile.rateKbit = egressRate ?? ingressRate }
        } else {
            profile.rateKbit = egressRate
        }
        if let netem {
            let delay = netem["delay"] as? [String: Any]
            let loss = netem["loss-random"] as? [String: Any]
            let reorder = netem["reorder"] as? [String: Any]
            profile.delayMs = round((number(delay?["delay"]) ?? 0) * 1000, places: 3)
            profile.jitterMs = round((number(delay?["jitter"]) ?? 0) * 1000, places: 3)
            profile.lossPercent = round((number(loss?["loss"]) ?? 0) * 100, places: 4)
            profile.reorderPercent = round((number(reorder?["reorder"]) ?? 0) * 100, places: 4)
            // The one correlation netem was given for each of delay (with jitter), loss and reordering.
            var correlations: [Double] = []
            if profile.jitterMs > 0 { correlations.append(number(delay?["correlation"]) ?? 0) }
            if profile.lossPercent > 0 { correlations.append(number(loss?["correlation"]) ?? 0) }
            if profile.reorderPercent > 0 { correlations.append(number(reorder?["correlation"]) ?? 0) }
            let percents = correlations.map { round($0 * 100, places: 4) }
            let wanted = expected?.correlationPercent ?? 0
            profile.correlationPercent = percents.first { !close($0, wanted, tolerance: 0.001) } ?? percents.first ?? 0
        }
        return profile
    }

    static func round(_ value: Double, places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }

    static func close(_ a: Double, _ b: Double, tolerance: Double) -> Bool { abs(a - b) <= tolerance + abs(b) * 1e-4 }

    /// Equal within what tc keeps: microseconds of delay, a millionth of a percent.
    static func matches(_ a: LinkProfile?, _ b: LinkProfile?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (let a?, let b?):
            return a.rateKbit == b.rateKbit && close(a.delayMs, b.delayMs, tolerance: 0.002) && close(a.jitterMs, b.jitterMs, tolerance: 0.002)
                && close(a.lossPercent, b.lossPercent, tolerance: 0.001) && close(a.reorderPercent, b.reorderPercent, tolerance: 0.001)
                && close(a.correlationPercent, b.correlationPercent, tolerance: 0.001)
        default: return false
        }
    }
}
