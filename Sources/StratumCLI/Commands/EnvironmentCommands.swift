import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumState

/// `30s`, `10m`, `6h`, `2d` (or a number of seconds) as seconds, with the units `units` names;
/// the caller checks the range.
func durationSeconds(_ text: String, option: String, units: String = "smhd") throws -> Double {
    let scales: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var number = text.trimmingCharacters(in: .whitespaces)
    var unit = 1.0
    if let last = number.last, units.contains(last), let scale = scales[last] {
        unit = scale
        number.removeLast()
    }
    guard let value = Double(number), value.isFinite else {
        let names = units.map(String.init)
        let examples: [Character: String] = ["s": "30s", "m": "10m", "h": "6h", "d": "2d"]
        throw ValidationError(
            "\(option) '\(text)' is not a duration: a number of seconds, or with \(names.dropLast().joined(separator: ", ")) or \(names.last ?? "s") "
                + "(\(units.compactMap { examples[$0] }.joined(separator: ", ")))")
    }
    return value * unit
}

/// How long ago or ahead `date` is from `now`, in one unit: `3h`, `2d`, `45m`, `10s`.
func roughly(_ seconds: Double) -> String {
    let s = abs(seconds)
    if s < 120 { return "\(Int(s))s" }
    if s < 7200 { return "\(Int(s / 60))m" }
    if s < 172_800 { return "\(Int(s / 3600))h" }
    return "\(Int(s / 86400))d"
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an ephemeral environment: a copy of a stack that cleans itself up.",
        discussion: """
            `stratum up --stack S --env NAME --ttl 6h` applies the stack in a workspace of its \
            own (S/NAME), with the stack's default configuration (or --config). Names that are \
            global on a cloud (buckets, placement groups) carry the suffix -NAME, and every cloud \
            resource it makes is tagged with its owner (--owner, default $USER) and expiry. \
            Running `up` again on the same environment applies changes and extends the expiry.

            `stratum ls` lists environments, `stratum down NAME` destroys one, and `stratum \
            sweep` destroys every expired one (run it from cron).
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("How long the environment lives before `stratum sweep` destroys it (30m, 6h, 2d).", valueName: "DURATION"))
    var ttl: String

    @Option(help: ArgumentHelp("Who the environment is for (default: $USER).", valueName: "NAME"))
    var owner: String?

    @Option(help: "How many provider operations run at once.")
    var parallelism = 10

    func validate() throws {
        let seconds = try durationSeconds(ttl, option: "--ttl")
        guard seconds >= 60, seconds <= 90 * 86400 else { throw ValidationError("--ttl must be from 1m to 90d (got \(ttl))") }
        guard global.env != nil else { throw ValidationError("name the environment: stratum up --stack S --env NAME --ttl 6h") }
        guard !["dev", "prod", "production", "staging"].contains(global.environment) else {
            throw ValidationError("'\(global.environment)' names a long-lived environment; an ephemeral one takes a name of its own (e.g. --env \(NSUserName())-exp1)")
        }
    }

    func run() async throws {
        var options = global
        options.newEnv = true
        let context = RunContext(options)
        let now = Date()
        try await reportingErrors(context.console) {
            let name = try context.stackEntry().name
            let store = try await context.openStore()
            let environments = Environments(store: store)
            let existing = try await environments.find(stack: name, name: options.environment)
            if existing == nil, try await context.workspaceHasState(context.workspace(for: name)) {
                throw CLIError("environment '\(options.environment)' of \(name) already has state and is not ephemeral; `up` makes new environments (pick another --env)")
            }
            let who = owner ?? existing?.owner ?? ProcessInfo.processInfo.environment["USER"] ?? NSUserName()
            let environment = EphemeralEnvironment(
                stack: name, name: options.environment, owner: who, createdAt: existing?.createdAt ?? now,
                expiresAt: now.addingTimeInterval(try durationSeconds(ttl, option: "--ttl")))
            // Recorded first: what a failed apply leaves is still found, and swept, by its expiry.
            try await environments.record(environment, at: now)
            context.console.progress(
                "\(existing == nil ? "Creating" : "Updating") \(environment.workspace) for \(who), expiring \(ISODates.string(environment.expiresAt)) (in \(roughly(environment.expiresAt.timeIntervalSince(now)))).")
        }
        let change = try ChangeOptions.parse(["--parallelism", "\(parallelism)"])
        try await ApplyRun(global: options, change: change, autoApprove: true, destroy: false).run()
    }
}

struct ListEnvironments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List environments: owner, age, expiry, resources and cost per hour.",
        discussion: "Every workspace of the state, ephemeral (`stratum up`) or not; --json prints them as a JSON array."
    )

    @OptionGroup var global: GlobalOptions

    struct Row: Encodable {
        var stack: String
        var environment: String
        var ephemeral: Bool
        var owner: String?
        var created_at: String?
        var expires_at: String?
        var expired: Bool
        var resources: Int
        var hourly_cost: Double
        var unpriced: Int
    }

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            if global.backendURL == nil, !FileManager.default.fileExists(atPath: global.statePath) {
                context.console.output(global.json ? "[]" : "No environments: \(global.statePath) does not exist yet.")
                return
            }
            let store = try await context.openStore(readOnly: true)
            let ephemeral = Dictionary(try await Environments(store: store).all().map { ($0.workspace, $0) }, uniquingKeysWith: { a, _ in a })
            let costing = PlanCosting(providers: context.providers, catalog: try CatalogFiles.load(directory: CatalogFiles.directory(global)))
            let now = Date()
            var rows: [Row] = []
            for workspace in try await store.workspaces().sorted() where !workspace.hasPrefix("_stratum/") {
                let parts = workspace.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                let snapshot = try await store.read(workspace: workspace)
                let environment = ephemeral[workspace]
                guard !snapshot.resources.isEmpty || environment != nil else { continue }
                let empty = Plan(stack: parts[0], environment: parts[1], lineage: snapshot.lineage, serial: snapshot.serial, createdAt: now, changes: [])
                let cost = costing.cost(of: empty, state: snapshot.resources)
                let unpriced = snapshot.resources.values.filter { resource in
                    guard let billing = context.providers.kind(provider: resource.provider, type: resource.type)?.billing(resource.attributes, region: resource.region)
                    else { return false }
                    return costing.price(billing, cloud: resource.provider).hourly == nil
                }.count
                rows.append(Row(
                    stack: parts[0], environment: parts[1], ephemeral: environment != nil, owner: environment?.owner,
                    created_at: environment.map { ISODates.string($0.createdAt) }, expires_at: environment.map { ISODates.string($0.expiresAt) },
                    expired: environment?.isExpired(at: now) ?? false, resources: snapshot.resources.count, hourly_cost: cost.hourlyBefore, unpriced: unpriced))
            }
            if global.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                context.console.output(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            guard !rows.isEmpty else {
                context.console.output("No environments.")
                return
            }
            let header = ["ENVIRONMENT", "OWNER", "AGE", "EXPIRES", "RESOURCES", "COST/H"]
            let lines = rows.map { row -> [String] in
                let age = row.created_at.flatMap(ISODates.date).map { roughly(now.timeIntervalSince($0)) } ?? "-"
                let expires = row.expires_at.flatMap(ISODates.date).map { $0 <= now ? "expired \(roughly(now.timeIntervalSince($0))) ago" : "in \(roughly($0.timeIntervalSince(now)))" } ?? "-"
                let cost = String(format: "$%.2f", row.hourly_cost) + (row.unpriced > 0 ? " (+\(row.unpriced) unpriced)" : "")
                return ["\(row.stack)/\(row.environment)", row.owner ?? "-", age, expires, "\(row.resources)", cost]
            }
            context.console.output(textTable([header] + lines))
        }
    }
}

struct Down: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Destroy an ephemeral environment and forget it.",
        discussion: "`stratum down NAME --stack S` destroys everything of S/NAME (as `stratum destroy --env NAME`) and removes the environment's record."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The environment (its --env name).", valueName: "NAME"))
    var name: String

    @Flag(help: "Destroy without asking for confirmation.")
    var autoApprove = false

    func run() async throws {
        var options = global
        options.env = name
        try await EnvironmentTeardown(options: options, autoApprove: autoApprove).run()
    }
}

/// Destroys one environment's resources, then its record.
struct EnvironmentTeardown {
    var options: GlobalOptions
    var autoApprove: Bool

    func run() async throws {
        let context = RunContext(options)
        let stack = try options.stack ?? ProcessInfo.processInfo.environment["STRATUM_STACK"] ?? context.stackEntry().name
        let store = try await context.openStore()
        let environment = try await Environments(store: store).find(stack: stack, name: options.environment)
        let hasState = try await context.workspaceHasState(context.workspace(for: stack))
        guard environment != nil || hasState else {
            throw CLIError("\(stack)/\(options.environment) is not an environment this state knows (see `stratum ls`)")
        }
        try await ApplyRun(global: options, change: try ChangeOptions.parse([]), autoApprove: autoApprove, destroy: true).run()
        if let environment {
            try await Environments(store: store).remove(environment, at: Date())
            context.console.progress("Removed \(environment.workspace) from the environments.")
        }
    }
}

struct Sweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Destroy expired ephemeral environments, and list (or delete) orphans.",
        discussion: """
            Destroys every environment whose --ttl has run out, and nothing else. Then lists \
            orphans: resources the configured providers hold with Stratum's ownership on them \
            (tags, labels, records) that no state knows — left by a state file that was deleted, \
            or by a stack destroyed without its state. --delete-orphans deletes them. \
            --dry-run only says what would be done. Providers and types that cannot list what \
            they hold are named, never called clean. On AWS, STRATUM_AWS_SEARCH_REGIONS \
            (comma-separated) limits the regions searched (default: every enabled region).

            From cron: `stratum sweep --auto-approve` every hour.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Say what would be destroyed and deleted; change nothing.")
    var dryRun = false

    @Flag(help: "Also delete the orphans found.")
    var deleteOrphans = false

    @Option(help: ArgumentHelp(
        "Search only this provider for orphans (repeatable; default: every provider of this build).",
        discussion: "A provider no state uses whose search fails (no credentials, say) is named and skipped; one asked for here, or used by a state, makes the sweep fail."))
    var provider: [String] = []

    @Flag(help: "Destroy without asking for confirmation.")
    var autoApprove = false

    @Option(help: .hidden)
    var asOf: String?

    func run() async throws {
        let context = RunContext(global)
        let now = try asOf.map { text in
            guard let date = ISODates.date(text) else { throw ValidationError("--as-of '\(text)' is not an ISO 8601 time") }
            return date
        } ?? Date()
        var failed = false
        try await reportingErrors(context.console) {
            // Without a state file there are no environments, and whatever the clouds hold with
            // Stratum's ownership on it is an orphan.
            let hasState = global.backendURL != nil || FileManager.default.fileExists(atPath: global.statePath)
            let store: (any StateStore)? = hasState ? try await context.openStore() : nil
            var all: [EphemeralEnvironment] = []
            if let store { all = try await Environments(store: store).all() }
            let expired = all.filter { $0.isExpired(at: now) }
            context.console.output("\(expired.count) of \(all.count) environment(s) expired" + (expired.isEmpty ? "." : ":"))
            for environment in expired {
                context.console.output("  \(environment.workspace) (owner \(environment.owner), expired \(roughly(now.timeIntervalSince(environment.expiresAt))) ago)")
            }
            if !dryRun {
                for environment in expired {
                    var options = global
                    options.env = environment.name
                    options.stack = environment.stack
                    do {
                        try await EnvironmentTeardown(options: options, autoApprove: autoApprove).run()
                    } catch {
                        failed = true
                        context.console.error("Error: \(environment.workspace) was not swept: \(describe(error))")
                    }
                }
            }
            // Orphans: what the clouds hold with Stratum's ownership that no state knows.
            var known: [String: OrphanSearch.Known] = [:]
            // Providers some state holds resources of: a search of one that fails is an error.
            var inUse = Set<String>()
            for workspace in try await store?.workspaces() ?? [] where !workspace.hasPrefix("_stratum/") {
                guard let snapshot = try await store?.read(workspace: workspace) else { continue }
                known[workspace] = OrphanSearch.Known(lineage: snapshot.lineage, addresses: Set(snapshot.resources.keys))
                inUse.formUnion(snapshot.resources.values.map(\.provider))
            }
            let registered = context.providers.providers.values.filter { $0.name != StratumBuiltinProvider.providerName }
            if let unknown = provider.first(where: { name in !registered.contains { $0.name == name } }) {
                throw ValidationError("--provider '\(unknown)' is not one of this build's providers: \(registered.map(\.name).sorted().joined(separator: ", "))")
            }
            let providers = provider.isEmpty ? registered : registered.filter { provider.contains($0.name) }
            let search = try await OrphanSearch.run(providers: providers, known: known) { provider, kind in
                context.console.progress("Searching \(provider) for \(kind) with Stratum's ownership…")
            }
            let orphans = search.orphans, unlisted = search.unlisted
            for (name, error) in search.failed {
                // A provider no state uses and that was not asked for by name is most likely
                // one this team does not use (no credentials): said, not an error.
                if inUse.contains(name) || provider.contains(name) {
                    failed = true
                    context.console.error("Error: could not search \(name) for orphans: \(describe(error))")
                } else {
                    context.console.output("Not searched for orphans: \(name) (\(describe(error))).")
                }
            }
            if orphans.isEmpty {
                context.console.output("No orphans.")
            } else {
                context.console.output("\(orphans.count) orphan(s): resources with Stratum's ownership that no state knows:")
                for orphan in orphans {
                    let item = orphan.owned
                    var of = "of \(item.ownership.stack.isEmpty ? "no stack" : item.ownership.stack), lineage \(item.ownership.lineage)"
                    if let owner = item.ownership.owner { of += ", owner \(owner)" }
                    if let expires = item.ownership.expires { of += ", expire\(expires <= now ? "d" : "s") \(ISODates.string(expires))" }
                    context.console.output("  \(orphan.provider.name) \(item.state.address) id \(item.state.id) in \(item.state.region) (\(of))")
                }
            }
            if !unlisted.isEmpty {
                context.console.output("Not searched for orphans (these types cannot list what they hold): \(unlisted.joined(separator: ", ")).")
            }
            if deleteOrphans, !orphans.isEmpty, !dryRun {
                guard try context.console.confirm("Delete these \(orphans.count) orphan(s)?", autoApprove: autoApprove, interruption: nil) else {
                    context.console.error("Kept the orphans.")
                    failed = true
                    return
                }
                let deletion = OrphanDeletion { event in
                    switch event {
                    case .deleted(let orphan): context.console.output("  deleted \(orphan.provider.name) \(orphan.owned.state.address) \(orphan.owned.state.id)")
                    case .waiting(let left): context.console.progress("\(left) orphan(s) not deleted yet (they may still be in use by others); trying again.")
                    case .failed(let orphan, let error):
                        context.console.error("  could not delete \(orphan.provider.name) \(orphan.owned.state.address) \(orphan.owned.state.id): \(describe(error))")
                    }
                }
                if try await !deletion.run(orphans) { failed = true }
            }
        }
        if failed { throw ExitCode.failure }
    }
}

