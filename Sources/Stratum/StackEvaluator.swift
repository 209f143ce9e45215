import Foundation

/// A stack as the CLI sees it: a name and a way to evaluate it with a configuration file.
public struct StackEntry: Sendable {
    public var name: String
    public var summary: String
    /// Runs the body with configuration from `configFile` (nil: defaults only).
    public var evaluate: @Sendable (_ environment: String, _ configFile: URL?) throws -> EvaluatedStack

    public init<S: Stack>(_ stack: S.Type) {
        self.name = S.name
        self.summary = S.summary
        self.evaluate = { environment, configFile in
            let config = try configFile.map { try StackConfigLoader.load(S.Config.self, from: $0) }
                ?? StackConfigLoader.check(S.Config(), file: "the default configuration of \(S.name)")
            var stack = try StackEvaluator.evaluate(S().body(config: config), name: S.name, environment: environment)
            if let configFile, let cap = try StackConfigLoader.budget(in: configFile) {
                stack.budgets.append(BudgetCap(hourly: cap, setBy: "environment '\(environment)' (budget_per_hour in \(configFile.relativePath))"))
            }
            return stack
        }
    }
}

/// Checks a stack body's content and turns it into an `EvaluatedStack`.
public enum StackEvaluator {
    /// Validates `content`: names, duplicate addresses, dangling references, cycles and the
    /// diagnostics resources reported while lowering. Throws every problem at once.
    public static func evaluate(_ content: StackContent, name: String, environment: String) throws -> EvaluatedStack {
        var problems = content.diagnostics
        var byAddress: [ResourceAddress: DesiredResource] = [:]
        for resource in content.resources {
            if let first = byAddress[resource.address] {
                let firstAt = first.location.map { " (first at \($0))" } ?? ""
                problems.append(Diagnostic(address: resource.address, message: "declared more than once\(firstAt)", location: resource.location))
            } else {
                byAddress[resource.address] = resource
            }
        }

        var edges: [ResourceAddress: [ResourceAddress]] = [:]
        for resource in content.resources where edges[resource.address] == nil {
            for dependency in resource.dependencies where byAddress[dependency] == nil {
                problems.append(
                    Diagnostic(
                        address: resource.address,
                        message: "refers to \(dependency), which is not declared in the stack (was it left out of the body, or declared under an `if` that is false?)",
                        location: resource.location))
            }
            edges[resource.address] = resource.dependencies.filter { byAddress[$0] != nil }
        }

        var outputs: [String: Value] = [:]
        for output in content.outputs {
            if outputs[output.name] != nil {
                problems.append(Diagnostic(message: "output '\(output.name)' is declared more than once", location: output.location))
            }
            for ref in output.value.references where byAddress[ref.address] == nil {
                problems.append(Diagnostic(message: "output '\(output.name)' refers to \(ref.address), which is not declared in the stack", location: output.location))
            }
            outputs[output.name] = output.value
        }

        let graph = ResourceGraph(edges: edges)
        if let cycle = graph.findCycle() {
            let path = cycle.map(\.description).joined(separator: " -> ")
            problems.append(Diagnostic(address: cycle.first, message: "dependency cycle: \(path)", location: cycle.first.flatMap { byAddress[$0]?.location }))
        }
        if !problems.isEmpty { throw ValidationError(problems) }
        var clusterNames: [String: SourceLocation] = [:]
        for cluster in content.clusters {
            if let first = clusterNames[cluster.request.name] {
                problems.append(Diagnostic(message: "GPU cluster '\(cluster.request.name)' is declared more than once (first at \(first))", location: cluster.location))
            }
            clusterNames[cluster.request.name] = clusterNames[cluster.request.name] ?? cluster.location
        }
        for (index, churn) in content.churn.enumerated() {
            if index > 0 {
                problems.append(Diagnostic(message: "a stack declares one churn schedule; another is declared at \(content.churn[0].location)", location: churn.location))
                continue
            }
            problems += churn.problems(resources: content.resources).map { Diagnostic(message: $0, location: churn.location) }
        }
        if !problems.isEmpty { throw ValidationError(problems) }
        let budgets = content.budgets.map { BudgetCap(hourly: $0.hourly, setBy: "stack '\(name)' (Budget at \($0.location))") }
        var stack = EvaluatedStack(
            name: name, environment: environment, resources: content.resources, outputs: outputs, graph: graph, budgets: budgets, clusters: content.clusters.map(\.request))
        stack.churn = content.churn.first?.schedule
        return stack
    }
}
