import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumLocal
import StratumState

struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rehearse failures on purpose: nodes stopped and brought back on a schedule.",
        discussion: """
            `churn` stops live nodes of a stack on a schedule, as machine losses would, and \
            brings them back through reconcile, so training can be watched surviving nodes \
            that leave and join. Local provider only, for now.
            """,
        subcommands: [ChaosChurn.self]
    )
}

struct ChaosChurn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn",
        abstract: "Stop live nodes on a schedule and bring them back through reconcile (Local provider).",
        discussion: """
            Every --every, chooses --kill of the stack's running nodes (of --pool, or of every \
            pool) at random from --seed, and stops each as the loss of its machine would: its \
            whole process tree killed at once with SIGKILL, nothing given a chance to clean up or \
            checkpoint. They stay down for --down; then a reconcile pass (the one \
            `stratum reconcile` runs) finds them lost and replaces them, and each replacement \
            resumes from the checkpoints its workload keeps. Each line says which node went down, \
            when it came back as which process, and how long reconcile took. The first cycle \
            starts at once.

            The schedule runs for --cycles cycles, for --for (no cycle starts after it), or until \
            SIGINT or SIGTERM; a signal ends the wait in progress, and nodes that are down are \
            brought back before it exits (exit 0). A node that does not come back ends it (exit 1).

            Without flags, runs the schedule the stack declares (`Churn`, or \
            `NodePool(churn:)`; `stratum plan` shows it); each flag overrides its setting. A \
            stack that declares none needs --every and --down. Refused: nodes on a provider \
            other than Local, a pool the stack lacks, --kill above the number of running nodes, \
            --down not shorter than --every, durations that are not durations.

            Durations: a number of seconds, or with s, m or h (90s, 2m, 1h).

            Examples:
              stratum chaos churn --stack local-demo --kill 1 --every 2m --down 1m
              stratum chaos churn --stack local-demo --every 30s --down 10s --cycles 3 --seed 7
              stratum chaos churn --stack lab --env dev --pool worker --for 1h   # the declared schedule, for an hour
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Nodes stopped each cycle (default: the stack's schedule, else 1).", valueName: "N"))
    var kill: Int?

    @Option(help: ArgumentHelp("Time from one cycle's start to the next (90s, 2m, 1h).", valueName: "DURATION"))
    var every: String?

    @Option(help: ArgumentHelp("How long the stopped nodes stay down before reconcile brings them back; shorter than --every.", valueName: "DURATION"))
    var down: String?

    @Option(name: .customLong("for"), help: ArgumentHelp("Run the schedule this long (no cycle starts after it).", valueName: "DURATION"))
    var duration: String?

    @Option(help: ArgumentHelp("Run this many cycles.", valueName: "N"))
    var cycles: Int?

    @Option(help: ArgumentHelp("Seed of the choice of nodes: the same seed chooses the same nodes again (default: a new one, printed).", valueName: "N"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("Stop only nodes of this node pool.", valueName: "NAME"))
    var pool: String?

    func validate() throws {
        if global.json { throw ValidationError("chaos churn prints progress lines as it goes; it has no --json") }
        if duration != nil, cycles != nil { throw ValidationError("give --for or --cycles, not both") }
        if let kill, kill < 1 { throw ValidationError("--kill must be at least 1 (got \(kill))") }
        if let cycles, cycles < 1 { throw ValidationError("--cycles must be at least 1 (got \(cycles))") }
        for (option, text) in [("--every", every), ("--down", down), ("--for", duration)] {
            if let text { _ = try Self.duration(text, option: option) }
        }
    }

    static func duration(_ text: String, option: String) throws -> Duration {
        do {
            return try ChurnSchedule.duration(text)
        } catch let error as ChurnError {
            throw ValidationError("\(option) \(error)")
        }
    }

    /// The stack's schedule with the flags over it; the stack's may be nil.
    func schedule(declared: ChurnSchedule?, stack: String) throws -> ChurnSchedule {
        let flags: [Any?] = [kill, every, down, duration, cycles, seed, pool]
        guard declared != nil || flags.contains(where: { $0 != nil }) else {
            throw CLIError(
                "stack '\(stack)' declares no churn schedule and no flags give one: declare `Churn(kill:every:down:)` in the stack, "
                    + "or pass one, e.g. `stratum chaos churn --stack \(stack) --kill 1 --every 2m --down 1m`")
        }
        var schedule: ChurnSchedule
        if let declared {
            schedule = declared
        } else {
            guard let every, let down else {
                throw CLIError("stack '\(stack)' declares no churn schedule, so --every and --down are needed (e.g. --every 2m --down 1m)")
            }
            schedule = ChurnSchedule(every: try Self.duration(every, option: "--every"), down: try Self.duration(down, option: "--down"))
        }
        if let kill { schedule.kill = kill }
        if let every { schedule.every = try Self.duration(every, option: "--every") }
        if let down { schedule.down = try Self.duration(down, option: "--down") }
        if duration != nil || cycles != nil {
            schedule.cycles = cycles
            schedule.duration = try duration.map { try Self.duration($0, option: "--for") }
        }
        if let seed { schedule.seed = seed }
        if let pool { schedule.pool = pool }
        return schedule
    }

    func run() async throws {
        let context = RunContext(global)
        let console = context.console
        let interruption = Interruption(console: console)
        interruption.install()
        try await reportingErrors(console) {
            let stack = try await context.evaluate()
            let schedule = try schedule(declared: stack.churn, stack: stack.name)
            let problems = schedule.problems(in: stack.resources)
            if !problems.isEmpty {
                throw CLIError("cannot run the churn schedule (\(schedule.summary)): " + problems.joined(separator: "; "))
            }
            guard let local = context.providers["local"] as? LocalProvider else { throw CLIError("this binary carries no Local provider, which churn needs") }
            let store = try await context.openStore()
            let workspace = context.workspace(for: stack.name)
            // Reconcile brings nodes back; its own interruption is never signalled, so a pass that
            // started always finishes (a second signal still exits at once).
            let reconciler = Reconciler(
                context: context, policy: .fix, ifLocked: .wait, lockTimeout: 600, parallelism: 10, grace: 600, interruption: Interruption(console: console))
            let target = LocalChurnTarget(context: context, store: store, workspace: workspace, pool: schedule.pool, local: local, reconciler: reconciler)
            try await target.check(stack: stack.name)

            let seed = schedule.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
            var shown = schedule
            shown.seed = nil
            console.output("Churn on \(stack.name) (\(context.options.environment)): \(shown.summary); seed \(seed) (--seed \(seed) chooses the same nodes again).")
            let runner = ChurnRunner(
                schedule: schedule, seed: seed, clock: .system, shouldStop: { interruption.isRequested },
                report: { console.output(Self.line($0)) })
            let summary = try await runner.run(on: target)
            let stopped = "\(summary.cycles) cycle\(summary.cycles == 1 ? "" : "s"), \(summary.stopped) node\(summary.stopped == 1 ? "" : "s") stopped and brought back"
            switch summary.end {
            case .stopped: console.output("Stopped by \(Interruption.name(interruption.signal ?? SIGTERM)) after \(stopped).")
            case .cycles, .duration: console.output("Churn done: \(stopped).")
            }
        }
    }

    /// A progress line: `[  12.0s] cycle 2: stopped local_node.worker[1] (pid-4242)`.
    static func line(_ event: ChurnEvent) -> String {
        func at(_ seconds: Double) -> String { "[" + String(format: "%7.1fs", seconds) + "]" }
        func seconds(_ value: Double) -> String { String(format: "%.1fs", value) }
        func nodes(_ list: [ChurnNode]) -> String { list.map { "\($0.address) (\($0.id))" }.joined(separator: ", ") }
        switch event {
        case .stopped(let cycle, let list, let time):
            return "\(at(time)) cycle \(cycle + 1): stopped \(nodes(list)): every process killed at once, as a machine loss"
        case .skipped(let cycle, let live, let time):
            return "\(at(time)) cycle \(cycle + 1): skipped, only \(live) node\(live == 1 ? " is" : "s are") running"
        case .late(let cycle, let by):
            return "         cycle \(cycle + 1) starts \(seconds(by)) late: bringing the last nodes back took longer than the time between cycles"
        case .bringingBack(let cycle, let list, let time, let early):
            let why = early ? " early, as the schedule was stopped" : ""
            return "\(at(time)) cycle \(cycle + 1): bringing back \(list.map(\.address.description).joined(separator: ", ")) through reconcile\(why)"
        case .back(let cycle, let returns, let time, let down, let reconcile):
            let each = returns.map { back in
                back.isBack ? "\(back.node.address) back as \(back.id ?? "?") (was \(back.node.id))" : "\(back.node.address) NOT back: \(back.problem ?? "unknown")"
            }
            return "\(at(time)) cycle \(cycle + 1): \(each.joined(separator: "; ")); down \(seconds(down)), reconcile took \(seconds(reconcile))"
        }
    }
}

/// The stack's Local nodes as churn sees them: running ones read from state and refreshed, a
/// stop that kills a node's process tree, and a reconcile pass that brings them back.
struct LocalChurnTarget: ChurnTarget {
    let context: RunContext
    let store: any StateStore
    let workspace: String
    let pool: String?
    let local: LocalProvider
    let reconciler: Reconciler

    /// The nodes of the pool in state: resources recorded with a `pool` attribute.
    func recorded() async throws -> [ResourceAddress: ResourceState] {
        guard try await store.workspaces().contains(workspace) else { return [:] }
        return try await store.read(workspace: workspace).resources.filter { _, state in
            guard let name = state.attributes["pool"]?.stringValue else { return false }
            return pool == nil || name == pool
        }
    }

    /// Refuses a state with none of the pool's nodes, or with nodes off Local.
    func check(stack: String) async throws {
        let nodes = try await recorded()
        guard !nodes.isEmpty else {
            throw CLIError("the state of \(workspace) holds no nodes\(pool.map { " of pool '\($0)'" } ?? ""): apply the stack first (`stratum apply --stack \(stack)`)")
        }
        if let elsewhere = nodes.values.sorted(by: { $0.address < $1.address }).first(where: { $0.provider != local.name }) {
            throw CLIError("churn stops and restarts nodes on the Local provider only, for now; \(elsewhere.address) is on '\(elsewhere.provider)'")
        }
    }

    func refreshed() async throws -> [ResourceAddress: ResourceState] {
        let nodes = try await recorded()
        guard !nodes.isEmpty else { return [:] }
        return try await Refresher(providers: context.providers).refresh(nodes).existing
    }

    static func isRunning(_ state: ResourceState) -> Bool {
        state.failure == nil && state.attributes["status"]?.stringValue == "running"
    }

    func liveNodes() async throws -> [ChurnNode] {
        try await refreshed().values.filter(Self.isRunning).map { ChurnNode(address: $0.address, id: $0.id) }
    }

    func stop(_ nodes: [ChurnNode]) async throws {
        let states = try await recorded()
        for node in nodes {
            guard let state = states[node.address], state.id == node.id else {
                throw CLIError("\(node.address) changed in state while churn was choosing it; nothing else was stopped")
            }
            try await local.loseNode(state)
        }
    }

    func bringBack(_ nodes: [ChurnNode]) async throws -> [ChurnReturn] {
        let report = await reconciler.pass()
        let failed = report.exit_code == 1 ? report.error ?? "reconcile failed" : nil
        let now = try await refreshed()
        return nodes.map { node in
            guard let state = now[node.address] else { return ChurnReturn(node: node, id: nil, problem: failed ?? "it is no longer in state") }
            if state.id == node.id { return ChurnReturn(node: node, id: nil, problem: failed ?? "it was not replaced (\(state.failure ?? "no drift was found"))") }
            guard Self.isRunning(state) else { return ChurnReturn(node: node, id: state.id, problem: failed ?? state.failure ?? "its replacement is \(state.attributes["status"]?.stringValue ?? "not running")") }
            return ChurnReturn(node: node, id: state.id)
        }
    }
}
