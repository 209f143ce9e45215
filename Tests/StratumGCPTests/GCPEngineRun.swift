import Foundation
import StratumCore
import StratumEngine
import StratumState
@testable import StratumGCP

/// One workspace driven through the real Planner, Refresher and Executor with a GCP provider,
/// its state in memory.
struct GCPEngineRun {
    let registry: ProviderRegistry
    let store = InMemoryStateStore()
    let workspace: String
    let retry: RetryPolicy

    init(provider: GCPProvider, stack: String, environment: String) {
        registry = ProviderRegistry([provider])
        workspace = "\(stack)/\(environment)"
        retry = RetryPolicy(maxAttempts: 5, clock: provider.client.clock)
    }

    /// Refreshes the recorded state and plans `stack` against it.
    func plan(_ stack: EvaluatedStack) async throws -> Plan {
        let snapshot = await store.read(workspace: workspace)
        let refreshed = try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources)
        return try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, now: Date())
    }

    func apply(_ plan: Plan) async throws -> ApplyResult {
        try await Executor(providers: registry, store: store, workspace: workspace, parallelism: 4, retry: retry).apply(plan)
    }

    /// A plan that destroys everything the refreshed state holds.
    func destroyPlan() async throws -> Plan {
        let snapshot = await store.read(workspace: workspace)
        let refreshed = try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources)
        let parts = workspace.split(separator: "/", maxSplits: 1).map(String.init)
        return Planner(providers: registry).destroyPlan(stackName: parts[0], environment: parts[1], snapshot: snapshot, refreshed: refreshed, now: Date())
    }
}
