import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumState

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

    @Flag(name: .long, inversion: .prefixedNo, help: "Take the state lock and settle interrupted operations first. --no-lock only reads state: it works on a read-only state file and creates nothing.")
    var lock = true

    func run() async throws {
        let context = RunContext(global)
        var hasChanges = false
        try await reportingErrors(context.console) {
            let stack = destroy ? nil : try context.evaluate()
            let name = try stack?.name ?? context.stackNameForDestroy()
            let plan: Plan
            if lock {
                let store = try await context.openStore()
                plan = try await context.locked(store, workspace: context.workspace(for: name), operation: "plan") {
                    try await context.plan(stack: stack, stackName: name, store: store, change: change, destroy: destroy)
                }
            } else {
                let store = try await context.openStore(readOnly: true)
                let pending = try await store.pendingOperations(workspace: context.workspace(for: name))
                if !pending.isEmpty {
                    context.console.error(context.console.yellow("Warning: \(pending.count) interrupted operation(s) in the journal are not settled by plan --no-lock; the plan may be out of date (run plan with the lock to settle them)."))
                }
                plan = try await context.plan(stack: stack, stackName: name, store: store, change: change, destroy: destroy)
            }
            try context.show(plan)
            if let out {
                try PlanFile.write(plan, to: out, sealer: context.stateKey)
                if !global.json { context.console.output("Saved the plan to \(out). Apply it with: stratum apply \(out)") }
            }
            hasChanges = plan.hasChanges
        }
        if detailedExitcode, hasChanges { throw ExitCode(2) }
    }
}

/// Saved plans: JSON of the `Plan`, written with mode 0600 as it holds resource attributes.
/// Secrets in the plan are sealed with the state key, as in state.
enum PlanFile {
    static func write(_ plan: Plan, to path: String, sealer: any ValueSealer) throws {
        let encoder = StateCodec(sealer: sealer).encoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(plan)
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw CLIError("cannot write the plan to \(path)")
        }
    }

    static func read(_ path: String, sealer: any ValueSealer) throws -> Plan {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read plan file \(path)") }
        let decoder = StateCodec(sealer: sealer).decoder()
        decoder.dateDecodingStrategy = .iso8601
        let plan: Plan
        do {
            plan = try decoder.decode(Plan.self, from: data)
        } catch let error as StateError {
            throw CLIError("cannot read the plan \(path): \(error)")
        } catch {
            throw CLIError("\(path) is not a Stratum plan file: \(error)")
        }
        guard plan.format == Plan.currentFormat else {
            throw CLIError("\(path) has plan format \(plan.format); this stratum reads format \(Plan.currentFormat)")
        }
        return plan
    }
}
