import ArgumentParser
import StratumCore

struct Graph: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the stack's dependency graph in Graphviz DOT.",
        discussion: "Render it with: stratum graph --stack NAME | dot -Tsvg > graph.svg"
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let stack = try await context.evaluate()
            var lines = ["digraph \"\(stack.name)\" {", "  rankdir = \"RL\";", "  node [shape = box];"]
            for node in stack.graph.nodes { lines.append("  \"\(node)\";") }
            for node in stack.graph.nodes {
                for dependency in stack.graph.edges[node] ?? [] { lines.append("  \"\(node)\" -> \"\(dependency)\";") }
            }
            lines.append("}")
            context.console.output(lines.joined(separator: "\n"))
        }
    }
}
