import ArgumentParser

struct ForceUnlock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "force-unlock",
        abstract: "Release a lock left behind by a run that died.",
        discussion: "Takes the lock id that the failing command printed, so only that exact lock is released."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The id of the lock to release.")
    var lockID: String

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let workspace = context.workspace(for: try await context.stackName())
            let store = try await context.openStore()
            guard let held = try await store.currentLock(workspace: workspace) else {
                context.console.output("\(workspace) is not locked.")
                return
            }
            guard held.id == lockID else { throw CLIError("lock id \(lockID) does not match the held lock: \(held)") }
            try await store.unlock(workspace: workspace, id: lockID, forced: true)
            context.console.output("Released \(held).")
        }
    }
}
