import Foundation
import StratumCore
import StratumState

/// A saved plan no longer matches the state it was computed against.
public struct StalePlanError: Error, Sendable, CustomStringConvertible {
    public var planLineage: String
    public var planSerial: Int
    public var stateLineage: String
    public var stateSerial: Int

    public var description: String {
        if planLineage != stateLineage {
            return "the saved plan belongs to another state (lineage \(planLineage), state has \(stateLineage)); run `stratum plan` again"
        }
        return "the saved plan is stale: it was made at state serial \(planSerial) and the state is now at serial \(stateSerial); run `stratum plan` again"
    }
}

/// Runs a plan: walks the change graph concurrently, calls providers, and commits each
/// resource's new state the moment its step succeeds, so a crash keeps all finished work.
public struct Executor: Sendable {
    public var providers: ProviderRegistry
    public var store: any StateStore
    public var workspace: String
    public var parallelism: Int
    public var retry: RetryPolicy
    public var observer: any ApplyObserver
    /// Dates journal rows and commits, and times steps (retries wait on `retry.clock`).
    public var clock: StratumClock
    /// After this many creates in a row fail with the same resource-exhaustion error
    /// (`.capacity` or `.quota`), no further create is started; 0 never stops.
    public var exhaustionLimit: Int
    /// Asked before each step starts; once it returns true, steps in flight finish and no new
    /// one starts (an interrupt).
    public var shouldStop: @Sendable () -> Bool
    /// Called the moment a gang wins its race (cluster, gang), before the others are released:
    /// the caller records the winner, so a run killed after this keeps it.
    public var raceWon: (@Sendable (String, String) async throws -> Void)?
    /// The owner and expiry of an ephemeral environment: every resource it creates is tagged
    /// with them.
    public var environmentOwner: String?
    public var environmentExpires: Date?

    public init(
        providers: ProviderRegistry, store: any StateStore, workspace: String, parallelism: Int = 10,
        retry: RetryPolicy = RetryPolicy(), observer: any ApplyObserver = SilentObserver(), clock: StratumClock = .system,
        exhaustionLimit: Int = 3, shouldStop: @escaping @Sendable () -> Bool = { false }
    ) {
        self.providers = providers
        self.store = store
        self.workspace = workspace
        self.parallelism = max(1, parallelism)
        self.retry = retry
        self.observer = observer
        self.clock = clock
        self.exhaustionLimit = max(0, exhaustionLimit)
        self.shouldStop = shouldStop
    }

    public func apply(_ plan: Plan) async throws -> ApplyResult {
        let snapshot = try await store.read(workspace: workspace)
        guard snapshot.lineage == plan.lineage, snapshot.serial == plan.serial else {
            throw StalePlanError(planLineage: plan.lineage, planSerial: plan.serial, stateLineage: snapshot.lineage, stateSerial: snapshot.serial)
        }
        var result = ApplyResult()
        result.serial = snapshot.serial
        var current = snapshot.resources
        let ownership = Ownership(stack: workspace, lineage: snapshot.lineage, owner: environmentOwner, expires: environmentExpires)

        if !plan.vanished.isEmpty {
            result.serial = try await store.commit(
                workspace: workspace,
                StateMutation(removals: plan.vanished, changes: plan.vanished.map { HistoryChange(address: $0.description, action: "forget") }),
                at: clock.date())
            for address in plan.vanished { current[address] = nil }
        }

        let graph = try StepGraph(plan: plan)
        var waiting = graph.predecessors.mapValues(\.count)
        var ready = graph.steps.filter { waiting[$0] == 0 }.sorted { ($0.address, $0.kind.rawValue) < ($1.address, $1.kind.rawValue) }
        var blockedBy: [ExecutionStep: ResourceAddress] = [:]
        // Steps after a step that was never started are not started either.
        var heldBack: Set<ExecutionStep> = []
        var streak = ExhaustionStreak(limit: exhaustionLimit)
        var finished = 0
        var gangOf: [ResourceAddress: String] = [:]
        for gang in plan.gangs ?? [] { for member in gang.members { gangOf[member] = gang.name } }
        // Gangs a member of which met a capacity or quota error, with that error.
        var broken: [String: ProviderError] = [:]
        var brokenOrder: [String] = []
        // Members each gang still has to create before it has landed whole.
        var remaining: [String: Int] = [:]
        for gang in plan.gangs ?? [] {
            remaining[gang.name] = gang.members.filter { graph.changes[$0].map { $0.action == .create || $0.action == .replace } ?? false }.count
        }
        var raceOf: [String: Race] = [:]
        for race in plan.races ?? [] { for gang in race.gangs { raceOf[gang] = race } }
        var winners: [String: String] = [:]
        // Gangs of a race another gang won: they stop, and release what they have.
        var lost: Set<String> = []

        try await withThrowingTaskGroup(of: (ExecutionStep, StepOutcome, Int).self) { group in
            var running = 0
            func launch(_ step: ExecutionStep) {
                guard let change = graph.changes[step.address] else { return }
                let inputs = change.inputs.mapValues { value in
                    value.resolvingReferences { ref in current[ref.address]?.attributes[ref.attribute] ?? .unknown }
                }
                running += 1
                group.addTask { try await self.run(step, change: change, resolvedInputs: inputs, ownership: ownership) }
            }

            while finished < graph.steps.count {
                while running < parallelism, !ready.isEmpty {
                    let step = ready.removeFirst()
                    if let cause = blockedBy[step] {
                        // Something it waits for failed: skip it, and in turn everything after it.
                        result.skipped.append((step, cause))
                        observer.stepFinished(step, outcome: .skipped(because: cause), elapsed: .zero)
                        finished += 1
                        for next in graph.successors[step] ?? [] {
                            blockedBy[next] = blockedBy[next] ?? cause
                            waiting[next, default: 0] -= 1
                            if waiting[next] == 0 { ready.append(next) }
                        }
                        continue
                    }
                    if !result.stopped, shouldStop() { result.stopped = true }
                    let gangBroken = step.kind.creates && gangOf[step.address].map { broken[$0] != nil || lost.contains($0) } == true
                    if heldBack.contains(step) || result.stopped || (result.exhaustion != nil && step.kind.creates) || gangBroken {
                        result.notStarted.append(step)
                        finished += 1
                        for next in graph.successors[step] ?? [] {
                            heldBack.insert(next)
                            waiting[next, default: 0] -= 1
                            if waiting[next] == 0 { ready.append(next) }
                        }
                        continue
                    }
                    launch(step)
                }
                guard let (step, outcome, serial) = try await group.next() else { break }
                running -= 1
                finished += 1
                result.serial = max(result.serial, serial)
                if step.kind.creates, let gang = gangOf[step.address] {
                    // A gang member's capacity error breaks the gang; it does not count toward
                    // the run's exhaustion, since the gang is tried elsewhere whole.
                    if case .failed(let error) = outcome, let failure = error as? ProviderError, failure.kind == .capacity || failure.kind == .quota,
                        broken[gang] == nil
                    {
                        broken[gang] = failure
                        brokenOrder.append(gang)
                    }
                } else if step.kind.creates, result.exhaustion == nil {
                    result.exhaustion = streak.record(outcome)
                }
                if step.kind.creates, case .succeeded = outcome, let gang = gangOf[step.address] {
                    remaining[gang, default: 1] -= 1
                    if remaining[gang] == 0, broken[gang] == nil, !lost.contains(gang), let race = raceOf[gang], winners[race.cluster] == nil {
                        winners[race.cluster] = gang
                        for other in race.gangs where other != gang && broken[other] == nil { lost.insert(other) }
                        try await raceWon?(race.cluster, gang)
                    }
                }
                switch outcome {
                case .succeeded(let state):
                    result.succeeded.append(step)
                    switch step.kind {
                    case .create, .update, .replaceCreate: current[step.address] = state
                    case .delete: current[step.address] = nil
                    case .replaceDelete: break
                    }
                case .failed(let error):
                    result.failed.append((step, error))
                case .skipped:
                    break
                }
                if case .failed = outcome {
                    for next in graph.successors[step] ?? [] { blockedBy[next] = blockedBy[next] ?? step.address }
                }
                for next in graph.successors[step] ?? [] {
                    waiting[next, default: 0] -= 1
                    if waiting[next] == 0 { ready.append(next) }
                }
            }
        }

        func existing(_ gang: String) -> [ResourceState] {
            ((plan.gangs ?? []).first { $0.name == gang }?.members ?? []).compactMap { current[$0] }
        }
        for gang in brokenOrder where !lost.contains(gang) {
            guard let error = broken[gang] else { continue }
            let failure = try await release(gang, error: error, members: existing(gang), ownership: ownership)
            for address in failure.released { current[address] = nil }
            result.gangFailures.append(failure)
        }
        for race in plan.races ?? [] {
            var outcome = ApplyResult.RaceOutcome(cluster: race.cluster, winner: winners[race.cluster], released: [], unreleased: [])
            for gang in race.gangs where lost.contains(gang) {
                // A loser that also broke (its members were in flight when the winner landed)
                // is reported as a broken gang too, so its stockout is remembered.
                let why = broken[gang] ?? ProviderError(.capacity, "\(winners[race.cluster] ?? "another gang") landed first", scope: nil)
                let released = try await release(gang, error: why, members: existing(gang), ownership: ownership)
                for address in released.released { current[address] = nil }
                if broken[gang] != nil { result.gangFailures.append(released) }
                outcome.released += released.released
                outcome.unreleased += released.unreleased
            }
            result.races.append(outcome)
        }
        if !result.gangFailures.isEmpty || !(plan.races ?? []).isEmpty {
            result.serial = max(result.serial, try await store.read(workspace: workspace).serial)
        }

        // Outputs whose resources exist are recorded; a destroy plan declares none, so it clears them.
        var outputs: [String: Value] = [:]
        for (name, value) in plan.outputs {
            let resolved = value.resolvingReferences { ref in current[ref.address]?.attributes[ref.attribute] ?? .unknown }
            if !resolved.containsUnknown { outputs[name] = resolved }
        }
        if outputs != snapshot.outputs {
            result.serial = try await store.commit(workspace: workspace, StateMutation(outputs: outputs, changes: [HistoryChange(address: "outputs", action: "update")]), at: clock.date())
        }
        return result
    }

    /// Deletes the members of a broken gang that exist, concurrently (each journaled and
    /// committed like any delete), so the gang can be placed elsewhere whole.
    private func release(_ gang: String, error: ProviderError, members: [ResourceState], ownership: Ownership) async throws -> ApplyResult.GangFailure {
        var failure = ApplyResult.GangFailure(gang: gang, error: error, released: [], unreleased: [])
        try await withThrowingTaskGroup(of: (ExecutionStep, StepOutcome, Int).self) { group in
            var pending = members.makeIterator()
            var running = 0
            func launchNext() {
                guard let member = pending.next() else { return }
                let change = ResourceChange(
                    address: member.address, provider: member.provider, region: member.region, action: .delete, before: member.attributes, after: nil,
                    dependencies: member.dependencies, prior: member, reason: "gang '\(gang)' is released")
                running += 1
                group.addTask { try await self.run(ExecutionStep(address: member.address, kind: .delete), change: change, resolvedInputs: [:], ownership: ownership) }
            }
            for _ in 0..<parallelism { launchNext() }
            while running > 0, let (step, outcome, _) = try await group.next() {
                running -= 1
                switch outcome {
                case .succeeded: failure.released.append(step.address)
                case .failed(let error): failure.unreleased.append((step.address, error))
                case .skipped: break
                }
                launchNext()
            }
        }
        failure.released.sort()
        return failure
    }

    /// Runs one step with retries and commits its result; never throws for provider failures.
    private func run(_ step: ExecutionStep, change: ResourceChange, resolvedInputs: [String: Value], ownership: Ownership) async throws -> (ExecutionStep, StepOutcome, Int) {
        observer.stepStarted(step)
        let start = clock.monotonic()
        do {
            let (state, serial) = try await perform(step, change: change, resolvedInputs: resolvedInputs, ownership: ownership)
            let outcome = StepOutcome.succeeded(state)
            let elapsed = clock.monotonic() - start
            observer.stepFinished(step, outcome: outcome, elapsed: .seconds(elapsed))
            EngineMetrics.step(type: step.address.type, action: step.kind.rawValue, outcome: "ok", nanoseconds: UInt64(max(0, elapsed) * 1e9))
            return (step, outcome, serial)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let outcome = StepOutcome.failed(error)
            let elapsed = clock.monotonic() - start
            observer.stepFinished(step, outcome: outcome, elapsed: .seconds(elapsed))
            EngineMetrics.step(
                type: step.address.type, action: step.kind.rawValue, outcome: (error as? ProviderError)?.kind.rawValue ?? "error", nanoseconds: UInt64(max(0, elapsed) * 1e9))
            return (step, outcome, 0)
        }
    }

    /// Runs the provider call between a journal row and the commit that settles it: the row is
    /// committed first, and the new state and the row's removal are one transaction after.
    /// When the call fails, the provider is asked right away what it left (by the operation's
    /// token) and that is settled as recovery would; if even that fails, the row stays for the
    /// next run to recover, as it does after a crash.
    private func journaled(
        _ journal: OperationJournal, _ call: () async throws -> ResourceState?,
        commit: (ResourceState?, PendingOperation) async throws -> (ResourceState?, Int)
    ) async throws -> (ResourceState?, Int) {
        let operation = journal.current()
        try await store.beginOperation(workspace: workspace, operation)
        let state: ResourceState?
        do {
            state = try await call()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The row as it stands now: it may carry a handle the provider recorded meanwhile.
            _ = try? await Recovery(providers: providers, store: store, workspace: workspace, retry: retry, clock: clock).settle(journal.current())
            throw error
        }
        return try await commit(state, operation)
    }

    private func perform(_ step: ExecutionStep, change: ResourceChange, resolvedInputs: [String: Value], ownership: Ownership) async throws -> (ResourceState?, Int) {
        guard let provider = providers[change.provider] else {
            throw ProviderError(.permanent, "unknown provider '\(change.provider)'", address: change.address)
        }
        let schema = provider.schema(for: change.address.type)
        let address = change.address
        switch step.kind {
        case .create, .replaceCreate:
            try Self.checkCallable(resolvedInputs, schema: schema, address: address)
            let resolved = ResolvedResource(
                address: address, region: change.region, inputs: Sensitivity.reveal(resolvedInputs, schema: schema), dependencies: change.dependencies, ownership: ownership)
            let cbd = step.kind == .replaceCreate && change.createBeforeDestroy
            let operation = PendingOperation(
                address: address, action: .create, provider: change.provider, region: change.region,
                token: UUID().uuidString.lowercased(), startedAt: clock.date(), ownership: ownership,
                prior: cbd ? change.prior : nil, inputs: resolvedInputs, dependencies: change.dependencies)
            let journal = OperationJournal(store: store, workspace: workspace, operation: operation)
            // Before a retry, the engine looks the resource up by token (the kind's recover, with
            // any handle recorded so far) and adopts it: a lost response never makes a second one.
            let (name, type) = (change.provider, address.type)
            let create: @Sendable () async throws -> ResourceState = {
                try await EngineMetrics.call(provider: name, type: type, operation: "create") { try await provider.create(resolved, context: journal.context) }
            }
            // What it finds may lack what the earlier attempt's follow-up calls would have set
            // (tags, attributes): the kind's update brings it to what was asked.
            let lookup: @Sendable () async throws -> ResourceState? = {
                guard let found = try await provider.recover(journal.current()) else { return nil }
                return try await provider.update(found, to: resolved)
            }
            return try await journaled(journal, { try await retry.run(create, lookingFirst: lookup) }) { created, operation in
                guard var state = created else { throw ProviderError(.permanent, "the provider returned no state", address: address) }
                state = Sensitivity.protect(state, schema: schema, template: resolvedInputs)
                state.dependencies = change.dependencies
                var upserts = [state]
                var action = step.kind == .create ? "create" : "replace"
                if cbd, var old = change.prior {
                    // Keep the old resource in state under a deposed address until it is deleted,
                    // so a crash in between leaves it tracked, not leaked.
                    old.address = Self.deposedAddress(for: address)
                    upserts.append(old)
                    action = "replace (create-before-destroy)"
                }
                let serial = try await store.commit(
                    workspace: workspace,
                    StateMutation(upserts: upserts, changes: [HistoryChange(address: address.description, action: action)], settles: [operation.id]),
                    at: clock.date())
                return (state, serial)
            }

        case .update:
            guard let prior = change.prior else { throw ProviderError(.permanent, "update without prior state", address: address) }
            try Self.checkCallable(resolvedInputs, schema: schema, address: address)
            let resolved = ResolvedResource(
                address: address, region: change.region, inputs: Sensitivity.reveal(resolvedInputs, schema: schema), dependencies: change.dependencies, ownership: ownership)
            let operation = PendingOperation(
                address: address, action: .update, provider: change.provider, region: change.region,
                token: UUID().uuidString.lowercased(), startedAt: clock.date(), ownership: ownership, prior: prior,
                inputs: resolvedInputs, dependencies: change.dependencies)
            return try await journaled(OperationJournal(store: store, workspace: workspace, operation: operation), {
                try await retry.run {
                    try await EngineMetrics.call(provider: change.provider, type: address.type, operation: "update") {
                        try await provider.update(Sensitivity.reveal(prior, schema: schema), to: resolved)
                    }
                }
            }) { updated, operation in
                guard var state = updated else { throw ProviderError(.permanent, "the provider returned no state", address: address) }
                state = Sensitivity.protect(state, schema: schema, template: resolvedInputs)
                state.dependencies = change.dependencies
                let serial = try await store.commit(
                    workspace: workspace,
                    StateMutation(upserts: [state], changes: [HistoryChange(address: address.description, action: "update")], settles: [operation.id]),
                    at: clock.date())
                return (state, serial)
            }

        case .delete, .replaceDelete:
            guard let prior = change.prior else { throw ProviderError(.permanent, "delete without prior state", address: address) }
            let removed = step.kind == .replaceDelete && change.createBeforeDestroy ? Self.deposedAddress(for: address) : address
            // The journal records the resource where state holds it (a deposed copy under its own address).
            var recorded = prior
            recorded.address = removed
            let operation = PendingOperation(
                address: removed, action: .delete, provider: change.provider, region: change.region,
                token: UUID().uuidString.lowercased(), startedAt: clock.date(), ownership: ownership, prior: recorded)
            let revealed = Sensitivity.reveal(prior, schema: schema)
            let journal = OperationJournal(store: store, workspace: workspace, operation: operation)
            return try await journaled(journal, {
                try await retry.run {
                    try await EngineMetrics.call(provider: change.provider, type: address.type, operation: "delete") { try await provider.delete(revealed, context: journal.context) }
                }
                return nil
            }) { _, operation in
                let serial = try await store.commit(
                    workspace: workspace,
                    StateMutation(removals: [removed], changes: [HistoryChange(address: removed.description, action: "delete")], settles: [operation.id]),
                    at: clock.date())
                return (nil, serial)
            }
        }
    }

    static func deposedAddress(for address: ResourceAddress) -> ResourceAddress {
        ResourceAddress(type: address.type, name: "\(address.name)-deposed", index: address.index)
    }
}

extension Executor {
    /// Resolved inputs a create or update may send: none still unknown, and no secret in an
    /// input the cloud keeps in plain text (references resolve only now, so a secret can arrive
    /// where validation saw an unresolved reference).
    static func checkCallable(_ inputs: [String: Value], schema: ResourceSchema?, address: ResourceAddress) throws {
        if let missing = inputs.first(where: { $0.value.containsUnknown }) {
            throw ProviderError(.permanent, "input '\(missing.key)' is still unknown: a resource it refers to did not produce it", address: address)
        }
        if let leak = schema?.secretsInPlainText(inputs).first { throw ProviderError(.permanent, leak, address: address) }
    }
}

/// The journal row of one running operation: the context its provider call gets, whose handle
/// recorder writes into the row, and the row as it stands (with the handle) for a lookup.
struct OperationJournal: Sendable {
    let context: OperationContext
    private let operation: PendingOperation
    private let handle = LockedValue<String?>(nil)

    init(store: any StateStore, workspace: String, operation: PendingOperation) {
        self.operation = operation
        let (id, handle) = (operation.id, self.handle)
        context = OperationContext(token: operation.token) { value in
            try await store.recordOperationHandle(workspace: workspace, id: id, handle: value)
            handle.update { $0 = value }
        }
    }

    func current() -> PendingOperation {
        var operation = operation
        operation.handle = handle.get() ?? operation.handle
        return operation
    }
}

/// Counts creates that fail in a row with the same resource-exhaustion error: past the limit,
/// more creates would only fail the same way (and a cloud may throttle an account that keeps asking).
struct ExhaustionStreak {
    var limit: Int
    var kind: ProviderError.Kind?
    var count = 0

    /// Records a create's outcome; returns the exhaustion once the streak reaches the limit.
    mutating func record(_ outcome: StepOutcome) -> ApplyResult.Exhaustion? {
        guard case .failed(let error) = outcome, let failure = error as? ProviderError, failure.kind == .capacity || failure.kind == .quota else {
            kind = nil
            count = 0
            return nil
        }
        count = kind == failure.kind ? count + 1 : 1
        kind = failure.kind
        guard limit > 0, count >= limit else { return nil }
        return ApplyResult.Exhaustion(kind: failure.kind, failures: count, lastError: failure.message)
    }
}

/// The order constraints between steps: creates after what they depend on, deletes after
/// what depends on them, and the two halves of a replace in the order the type allows.
struct StepGraph {
    var steps: [ExecutionStep] = []
    var changes: [ResourceAddress: ResourceChange] = [:]
    var predecessors: [ExecutionStep: Set<ExecutionStep>] = [:]
    var successors: [ExecutionStep: [ExecutionStep]] = [:]

    init(plan: Plan) throws {
        let actionable = plan.actionable
        for change in actionable { changes[change.address] = change }

        func createStep(_ address: ResourceAddress) -> ExecutionStep? {
            switch changes[address]?.action {
            case .create: return ExecutionStep(address: address, kind: .create)
            case .update: return ExecutionStep(address: address, kind: .update)
            case .replace: return ExecutionStep(address: address, kind: .replaceCreate)
            default: return nil
            }
        }
        func deleteStep(_ address: ResourceAddress) -> ExecutionStep? {
            switch changes[address]?.action {
            case .delete: return ExecutionStep(address: address, kind: .delete)
            case .replace: return ExecutionStep(address: address, kind: .replaceDelete)
            default: return nil
            }
        }

        // Who depends on whom, as recorded in state (for deletes) and as declared (for creates).
        var stateDependents: [ResourceAddress: [ResourceAddress]] = [:]
        var desiredDependents: [ResourceAddress: [ResourceAddress]] = [:]
        for change in actionable {
            for dependency in change.prior?.dependencies ?? [] { stateDependents[dependency, default: []].append(change.address) }
            if change.action != .delete {
                for dependency in change.dependencies { desiredDependents[dependency, default: []].append(change.address) }
            }
        }

        for change in actionable {
            let address = change.address
            if let create = createStep(address) {
                var preds = Set(change.dependencies.compactMap(createStep))
                if change.action == .replace, !change.createBeforeDestroy, let delete = deleteStep(address) { preds.insert(delete) }
                add(create, after: preds)
            }
            if let delete = deleteStep(address) {
                var preds = Set<ExecutionStep>()
                for dependent in stateDependents[address] ?? [] {
                    guard let dependentDelete = deleteStep(dependent) else { continue }
                    // A create-before-destroy dependent keeps its old copy until after its new one
                    // exists; waiting for that would form a cycle through our own create.
                    if dependentDelete.kind == .replaceDelete, changes[dependent]?.createBeforeDestroy == true { continue }
                    preds.insert(dependentDelete)
                }
                if change.action == .replace, change.createBeforeDestroy {
                    if let create = createStep(address) { preds.insert(create) }
                    // Dependents move to the new resource before the old one goes.
                    for dependent in desiredDependents[address] ?? [] { if let step = createStep(dependent) { preds.insert(step) } }
                }
                add(delete, after: preds)
            }
        }
        guard ResourceGraph(edges: predecessors.reduce(into: [:]) { edges, entry in
            edges[Self.node(entry.key)] = entry.value.map(Self.node)
        }).findCycle() == nil else {
            throw ProviderError(.permanent, "the planned changes cannot be ordered (cyclic replacement); apply with --target to split them")
        }
    }

    // Encodes a step as a graph node so the shared cycle check can run over steps.
    private static func node(_ step: ExecutionStep) -> ResourceAddress {
        ResourceAddress(type: step.address.type, name: "\(step.address.name)~\(step.kind.rawValue)", index: step.address.index)
    }

    private mutating func add(_ step: ExecutionStep, after preds: Set<ExecutionStep>) {
        steps.append(step)
        predecessors[step] = preds
        for pred in preds { successors[pred, default: []].append(step) }
    }
}
