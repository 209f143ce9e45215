import ArgumentParser
import Foundation
import StratumCore
import StratumEngine

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would change, without changing anything.",
        discussion: """
            Reads live state from the providers (one call per resource type and region), compares \
            it and the recorded state with the stack, and prints every change: + create, ~ update \
            in place, -/+ replace, - destroy. Values the cloud assigns show as (known after apply).

            Save the plan with --out and apply exactly that plan later with `stratum apply FILE`; \
            it is refused if the state changed in between.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: ChangeOptions

    @Option(name: .long, help: ArgumentHelp("Save the plan to this file for `stratum apply FILE`.", valueName: "FILE"))
    var out: String?

    @Flag(name: .long, help: "Plan the destruction of every resource instead.")
    var destroy = false

    @Flag(name: .long, help: "Exit 0 when there are no changes, 2 when there are, 1 on error.")
    var detailedExitcode = false

    func run() async throws {
        let context = RunContext(global)
        var hasChanges = false
        try await reportingErrors(context.console) {
            let stack = destroy ? nil : try context.evaluate()
            let name = try stack?.name ?? context.stackNameForDestroy()
            let store = try context.openStore()
            let plan = try await StateLock(store: store, workspace: context.workspace(for: name)).run(operation: "plan") { _ in
                try await context.plan(stack: stack, stackName: name, store: store, change: change, destroy: destroy)
            }
            try context.show(plan)
            if let out {
                try PlanFile.write(plan, to: out)
                if !global.json { context.console.output("Saved the plan to \(out). Apply it with: stratum apply \(out)") }
            }
            hasChanges = plan.hasChanges
        }
        if detailedExitcode, hasChanges { throw ExitCode(2) }
    }
}

/// Saved plans: JSON of the `Plan`, written with mode 0600 as it holds resource attributes.
enum PlanFile {
    static func write(_ plan: Plan, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(plan)
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw CLIError("cannot write the plan to \(path)")
        }
    }

    static func read(_ path: String) throws -> Plan {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read plan file \(path)") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let plan: Plan
        do {
            plan = try decoder.decode(Plan.self, from: data)
        } catch {
            throw CLIError("\(path) is not a Stratum plan file: \(error)")
        }
        guard plan.format == Plan.currentFormat else {
            throw CLIError("\(path) has plan format \(plan.format); this stratum reads format \(Plan.currentFormat)")
        }
        return plan
    }
}
