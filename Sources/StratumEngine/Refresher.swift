import StratumCore
import StratumState

/// What refresh found: each recorded resource's live state (nil where it is gone).
public struct RefreshResult: Sendable {
    public var live: [ResourceAddress: ResourceState?]
    /// How many provider read calls were made (one per type and batch key).
    public var readCalls: Int

    public init(live: [ResourceAddress: ResourceState?], readCalls: Int) {
        self.live = live
        self.readCalls = readCalls
    }

    /// Refreshed state of the resources that still exist.
    public var existing: [ResourceAddress: ResourceState] { live.compactMapValues { $0 } }
}

/// Reads live state in batches: one provider call per (provider, type, batch key), all batches
/// at once. The batch key comes from the resource's kind (by default its region).
public struct Refresher: Sendable {
    public var providers: ProviderRegistry
    /// Each batch read is retried on throttled and transient errors.
    public var retry: RetryPolicy

    public init(providers: ProviderRegistry, retry: RetryPolicy = RetryPolicy()) {
        self.providers = providers
        self.retry = retry
    }

    struct BatchKey: Hashable, Sendable {
        var provider: String
        var type: String
        var key: String
    }

    public func refresh(_ resources: [ResourceAddress: ResourceState]) async throws -> RefreshResult {
        var batches: [BatchKey: [ResourceState]] = [:]
        for state in resources.values {
            let key = providers.kind(provider: state.provider, type: state.type)?.batchKey(state) ?? state.region
            batches[BatchKey(provider: state.provider, type: state.type, key: key), default: []].append(state)
        }
        for key in batches.keys where providers[key.provider] == nil {
            throw ProviderError(.permanent, "state holds \(key.type) resources of provider '\(key.provider)', which this build of stratum does not include")
        }
        let (providers, retry) = (self.providers, self.retry)
        var live: [ResourceAddress: ResourceState?] = [:]
        live.reserveCapacity(resources.count)
        try await withThrowingTaskGroup(of: ([ResourceState], [ResourceState?]).self) { group in
            for (key, batch) in batches {
                group.addTask {
                    guard let provider = providers[key.provider] else { return (batch, []) }
                    let sorted = batch.sorted { $0.address < $1.address }
                    let schema = provider.schema(for: key.type)
                    let revealed = sorted.map { Sensitivity.reveal($0, schema: schema) }
                    let result = try await retry.run {
                        try await EngineMetrics.call(provider: key.provider, type: key.type, operation: "read") { try await provider.read(type: key.type, resources: revealed) }
                    }
                    guard result.count == sorted.count else {
                        throw ProviderError(.permanent, "provider '\(key.provider)' answered \(result.count) states for \(sorted.count) \(key.type) resources")
                    }
                    return (sorted, result)
                }
            }
            for try await (batch, result) in group {
                for (state, refreshed) in zip(batch, result) {
                    // Keep what state knows (dependencies) alongside what the cloud reports.
                    // updateValue keeps an explicit nil (gone) instead of dropping the key.
                    let schema = providers.schema(provider: state.provider, type: state.type)
                    let merged = refreshed.map { fresh in
                        var merged = Sensitivity.protect(fresh, schema: schema, template: state.attributes)
                        merged.dependencies = state.dependencies
                        return merged
                    }
                    live.updateValue(merged, forKey: state.address)
                }
            }
        }
        return RefreshResult(live: live, readCalls: batches.count)
    }
}
