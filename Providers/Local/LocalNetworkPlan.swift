import Foundation
import StratumCore

/// How a stack's Local nodes sit on its Local networks, checked when it is planned: which
/// networks become real (their nodes carry links), what cannot be held, and whose links stay
/// unapplied.
struct LocalNetworkPlan {
    /// What makes the stack invalid.
    var problems: [Diagnostic] = []
    /// What plan and apply print: links that are not applied, and why.
    var warnings: [String] = []
    /// What plan and apply print as well: which networks are real, and whose links are held.
    var notes: [String] = []

    init(resources: [DesiredResource], networking: LocalNetworking) {
        let networks = Dictionary(resources.filter { $0.address.type == "local_network" }.map { ($0.address, $0) }) { first, _ in first }
        var linked: [ResourceAddress: [(node: DesiredResource, link: LinkProfile)]] = [:]
        var unlinked: [ResourceAddress: [DesiredResource]] = [:]
        var offNetwork: [ResourceAddress] = []
        for node in resources where node.address.type == LocalNodeKind.typeName {
            let network = node.inputs["network_id"]?.references.first.map(\.address).flatMap { $0.type == "local_network" ? $0 : nil }
            // A link the provider cannot read is the node's own diagnostic (LocalNodeKind.validate).
            let link = (try? LocalNetworking.link(of: node.inputs, address: node.address)) ?? nil
            switch (network, link) {
            case (let network?, let link?): linked[network, default: []].append((node, link))
            case (let network?, nil): unlinked[network, default: []].append(node)
            case (nil, .some): offNetwork.append(node.address)
            case (nil, nil): break
            }
        }
        // The machine is probed only for a stack that has links on networks.
        let support = linked.isEmpty ? nil : networking.support
        for (network, members) in linked.sorted(by: { $0.key < $1.key }) {
            if let others = unlinked[network], let first = others.first {
                problems.append(Diagnostic(
                    address: first.address,
                    message: "\(network) carries nodes with a link (\(Self.list(members.map(\.node.address)))) and nodes without one (\(Self.list(others.map(\.address)))). "
                        + "A Local network whose nodes carry links is a real network on which every node runs in a network namespace of its own, "
                        + "so every node on it needs a link: give the others one (a rate cap they never reach, such as LinkProfile(rateMbit: 10000), will do)",
                    location: first.location))
            }
            if let declared = networks[network], let cidr = declared.inputs["cidr"]?.stringValue, let block = IPv4Block(cidr) {
                let room = block.nodeAddresses.map { Int($0.upperBound - $0.lowerBound) + 1 } ?? 0
                if members.count > room {
                    problems.append(Diagnostic(
                        address: network,
                        message: "\(members.count) nodes with links are on \(network), but its CIDR \(cidr) holds \(room) node address\(room == 1 ? "" : "es") beside the bridge's; give it a larger CIDR",
                        location: declared.location))
                }
            }
            if case .success? = support, let shaping = NetworkProbe.shaping {
                for (node, link) in members {
                    if let missing = NetworkProbe.missing(for: link) {
                        problems.append(Diagnostic(address: node.address, message: "its link (\(link.summary)) cannot be held on this machine: \(missing)", location: node.location))
                    }
                }
                notes.append(
                    "\(network) is a real network (a bridge): \(Self.list(members.map(\.node.address))) "
                        + (members.count == 1 ? "runs in a network namespace of its own, its link" : "run in network namespaces of their own, their links")
                        + " held by \(shaping.netem || !members.contains { $0.link.netemArguments != nil } ? "tc" : "tc and stratum-netem (this kernel has no sch_netem)") (\(Self.summaries(members.map(\.link))))")
            }
        }
        if !offNetwork.isEmpty {
            warnings.append(
                "\(Self.list(offNetwork)) \(offNetwork.count == 1 ? "carries a link but is" : "carry links but are") on no Local network, so \(offNetwork.count == 1 ? "its link is" : "their links are") not applied: "
                    + "on Local a link is held in a network namespace on the pool's network (declare the pool with network:); \(offNetwork.count == 1 ? "it runs" : "they run") on the host network")
        }
        let onNetworks = linked.values.flatMap { $0.map(\.node.address) }.sorted()
        if case .failure(let why)? = support, !onNetworks.isEmpty {
            warnings.append(
                "this process cannot create network namespaces (\(why.reason)): \(Self.list(onNetworks)) \(onNetworks.count == 1 ? "starts" : "start") on the host network, "
                    + "as nodes without a link do, and \(onNetworks.count == 1 ? "its link is" : "their links are") not applied (a node already in a namespace keeps it)")
        }
    }

    /// The distinct profiles, in order.
    static func summaries(_ links: [LinkProfile]) -> String {
        var seen: [String] = []
        for summary in links.map(\.summary) where !seen.contains(summary) { seen.append(summary) }
        return seen.joined(separator: "; ")
    }

    /// Up to three addresses, then how many more.
    static func list(_ addresses: [ResourceAddress]) -> String {
        let shown = addresses.prefix(3).map(\.description).joined(separator: ", ")
        return addresses.count > 3 ? "\(shown) and \(addresses.count - 3) more" : shown
    }
}
