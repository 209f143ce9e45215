import Foundation
import StratumCore
import StratumEngine
import StratumState

/// Moves a GPU cluster that could not land whole to its next landing — the same offer in
/// another zone, then another region of the same cloud, then another cloud — never above its
/// `maxHourlyPrice` or the stack's budget. The offer that failed is remembered as a stockout,
/// and the move is written to the stack's state history.
struct ClusterFailover {
    let context: RunContext
    let store: any StateStore
    let stackName: String
    let change: ChangeOptions
    /// Decisions made by failovers and races in this run, by cluster.
    private(set) var overrides: [String: PlacementDecision] = [:]
    /// Landings this run passed over (a plan over budget), with why.
    private var passedOver: [BlockedOffer] = []
    /// Landings tried in this run, in order.
    private(set) var tried: [Landing] = []

    init(context: RunContext, store: any StateStore, stackName: String, change: ChangeOptions) {
        self.context = context
        self.store = store
        self.stackName = stackName
        self.change = change
    }

    var workspace: String { context.workspace(for: stackName) }

    /// What the executor calls the moment a gang wins its race: the cluster's placement record
    /// in state points at the winner right away, so a run killed before the race is settled
    /// keeps the winner (the next apply then only removes the losers).
    func recordingRaceWinners(plan: Plan, stack: EvaluatedStack) -> @Sendable (String, String) async throws -> Void {
        let store = store
        let workspace = workspace
        return { cluster, gang in
            guard let report = plan.placements?.first(where: { $0.cluster == cluster }),
                let request = stack.clusters.first(where: { $0.name == cluster }),
                let own = plan.races?.first(where: { $0.cluster == cluster })?.gangs.first
            else { return }
            guard let decision = report.raceDecision(winner: gang, own: own, request: request) else { return }
            let landing = decision.landing
            let address = ResourceAddress(type: "stratum_placement", name: cluster)
            guard var record = try await store.read(workspace: workspace).resources[address] else { return }
            record.attributes = decision.attributes.merging(["id": .string(record.id)]) { $1 }
            _ = try await store.commit(
                workspace: workspace,
                StateMutation(upserts: [record], changes: [HistoryChange(address: address.description, action: "race: \(landing) landed first")]),
                at: Date())
        }
    }

    /// Remembers what a capacity or quota error at `landing` blocks (for --stockout-minutes);
    /// returns the reason, as placement shows it.
    private func rememberStockout(_ error: ProviderError, at landing: Landing, request: ClusterRequest, catalog: OfferCatalog, now: Date) async throws -> String {
        let stockouts = Stockouts(store: store)
        let placer = ClusterPlacer(catalog: catalog, blocked: try await stockouts.active(at: now), now: now)
        let blocks = placer.blocks(for: error, at: landing, request: request, until: now.addingTimeInterval(change.stockoutMinutes * 60))
        try await stockouts.record(blocks, at: now)
        return blocks.first?.reason ?? error.message
    }

    /// After a race: records the stockouts of the racers that broke and says how each race
    /// ended. Returns, by cluster, the decision for the winning landing (under the winner's
    /// name), or nil where every racer broke.
    mutating func settleRaces(_ result: ApplyResult, plan: Plan, stack: EvaluatedStack) async throws -> [String: PlacementDecision?] {
        let now = Date()
        let catalog = try CatalogFiles.load(directory: CatalogFiles.directory(context.options))
        let console = context.console
        var settled: [String: PlacementDecision?] = [:]
        for race in result.races {
            guard let report = plan.placements?.first(where: { $0.cluster == race.cluster }),
                let request = stack.clusters.first(where: { $0.name == race.cluster }),
                let gangs = plan.races?.first(where: { $0.cluster == race.cluster })?.gangs
            else { continue }
            let own = gangs.first ?? race.cluster
            for failure in result.gangFailures where gangs.contains(failure.gang) {
                guard let failed = report.raceLanding(of: failure.gang, own: own) else { continue }
                tried.append(failed)
                let why = try await rememberStockout(failure.error, at: failed, request: request, catalog: catalog, now: now)
                console.progress(console.yellow("GPU cluster '\(race.cluster)': \(failed) did not land whole in the race: \(why); released \(failure.released.count) node(s)."))
            }
            // As `recordingRaceWinners` recorded it when the race was won.
            guard let winner = race.winner, let decision = report.raceDecision(winner: winner, own: own, request: request) else {
                settled[race.cluster] = .some(nil)
                continue
            }
            let won = decision.landing
            tried.append(won)
            overrides[race.cluster] = decision
            settled[race.cluster] = decision
            console.progress(console.yellow("GPU cluster '\(race.cluster)': \(won.summary) landed first of \(gangs.count) raced; released \(race.released.count) node(s) of the others."))
            _ = try await store.commit(
                workspace: workspace,
                StateMutation(changes: [HistoryChange(address: "stratum_placement.\(race.cluster)", action: "race: \(gangs.count) raced; released \(race.released.count) of the others")]),
                at: now)
        }
        return settled
    }

    /// After an apply whose gangs broke: records the stockouts, chooses each broken cluster's
    /// next landing and returns the plan that moves them there; nil (having said why) when a
    /// cluster has nowhere left to go. A landing tried in this run is not tried again, even
    /// after its stockout expires.
    mutating func next(after result: ApplyResult, plan: Plan, stack: EvaluatedStack) async throws -> Plan? {
        let now = Date()
        let console = context.console
        let catalog = try CatalogFiles.load(directory: CatalogFiles.directory(context.options))
        // Each broken cluster's request and the landing it failed at.
        var broken: [(request: ClusterRequest, failed: Landing, why: String)] = []
        for failure in result.gangFailures {
            guard let report = plan.placements?.first(where: { ($0.decision.alias ?? $0.cluster) == failure.gang }),
                let request = stack.clusters.first(where: { $0.name == report.cluster })
            else { continue }
            let cluster = report.cluster
            let failed = report.decision.landing
            tried.append(failed)
            passedOver.append(BlockedOffer(offer: failed.key, spot: failed.spot, reason: "tried in this run", until: .distantFuture))
            let why = try await rememberStockout(failure.error, at: failed, request: request, catalog: catalog, now: now)
            let released = failure.released.count
            var line = "GPU cluster '\(cluster)': \(failed) did not land whole: \(why). Released \(released) node\(released == 1 ? "" : "s")"
            if !failure.unreleased.isEmpty { line += "; \(failure.unreleased.count) could not be deleted and stay in state for the next run" }
            console.progress(console.yellow(line + "."))
            _ = try await store.commit(
                workspace: workspace,
                StateMutation(changes: [HistoryChange(address: "stratum_placement.\(cluster)", action: "failover: \(failed) — \(why); released \(released)")]),
                at: now)
            broken.append((request, failed, why))
        }
        guard !broken.isEmpty else { return nil }

        // Choose every broken cluster's next landing, then plan once; a plan over budget passes
        // over the landings chosen for it and chooses again.
        while true {
            let active = try await Stockouts(store: store).active(at: now) + passedOver
            let placer = ClusterPlacer(catalog: catalog, blocked: active, now: now)
            var chosen: [Landing] = []
            for (request, failed, why) in broken {
                let ranking = placer.rank(request)
                guard let next = placer.next(after: failed, in: ranking) else {
                    let list = tried.map(\.description).joined(separator: ", ")
                    console.error("GPU cluster '\(request.name)' has nowhere left to land: tried \(list); every other offer is blocked, over its price cap or over budget (`stratum catalog --blocked` lists the stockouts).")
                    return nil
                }
                overrides[request.name] = PlacementDecision(
                    request: request.fingerprint, landing: next, runnersUp: ClusterPlacer.runnersUp(after: next, in: ranking.landings).map(\.summary),
                    reason: "failover from \(failed): \(why)")
                chosen.append(next)
            }
            let moved = try await context.evaluate(overrides: overrides)
            do {
                let nextPlan = try await context.plan(stack: moved, stackName: stackName, store: store, change: change, destroy: false)
                for (index, landing) in chosen.enumerated() {
                    console.progress(console.yellow("GPU cluster '\(broken[index].request.name)': failing over to \(landing.summary)."))
                    tried.append(landing)
                }
                return nextPlan
            } catch let refusal as BudgetExceeded {
                for landing in chosen {
                    console.progress("Passing over \(landing) — \(refusal.description)")
                    passedOver.append(BlockedOffer(offer: landing.key, spot: landing.spot, reason: "over budget", until: .distantFuture))
                }
            }
        }
    }
}

extension PlacementReport {
    /// The landing of `gang` in this cluster's race: the decision's own (`own`) or a copy's.
    func raceLanding(of gang: String, own: String) -> Landing? {
        if gang == own { return decision.landing }
        let copies = ClusterDecisions.racerNames(cluster, count: racers.count, besides: decision.alias)
        return copies.firstIndex(of: gang).map { racers[$0] }
    }

    /// The decision that records `winner` as the landing of the cluster, under the winner's name.
    func raceDecision(winner: String, own: String, request: ClusterRequest) -> PlacementDecision? {
        raceLanding(of: winner, own: own).map { landing in
            PlacementDecision(
                request: request.fingerprint, landing: landing, runnersUp: [], reason: "first to land whole of \(racers.count + 1) raced landings",
                alias: winner == cluster ? nil : winner)
        }
    }
}

extension ApplyResult {
    /// Whether everything that went wrong came of broken gangs or of a race: a member's
    /// capacity or quota error, members not started after it or after another gang won, steps
    /// waiting on them.
    var onlyGangFailures: Bool {
        guard !gangFailures.isEmpty || !races.isEmpty, exhaustion == nil, !stopped else { return false }
        let failedMembers = Set(failed.map(\.step.address))
        let gangErrors = failed.allSatisfy { ($0.error as? ProviderError).map { $0.kind == .capacity || $0.kind == .quota } ?? false }
        return gangErrors && skipped.allSatisfy { failedMembers.contains($0.cause) }
    }
}
