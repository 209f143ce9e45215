import ArgumentParser
import Foundation
@_exported import Stratum
import StratumCore
import StratumLocal

extension ProviderFactory {
    /// The embedded Local provider, keeping its files under `<work>/local`.
    public static let local = ProviderFactory { LocalProvider(root: $0.appendingPathComponent("local")) }
}

/// The stacks and providers a `stratum` binary carries.
public struct CLIEnvironment: Sendable {
    public var stacks: [StackEntry]
    public var providers: [ProviderFactory]

    @TaskLocal static var current = CLIEnvironment(stacks: [], providers: [.local])
}

/// The Stratum command line. A user's stack package calls this from its `main`:
///
/// ```swift
/// import StratumCLI
/// @main struct Main { static func main() async { await StratumCLI.main(stacks: [MyStack.self]) } }
/// ```
public enum StratumCLI {
    public static func main(stacks: [any Stack.Type], providers: [ProviderFactory] = [.local], arguments: [String]? = nil) async {
        let environment = CLIEnvironment(stacks: stacks.map { StackEntry($0) }, providers: providers)
        await CLIEnvironment.$current.withValue(environment) {
            await StratumCommand.main(arguments)
        }
    }
}

struct StratumCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stratum",
        abstract: "Declare GPU infrastructure in Swift; plan it, apply it, keep it in shape.",
        discussion: """
            A stack is a Swift type listing resources. `plan` compares it with recorded state and \
            with what really exists, and shows what would change; `apply` makes it so; `destroy` \
            removes everything the stack created.

            Typical session:
              stratum stacks                               # which stacks this binary carries
              stratum plan  --stack local-demo             # what would change
              stratum apply --stack local-demo             # make it so (asks first)
              stratum status --stack local-demo            # each node's health and training progress
              stratum reconcile --stack local-demo         # find drift and heal it (cron: exit 0/2/1)
              stratum destroy --stack local-demo           # tear it all down

            State lives in .stratum/state.db (or --state / STRATUM_STATE).
            """,
        subcommands: [
            Init.self, Stacks.self, Validate.self, PlanCommand.self, Apply.self, Destroy.self, Refresh.self, Output.self,
            Status.self, Reconcile.self, Chaos.self, Up.self, ListEnvironments.self, Down.self, Sweep.self, Graph.self, StateCommand.self, ForceUnlock.self, Catalog.self,
        ]
    )
}
