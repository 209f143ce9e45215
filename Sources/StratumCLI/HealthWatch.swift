import Foundation
import StratumCore
import StratumEngine
import StratumState

/// Nodes whose /healthz stopped answering, remembered across reconcile passes (and processes:
/// a nightly job sees what the last one saw) as `stratum_unhealthy` records in the state
/// workspace `_stratum/health`. A node unhealthy for longer than the grace is marked failed in
/// the refresh, so the plan replaces it; one that answers again is forgotten. A mark is of one
/// node id: the replacement at the same address is watched afresh (the grace is also its time
/// to boot).
struct HealthWatch {
    static let workspace = "_stratum/health"
    static let type = "stratum_unhealthy"

    let store: any StateStore
    let probe: NodeProbe
    /// The stack's workspace, whose nodes these are.
    let stackWorkspace: String
    let grace: Duration

    /// `refreshed` with the nodes unhealthy past the grace marked failed, and each node as seen.
    func apply(to refreshed: RefreshResult, now: Date) async throws -> (RefreshResult, [DriftReport.Node]) {
        let nodes = refreshed.existing.values.filter { NodeProbe.isNode($0.address.type) && $0.failure == nil && $0.address.type != "gcp_instance_gang" }
            .sorted { $0.address < $1.address }
        let reports = await probe.reports(for: nodes, live: refreshed.live)
        let health = Dictionary(reports.map { ($0.address, $0.health) }, uniquingKeysWith: { a, _ in a })
        var seen = reports.map { report in
            let kind = report.health.hasPrefix("ok") ? "ok" : report.health.hasPrefix("unreachable") || report.health.hasPrefix("unhealthy") ? "unhealthy" : "unknown"
            return DriftReport.Node(address: report.address, provider: report.provider, zone: report.zone.isEmpty ? "-" : report.zone, health: kind, detail: report.health)
        }
        for node in refreshed.existing.values where NodeProbe.isNode(node.address.type) && node.failure != nil {
            let zone = node.attributes["zone"]?.stringValue ?? node.attributes["availability_zone"]?.stringValue ?? (node.address.type == "local_node" ? "local" : "-")
            seen.append(DriftReport.Node(address: node.address.description, provider: node.provider, zone: zone, health: "failed", detail: node.failure ?? ""))
        }
        let recorded = try await store.workspaces().contains(Self.workspace) ? try await store.read(workspace: Self.workspace).resources : [:]
        let mine = recorded.values.filter { $0.attributes["workspace"]?.stringValue == stackWorkspace }
        // Each mark is of one node's id: a replacement at the same address starts afresh.
        var since: [String: Date] = [:]
        for mark in mine {
            if let node = mark.attributes["node"]?.stringValue, let id = mark.attributes["id"]?.stringValue,
                let date = mark.attributes["since"]?.stringValue.flatMap(ISODates.date)
            {
                since["\(node) \(id)"] = date
            }
        }
        var result = refreshed
        var upserts: [ResourceState] = []
        var keep: Set<ResourceAddress> = []
        for node in nodes {
            let name = node.address.description
            guard let line = health[name], line.hasPrefix("unreachable") || line.hasPrefix("unhealthy") else { continue }
            let address = markAddress(name)
            keep.insert(address)
            guard let first = since["\(name) \(node.id)"] else {
                upserts.append(mark(address, node: name, id: node.id, since: now, health: line))
                continue
            }
            if now.timeIntervalSince(first) >= grace.seconds {
                var failed = node
                failed.attributes[ResourceState.failureAttribute] = .string(
                    "unhealthy: its /healthz has not answered since \(ISODates.string(first)) (\(line); grace \(Int(grace.seconds)) s)")
                result.live[node.address] = failed
                if let index = seen.firstIndex(where: { $0.address == name }) {
                    seen[index].health = "failed"
                    seen[index].detail = failed.failure ?? ""
                }
            }
        }
        let removals = mine.map(\.address).filter { !keep.contains($0) }
        if !upserts.isEmpty || !removals.isEmpty {
            let changes = upserts.map { HistoryChange(address: $0.address.description, action: "unhealthy") }
                + removals.map { HistoryChange(address: $0.description, action: "healthy again or gone") }
            _ = try await store.commit(workspace: Self.workspace, StateMutation(upserts: upserts, removals: removals, changes: changes), at: now)
        }
        return (result, seen.sorted { $0.address < $1.address })
    }

    func markAddress(_ node: String) -> ResourceAddress {
        let raw = "\(stackWorkspace)_\(node)"
        return ResourceAddress(type: Self.type, name: String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" }))
    }

    func mark(_ address: ResourceAddress, node: String, id: String, since: Date, health: String) -> ResourceState {
        ResourceState(
            address: address, provider: StratumBuiltinProvider.providerName, region: "global", id: address.name,
            attributes: [
                "workspace": .string(stackWorkspace), "node": .string(node), "id": .string(id), "since": .string(ISODates.string(since)), "health": .string(health),
            ])
    }
}
