import ArgumentParser
import Foundation
import Logging
import Stratum
import StratumCore
import StratumEngine
import StratumLocal
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
        self.providers = ProviderRegistry(CLIEnvironment.current.providers.map { $0.make(work) } + [StratumBuiltinProvider()])
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
        let workspace = workspace(for: try await stackName())
        return (try await openStore(readOnly: readOnly), workspace)
    }

    /// Runs `body` holding the workspace's lock, after settling what an interrupted run left in
    /// the journal. A lease taken over from a dead or expired holder is reported.
    func locked<T: Sendable>(
        _ store: any StateStore, workspace: String, operation: String, interruption: Interruption? = nil,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let console = self.console
        let providers = self.providers
        let json = options.json
        let lock = StateLock(store: store, workspace: workspace, onTakeover: { replaced in
            console.error(console.yellow("Warning: took over the state lock of \(replaced.holder) (pid \(replaced.pid) on \(replaced.host), \(replaced.operation)): \(replaced.expiresAt <= Date() ? "its lease expired" : "its process is gone")."))
        })
        return try await lock.run(operation: operation) { _ in
            let recovery = Recovery(providers: providers, store: store, workspace: workspace)
            // Settling the journal is safe to cut short: what it does not finish stays journaled.
            let outcomes: [Recovery.Outcome]
            if let interruption {
                outcomes = try await interruption.cancellable { try await recovery.run() }
            } else {
                outcomes = try await recovery.run()
            }
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
    /// Never creates a workspace for a name that has no state (see `requireWorkspace`).
    func stackNameForDestroy() async throws -> String {
        let name = try options.stack ?? ProcessInfo.processInfo.environment["STRATUM_STACK"] ?? stackEntry().name
        try await requireWorkspace(stack: name)
        return name
    }

    /// The selected stack's name, once its workspace is known to be meant (see `requireWorkspace`).
    func stackName() async throws -> String {
        let name = try stackEntry().name
        try await requireWorkspace(stack: name)
        return name
    }

    /// Refuses, before anything is created, a workspace that only a typo would bring into being:
    /// a stack this binary does not carry (allowed only to destroy what its state still holds),
    /// or a named --env with neither a config file nor state (unless --new-env).
    func requireWorkspace(stack name: String) async throws {
        let carried = CLIEnvironment.current.stacks.contains { $0.name == name }
        let conventional = StackConfigLoader.conventionalPath(stack: name, environment: options.environment)
        let unknownEnvironment = carried && options.environmentIsNamed && options.config == nil && !options.newEnv
            && !FileManager.default.fileExists(atPath: conventional)
        guard !carried || unknownEnvironment else { return }
        if try await workspaceHasState(workspace(for: name)) { return }
        let stateLocation = options.backendURL == nil ? options.statePath : "the --backend database"
        if !carried {
            let names = CLIEnvironment.current.stacks.map(\.name).sorted().joined(separator: ", ")
            throw CLIError("no stack named '\(name)', and \(stateLocation) holds no state for it; this binary carries: \(names.isEmpty ? "none" : names)")
        }
        throw CLIError(
            "environment '\(options.environment)' of \(name) has no config file and no state: looked for \(conventional) and for state of \(workspace(for: name)) in \(stateLocation). "
                + "Check the spelling of --env, pass --config FILE, or pass --new-env to start it with the stack's defaults")
    }

    /// Whether the workspace has ever held anything; creates nothing to find out.
    func workspaceHasState(_ workspace: String) async throws -> Bool {
        if options.backendURL == nil, !FileManager.default.fileExists(atPath: options.statePath) { return false }
        let store = try await openStore(readOnly: true)
        guard try await store.workspaces().contains(workspace) else { return false }
        let snapshot = try await store.read(workspace: workspace)
        if snapshot.serial > 0 || !snapshot.resources.isEmpty { return true }
        return try await !store.pendingOperations(workspace: workspace).isEmpty
    }

    /// The ephemeral environment (`stratum up`) the current --env is of `stack`, if it is one.
    func ephemeralEnvironment(stack: String) async throws -> EphemeralEnvironment? {
        if options.backendURL == nil, !FileManager.default.fileExists(atPath: options.statePath) { return nil }
        return try await Environments(store: try await openStore(readOnly: true)).find(stack: stack, name: options.environment)
    }

    /// State is kept per stack and environment.
    func workspace(for stack: String) -> String { Self.workspace(stack: stack, environment: options.environment) }

    static func workspace(stack: String, environment: String) -> String { "\(stack)/\(environment)" }

    /// The configuration file: --config, else Stacks/<stack>.<env>.yaml if it exists.
    func configFile(for stack: String) throws -> URL? {
        if let path = options.config {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("config file \(path) does not exist") }
            guard !isDirectory.boolValue else { throw CLIError("--config \(path) is a directory; pass a YAML file, such as \(path.hasSuffix("/") ? path : path + "/")\(stack).\(options.environment).yaml") }
            guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError("config file \(path) is not readable") }
            return URL(fileURLWithPath: path)
        }
        let conventional = URL(fileURLWithPath: StackConfigLoader.conventionalPath(stack: stack, environment: options.environment))
        return FileManager.default.fileExists(atPath: conventional.path) ? conventional : nil
    }

    /// Runs the stack's body and every check that needs no provider call.
    /// The stack as declared, its GPU clusters placed (`replacePlacement`: each chosen afresh
    /// rather than kept from state), checked against the providers' schemas.
    /// `replaceClusters` names clusters to place afresh as `replacePlacement` does all; `race`
    /// races the landings of each cluster whose nodes are not in state yet.
    func evaluate(
        replacePlacement: Bool = false, replaceClusters: Set<String> = [], overrides: [String: PlacementDecision] = [:], race: Int = 1
    ) async throws -> EvaluatedStack {
        let entry = try stackEntry()
        // An ephemeral environment's globally named resources carry its suffix.
        let suffix = try await ephemeralEnvironment(stack: entry.name).map { "-\($0.name)" } ?? ""
        return try await StackNaming.$suffix.withValue(suffix) {
            try await evaluate(entry, replacePlacement: replacePlacement, replaceClusters: replaceClusters, overrides: overrides, race: race)
        }
    }

    private func evaluate(
        _ entry: StackEntry, replacePlacement: Bool, replaceClusters: Set<String>, overrides: [String: PlacementDecision], race: Int
    ) async throws -> EvaluatedStack {
        try await requireWorkspace(stack: entry.name)
        let config = try configFile(for: entry.name)
        var stack = try entry.evaluate(options.environment, config)
        if !stack.clusters.isEmpty {
            var (decisions, reports) = try await placeClusters(
                stack.clusters, stack: entry.name, replace: replacePlacement, replaceClusters: replaceClusters, overrides: overrides)
            // A race starts the next cheapest landings beside each decision not yet landed; a
            // cluster whose nodes run is never raced (its own gang has nothing to create).
            var racers: [String: [Landing]] = [:]
            if race > 1 {
                for index in reports.indices where !reports[index].landed {
                    let chosen = reports[index].decision.landing
                    reports[index].racers = Array(reports[index].ranked.filter { $0 != chosen }.prefix(race - 1))
                    racers[reports[index].cluster] = reports[index].racers
                }
            }
            let environment = options.environment
            stack = try ClusterDecisions.$current.withValue(decisions) {
                try ClusterDecisions.$racers.withValue(racers) { try entry.evaluate(environment, config) }
            }
            stack.placements = reports
        }
        try requireProviders(of: stack)
        try Planner(providers: providers).validate(stack)
        if let local = providers["local"] as? LocalProvider {
            let resources = stack.resources.filter { $0.provider == local.name }
            for note in local.notes(stack: resources) { console.progress("Note: \(note).") }
            for warning in local.warnings(stack: resources) { console.error(console.yellow("Warning: \(warning).")) }
        }
        return stack
    }

    /// Decides where each GPU cluster lands: the decision recorded in the stack's state while
    /// the request is the same and its offer not blocked, else the cheapest feasible landing of
    /// the catalogs, skipping remembered stockouts.
    func placeClusters(
        _ requests: [ClusterRequest], stack: String, replace: Bool, replaceClusters: Set<String> = [], overrides: [String: PlacementDecision] = [:]
    ) async throws -> ([String: PlacementDecision], [PlacementReport]) {
        var recorded: [String: PlacementDecision] = [:]
        // Clusters with nodes in state: placed, and running (or being replaced) there.
        var landed: Set<String> = []
        var blocked: [BlockedOffer] = []
        let now = Date()
        if options.backendURL != nil || FileManager.default.fileExists(atPath: options.statePath) {
            let store = try await openStore(readOnly: true)
            let workspace = workspace(for: stack)
            if try await store.workspaces().contains(workspace) {
                let resources = try await store.read(workspace: workspace).resources
                for (address, state) in resources where address.type == "stratum_placement" {
                    recorded[address.name] = PlacementDecision(attributes: state.attributes)
                }
                for state in resources.values {
                    for dependency in state.dependencies where dependency.type == "stratum_placement" { landed.insert(dependency.name) }
                }
            }
            blocked = try await Stockouts(store: store).active(at: now)
        }
        let placer = ClusterPlacer(catalog: try CatalogFiles.load(directory: CatalogFiles.directory(options)), blocked: blocked, now: now)
        var decisions: [String: PlacementDecision] = [:]
        var reports: [PlacementReport] = []
        for request in requests {
            let override = overrides[request.name]
            let (decision, ranking, kept) = override.map { ($0, placer.rank(request), false) }
                ?? placer.decide(
                    request, recorded: recorded[request.name], replace: replace || replaceClusters.contains(request.name), landed: landed.contains(request.name))
            guard let decision else { throw NoPlacement(cluster: request.name, request: request.summary, excluded: ranking.excluded) }
            decisions[request.name] = decision
            var report = PlacementReport(
                cluster: request.name, request: request.summary, decision: decision, kept: kept, feasible: ranking.landings.count, excluded: ranking.excluded)
            // A race picks from the ranking of a decision made here, never beside an override.
            if override == nil { report.ranked = ranking.landings }
            report.landed = landed.contains(request.name)
            reports.append(report)
        }
        return (decisions, reports)
    }

    /// Fails when the stack places resources on a provider this binary does not carry, saying
    /// how a package links one: each cloud is a library product of its own.
    func requireProviders(of stack: EvaluatedStack) throws {
        try requireProviders(stack.resources.map(\.provider), "stack '\(stack.name)' uses")
    }

    /// The same for what `users` (e.g. "stack 'x' uses") names: the providers it needs.
    func requireProviders(_ needed: [String], _ users: String) throws {
        let missing = Set(needed).filter { providers[$0] == nil }.sorted()
        guard let first = missing.first else { return }
        let carried = providers.providers.keys.filter { $0 != StratumBuiltinProvider.providerName }.sorted().joined(separator: ", ")
        let names = missing.map { "'\($0)'" }.joined(separator: ", ")
        throw CLIError("""
            \(users) the provider\(missing.count == 1 ? "" : "s") \(names), which this binary does not carry (it has: \(carried)). \
            Each cloud is a library product of Stratum: depend on that cloud's product and list its provider in \
            StratumCLI.main(providers:). `stratum init DIR --cloud \(first)` scaffolds a package wired that way; \
            docs/getting-started.md shows the wiring.
            """)
    }

    /// Plans the stack (or its destruction) against refreshed state. Call with the lock held.
    /// `given` is a refresh already made of the workspace's resources (reconcile classifies
    /// drift with it): the plan is made from it instead of refreshing again.
    func plan(
        stack: EvaluatedStack?, stackName: String, store: any StateStore, change: ChangeOptions, destroy: Bool, refreshed given: RefreshResult? = nil
    ) async throws -> Plan {
        let snapshot = try await store.read(workspace: workspace(for: stackName))
        let scope = try change.scope()
        // What the scope can name: the stack's resources, and (for destroy, only) what state holds.
        let known = Set(snapshot.resources.keys).union(destroy ? [] : stack?.resources.map(\.address) ?? [])
        try Self.checkScope(scope, known: known, destroy: destroy)
        try requireProviders(snapshot.resources.values.map(\.provider), "the state of stack '\(stackName)' holds resources of")
        var refreshed: RefreshResult? = given
        if given == nil, change.refresh, !snapshot.resources.isEmpty {
            if !options.json { console.progress("Refreshing \(snapshot.resources.count) resource(s)...") }
            let clock = ContinuousClock()
            let start = clock.now
            refreshed = try await Refresher(providers: providers).refresh(snapshot.resources)
            logger.debug("refreshed \(snapshot.resources.count) resources with \(refreshed?.readCalls ?? 0) read calls in \(clock.now - start)")
        }
        logger.debug("planning \(workspace(for: stackName)) at serial \(snapshot.serial), lineage \(snapshot.lineage)")
        let planner = Planner(providers: providers)
        var plan: Plan
        if destroy || stack == nil {
            plan = planner.destroyPlan(stackName: stackName, environment: options.environment, snapshot: snapshot, refreshed: refreshed, scope: scope, now: Date())
        } else if let stack {
            plan = try planner.plan(stack: stack, snapshot: snapshot, refreshed: refreshed, scope: scope, now: Date())
        } else {
            throw CLIError("no stack to plan")
        }
        let cost = PlanCosting(providers: providers, catalog: try CatalogFiles.load(directory: CatalogFiles.directory(options)))
            .cost(of: plan, budgets: destroy ? [] : stack?.budgets ?? [], state: refreshed?.existing ?? snapshot.resources)
        plan.cost = cost
        if !destroy { plan.churn = stack?.churn }
        if let stack, !stack.clusters.isEmpty, !destroy {
            plan.placements = stack.placements
            // Each cluster's nodes are a gang; in a race, so is each racer's copy (named after it).
            var gangs: [Gang] = []
            var races: [Race] = []
            for cluster in stack.clusters {
                let placement = ResourceAddress(type: "stratum_placement", name: cluster.name)
                let members = Dictionary(grouping: stack.resources.filter { $0.dependencies.contains(placement) }, by: \.address.name)
                gangs += members.keys.sorted().map { Gang(name: $0, members: members[$0]!.map(\.address)) }
                if members.count > 1 {
                    // The decision's own copy first, then the racers by number.
                    let number = { (name: String) in ClusterDecisions.racer(name).flatMap { $0.cluster == cluster.name ? $0.number : nil } ?? 0 }
                    let own = stack.placements.first { $0.cluster == cluster.name }?.decision.alias ?? cluster.name
                    races.append(Race(cluster: cluster.name, gangs: [own] + members.keys.filter { $0 != own }.sorted { number($0) < number($1) }))
                }
            }
            plan.gangs = gangs
            if !races.isEmpty { plan.races = races }
        }
        for warning in try cost.checkBudgets(isDestroy: plan.isDestroy) { console.error(console.yellow("Warning: \(warning).")) }
        if !scope.isEmpty, plan.changes.isEmpty, plan.vanished.isEmpty, !known.isEmpty {
            let widening = destroy ? "destroying a target also destroys what depends on it; keeping a resource keeps what it needs"
                : "a target brings what it needs; excluding a resource also leaves out what depends on it"
            throw CLIError("\(Self.scopeText(scope)) \(scope.targets.count + scope.excludes.count == 1 ? "leaves" : "leave") no resource in scope: all \(known.count) resource(s) are left out (\(widening))")
        }
        return plan
    }

    /// Refuses --target and --exclude patterns that match nothing the command knows of.
    static func checkScope(_ scope: PlanScope, known: Set<ResourceAddress>, destroy: Bool) throws {
        let (targets, excludes) = scope.unmatched(in: known)
        let misses = targets.map { "--target \($0)" } + excludes.map { "--exclude \($0)" }
        guard !misses.isEmpty else { return }
        let place = destroy ? "the state" : "the stack or its state"
        var message = "\(misses.joined(separator: ", ")) match\(misses.count == 1 ? "es" : "") no resource in \(place)"
        let names = Set(known.map(\.group.description)).union(known.map(\.description)).sorted()
        let suggestions = (targets + excludes).compactMap { pattern in closest(to: pattern.description, among: names) }
        if known.isEmpty {
            message += " (it has none)"
        } else {
            if !suggestions.isEmpty { message += "; did you mean \(suggestions.joined(separator: ", "))?" }
            message += " (`stratum \(destroy ? "state list" : "graph")` lists the addresses)"
        }
        throw CLIError(message)
    }

    /// The name nearest to `text` by edit distance, if it is near enough to be a typo of it.
    static func closest(to text: String, among names: [String]) -> String? {
        // Levenshtein distance, one row at a time.
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var row = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var diagonal = row[0]
                row[0] = i + 1
                for (j, y) in b.enumerated() {
                    let above = row[j + 1]
                    row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x == y ? 0 : 1))
                    diagonal = above
                }
            }
            return row[b.count]
        }
        let target = Array(text)
        let scored = names.map { (name: $0, distance: distance(target, Array($0))) }
        guard let best = scored.min(by: { ($0.distance, $0.name) < ($1.distance, $1.name) }) else { return nil }
        return best.distance <= max(2, target.count / 4) ? best.name : nil
    }

    static func scopeText(_ scope: PlanScope) -> String {
        (scope.targets.map { "--target \($0)" } + scope.excludes.map { "--exclude \($0)" }).joined(separator: " ")
    }

    /// Prints the plan as text (the first `limit` changes, then counts) or JSON (all of it).
    func show(_ plan: Plan, limit: Int? = PlanRenderer.defaultLimit) throws {
        if options.json {
            console.output(String(decoding: try PlanJSON(plan: plan, version: StratumVersion.current).encoded(pretty: true), as: UTF8.self))
        } else {
            console.output(PlanRenderer.render(plan, color: console.color, limit: limit))
        }
    }

    /// `apply --json`: the plan (Terraform's plan JSON shape) and what happened to each step.
    func showApplied(_ plan: Plan, result: ApplyResult?) throws {
        struct Failure: Encodable { var address: String; var step: String; var error: String }
        struct Skip: Encodable { var address: String; var step: String; var because: String }
        struct Step: Encodable { var address: String; var step: String }
        struct Outcome: Encodable {
            var ok: Bool
            var serial: Int
            var added: Int, changed: Int, destroyed: Int
            var failed: [Failure]
            var skipped: [Skip]
            /// Steps never started: after an interrupt, or creates after resource exhaustion.
            var notStarted: [Step]
            /// Why steps were not started: "interrupted" or the exhaustion.
            var stoppedBecause: String?

            enum CodingKeys: String, CodingKey {
                case ok, serial, added, changed, destroyed, failed, skipped
                case notStarted = "not_started", stoppedBecause = "stopped_because"
            }
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
            skipped: (result?.skipped ?? []).map { Skip(address: $0.step.address.description, step: $0.step.kind.rawValue, because: $0.cause.description) },
            notStarted: (result?.notStarted ?? []).map { Step(address: $0.address.description, step: $0.kind.rawValue) },
            stoppedBecause: result.flatMap { $0.stopped ? "interrupted" : $0.exhaustion?.description })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let document = Document(plan: PlanJSON(plan: plan, version: StratumVersion.current), result: outcome)
        console.output(String(decoding: try encoder.encode(document), as: UTF8.self))
    }

    /// Applies `plan` with progress lines; returns whether everything succeeded. On an
    /// interrupt the steps in flight finish, none starts after, and `Interrupted` is thrown.
    /// With `failover`, a run whose only failures are broken gangs (which the caller moves
    /// elsewhere) prints no failure summary.
    func execute(
        _ plan: Plan, store: any StateStore, parallelism: Int, exhaustionLimit: Int = 3, interruption: Interruption? = nil, failover: Bool = false,
        raceWon: (@Sendable (String, String) async throws -> Void)? = nil
    ) async throws -> (ok: Bool, result: ApplyResult) {
        let steps = plan.actionable.reduce(0) { $0 + ($1.action == .replace ? 2 : 1) }
        let observer = ProgressObserver(console: console, logger: logger, total: steps, toStderr: options.json)
        let reminder = Task { await observer.reportStillRunning(every: .seconds(10)) }
        defer { reminder.cancel() }
        interruption?.inFlight = { observer.inFlight }
        var executor = Executor(
            providers: providers, store: store, workspace: Self.workspace(stack: plan.stack, environment: plan.environment), parallelism: parallelism,
            observer: observer, exhaustionLimit: exhaustionLimit, shouldStop: { interruption?.isRequested ?? false })
        executor.raceWon = raceWon
        // An ephemeral environment's resources carry its owner and expiry.
        if let environment = try await Environments(store: store).find(stack: plan.stack, name: plan.environment) {
            executor.environmentOwner = environment.owner
            executor.environmentExpires = environment.expiresAt
        }
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await executor.apply(plan)
        let elapsed = (clock.now - start).seconds
        let counts = result.counts
        // Broken gangs and races are reported by the failover that follows, not here.
        if failover, !result.races.isEmpty || (!result.ok && result.onlyGangFailures) { return (result.ok, result) }
        if options.json { try showApplied(plan, result: result) }
        if result.stopped, let signal = interruption?.signal {
            let failed = result.failed.isEmpty ? "" : ", \(result.failed.count) failed"
            let skipped = result.skipped.isEmpty ? "" : ", \(result.skipped.count) skipped after a failure"
            throw Interrupted(
                signal: signal,
                message: "Interrupted by \(Interruption.name(signal)): \(result.succeeded.count) of \(steps) operation(s) done\(failed)\(skipped), \(result.notStarted.count) not started; "
                    + "what finished is recorded in state. Run `\(resumeCommand(plan))` to finish.")
        }
        if options.json { return (result.ok, result) }
        let verb = plan.isDestroy ? "Destroy" : "Apply"
        if result.ok {
            console.output(console.bold("\n\(verb) complete! Resources: \(counts.added) added, \(counts.changed) changed, \(counts.destroyed) destroyed.") + String(format: " (%.1fs)", elapsed))
            return (true, result)
        }
        let notStarted = result.notStarted.isEmpty ? "" : ", \(result.notStarted.count) not started"
        console.error("\n\(verb) failed: \(result.failed.count) failed, \(result.skipped.count) not attempted\(notStarted), \(result.succeeded.count) succeeded (\(counts.added) added, \(counts.changed) changed, \(counts.destroyed) destroyed).")
        listBounded(result.failed) { "  ✗ \($0.step.address): \(describe($0.error))" }
        listBounded(result.skipped) { "  - \($0.step.address): not attempted because \($0.cause) failed" }
        let creates = result.notStarted.filter(\.kind.creates).count
        if let exhaustion = result.exhaustion, creates > 0 {
            let remedy = exhaustion.kind == .quota ? "raise the quota (or use another region or account)" : "wait for capacity, or use another zone, region or instance type"
            console.error("Stopped starting creates: \(exhaustion); \(creates) create(s) were not attempted, as they would fail the same way. \(remedy.prefix(1).uppercased() + remedy.dropFirst()), then run `\(resumeCommand(plan))`.")
        }
        console.error("Finished work is recorded in state; fix the cause and run apply again.")
        return (false, result)
    }

    /// Prints the first lines of a long list and how many more there are.
    private func listBounded<T>(_ items: [T], limit: Int = 20, _ line: (T) -> String) {
        for item in items.prefix(limit) { console.error(line(item)) }
        if items.count > limit { console.error("  ... and \(items.count - limit) more") }
    }

    /// The command that finishes what `plan` started.
    func resumeCommand(_ plan: Plan) -> String {
        let env = plan.environment == "dev" && !options.environmentIsNamed ? "" : " --env \(plan.environment)"
        return "stratum \(plan.isDestroy ? "destroy" : "apply") --stack \(plan.stack)\(env)"
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
    } catch let interrupted as Interrupted {
        console.error(interrupted.message)
        throw ExitCode(128 + interrupted.signal)
    } catch {
        console.error("Error: \(describe(error))")
        throw ExitCode.failure
    }
}
