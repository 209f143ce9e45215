import Foundation
import StratumBootstrap
import StratumCore
import StratumTesting
import Testing

/// Two network namespaces joined by a veth pair, as a node and the peer across its link: the
/// node's side (`shaped`) has its address and a default route through the peer, so the link
/// script finds its interface as it would on a cloud machine.
final class LinkLab: Sendable {
    static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    static let nodeAddress = "10.201.0.1", peerAddress = "10.201.0.2"
    let shaped: String
    let peer: String
    let directory: URL

    /// Why this machine cannot make the lab, or nil when it can (checked once).
    static let unavailableReason: String? = {
        guard getuid() == 0 else { return "needs root to make network namespaces" }
        for tool in ["ip", "tc", "python3"] where runBlocking(["sh", "-c", "command -v \(tool)"]).status != 0 { return "\(tool) is not installed" }
        let probe = "stratum-link-probe-\(getpid())"
        let made = runBlocking(["ip", "netns", "add", probe])
        guard made.status == 0 else { return "network namespaces cannot be made here: \(made.output)" }
        _ = runBlocking(["ip", "netns", "del", probe])
        return nil
    }()

    /// `runBlocking` off the shared pool.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:]) async -> (status: Int32, output: String) {
        await offThePool { runBlocking(arguments, environment: environment) }
    }

    @discardableResult
    static func runBlocking(_ arguments: [String], environment: [String: String] = [:]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ["PATH": path, "LANG": "C.UTF-8"].merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "\(error)") }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    init() async throws {
        let name = "stratum-link-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        shaped = name + "-n"
        peer = name + "-p"
        directory = try TestSupport.temporaryDirectory("link-lab")
        let steps: [[String]] = [
            ["ip", "netns", "add", shaped], ["ip", "netns", "add", peer],
            ["ip", "-n", shaped, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer],
            ["ip", "-n", shaped, "addr", "add", "\(Self.nodeAddress)/24", "dev", "v0"], ["ip", "-n", peer, "addr", "add", "\(Self.peerAddress)/24", "dev", "v1"],
            ["ip", "-n", shaped, "link", "set", "v0", "up"], ["ip", "-n", peer, "link", "set", "v1", "up"],
            ["ip", "-n", shaped, "link", "set", "lo", "up"], ["ip", "-n", peer, "link", "set", "lo", "up"],
            ["ip", "-n", shaped, "route", "add", "default", "via", Self.peerAddress],
        ]
        for step in steps {
            let result = await Self.run(step)
            if result.status != 0 {
                remove()
                throw LabError(description: "\(step.joined(separator: " ")): \(result.output)")
            }
        }
        // Nothing may be installed: apt-get stands in, and fails.
        let bin = directory.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        try write("bin/apt-get", "#!/bin/sh\necho \"apt-get $*\" >> \(directory.path)/apt-get.log\nexit 1\n", mode: 0o755)
        try write("measure.py", Self.measure, mode: 0o644)
    }

    struct LabError: Error, CustomStringConvertible { var description: String }

    func write(_ name: String, _ text: String, mode: Int) throws {
        let file = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: file)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file.path)
    }

    /// Runs `arguments` in namespace `ns`.
    @discardableResult
    func exec(_ ns: String, _ arguments: [String]) async -> (status: Int32, output: String) {
        await offThePool { self.execBlocking(ns, arguments) }
    }

    func execBlocking(_ ns: String, _ arguments: [String]) -> (status: Int32, output: String) {
        Self.runBlocking(["ip", "netns", "exec", ns] + arguments)
    }

    /// Runs a link script on the node's side as its unit would, with apt-get standing in.
    func runLink(_ script: String) async throws -> (status: Int32, output: String) {
        try write("link.sh", script, mode: 0o755)
        return await exec(shaped, ["env", "PATH=\(directory.path)/bin:\(Self.path)", "sh", directory.appendingPathComponent("link.sh").path])
    }

    /// `tc -s -j qdisc show dev DEV` in the node's namespace, as JSON objects.
    func qdiscs(_ device: String) async throws -> [[String: Any]] {
        let shown = await exec(shaped, ["tc", "-s", "-j", "qdisc", "show", "dev", device])
        guard shown.status == 0 else { throw LabError(description: "tc qdisc show dev \(device): \(shown.output)") }
        return try JSONSerialization.jsonObject(with: Data(shown.output.utf8)) as? [[String: Any]] ?? []
    }

    /// What one TCP stream of `bytes` from `sender` to `receiver` (at `address`) gets through,
    /// in bits per second at the receiver (see `measure`).
    /// `throughputBlocking` off the shared pool (a transfer takes seconds).
    func throughput(from sender: String, to receiver: String, address: String, bytes: Int) async throws -> Double {
        try await offThePool { try self.throughputBlocking(from: sender, to: receiver, address: address, bytes: bytes) }
    }

    func throughputBlocking(from sender: String, to receiver: String, address: String, bytes: Int) throws -> Double {
        let port = String(Int.random(in: 20000...40000))
        let script = directory.appendingPathComponent("measure.py").path
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        listener.arguments = ["ip", "netns", "exec", receiver, "python3", script, "recv", address, port]
        listener.environment = ["PATH": Self.path]
        let output = Pipe()
        listener.standardOutput = output
        listener.standardError = output
        try listener.run()
        // The receiver says when it listens; its first line.
        var first = Data()
        while !first.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            first.append(chunk)
        }
        guard String(decoding: first, as: UTF8.self).hasPrefix("ready") else {
            listener.waitUntilExit()
            throw LabError(description: "the receiver did not start: \(String(decoding: first, as: UTF8.self))")
        }
        let sent = execBlocking(sender, ["python3", script, "send", address, port, String(bytes)])
        let rest = output.fileHandleForReading.readDataToEndOfFile()
        listener.waitUntilExit()
        let result = String(decoding: first + rest, as: UTF8.self)
        guard sent.status == 0, listener.terminationStatus == 0,
            let line = result.split(separator: "\n").first(where: { $0.hasPrefix("rate ") }), let rate = Double(line.split(separator: " ")[1])
        else { throw LabError(description: "the measurement failed: sender \(sent.output); receiver \(result)") }
        return rate
    }

    /// A TCP receiver and sender; the receiver prints `ready` once it listens and `rate BITS/S`
    /// at the end: the slope of the bytes it has read over time (least squares, from 0.1 s on),
    /// which a pause of the reader (a busy machine) barely moves. Both give up after 20 s of
    /// silence.
    static let measure = """
        import socket, sys, time
        mode, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        if mode == "recv":
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.settimeout(20)
            server.bind((address, port))
            server.listen(1)
            print("ready", flush=True)
            connection, _ = server.accept()
            connection.settimeout(20)
            total, samples = 0, []
            while True:
                data = connection.recv(1 << 16)
                if not data:
                    break
                total += len(data)
                samples.append((time.monotonic(), total))
            start = samples[0][0]
            points = [(t - start, b) for t, b in samples if t - start >= 0.1]
            n = len(points)
            mt = sum(t for t, _ in points) / n
            mb = sum(b for _, b in points) / n
            slope = sum((t - mt) * (b - mb) for t, b in points) / sum((t - mt) ** 2 for t, _ in points)
            print("rate %.0f bytes %d seconds %.3f" % (slope * 8, total, samples[-1][0] - start), flush=True)
        else:
            connection = socket.create_connection((address, port), timeout=20)
            connection.sendall(b"\\0" * int(sys.argv[4]))
            connection.close()

        """

    /// Removes the namespaces on this thread: a `defer`'s clean-up, which cannot await.
    func remove() {
        Self.runBlocking(["ip", "netns", "del", shaped])
        Self.runBlocking(["ip", "netns", "del", peer])
        try? FileManager.default.removeItem(at: directory)
    }
}

/// The link script of a node's setup run for real, in network namespaces, against the kernel
/// of the machine the tests run on.
@Suite(
    "A node's link script run in network namespaces", .serialized,
    .enabled(if: LinkLab.unavailableReason == nil, Comment(rawValue: "skipped: \(LinkLab.unavailableReason ?? "")")), .timeLimit(.minutes(3)))
struct LinkShapingExecutionTests {
    static func script(_ link: LinkProfile) throws -> String {
        let node = NodeBootstrap(
            address: "gcp_instance.edge[0]", environment: BootstrapCase.env("gcp", "us-central1"), workload: .command(["/bin/true"]), machine: .cpu,
            flavour: .gcp, link: link)
        return try #require(try NodeSetupDocument(try node.cloudConfig()).files[NodeBootstrap.linkScriptPath])
    }

    /// A qdisc as `tc -j` shows it: kind, handle, and parent (`root` for a root qdisc).
    static func shape(_ qdisc: [String: Any]) -> String {
        "\(qdisc["kind"] ?? "?") \(qdisc["handle"] ?? "?") \(qdisc["root"] as? Bool == true ? "root" : "parent \(qdisc["parent"] ?? "?")")"
    }

    /// The qdiscs of `device` in that form, in order.
    static func shapes(_ qdiscs: [[String: Any]]) -> [String] { qdiscs.map(shape).sorted() }

    /// What `tcCommands` asks for on `device`, in the same form and order.
    static func asked(_ link: LinkProfile, device: String) -> [String] {
        link.tcCommands(interface: "v0", ifb: NodeBootstrap.linkIFB).filter { $0.starts(with: ["qdisc", "add", "dev", device]) }.map { command in
            let words = Array(command.dropFirst(4))
            let handle = words[(words.firstIndex(of: "handle") ?? 0) + 1]
            let kind = ["netem", "tbf", "ingress"].first { words.contains($0) } ?? "?"
            if kind == "ingress" { return "ingress \(handle) parent ffff:fff1" }
            return "\(kind) \(handle) " + (words.first == "root" ? "root" : "parent \(words[1])")
        }.sorted()
    }

    /// A tbf qdisc holds the profile's rate (bytes/s), burst, and the queue its limit makes
    /// (tc shows the latency the limit allows at the rate).
    static func tbfProblems(_ qdisc: [String: Any], _ link: LinkProfile, on device: String) -> [String] {
        guard let options = qdisc["options"] as? [String: Any], let args = link.tbfArguments, let kbit = link.rateKbit else { return ["\(device): no tbf options"] }
        let burst = Int(args[3]) ?? 0, limit = Int(args[5]) ?? 0
        let rate = kbit * 1000 / 8
        var problems: [String] = []
        if options["rate"] as? Int != rate { problems.append("\(device): rate \(options["rate"] ?? "none") B/s, not \(rate)") }
        if options["burst"] as? Int != burst { problems.append("\(device): burst \(options["burst"] ?? "none"), not \(burst)") }
        let latency = Double(limit - burst) / Double(rate) * 1_000_000
        if let lat = options["lat"] as? Int, abs(Double(lat) - latency) > 1000 { problems.append("\(device): latency \(lat) µs, not the \(Int(latency)) µs of limit \(limit)") }
        return problems
    }

    @Test func aRateCapHoldsWhatTheNodeSendsAndReceivesToTheRate() async throws {
        let lab = try await LinkLab()
        defer { lab.remove() }
        let link = LinkProfile(rateMbit: 20)
        let script = try Self.script(link)
        // Twice: the second run (a restart of the unit) clears the first's and shapes alike.
        for run in 1...2 {
            let applied = try await lab.runLink(script)
            #expect(applied.status == 0, "run \(run): \(applied.output)")
            #expect(applied.output.contains("stratum link: v0 held to 20 Mbit/s"), "\(applied.output)")
            let interface = try await lab.qdiscs("v0"), ifb = try await lab.qdiscs(NodeBootstrap.linkIFB)
            #expect(Self.shapes(interface) == Self.asked(link, device: "v0"), "run \(run): \(interface)")
            #expect(Self.shapes(ifb) == Self.asked(link, device: NodeBootstrap.linkIFB), "run \(run): \(ifb)")
            let tbfs = interface.filter { $0["kind"] as? String == "tbf" } + ifb
            #expect(tbfs.count == 2)
            for (device, tbf) in zip(["v0", NodeBootstrap.linkIFB], tbfs) {
                let problems = Self.tbfProblems(tbf, link, on: device)
                #expect(problems.isEmpty, "\(problems)")
            }
            // Everything v0 receives is redirected to the IFB device.
            let filters = await lab.exec(lab.shaped, ["tc", "filter", "show", "dev", "v0", "parent", "ffff:"]).output
            #expect(filters.contains("match 00000000/00000000 at 0") && filters.contains("mirred (Egress Redirect to device \(NodeBootstrap.linkIFB))"), "\(filters)")
            #expect(filters.components(separatedBy: "Egress Redirect").count == 2, "one redirect, not one per run:\n\(filters)")
        }

        // What the kernel lets through, each way: within 20 % of the rate (TCP's headers take ~4 %).
        let rate = Double(try #require(link.rateKbit)) * 1000
        let bytes = Int(rate / 8 * 1.5)
        let sent = try await lab.throughput(from: lab.shaped, to: lab.peer, address: LinkLab.peerAddress, bytes: bytes)
        let received = try await lab.throughput(from: lab.peer, to: lab.shaped, address: LinkLab.nodeAddress, bytes: bytes)
        print("link test: configured \(Int(rate / 1e6)) Mbit/s; measured \(String(format: "%.2f", sent / 1e6)) Mbit/s sent, \(String(format: "%.2f", received / 1e6)) Mbit/s received")
        #expect(abs(sent - rate) <= 0.2 * rate, "sent at \(sent) bit/s, configured \(rate)")
        #expect(abs(received - rate) <= 0.2 * rate, "received at \(received) bit/s, configured \(rate)")
        // And the traffic went through the qdiscs asked for: each tbf carried a stream.
        for (device, kind) in [("v0", "tbf"), (NodeBootstrap.linkIFB, "tbf")] {
            let carried = try await lab.qdiscs(device).first { $0["kind"] as? String == kind }?["bytes"] as? Int ?? 0
            #expect(carried >= bytes, "\(device)'s \(kind) carried \(carried) bytes")
        }
        #expect(!FileManager.default.fileExists(atPath: lab.directory.appendingPathComponent("apt-get.log").path))
    }

    /// Delay, jitter, loss and reordering need sch_netem, which cloud kernels have (Ubuntu's in
    /// linux-modules-extra, which the script installs) and a kernel built without it lacks.
    /// Where the kernel has none, the script must fail saying so, leaving the interface as it
    /// was; where it has one, the qdiscs are those asked for. So the delay and loss path itself
    /// runs on cloud kernels only.
    @Test func delayAndLossNeedNetemAndAreAppliedWhollyOrNotAtAll() async throws {
        let lab = try await LinkLab()
        defer { lab.remove() }
        let link = LinkProfile(rateMbit: 20, delayMs: 50, lossPercent: 1)
        let before = await Self.shapes(try lab.qdiscs("v0"))
        let hasNetem = await lab.exec(lab.shaped, ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).status == 0
        await lab.exec(lab.shaped, ["tc", "qdisc", "del", "dev", "lo", "root"])
        let applied = try await lab.runLink(try Self.script(link))
        if hasNetem {
            #expect(applied.status == 0, "\(applied.output)")
            await #expect(Self.shapes(try lab.qdiscs("v0")) == Self.asked(link, device: "v0"))
            return
        }
        print("link test: this kernel has no sch_netem; checked that the script fails clearly and leaves v0 unshaped")
        #expect(applied.status != 0)
        #expect(applied.output.contains("netem") && applied.output.contains("sch_netem could not be loaded") && applied.output.contains("v0 is left unshaped"), "\(applied.output)")
        #expect(!applied.output.contains("held to"))
        // Nothing half-applied: the qdiscs as they were, no redirect, no IFB device.
        await #expect(Self.shapes(try lab.qdiscs("v0")) == before)
        await #expect(!lab.exec(lab.shaped, ["tc", "filter", "show", "dev", "v0", "parent", "ffff:"]).output.contains("mirred"))
        await #expect(lab.exec(lab.shaped, ["ip", "link", "show", "dev", NodeBootstrap.linkIFB]).status != 0)
    }
}
