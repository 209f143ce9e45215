/// Dependency edges between resources: `edges[a]` are the resources `a` depends on.
public struct ResourceGraph: Sendable {
    public private(set) var nodes: [ResourceAddress]
    public private(set) var edges: [ResourceAddress: [ResourceAddress]]

    public init(edges: [ResourceAddress: [ResourceAddress]]) {
        self.edges = edges
        self.nodes = edges.keys.sorted()
    }

    /// Resources that depend directly on each resource (the reversed edges).
    public var dependents: [ResourceAddress: [ResourceAddress]] {
        var result: [ResourceAddress: [ResourceAddress]] = [:]
        for node in nodes {
            for dependency in edges[node] ?? [] { result[dependency, default: []].append(node) }
        }
        return result
    }

    /// The first cycle found, as a path that starts and ends at the same resource.
    public func findCycle() -> [ResourceAddress]? {
        enum Mark { case visiting, done }
        var marks: [ResourceAddress: Mark] = [:]
        var stack: [ResourceAddress] = []

        // Iterative depth-first search so that long chains cannot overflow the call stack.
        for root in nodes where marks[root] == nil {
            var work: [(node: ResourceAddress, next: Int)] = [(root, 0)]
            marks[root] = .visiting
            stack.append(root)
            while let top = work.last {
                let deps = (edges[top.node] ?? []).filter { edges[$0] != nil }
                if top.next < deps.count {
                    work[work.count - 1].next += 1
                    let dep = deps[top.next]
                    switch marks[dep] {
                    case .visiting:
                        guard let start = stack.firstIndex(of: dep) else { continue }
                        return Array(stack[start...]) + [dep]
                    case .done:
                        continue
                    case nil:
                        marks[dep] = .visiting
                        stack.append(dep)
                        work.append((dep, 0))
                    }
                } else {
                    marks[top.node] = .done
                    stack.removeLast()
                    work.removeLast()
                }
            }
        }
        return nil
    }

    /// Every resource in an order where dependencies come first; nil if there is a cycle.
    public func topologicalOrder() -> [ResourceAddress]? {
        var remaining: [ResourceAddress: Int] = [:]
        for node in nodes { remaining[node] = (edges[node] ?? []).filter { edges[$0] != nil }.count }
        let dependents = self.dependents
        var ready = nodes.filter { remaining[$0] == 0 }
        var order: [ResourceAddress] = []
        order.reserveCapacity(nodes.count)
        var cursor = 0
        while cursor < ready.count {
            let node = ready[cursor]
            cursor += 1
            order.append(node)
            for dependent in dependents[node] ?? [] {
                remaining[dependent, default: 0] -= 1
                if remaining[dependent] == 0 { ready.append(dependent) }
            }
        }
        return order.count == nodes.count ? order : nil
    }

    /// `roots` and everything they depend on, transitively.
    public func closure(of roots: Set<ResourceAddress>) -> Set<ResourceAddress> {
        walk(from: roots) { edges[$0] ?? [] }
    }

    /// `roots` and everything that depends on them, transitively.
    public func dependentClosure(of roots: Set<ResourceAddress>) -> Set<ResourceAddress> {
        let reversed = dependents
        return walk(from: roots) { reversed[$0] ?? [] }
    }

    private func walk(from roots: Set<ResourceAddress>, next: (ResourceAddress) -> [ResourceAddress]) -> Set<ResourceAddress> {
        var seen = roots
        var queue = Array(roots)
        while let node = queue.popLast() {
            for other in next(node) where seen.insert(other).inserted { queue.append(other) }
        }
        return seen
    }
}
