import ArgumentParser
import Foundation
import StratumCloud
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

    @Option(
        help: ArgumentHelp(
            "After applying, wait up to this many seconds for every node to answer /healthz and, in a pool of more than one, to report its interconnect check; then show the nodes as `stratum status` does. Exits 1 if a check failed, a node is gone, or the time ran out.",
            valueName: "SECONDS"))
    var waitForNodes: Double?

    @Option(
        help: ArgumentHelp(
            "Start each GPU cluster not yet placed on its K cheapest feasible landings at once (as copies named <cluster>-race2, ...), keep the first to land whole and release the others. A run killed mid-race leaves the copies in state; the next apply deletes them.",
            valueName: "K"))
    var race = 1

    func run() async throws {
        guard race >= 1, race <= 8 else { throw ValidationError("--race must be from 1 to 8 (got \(race))") }
        if race > 1, planFile != nil { throw ValidationError("--race does not apply to a saved plan: it is applied exactly as saved; race with `stratum apply --race K` on the stack") }
        if let waitForNodes {
            guard waitForNodes > 0 && waitForNodes <= 86400 else {
                throw ValidationError("--wait-for-nodes must be more than 0 and at most 86400 seconds (got \(waitForNodes))")
            }
            // With --json, stdout carries one document: the plan and the result.
            guard !global.json else { throw ValidationError("--wait-for-nodes shows the nodes as a table and does not combine with --json; run `stratum status --json` after") }
        }
        try await ApplyRun(global: global, change: change, autoApprove: autoApprove, destroy: false, planFile: planFile, waitForNodes: waitForNodes, race: race).run()
    }
}

/// The shared body of `apply` and `destroy`.
struct ApplyRun {
    var global: GlobalOptions
    var change: ChangeOptions
    var autoApprove: Bool
    var destroy: Bool
    var planFile: String?
    var waitForNodes: Double?
    /// How many landings a GPU cluster races at once (1: no race).
    var race = 1

    func run() async throws {
        let context = RunContext(global)
        let interruption = Interruption(console: context.console)
        interruption.install()
        var succeeded = true
        try await reportingErrors(context.console) {
            let saved = try planFile.map { try PlanFile.read($0, sealer: context.stateKey) }
            let stack = (destroy || saved != nil) ? nil : try await context.evaluate(replacePlacement: change.replacePlacement, race: race)
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
                // A GPU cluster that cannot land whole moves to its next landing, until one holds
                // it or none is left (a saved plan is applied exactly as saved: no failover).
                var failover = ClusterFailover(context: context, store: store, stackName: name, change: change)
                var current = plan
                while true {
                    let canFailOver = saved == nil && !destroy && !(current.gangs ?? []).isEmpty
                    let (ok, result) = try await context.execute(
                        current, store: store, parallelism: change.parallelism, exhaustionLimit: change.exhaustionLimit, interruption: interruption,
                        failover: canFailOver, raceWon: canFailOver && current.races != nil ? stack.map { failover.recordingRaceWinners(plan: current, stack: $0) } : nil)
                    if canFailOver, !result.races.isEmpty, let stack, result.onlyGangFailures || ok {
                        // A race ended: keep the winners (the losers' networks go with the next
                        // plan); where every racer broke, race the next cheapest landings.
                        let settled = try await failover.settleRaces(result, plan: current, stack: stack)
                        try interruption.check()
                        let lostAll = Set(settled.filter { $0.value == nil }.keys)
                        let next = try await context.plan(
                            stack: try await context.evaluate(replaceClusters: lostAll, overrides: failover.overrides, race: lostAll.isEmpty ? 1 : race),
                            stackName: name, store: store, change: change, destroy: false)
                        if !global.json { context.console.progress(PlanRenderer.brief(next, color: context.console.color)) }
                        current = next
                        continue
                    }
                    guard !ok, canFailOver, result.onlyGangFailures, let stack else { return ok }
                    try interruption.check()
                    guard let next = try await failover.next(after: result, plan: current, stack: stack) else { return false }
                    if !global.json { context.console.progress(PlanRenderer.brief(next, color: context.console.color)) }
                    current = next
                }
            }
            if succeeded, !destroy, let waitForNodes {
                let snapshot = try await store.read(workspace: workspace)
                let recorded = snapshot.resources.filter { NodeProbe.isNode($0.key.type) }
                let nodes = recorded.values.sorted { $0.address < $1.address }
                // Each look refreshes the nodes first: a Local trainer's port is known only once it runs.
                let providers = context.providers
                succeeded = try await NodeWait(console: context.console).wait(for: nodes, seconds: waitForNodes, interruption: interruption) {
                    try await Refresher(providers: providers).refresh(recorded).live
                }
            }
        }
        if !succeeded { throw ExitCode.failure }
    }
}

/// `apply --wait-for-nodes`: probes the stack's nodes until every one is ready (healthy, its
/// pool's interconnect check reported) or the time runs out, saying how far it got as it goes.
struct NodeWait {
    let console: Console
    var probe = NodeProbe(transport: AsyncHTTPTransport(), timeout: .seconds(2))
    var interval: Duration = .seconds(2)

    /// True when every node is ready; false (after saying why) when a check failed, a node is
    /// gone, or the time ran out.
    /// `live` reads the nodes as they are now (default: as recorded).
    func wait(
        for nodes: [ResourceState], seconds: Double, interruption: Interruption,
        live: () async throws -> [ResourceAddress: ResourceState?] = { [:] }
    ) async throws -> Bool {
        guard !nodes.isEmpty else { return true }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var said = -1
        var reports: [NodeReport] = []
        while true {
            reports = await probe.reports(for: nodes, live: try await live())
            let ready = reports.filter { $0.readiness == .ready }.count
            let failed = reports.contains { $0.readiness == .failed }
            if ready != said, !failed, ready < reports.count {
                console.progress("waiting for nodes: \(ready) of \(reports.count) ready")
                said = ready
            }
            if failed || ready == reports.count || ContinuousClock.now >= deadline { break }
            try interruption.check()
            try await Task.sleep(for: interval)
        }
        console.output(NodeProbe.table(reports))
        let failed = reports.filter { $0.readiness == .failed }.map(\.address)
        let waiting = reports.filter { $0.readiness == .waiting }.map(\.address)
        if !failed.isEmpty {
            console.error("Applied, but these nodes failed (a failed interconnect check means the pool's nodes cannot all reach each other; see `journalctl -u stratum-allreduce-check` on them): \(failed.joined(separator: ", "))")
            return false
        }
        if !waiting.isEmpty {
            console.error("Applied, but these nodes were not ready within \(Int(seconds)) s: \(waiting.joined(separator: ", ")) (see `stratum status`, and docs/bootstrap.md on a node that did not come up)")
            return false
        }
        return true
    }
}
