import Foundation
import StratumCore
import StratumTesting
import Testing

/// `stratum-netem`, the user-space link emulator, between two network namespaces made by the
/// test: what it does to round trips, loss and throughput, measured with real traffic.
@Suite("Link emulator between namespaces", .serialized, .enabled(if: LinkLab.available, LinkLab.skipReason))
struct LinkEmulatorTests {
    @Test(.timeLimit(.minutes(2)))
    func delayAndJitterShowInTheRoundTrip() async throws {
        let result = try await LinkLab.run(profile: LinkProfile(delayMs: 40, jitterMs: 4), ["echo 60"])
        let echo = try #require(result.echoes.first)
        #expect(echo.lost == 0, "\(result.log)")
        // What the node sends is delayed; the round trip is at least the delay, less the jitter.
        #expect(echo.minimumMs >= 36, "\(echo)")
        #expect(echo.medianMs >= 40 && echo.medianMs < 60, "\(echo)")
    }

    @Test(.timeLimit(.minutes(2)))
    func lossIsWithinToleranceOfTheProfile() async throws {
        let result = try await LinkLab.run(profile: LinkProfile(delayMs: 1, lossPercent: 10), ["echo 600 0.1"])
        let echo = try #require(result.echoes.first, "\(result.log)")
        // 10 % of 600: a binomial standard deviation of about 7.3; five of them either way.
        #expect((24...96).contains(echo.lost), "\(echo)")
    }

    @Test(.timeLimit(.minutes(2)))
    func throughputIsTheRateBothWays() async throws {
        let result = try await LinkLab.run(profile: LinkProfile(rateMbit: 20), ["bulk node 3", "bulk peer 3"])
        #expect(result.rates.count == 2, "\(result.log)")
        for (direction, mbit) in zip(["node to network", "network to node"], result.rates) {
            #expect(abs(mbit - 20) <= 4, "\(direction): \(mbit) Mbit/s for 20")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aReloadedProfileIsAppliedAndReported() async throws {
        let result = try await LinkLab.run(profile: LinkProfile(delayMs: 2), ["state", "reload delay_ms=60", "state", "echo 10"])
        #expect(result.states == [LinkProfile(delayMs: 2), LinkProfile(delayMs: 60)], "\(result.log)")
        let echo = try #require(result.echoes.first, "\(result.log)")
        #expect(echo.minimumMs >= 60, "\(echo)")
    }
}

/// Two namespaces, `node` (10.89.x.1) and `peer` (10.89.x.2), each joined by a veth pair to the
/// root namespace, where `stratum-netem` copies frames between the two root ends. One shell
/// script builds it, runs the steps, and takes it down; the test reads what it printed.
enum LinkLab {
    static let python = "/usr/bin/python3"
    static let tools = ["/usr/sbin/ip", "/usr/sbin/ethtool", python]
    static var available: Bool { getuid() == 0 && tools.allSatisfy { FileManager.default.isExecutableFile(atPath: $0) } }
    static let skipReason: Comment = "needs root, /usr/sbin/ip, /usr/sbin/ethtool and /usr/bin/python3 (.ci/run installs iproute2 and ethtool) to make and measure network namespaces"

    struct Echo: CustomStringConvertible {
        var lost: Int
        var minimumMs: Double
        var medianMs: Double
        var description: String { "lost \(lost), round trip min \(minimumMs) ms, median \(medianMs) ms" }
    }

    struct Result {
        var echoes: [Echo] = []
        var rates: [Double] = []
        var states: [LinkProfile?] = []
        var log = ""
    }

    static let echo = #"""
        import socket, sys, time
        if sys.argv[1] == "server":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999)); s.settimeout(30)
            while True:
                try: d, a = s.recvfrom(2048)
                except socket.timeout: break
                if d == b"end": break
                s.sendto(d, a)
        else:
            host, n = sys.argv[2], int(sys.argv[3]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[4]))
            rtts = []; lost = 0
            for i in range(n):
                t = time.time(); s.sendto(str(i).encode(), (host, 9999))
                try:
                    while True:
                        d, _ = s.recvfrom(2048)
                        if d == str(i).encode(): break
                    rtts.append((time.time() - t) * 1000)
                except socket.timeout: lost += 1
            s.sendto(b"end", (host, 9999)); rtts.sort()
            print("ECHO", lost, rtts[0] if rtts else -1, rtts[len(rtts) // 2] if rtts else -1)
        """#

    static let bulk = #"""
        import socket, sys, time
        if sys.argv[1] == "server":
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 9998)); s.listen(1); s.settimeout(30)
            c, _ = s.accept(); n = 0; t0 = None
            while True:
                d = c.recv(65536)
                if not d: break
                if t0 is None: t0 = time.time()
                n += len(d)
            print("RATE", n * 8 / (time.time() - t0) / 1e6)
        else:
            s = socket.socket(); s.connect((sys.argv[2], 9998)); buf = b"x" * 65536; end = time.time() + float(sys.argv[3])
            while time.time() < end: s.sendall(buf)
            s.close()
        """#

    /// Builds the lab, runs `steps` (`echo N [TIMEOUT]`, `bulk node|peer SECONDS`, `state`,
    /// `reload KEY=VALUE…`), takes it down.
    static func run(profile: LinkProfile, _ steps: [String]) async throws -> Result {
        let directory = try TestSupport.temporaryDirectory("link-lab")
        let id = UInt32.random(in: 0..<0xffffff)
        let tag = String(format: "%06x", id), subnet = "10.89.\(id % 250)"
        try profile.emulatorText.write(to: directory.appendingPathComponent("profile"), atomically: true, encoding: .utf8)
        try echo.write(to: directory.appendingPathComponent("echo.py"), atomically: true, encoding: .utf8)
        try bulk.write(to: directory.appendingPathComponent("bulk.py"), atomically: true, encoding: .utf8)
        var script = """
            set -u
            d=\(directory.path); n=lk\(tag)n; p=lk\(tag)p; a=lk\(tag)a; b=lk\(tag)b; net=\(subnet); py=\(python)
            cleanup() { [ -n "${emu:-}" ] && kill "$emu" 2>/dev/null; wait 2>/dev/null; ip netns del $n 2>/dev/null; ip netns del $p 2>/dev/null; ip link del $a 2>/dev/null; ip link del $b 2>/dev/null; }
            trap cleanup EXIT
            for spec in "$n $a 1" "$p $b 2"; do
              set -- $spec
              ip netns add $1 && ip link add $2 type veth peer name ${2}i && ip link set ${2}i netns $1 && ip -n $1 link set ${2}i name eth0 &&
              ip -n $1 addr add $net.$3/24 dev eth0 && ip -n $1 link set eth0 up && ip -n $1 link set lo up && ip link set $2 up || exit 3
              # Frames cross user space whole: checksums filled in, no segmentation offload.
              ip netns exec $1 ethtool -K eth0 tx off tso off gso off gro off > /dev/null || exit 3
            done
            \(BuiltBinary.url("stratum-netem").path) --node $a --net $b --profile $d/profile --state $d/state --seed 7 2> $d/emulator.log &
            emu=$!
            for i in $(seq 200); do [ -f $d/state ] && break; sleep 0.01; done

            """
        for step in steps {
            let words = step.split(separator: " ").map(String.init)
            switch words.first {
            case "echo":
                script += """
                    ip netns exec $p $py $d/echo.py server & sleep 0.3
                    ip netns exec $n $py $d/echo.py client $net.2 \(words[1]) \(words.count > 2 ? words[2] : "0.5"); wait $!

                    """
            case "bulk":
                let (from, to, address) = words[1] == "node" ? ("$n", "$p", "$net.2") : ("$p", "$n", "$net.1")
                script += """
                    ip netns exec \(to) $py $d/bulk.py server & server=$!; sleep 0.3
                    ip netns exec \(from) $py $d/bulk.py client \(address) \(words[2]); wait $server

                    """
            case "state":
                script += "echo STATE $(tr '\\n' ' ' < $d/state)\n"
            case "reload":
                script += "rm -f $d/state; printf '%s\\n' \(words.dropFirst().joined(separator: " ")) > $d/profile; kill -HUP $emu; "
                    + "for i in $(seq 200); do [ -f $d/state ] && break; sleep 0.01; done\n"
            default:
                throw LinkLabError("unknown step \(step)")
            }
        }
        let file = directory.appendingPathComponent("lab.sh")
        try script.write(to: file, atomically: true, encoding: .utf8)
        let run = try await shell(file, output: directory.appendingPathComponent("lab.out"))
        var result = Result(log: run.output + ((try? String(contentsOf: directory.appendingPathComponent("emulator.log"), encoding: .utf8)) ?? ""))
        guard run.status == 0 else { throw LinkLabError("the lab script exited \(run.status):\n\(result.log)") }
        for line in run.output.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            switch words.first {
            case "ECHO" where words.count == 4:
                result.echoes.append(Echo(lost: Int(words[1]) ?? -1, minimumMs: Double(words[2]) ?? -1, medianMs: Double(words[3]) ?? -1))
            case "RATE" where words.count == 2:
                result.rates.append(Double(words[1]) ?? -1)
            case "STATE":
                result.states.append(try LinkProfile(emulatorText: words.dropFirst().joined(separator: " ")))
            default:
                break
            }
        }
        return result
    }
}

extension LinkLab {
    /// Runs `script` with /bin/sh, its output (both streams) to `output`; awaits its end
    /// without blocking a thread.
    static func shell(_ script: URL, output: URL) async throws -> (status: Int32, output: String) {
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [script.path]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        try handle.close()
        return (status, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }
}

struct LinkLabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
