import ArgumentParser
import StratumCore

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the stack without calling any provider.",
        discussion: "Reports every problem at once: duplicate addresses, dependency cycles, references to undeclared resources, invalid CIDRs, negative counts, unknown config keys and attributes."
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let stack = try await context.evaluate()
            context.console.output("The stack \(stack.name) (\(stack.environment)) is valid: \(stack.resources.count) resource(s), \(stack.outputs.count) output(s).")
        }
    }
}
