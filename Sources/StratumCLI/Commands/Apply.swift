import ArgumentParser
import Foundation
import StratumCore
import StratumEngine

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the infrastructure match the stack.",
        discussion: """
            Plans, shows the plan, asks for confirmation (type 'yes'; without a terminal, pass \
            --auto-approve), then applies: independent resources concurrently (--parallelism), \
            each resource's new state committed the moment it is done. A failure stops only what \
            depends on it; the rest finish, and the run exits 1 with a summary.

            `stratum apply FILE` applies a plan saved with `stratum plan --out FILE` exactly, and \
            refuses it if the state changed since.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: ChangeOptions

    @Argument(help: ArgumentHelp("A plan saved by `stratum plan --out`.", valueName: "PLAN-FILE"))
    var planFile: String?

    @Flag(name: .long, help: "Apply without asking for confirmation.")
    var autoApprove = false

    func run() async throws {
        try await ApplyRun(global: global, change: change, autoApprove: autoApprove, destroy: false, planFile: planFile).run()
    }
}

/// The shared body of `apply` and `destroy`.
struct ApplyRun {
    var global: GlobalOptions
    var change: ChangeOptions
    var autoApprove: Bool
    var destroy: Bool
    var planFile: String?

    func run() async throws {
        let context = RunContext(global)
        let interruption = Interruption(console: context.console)
        interruption.install()
        var succeeded = true
        try await reportingErrors(context.console) {
            let saved = try planFile.map { try PlanFile.read($0, sealer: context.stateKey) }
            let stack = (destroy || saved != nil) ? nil : try await context.evaluate()
            let name: String
            if let planned = saved?.stack ?? stack?.name { name = planned } else { name = try await context.stackNameForDestroy() }
            if let saved, saved.environment != global.environment, global.env != nil {
                throw CLIError("the plan is for environment '\(saved.environment)', not '\(global.environment)'")
            }
            let store = try await context.openStore()
            let workspace = RunContext.workspace(stack: name, environment: saved?.environment ?? global.environment)
            succeeded = try await context.locked(store, workspace: workspace, operation: destroy ? "destroy" : "apply", interruption: interruption) {
                let plan: Plan
                if let saved {
                    plan = saved
                } else {
                    plan = try await interruption.cancellable { try await context.plan(stack: stack, stackName: name, store: store, change: change, destroy: destroy) }
                    // With --json, stdout carries one document: the plan and the result, at the end.
                    if !global.json { try context.show(plan, limit: change.planLimit) }
                }
                guard plan.hasChanges else {
                    if global.json { try context.showApplied(plan, result: nil) }
                    return true
                }
                if saved == nil {
                    let question = destroy
                        ? "Do you really want to destroy all resources of \(name) (\(global.environment))?"
                        : "Do you want to perform these actions on \(name) (\(global.environment))?"
                    guard try context.console.confirm(question, autoApprove: autoApprove, interruption: interruption) else {
                        context.console.error("Cancelled; nothing was changed.")
                        throw ExitCode.failure
                    }
                }
                try interruption.check()
                return try await context.execute(
                    plan, store: store, parallelism: change.parallelism, exhaustionLimit: change.exhaustionLimit, interruption: interruption)
            }
        }
        if !succeeded { throw ExitCode.failure }
    }
}
