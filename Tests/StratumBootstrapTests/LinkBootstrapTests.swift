import Foundation
import StratumAWS
import StratumBootstrap
import StratumCloud
import StratumCore
import StratumGCP
import StratumTesting
import Testing

/// A node's link profile in its #cloud-config: the script, its unit, and what it runs.
@Suite("A node's link conditions in its node setup", .timeLimit(.minutes(2)))
struct LinkBootstrapTests {
    static let poor = LinkProfile(rateMbit: 10, delayMs: 100, jitterMs: 10, lossPercent: 1, correlationPercent: 25, reorderPercent: 5)

    static func node(_ link: LinkProfile?, workload: NodeWorkload = .command(["/bin/true"])) -> NodeBootstrap {
        NodeBootstrap(
            address: "aws_instance.edge[0]", environment: BootstrapCase.env("aws", "us-east-1"), workload: workload, machine: .cpu, flavour: .aws,
            link: link)
    }

    static func document(_ link: LinkProfile?) throws -> NodeSetupDocument { try NodeSetupDocument(try node(link).cloudConfig()) }

    @Test func aLinkAddsItsScriptAndAUnitThatRunsBeforeTheWorkload() throws {
        let setup = try Self.document(Self.poor)
        let script = try #require(setup.files[NodeBootstrap.linkScriptPath])
        #expect(setup.permissions[NodeBootstrap.linkScriptPath] == 0o755)
        #expect(script.contains("10 Mbit/s, 100 ms +/- 10 ms, 1 % loss"), "the script names its profile")
        let unit = try #require(setup.files[NodeBootstrap.linkUnitPath])
        for line in [
            "Type=oneshot", "RemainAfterExit=yes", "After=network-online.target", "Wants=network-online.target", "Before=stratum-workload.service",
            "ExecStart=\(NodeBootstrap.linkScriptPath)",
        ] {
            #expect(unit.split(separator: "\n").contains(Substring(line)), "the unit lacks \(line):\n\(unit)")
        }
        // Enabled before the workload, which needs it: a node that could not be shaped does not
        // train as if it had been.
        let enabled = setup.runcmd.compactMap { $0.starts(with: ["systemctl", "enable", "--now"]) ? $0[3] : nil }
        let link = try #require(enabled.firstIndex(of: "stratum-link.service"))
        let workload = try #require(enabled.firstIndex(of: "stratum-workload.service"))
        #expect(link < workload, "\(enabled)")
        let workloadUnit = try #require(setup.files["/etc/systemd/system/stratum-workload.service"])
        #expect(workloadUnit.contains("Requires=stratum-link.service") && workloadUnit.contains("After=network-online.target stratum-link.service"))
        #expect(setup.packages.contains("iproute2"))

        // No link, or an unimpaired one: none of it.
        for link in [nil, LinkProfile.unimpaired] {
            let plain = try Self.document(link)
            #expect(plain.files[NodeBootstrap.linkScriptPath] == nil && plain.files[NodeBootstrap.linkUnitPath] == nil)
            #expect(!plain.runcmd.joined().contains("stratum-link.service"))
            #expect(plain.files["/etc/systemd/system/stratum-workload.service"]?.contains("stratum-link") == false)
            #expect(!plain.packages.contains("iproute2"))
        }
    }

    /// Runs the script with `ip`, `tc` and `modprobe` standing in: what it asks of them, in order.
    static func run(_ script: String, environment: [String: String] = [:], tcFails: String? = nil) throws -> (status: Int32, output: String, calls: [String]) {
        let directory = try TestSupport.temporaryDirectory("link-script")
        defer { try? FileManager.default.removeItem(at: directory) }
        let bin = directory.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let log = directory.appendingPathComponent("calls.log")
        let standIns = [
            "ip": """
                #!/bin/sh
                echo "ip $*" >> "$CALLS"
                case "$*" in
                  "route show default") echo "default via 10.0.0.1 dev ens5 proto dhcp src 10.0.0.7 metric 100" ;;
                  "link show dev ens5"|"link show dev eth1") ;;
                  "link show dev stratum-ifb0") [ -f "$CALLS.ifb" ] || exit 1 ;;
                  "link add stratum-ifb0 type ifb") touch "$CALLS.ifb" ;;
                  "link del dev stratum-ifb0") rm -f "$CALLS.ifb" ;;
                  "link set dev stratum-ifb0 up") ;;
                  *) echo "ip: unexpected $*" >&2; exit 1 ;;
                esac
                """,
            "tc": """
                #!/bin/sh
                echo "tc $*" >> "$CALLS"
                case "$1 $2" in "qdisc del") echo "Error: Cannot delete qdisc with handle of zero." >&2; exit 2 ;; esac
                case "$*" in *"${TC_FAILS:-no such words}"*) echo "Error: Specified qdisc kind is unknown." >&2; exit 2 ;; esac
                """,
            "modprobe": "#!/bin/sh\necho \"modprobe $*\" >> \"$CALLS\"\n",
            "apt-get": "#!/bin/sh\necho \"apt-get $*\" >> \"$CALLS\"\nexit 1\n",
        ]
        for (name, text) in standIns {
            let file = bin.appendingPathComponent(name)
            try Data((text + "\n").utf8).write(to: file)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        var env = ["PATH": "\(bin.path):/usr/bin:/bin", "CALLS": log.path].merging(environment) { $1 }
        if let tcFails { env["TC_FAILS"] = tcFails }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let calls = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        return (process.terminationStatus, output, calls)
    }

    static func script(_ link: LinkProfile) throws -> String { try #require(try Self.document(link).files[NodeBootstrap.linkScriptPath]) }

    @Test(arguments: [
        poor, LinkProfile(rateMbit: 20), LinkProfile(delayMs: 30, lossPercent: 0.5), LinkProfile(rateMbit: 0.064, delayMs: 250, jitterMs: 20),
    ])
    func theScriptRunsExactlyTheProfilesTCCommandsOnTheDefaultRoutesInterface(_ link: LinkProfile) throws {
        let run = try Self.run(try Self.script(link))
        #expect(run.status == 0, "\(run.output)")
        let added = run.calls.filter { $0.hasPrefix("tc qdisc add") || $0.hasPrefix("tc filter add") }
        #expect(added == link.tcCommands(interface: "ens5", ifb: "stratum-ifb0").map { "tc " + $0.joined(separator: " ") }, "\(run.calls)")
        // What an earlier run left goes first.
        let firstAdd = try #require(run.calls.firstIndex { $0.hasPrefix("tc qdisc add") })
        #expect(run.calls[..<firstAdd].contains("tc qdisc del dev ens5 root") && run.calls[..<firstAdd].contains("tc qdisc del dev ens5 ingress"))
        // The IFB device only where the rate is capped, made before anything is redirected to it.
        let made = run.calls.firstIndex(of: "ip link add stratum-ifb0 type ifb")
        #expect((made != nil) == (link.rateKbit != nil), "\(run.calls)")
        if let made { #expect(made < firstAdd) }
        // The modules it needs, and only those.
        let modules = Set(run.calls.filter { $0.hasPrefix("modprobe") }.compactMap { $0.split(separator: " ").last.map(String.init) })
        var needed: Set<String> = link.netemArguments != nil ? ["sch_netem"] : []
        if link.rateKbit != nil { needed.formUnion(["sch_tbf", "ifb", "act_mirred", "cls_u32"]) }
        #expect(modules == needed)
        #expect(run.output.contains("stratum link: ens5 held to \(link.summary.replacingOccurrences(of: "±", with: "+/-"))"), "\(run.output)")
        #expect(!run.calls.contains { $0.hasPrefix("apt-get") })
    }

    @Test func anotherInterfaceMayBeNamedAndNoDefaultRouteIsAClearFailure() throws {
        let script = try Self.script(LinkProfile(rateMbit: 20))
        let named = try Self.run(script, environment: ["STRATUM_LINK_DEVICE": "eth1"])
        #expect(named.status == 0 && named.calls.contains { $0.hasPrefix("tc qdisc add dev eth1 root handle 1: tbf") }, "\(named.calls)")
        #expect(!named.calls.contains("ip route show default"))

        let missing = try Self.run(script, environment: ["STRATUM_LINK_DEVICE": "eth7"])
        #expect(missing.status != 0 && missing.output.contains("there is no interface eth7"), "\(missing.output)")
        #expect(!missing.calls.contains { $0.hasPrefix("tc qdisc add") })
    }

    @Test func aFailedCommandLeavesTheInterfaceUnshaped() throws {
        let run = try Self.run(try Self.script(Self.poor), tcFails: "tbf")
        #expect(run.status != 0)
        #expect(run.output.contains("failed: Error: Specified qdisc kind is unknown.") && run.output.contains("ens5 is left unshaped"), "\(run.output)")
        // After the failure: both qdiscs and the IFB device cleared again, nothing more added.
        let failed = try #require(run.calls.lastIndex { $0.contains("tbf") && $0.hasPrefix("tc qdisc add") })
        let after = Array(run.calls[(failed + 1)...])
        #expect(after.contains("tc qdisc del dev ens5 root") && after.contains("tc qdisc del dev ens5 ingress") && after.contains("ip link del dev stratum-ifb0"))
        #expect(!after.contains { $0.hasPrefix("tc qdisc add") || $0.hasPrefix("tc filter add") })
        #expect(!run.output.contains("held to"))
    }

    @Test func aNodesLinkInputBecomesItsProfileAndABadOneIsAnErrorNamingTheNode() throws {
        func node(_ inputs: [String: Value]) -> ResolvedResource {
            ResolvedResource(
                address: ResourceAddress(type: "aws_instance", name: "edge", index: 2), region: "us-east-1",
                inputs: ["command": .list(["/bin/true"]), "pool": "edge", "count": 4, "index": 2].merging(inputs) { $1 }, dependencies: [])
        }
        let machine = AWSInstanceCatalog.bootstrapMachine(instanceType: "m7i.large", gpus: 0, gpuClass: nil)
        let rendered = try #require(try NodeUserData.render(node(["link": Self.poor.value]), flavour: .aws, machine: machine))
        let setup = try NodeSetupDocument(String(decoding: try rendered.gzipped ? UserDataLimit.gunzip(rendered.bytes) : rendered.bytes, as: UTF8.self))
        #expect(setup.files[NodeBootstrap.linkScriptPath] == (try Self.script(Self.poor)))

        for (link, words) in [
            (Value.map(["delay_ms": 10, "bandwidth": 5]), "no setting 'bandwidth'"), (.string("poor"), "must be a map"),
            (LinkProfile(rateMbit: 10, jitterMs: 5).value, "a link jitter needs a delay"),
        ] {
            let error = #expect(throws: ProviderError.self) { _ = try NodeUserData.render(node(["link": link]), flavour: .aws, machine: machine) }
            #expect(error?.address?.description == "aws_instance.edge[2]" && error?.message.contains(words) == true, "\(String(describing: error))")
        }
        // The stack's own user data replaces the setup that would shape the link.
        let both = #expect(throws: ProviderError.self) {
            _ = try NodeUserData.render(node(["link": Self.poor.value, "user_data": "#!/bin/sh\n"]), flavour: .aws, machine: machine)
        }
        #expect(both?.message.contains("user_data") == true)
        // An unimpaired link is no link.
        let plain = try #require(try NodeUserData.render(node(["link": .map([:])]), flavour: .aws, machine: machine))
        #expect(!String(decoding: plain.bytes, as: UTF8.self).contains("stratum-link"))
    }
}

extension NodeSetupDocument {
    /// The document's `packages:`, as Stratum writes them (one `- name` a line).
    var packages: [String] {
        text.split(separator: "\n").drop { !$0.hasPrefix("packages:") }.dropFirst().prefix { $0.hasPrefix("- ") }.map { String($0.dropFirst(2)) }
    }
}
