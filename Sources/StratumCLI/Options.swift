import ArgumentParser
import Foundation
import Logging
import StratumCore
import StratumEngine

/// Options every command that works on a stack takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The stack to work on (see `stratum stacks`). Default: STRATUM_STACK, or the only stack there is.", valueName: "NAME"))
    var stack: String?

    @Option(name: .long, help: ArgumentHelp("The environment; picks Stacks/<stack>.<env>.yaml and separates state. Default: STRATUM_ENV or 'dev'.", valueName: "ENV"))
    var env: String?

    @Option(name: .long, help: ArgumentHelp("Read stack configuration from this YAML file instead of Stacks/<stack>.<env>.yaml.", valueName: "FILE"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The state file. Default: STRATUM_STATE or .stratum/state.db.", valueName: "PATH"))
    var state: String?

    @Option(name: .long, help: ArgumentHelp("Keep state in PostgreSQL instead of the SQLite file: postgres://user@host:5432/db (password from the URL or PGPASSWORD). Default: STRATUM_BACKEND.", valueName: "URL"))
    var backend: String?

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "LEVEL"))
    var logLevel: Logger.Level = .warning

    @Flag(name: .long, help: "Do not color the output.")
    var noColor = false

    @Flag(name: .long, help: "Start an environment that has neither a config file nor state yet, with the stack's default configuration. Without it, such an --env is refused as a likely typo.")
    var newEnv = false

    /// Whether the environment was named (--env or STRATUM_ENV) rather than the default.
    var environmentIsNamed: Bool { env != nil || ProcessInfo.processInfo.environment["STRATUM_ENV"] != nil }

    var environment: String { env ?? ProcessInfo.processInfo.environment["STRATUM_ENV"] ?? "dev" }

    /// The PostgreSQL URL, when state lives there.
    var backendURL: String? {
        let value = backend ?? ProcessInfo.processInfo.environment["STRATUM_BACKEND"]
        return value?.isEmpty == false ? value : nil
    }

    var statePath: String {
        state ?? ProcessInfo.processInfo.environment["STRATUM_STATE"] ?? ".stratum/state.db"
    }

    /// The key file that seals secrets, beside the state file (unless STRATUM_STATE_KEY is set).
    var keyFilePath: String { workDirectory.appendingPathComponent("state.key").path }

    /// Where providers keep their files: beside the state file.
    var workDirectory: URL { URL(fileURLWithPath: statePath).deletingLastPathComponent() }

    var color: Bool { !noColor && !json && isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Options of commands that plan changes.
struct ChangeOptions: ParsableArguments {
    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("Only this resource and what it needs (repeatable). `type.name` selects every node of a pool.", valueName: "ADDR"))
    var target: [String] = []

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("Leave this resource and what needs it alone (repeatable).", valueName: "ADDR"))
    var exclude: [String] = []

    @Option(name: .long, help: "How many provider operations run at once.")
    var parallelism = 10

    @Option(name: .long, help: ArgumentHelp("Start no more creates once this many in a row failed with the same lack of capacity or quota (0: never stop).", valueName: "N"))
    var exhaustionLimit = 3

    @Flag(name: .long, inversion: .prefixedNo, help: "Read live state from the providers before planning.")
    var refresh = true

    @Flag(name: .long, help: "Choose where each GPU cluster lands afresh (the cheapest feasible offer now) instead of keeping the decision recorded in state.")
    var replacePlacement = false

    @Option(name: .long, help: ArgumentHelp("How long an offer that failed for lack of capacity or quota is skipped by later runs (`stratum catalog --blocked` lists them).", valueName: "MINUTES"))
    var stockoutMinutes: Double = 30

    @Flag(name: .long, help: ArgumentHelp("Print every change of a large plan; by default the first \(PlanRenderer.defaultLimit) are shown, then counts per type and action (--json always has all)."))
    var full = false

    /// How many changes a text plan shows in full.
    var planLimit: Int? { full ? nil : PlanRenderer.defaultLimit }

    func scope() throws -> PlanScope {
        func parse(_ texts: [String], flag: String) throws -> [ResourceAddress] {
            try texts.map { text in
                guard let address = ResourceAddress(parsing: text) else {
                    throw ValidationError("--\(flag) '\(text)' is not a resource address (expected type.name or type.name[0])")
                }
                return address
            }
        }
        return PlanScope(targets: try parse(target, flag: "target"), excludes: try parse(exclude, flag: "exclude"))
    }

    /// Runs before the command does anything (so a malformed address never takes the lock).
    func validate() throws {
        guard parallelism >= 1 else { throw ValidationError("--parallelism must be at least 1") }
        guard exhaustionLimit >= 0 else { throw ValidationError("--exhaustion-limit must be 0 or more") }
        guard stockoutMinutes >= 1, stockoutMinutes <= 7 * 24 * 60 else { throw ValidationError("--stockout-minutes must be from 1 to a week (10080)") }
        _ = try scope()
    }
}

