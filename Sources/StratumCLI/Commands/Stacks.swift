import ArgumentParser

struct Stacks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the stacks this binary carries.")

    func run() async throws {
        let stacks = CLIEnvironment.current.stacks.sorted { $0.name < $1.name }
        let console = Console(color: false)
        if stacks.isEmpty {
            console.output("No stacks. Add a type conforming to Stack and pass it to StratumCLI.main(stacks:).")
        }
        let width = stacks.map(\.name.count).max() ?? 0
        for stack in stacks {
            console.output(stack.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + stack.summary)
        }
    }
}
