import StratumCore

/// Per-node link conditions of a group of nodes declared on a cloud directly (an instance or
/// VM group; a pool's are `NodePool.link(for:)`): the group's profile, and by node index the
/// profiles that override it.
public enum NodeLinks {
    /// Node `index`'s profile: its own, else the group's; nil when unimpaired.
    public static func profile(_ index: Int, link: LinkProfile?, links: [Int: LinkProfile]) -> LinkProfile? {
        let profile = links[index] ?? link
        return profile?.isUnimpaired == true ? nil : profile
    }

    /// The problems of a group's per-node `links`: a node the group does not have, each
    /// profile's own problems (on its node), and links on nodes whose boot is the stack's own
    /// user data (which replaces the setup that shapes the link).
    public static func diagnostics(
        _ links: [Int: LinkProfile], count: Int, group: ResourceAddress, node: (Int) -> ResourceAddress, userData: Bool, location: SourceLocation
    ) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        for (index, profile) in links.sorted(by: { $0.key < $1.key }) {
            guard (0..<count).contains(index) else {
                problems.append(Diagnostic(address: group, message: "a link is set for node \(index), but the group has nodes 0..<\(count)", location: location))
                continue
            }
            problems += profile.problems.map { Diagnostic(address: node(index), message: $0, location: location) }
        }
        if userData, links.values.contains(where: { !$0.isUnimpaired }) {
            problems.append(Diagnostic(address: group, message: userDataConflict, location: location))
        }
        return problems
    }

    /// Why a node cannot have both its own user data and a link.
    public static let userDataConflict = "a link is shaped by Stratum's node setup, which userData replaces: drop one of them"
}
