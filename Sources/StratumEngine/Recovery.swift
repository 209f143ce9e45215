import Foundation
import StratumCore
import StratumState

/// Settles journal rows left by operations that never finished (a crash between a provider
/// call and its commit). Runs with the lock held, before refresh: each create goes to its kind's
/// `recover` with the row as stored (a long-running operation's handle included, so the kind
/// resumes that operation), and is adopted or confirmed gone; updates and deletes are re-read.
public struct Recovery: Sendable {
    public var providers: ProviderRegistry
    public var store: any StateStore
    public var workspace: String
    /// Recovery's reads are retried like any provider call.
    public var retry: RetryPolicy
    public var clock: StratumClock

    public init(
        providers: ProviderRegistry, store: any StateStore, workspace: String, retry: RetryPolicy = RetryPolicy(), clock: StratumClock = .system
    ) {
        self.providers = providers
        self.store = store
        self.workspace = workspace
        self.retry = retry
        self.clock = clock
    }

    /// What recovery did with one row.
    public enum Outcome: Sendable, Equatable {
        /// The create had taken effect: the resource is now in state.
        case adopted(ResourceAddress, id: String)
        /// The operation had no effect, or its resource is gone: nothing to adopt.
        case confirmedGone(ResourceAddress)
        /// An update's or interrupted delete's resource still exists; state now holds its live attributes.
        case refreshed(ResourceAddress)
        /// The provider could not be asked; the row stays.
        case unsettled(ResourceAddress, reason: String)
    }

    /// Settles every pending row of the workspace, oldest first.
    public func run() async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for operation in try await store.pendingOperations(workspace: workspace) {
            do {
                outcomes.append(try await settle(operation))
            } catch let error as StateError {
                throw error
            } catch {
                outcomes.append(.unsettled(operation.address, reason: String(describing: error)))
            }
        }
        return outcomes
    }

    /// Settles one row: asks the provider what the operation left and commits that together
    /// with the row's removal.
    public func settle(_ operation: PendingOperation) async throws -> Outcome {
        guard let provider = providers[operation.provider] else {
            throw ProviderError(.permanent, "cannot recover \(operation.address): provider '\(operation.provider)' is not available", address: operation.address)
        }
        let schema = provider.schema(for: operation.type)
        let address = operation.address
        switch operation.action {
        case .create:
            guard var state = try await retry.run({ try await provider.recover(operation) }) else {
                try await store.settleOperations(workspace: workspace, ids: [operation.id])
                return .confirmedGone(address)
            }
            state = Sensitivity.protect(state, schema: schema, template: operation.inputs)
            state.address = address
            state.dependencies = operation.dependencies
            var upserts = [state]
            if var old = operation.prior {
                // A create-before-destroy replacement: the old copy moves aside, still tracked.
                old.address = Executor.deposedAddress(for: address)
                upserts.append(old)
            }
            try await store.commit(
                workspace: workspace,
                StateMutation(upserts: upserts, changes: [HistoryChange(address: address.description, action: "recover (adopted \(state.id))")], settles: [operation.id]),
                at: clock.date())
            return .adopted(address, id: state.id)

        case .update, .delete:
            guard let prior = operation.prior else {
                try await store.settleOperations(workspace: workspace, ids: [operation.id])
                return .confirmedGone(address)
            }
            let revealed = Sensitivity.reveal(prior, schema: provider.schema(for: operation.type))
            let live = try await retry.run { try await provider.read(type: operation.type, resources: [revealed]) }.first ?? nil
            if var live {
                live = Sensitivity.protect(live, schema: schema, template: operation.action == .update ? operation.inputs : prior.attributes)
                live.address = address
                live.dependencies = operation.action == .update ? operation.dependencies : prior.dependencies
                try await store.commit(
                    workspace: workspace,
                    StateMutation(upserts: [live], changes: [HistoryChange(address: address.description, action: "recover (\(operation.action.rawValue) re-read)")], settles: [operation.id]),
                    at: clock.date())
                return .refreshed(address)
            }
            try await store.commit(
                workspace: workspace,
                StateMutation(removals: [address], changes: [HistoryChange(address: address.description, action: "recover (gone)")], settles: [operation.id]),
                at: clock.date())
            return .confirmedGone(address)
        }
    }
}

/// Where secrets are marked: attributes a schema declares sensitive, and values that were
/// sensitive in what was asked for, stay wrapped in state; providers see them revealed.
public enum Sensitivity {
    /// `state` with sensitive attributes wrapped: per the schema, and wherever `template` (the
    /// desired inputs or prior attributes) held a sensitive value.
    public static func protect(_ state: ResourceState, schema: ResourceSchema?, template: [String: Value]) -> ResourceState {
        // Most resources hold no secret: skip the walk.
        guard schema?.hasSensitiveAttributes == true || template.values.contains(where: \.containsSensitive) else { return state }
        var state = state
        for (key, value) in state.attributes {
            if schema?.attributes[key]?.sensitive == true {
                state.attributes[key] = value.markedSensitive
            } else if let model = template[key] {
                state.attributes[key] = value.carryingSensitivity(of: model)
            }
        }
        return state
    }

    /// `state` with every sensitive wrapper removed, as providers receive it, but in the
    /// attributes whose provider delivers secrets itself (`deliversSecrets`).
    public static func reveal(_ state: ResourceState, schema: ResourceSchema? = nil) -> ResourceState {
        guard state.attributes.values.contains(where: \.containsSensitive) else { return state }
        var state = state
        state.attributes = reveal(state.attributes, schema: schema)
        return state
    }

    /// `inputs` as a provider call receives them: revealed, but where the schema says the
    /// provider delivers the secrets of an input itself.
    public static func reveal(_ inputs: [String: Value], schema: ResourceSchema?) -> [String: Value] {
        var revealed = inputs
        for (key, value) in inputs where schema?.attributes[key]?.deliversSecrets != true { revealed[key] = value.revealed }
        return revealed
    }
}
