import ArgumentParser
import Foundation
import StratumCloud
import StratumCore
import StratumEngine

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each node's health and training progress, read from the node itself.",
        discussion: """
            For every node of the stack (as recorded by the last apply, refreshed first, nothing \
            written): its provider, zone and address, its health from /healthz, and from \
            /metrics the trainer's step, loss, tokens per second, the age of its last checkpoint \
            and, where measured, the all-reduce bus bandwidth; with the node's link conditions \
            (its declared link profile), the bytes its trainer sent to and received from its peers \
            over TCP, and its DiLoCo round. Cloud nodes answer on their \
            metrics port (9464) at their public address, else their private one; Local nodes on \
            127.0.0.1 (or, in a network namespace, their address on the network) at the port \
            their trainer reports. A node that does not answer within \
            --timeout is shown as unreachable: no node holds the command up.

            Examples:
              stratum status --stack local-demo
              stratum status --stack aws-gpu-cluster --env prod --json
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "Seconds each node has to answer.")
    var timeout: Double = 2

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            guard timeout > 0, timeout <= 600 else { throw CLIError("--timeout must be more than 0 and at most 600 seconds (got \(timeout))") }
            let name = try await context.stackName()
            let snapshot = try await context.openStore(readOnly: true).read(workspace: context.workspace(for: name))
            let recorded = snapshot.resources.filter { NodeProbe.isNode($0.key.type) }
            let nodes = Array(recorded.values)
            guard !nodes.isEmpty else {
                if global.json { context.console.output("[]") } else { context.console.output("No nodes in state. Apply the stack first.") }
                return
            }
            let refreshed = try await Refresher(providers: context.providers).refresh(recorded)
            let probe = NodeProbe(transport: AsyncHTTPTransport(), timeout: .milliseconds(Int(timeout * 1000)))
            let reports = await probe.reports(for: nodes.sorted { $0.address < $1.address }, live: refreshed.live)
            if global.json {
                context.console.output(try jsonText(reports))
            } else {
                context.console.output(NodeProbe.table(reports))
            }
        }
    }
}

/// What `stratum status` says of one node.
struct NodeReport: Codable, Sendable, Equatable {
    var address: String
    var provider: String
    var zone: String
    var endpoint: String
    /// ok, unhealthy (…), unreachable (…), gone, no metrics endpoint
    var health: String
    var step: Int?
    var loss: Double?
    var tokensPerSecond: Double?
    var checkpointAgeSeconds: Double?
    var allreduceBusGbps: Double?
    /// Whether the node's interconnect check passed; nil where none has reported.
    var allreduceOK: Bool?
    /// The node joined its pool after the pool's check (replaced, or rebooted alone): nothing to check with.
    var allreduceSkipped: Bool?
    /// The size of the node's pool (its `count`).
    var poolSize: Int?
    /// The node's link profile (`LinkProfile.summary`), with ` (not applied)` where the node runs
    /// on the host network; nil for a node without a link.
    var link: String?
    /// Bytes the trainer sent to and received from its peers over TCP; nil before any (or
    /// where it exchanges through the store).
    var p2pBytesSent: Int?
    var p2pBytesReceived: Int?
    /// DiLoCo rounds the trainer has finished or caught up to; nil before the first (or
    /// outside DiLoCo).
    var dilocoRound: Int?

    /// Where a node stands for `apply --wait-for-nodes`.
    enum Readiness: Equatable {
        case ready
        case waiting
        case failed
    }

    /// Ready: healthy, and in a pool of more than one, its interconnect check has reported.
    /// Failed: its check failed, or the node is gone or failed. Anything else (unreachable,
    /// unhealthy, no metrics endpoint yet: a Local trainer that has not written its port):
    /// still coming up.
    var readiness: Readiness {
        if allreduceOK == false || health.hasPrefix("gone") || health.hasPrefix("failed") { return .failed }
        guard health.hasPrefix("ok") else { return .waiting }
        return (poolSize ?? 1) > 1 && allreduceOK == nil && allreduceSkipped != true ? .waiting : .ready
    }
}

/// Reads a node's /healthz and /metrics, each call bounded by the timeout.
struct NodeProbe: Sendable {
    /// The resource types that are nodes, or hold nodes (a GCE gang's `instances`).
    static let nodeTypes: Set<String> = ["local_node", "aws_instance", "gcp_instance", "gcp_instance_gang", "azure_virtual_machine"]
    /// Where a cloud node's trainer serves /metrics and /healthz (the node setup's port).
    static let cloudMetricsPort = 9464

    let transport: any HTTPTransport
    let timeout: Duration
    var cloudPort = NodeProbe.cloudMetricsPort

    /// A node resource as the rows it shows: itself, or each member of a gang (`name[i]`, with
    /// the member's zone and address).
    static func rows(of state: ResourceState) -> [ResourceState] {
        guard state.address.type == "gcp_instance_gang", let members = state.attributes["instances"]?.listValue else { return [state] }
        return members.enumerated().map { index, member in
            var row = state
            row.address = ResourceAddress(type: state.address.type, name: state.address.name, index: index)
            row.attributes = member.mapValue ?? [:]
            return row
        }
    }

    static func isNode(_ type: String) -> Bool { nodeTypes.contains(type) }

    /// host:port of a node's metrics, or nil when it has none known.
    func endpoint(of state: ResourceState) -> String? {
        let attributes = state.attributes
        if state.address.type == "local_node" {
            // A node in a network namespace is reached over its network's bridge.
            let host = attributes["private_ip"]?.stringValue ?? "127.0.0.1"
            return attributes["metrics_port"]?.intValue.map { "\(host):\($0)" }
        }
        let host = [attributes["public_ip"], attributes["public_ip_address"], attributes["private_ip"]]
            .compactMap { $0?.stringValue }.first { !$0.isEmpty }
        return host.map { "\($0):\(attributes["metrics_port"]?.intValue ?? cloudPort)" }
    }

    func reports(for nodes: [ResourceState], live: [ResourceAddress: ResourceState?]) async -> [NodeReport] {
        // Each row with what is live of it: a gang's members as they are now, or the gang gone.
        let rows: [(recorded: ResourceState, current: ResourceState?)] = nodes.flatMap { recorded -> [(ResourceState, ResourceState?)] in
            let current = live[recorded.address] ?? recorded
            guard let current else { return [(recorded, nil)] }
            return Self.rows(of: current).map { ($0, $0) }
        }
        return await withTaskGroup(of: (Int, NodeReport).self) { group in
            for (i, row) in rows.enumerated() {
                group.addTask { (i, await report(recorded: row.recorded, current: row.current)) }
            }
            var reports = [NodeReport?](repeating: nil, count: rows.count)
            for await (i, report) in group { reports[i] = report }
            return reports.compactMap { $0 }
        }
    }

    func report(recorded: ResourceState, current: ResourceState?) async -> NodeReport {
        let attributes = (current ?? recorded).attributes
        let zone = attributes["zone"]?.stringValue ?? attributes["availability_zone"]?.stringValue ?? (recorded.address.type == "local_node" ? "local" : "")
        var report = NodeReport(address: recorded.address.description, provider: recorded.provider, zone: zone, endpoint: "", health: "")
        report.poolSize = attributes["count"]?.intValue
        report.link = Self.link(of: current ?? recorded)
        guard let current else {
            report.health = "gone (deleted outside Stratum; the next apply recreates it)"
            return report
        }
        if let failure = current.failure {
            report.health = "failed: \(failure)"
        }
        guard let endpoint = endpoint(of: current) else {
            if report.health.isEmpty { report.health = "no metrics endpoint" }
            return report
        }
        report.endpoint = endpoint
        switch await get("http://\(endpoint)/healthz") {
        case .success(let response):
            if report.health.isEmpty { report.health = response.status == 200 ? "ok" : "unhealthy (HTTP \(response.status))" }
        case .failure(let why):
            if report.health.isEmpty { report.health = "unreachable (\(why))" }
            return report
        }
        if case .success(let response) = await get("http://\(endpoint)/metrics"), response.status == 200 {
            let metrics = Self.parse(String(decoding: response.body, as: UTF8.self))
            report.step = metrics["stratum_trainer_step"].map { Int($0) }
            report.loss = metrics["stratum_trainer_loss"]
            report.tokensPerSecond = metrics["stratum_trainer_tokens_per_second"]
            if let at = metrics["stratum_trainer_last_checkpoint_timestamp_seconds"], at > 0 {
                report.checkpointAgeSeconds = max(0, Date().timeIntervalSince1970 - at)
            }
            // The interconnect check's result, which the trainer serves with its own metrics.
            report.allreduceBusGbps = metrics["stratum_allreduce_bus_bandwidth_bytes_per_second"].map { $0 / 1e9 }
            report.allreduceOK = metrics["stratum_allreduce_ok"].map { $0 == 1 }
            report.allreduceSkipped = metrics["stratum_allreduce_skipped"].map { $0 == 1 }
            // The trainer always exports these: zero is "none yet", shown as "-".
            let sent = metrics["stratum_trainer_p2p_bytes_sent_total"] ?? 0, received = metrics["stratum_trainer_p2p_bytes_received_total"] ?? 0
            if sent > 0 || received > 0 {
                report.p2pBytesSent = Int(exactly: sent.rounded()) ?? 0
                report.p2pBytesReceived = Int(exactly: received.rounded()) ?? 0
            }
            report.dilocoRound = metrics["stratum_trainer_diloco_round"].flatMap { $0 > 0 ? Int(exactly: $0.rounded()) : nil }
            if metrics["stratum_allreduce_ok"] == 0 {
                report.allreduceBusGbps = nil
                if report.health == "ok" { report.health = "ok, but its all-reduce check failed" }
            }
        }
        return report
    }

    /// The summary of a node's `link` input as last read; nil without one (or with one Stratum
    /// cannot read). A Local node on the host network does not hold its link.
    static func link(of state: ResourceState) -> String? {
        guard let profile = (try? LinkProfile(value: state.attributes["link"])) ?? nil, !profile.isUnimpaired else { return nil }
        let onHost = state.address.type == "local_node" && state.attributes["network_mode"]?.stringValue?.hasPrefix("host") == true
        return profile.summary + (onHost ? " (not applied)" : "")
    }

    /// 1234567 bytes as `1.23 MB`.
    static func bytes(_ count: Int?) -> String {
        guard let count else { return "-" }
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(count), unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.2f", value) + " " + units[unit]
    }

    enum Outcome: Sendable {
        case success(HTTPResponseData)
        case failure(String)
    }

    func get(_ url: String) async -> Outcome {
        guard let target = URL(string: url) else { return .failure("bad address \(url)") }
        do {
            return .success(try await transport.send(HTTPRequestData(method: "GET", url: target), timeout: timeout))
        } catch {
            return .failure("no answer within \(timeout)")
        }
    }

    /// Unlabelled samples of a Prometheus text exposition, by metric name.
    static func parse(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, !parts[0].contains("{"), let value = Double(parts[1]) else { continue }
            samples[String(parts[0])] = value
        }
        return samples
    }

    static func table(_ reports: [NodeReport]) -> String {
        func number(_ value: Double?, _ digits: Int) -> String { value.map { String(format: "%.\(digits)f", $0) } ?? "-" }
        func age(_ seconds: Double?) -> String {
            guard let seconds else { return "-" }
            if seconds < 120 { return "\(Int(seconds))s" }
            if seconds < 7200 { return "\(Int(seconds / 60))m" }
            return "\(Int(seconds / 3600))h"
        }
        let header = [
            "NODE", "PROVIDER", "ZONE", "ADDRESS", "HEALTH", "STEP", "LOSS", "TOKENS/S", "CHECKPOINT AGE", "ROUND", "LINK", "P2P SENT", "P2P RECEIVED",
            "ALL-REDUCE GB/S",
        ]
        let rows = reports.map {
            [
                $0.address, $0.provider, $0.zone.isEmpty ? "-" : $0.zone, $0.endpoint.isEmpty ? "-" : $0.endpoint, $0.health, $0.step.map(String.init) ?? "-",
                number($0.loss, 4), number($0.tokensPerSecond, 0), age($0.checkpointAgeSeconds), $0.dilocoRound.map(String.init) ?? "-", $0.link ?? "-",
                bytes($0.p2pBytesSent), bytes($0.p2pBytesReceived), number($0.allreduceBusGbps, 1),
            ]
        }
        return textTable([header] + rows)
    }
}
