import ArgumentParser
import Foundation
import Logging
import Stratum
import StratumCore
import StratumEngine
import StratumPostgres
import StratumState

/// What one command invocation works with: the stack, its state and its providers.
struct RunContext {
    let options: GlobalOptions
    let console: Console
    let providers: ProviderRegistry
    /// Diagnostics on stderr at --log-level; never carries attribute values.
    let logger: Logger

    init(_ options: GlobalOptions) {
        self.options = options
        self.console = Console(color: options.color)
        var logger = Logger(label: "stratum") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = options.logLevel
        self.logger = logger
        let work = options.workDirectory
        self.providers = ProviderRegistry(CLIEnvironment.current.providers.map { $0.make(work) })
    }

    /// The key that seals secrets in state (and in saved plans).
    var stateKey: StateKey { StateKey.resolve(keyFile: options.keyFilePath) }

    /// The state store. `readOnly` (commands that only read) opens the SQLite file without
    /// creating or changing anything, so it also works on a read-only file or directory.
    func openStore(readOnly: Bool = false) async throws -> any StateStore {
        if let url = options.backendURL {
            guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                throw CLIError("--backend must be a postgres:// URL (the default backend is the SQLite file at --state)")
            }
            return try await PostgresStateStore.connect(url: url, sealer: stateKey, logger: logger)
        }
        if readOnly { return try SQLiteStateStore.openForReading(path: options.statePath, sealer: stateKey) }
        return try SQLiteStateStore(path: options.statePath, sealer: stateKey)
    }

    /// The store and the workspace of the selected stack and environment.
    func openWorkspace(readOnly: Bool = false) async throws -> (any StateStore, String) {
        let workspace = workspace(for: try stackEntry().name)
        return (try await openStore(readOnly: readOnly), workspace)
    }

    /// Runs `body` holding the workspace's lock, after settling what an interrupted run left in
    /// the journal. A lease taken over from a dead or expired holder is reported.
    func locked<T: Sendable>(
        _ store: any StateStore, workspace: String, operation: String,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let console = self.console
        let providers = self.providers
        let json = options.json
        let lock = StateLock(store: store, workspace: workspace, onTakeover: { replaced in
            console.error(console.yellow("Warning: took over the state lock of \(replaced.holder) (pid \(replaced.pid) on \(replaced.host), \(replaced.operation)): \(replaced.expiresAt <= Date() ? "its lease expired" : "its process is gone")."))
        })
        return try await lock.run(operation: operation) { _ in
            let outcomes = try await Recovery(providers: providers, store: store, workspace: workspace).run()
            if !outcomes.isEmpty, !json { RunContext.report(outcomes, console: console) }
            for case .unsettled(let address, let reason) in outcomes {
                throw CLIError("an interrupted operation on \(address) could not be settled (\(reason)); nothing else was done. Run again when the provider is reachable, or see `stratum state pending`")
            }
            return try await body()
        }
    }

    static func report(_ outcomes: [Recovery.Outcome], console: Console) {
        console.progress("Recovering \(outcomes.count) interrupted operation(s) from the journal:")
        for outcome in outcomes {
            switch outcome {
            case .adopted(let address, let id): console.progress("  \(address): the interrupted create had succeeded; adopted \(id) into state")
            case .confirmedGone(let address): console.progress("  \(address): nothing was left behind; settled")
            case .refreshed(let address): console.progress("  \(address): re-read from the provider; state updated")
            case .unsettled(let address, let reason): console.error("  \(address): could not be settled: \(reason)")
            }
        }
    }

    /// The stack named by --stack / STRATUM_STACK, or the only one.
    func stackEntry() throws -> StackEntry {
        let stacks = CLIEnvironment.current.stacks
        let wanted = options.stack ?? ProcessInfo.processInfo.environment["STRATUM_STACK"]
        if let wanted {
            guard let entry = stacks.first(where: { $0.name == wanted }) else {
                let names = stacks.map(\.name).sorted().joined(separator: ", ")
                throw CLIError("no stack named '\(wanted)'; this binary carries: \(names.isEmpty ? "none" : names)")
            }
            return entry
        }
        guard stacks.count == 1, let only = stacks.first else {
            throw CLIError("name a stack with --stack (one of: \(stacks.map(\.name).sorted().joined(separator: ", ")))")
        }
        return only
    }

    /// The stack to work on without evaluating it (destroy, plan --destroy): a name given with
    /// --stack may be one whose code is gone, so its leftover resources can still be destroyed.
    func stackNameForDestroy() throws -> String {
        if let named = options.stack ?? ProcessInfo.processInfo.environment["STRATUM_STACK"] { return named }
        return try stackEntry().name
    }

    /// State is kept per stack and environment.
    func workspace(for stack: String) -> String { Self.workspace(stack: stack, environment: options.environment) }

    static func workspace(stack: String, environment: String) -> String { "\(stack)/\(environment)" }

    /// The configuration file: --config, else Stacks/<stack>.<env>.yaml if it exists.
    func configFile(for stack: String) throws -> URL? {
        if let path = options.config {
            guard FileManager.default.fileExists(atPath: path) else { throw CLIError("config file \(path) does not exist") }
            return URL(fileURLWithPath: path)
        }
        let conventional = URL(fileURLWithPath: "Stacks/\(stack).\(options.environment).yaml")
        return FileManager.default.fileExists(atPath: conventional.path) ? conventional : nil
    }

    /// Runs the stack's body and every check that needs no provider call.
    func evaluate() throws -> EvaluatedStack {
        let entry = try stackEntry()
        let stack = try entry.evaluate(options.environment, try configFile(for: entry.name))
        try Planner(providers: providers).validate(stack)
        return stack
    }

    /// Plans the stack (or its destruction) against refreshed state. Call with the lock held.
    func plan(stack: EvaluatedStack?, stackName: String, store: any StateStore, change: ChangeOptions, destroy: Bool) async throws -> Plan {
        let snapshot = try await store.read(workspace: workspace(for: stackName))
        var refreshed: RefreshResult?
        if change.refresh, !snapshot.resources.isEmpty {
            if !options.json { console.progress("Refreshing \(snapshot.resources.count) resource(s)...") }
            let clock = ContinuousClock()
            let start = clock.now
            refreshed = try await Refresher(providers: providers).refresh(snapshot.resources)
            logger.debug("refreshed \(snapshot.resources.count) resources with \(refreshed?.readCalls ?? 0) read calls in \(clock.now - start)")
        }
        logger.debug("planning \(workspace(for: stackName)) at serial \(snapshot.serial), lineage \(snapshot.lineage)")
        let planner = Planner(providers: providers)
        if destroy || stack == nil {
            return planner.destroyPlan(stackName: stackName, environment: options.environment, snapshot: snapshot, refreshed: refreshed, scope: try change.scope(), now: Date())
        }
        guard let stack else { throw CLIError("no stack to plan") }
        return try planner.plan(stack: stack, snapshot: snapshot, refreshed: refreshed, scope: try change.scope(), now: Date())
    }

    /// Prints the plan as text or JSON.
    func show(_ plan: Plan) throws {
        if options.json {
            console.output(String(decoding: try PlanJSON(plan: plan, version: StratumVersion.current).encoded(pretty: true), as: UTF8.self))
        } else {
            console.output(PlanRenderer.render(plan, color: console.color))
        }
    }

    /// `apply --json`: the plan (Terraform's plan JSON shape) and what happened to each step.
    func showApplied(_ plan: Plan, result: ApplyResult?) throws {
        struct Failure: Encodable { var address: String; var step: String; var error: String }
        struct Skip: Encodable { var address: String; var step: String; var because: String }
        struct Outcome: Encodable {
            var ok: Bool
            var serial: Int
            var added: Int, changed: Int, destroyed: Int
            var failed: [Failure]
            var skipped: [Skip]
        }
        struct Document: Encodable {
            var plan: PlanJSON
            var result: Outcome
        }
        let counts = result?.counts ?? (added: 0, changed: 0, destroyed: 0)
        let outcome = Outcome(
            ok: result?.ok ?? true, serial: result?.serial ?? plan.serial,
            added: counts.added, changed: counts.changed, destroyed: counts.destroyed,
            failed: (result?.failed ?? []).map { Failure(address: $0.step.address.description, step: $0.step.kind.rawValue, error: describe($0.error)) },
            skipped: (result?.skipped ?? []).map { Skip(address: $0.step.address.description, step: $0.step.kind.rawValue, because: $0.cause.description) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let document = Document(plan: PlanJSON(plan: plan, version: StratumVersion.current), result: outcome)
        console.output(String(decoding: try encoder.encode(document), as: UTF8.self))
    }

    /// Applies `plan` with progress lines; returns whether everything succeeded.
    func execute(_ plan: Plan, store: any StateStore, parallelism: Int) async throws -> Bool {
        let steps = plan.actionable.reduce(0) { $0 + ($1.action == .replace ? 2 : 1) }
        let observer = ProgressObserver(console: console, logger: logger, total: steps, toStderr: options.json)
        let reminder = Task { await observer.reportStillRunning(every: .seconds(10)) }
        defer { reminder.cancel() }
        let executor = Executor(providers: providers, store: store, workspace: Self.workspace(stack: plan.stack, environment: plan.environment), parallelism: parallelism, observer: observer)
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await executor.apply(plan)
        let elapsed = (clock.now - start).seconds
        let counts = result.counts
        if options.json {
            try showApplied(plan, result: result)
            return result.ok
        }
        let verb = plan.isDestroy ? "Destroy" : "Apply"
        if result.ok {
            console.output(console.bold("\n\(verb) complete! Resources: \(counts.added) added, \(counts.changed) changed, \(counts.destroyed) destroyed.") + String(format: " (%.1fs)", elapsed))
            return true
        }
        console.error("\n\(verb) failed: \(result.failed.count) failed, \(result.skipped.count) not attempted, \(result.succeeded.count) succeeded (\(counts.added) added, \(counts.changed) changed, \(counts.destroyed) destroyed).")
        for (step, error) in result.failed {
            console.error("  ✗ \(step.address): \(describe(error))")
        }
        for (step, cause) in result.skipped {
            console.error("  - \(step.address): not attempted because \(cause) failed")
        }
        console.error("Finished work is recorded in state; fix the cause and run apply again.")
        return false
    }
}

/// A plain error the CLI prints as it is.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum StratumVersion {
    static let current = "0.1.0"
}

/// One line for any error, with the cloud's own message.
func describe(_ error: any Error) -> String {
    String(describing: error)
}

/// Runs a command body, printing any error once and exiting 1.
func reportingErrors(_ console: Console, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let exit as ExitCode {
        throw exit
    } catch let error as ArgumentParser.ValidationError {
        throw error
    } catch {
        console.error("Error: \(describe(error))")
        throw ExitCode.failure
    }
}
