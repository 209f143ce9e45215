import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

/// Reads that fail with `error` a given number of times before they reach the synthetic cloud.
struct FlakyReads: Provider {
    let name: String
    let kinds: [String: any ResourceKind]
    let inner: SyntheticProvider
    let failures: LockedValue<Int>

    init(inner: SyntheticProvider, failures: LockedValue<Int>, error: ProviderError) {
        name = inner.name
        self.inner = inner
        self.failures = failures
        kinds = inner.kinds.mapValues { FlakyReadKind(inner: $0, failures: failures, error: error) as any ResourceKind }
    }
}

struct FlakyReadKind: ForwardingKind {
    let inner: any ResourceKind
    let failures: LockedValue<Int>
    let error: ProviderError

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        if failures.update({ remaining in remaining -= 1; return remaining >= 0 }) { throw error }
        return try await inner.read(resources)
    }
}

@Suite("The engine's one retry layer", .timeLimit(.minutes(3)))
struct RetryLayerTests {
    static func world(failing: Int, with error: ProviderError) -> (FlakyReads, [ResourceAddress: ResourceState]) {
        let synthetic = SyntheticProvider()
        let address = ResourceAddress(type: "synthetic_disk", name: "d")
        let state = ResourceState(address: address, provider: "synthetic", region: "r1", id: "disk-1", attributes: [:])
        synthetic.seed([state])
        return (FlakyReads(inner: synthetic, failures: LockedValue(failing), error: error), [address: state])
    }

    @Test func refreshRetriesAThrottledBatchReadOnVirtualTime() async throws {
        let (provider, states) = Self.world(failing: 2, with: ProviderError(.throttled, "Rate exceeded"))
        let time = VirtualClock()
        let retry = RetryPolicy(maxAttempts: 4, backoff: Backoff(base: .seconds(1), cap: .seconds(8), random: { $0.upperBound }), clock: time.clock)
        let result = try await Refresher(providers: ProviderRegistry([provider]), retry: retry).refresh(states)
        #expect(result.existing.count == 1)
        #expect(provider.inner.callCounts()["read"] == 1)
        #expect(time.sleeps == [.seconds(1), .seconds(2)])
    }

    @Test func aRetryWaitsAtLeastTheRetryAfterTheCloudNamed() async throws {
        let (provider, states) = Self.world(failing: 2, with: ProviderError(.throttled, "Rate exceeded", retryAfter: .seconds(5)))
        let time = VirtualClock()
        let retry = RetryPolicy(maxAttempts: 4, backoff: Backoff(base: .seconds(1), cap: .seconds(8), random: { $0.upperBound }), clock: time.clock)
        let result = try await Refresher(providers: ProviderRegistry([provider]), retry: retry).refresh(states)
        #expect(result.existing.count == 1)
        // The backoff alone would wait 1 s, then 2 s.
        #expect(time.sleeps == [.seconds(5), .seconds(5)])
    }

    @Test func refreshGivesUpAfterItsAttemptsAndNeverRetriesAPermanentError() async throws {
        let (throttled, states) = Self.world(failing: 10, with: ProviderError(.throttled, "Rate exceeded"))
        let time = VirtualClock()
        let retry = RetryPolicy(maxAttempts: 3, backoff: Backoff(base: .seconds(1), random: { $0.upperBound }), clock: time.clock)
        let error = await #expect(throws: ProviderError.self) { try await Refresher(providers: ProviderRegistry([throttled]), retry: retry).refresh(states) }
        #expect(error?.kind == .throttled)
        #expect(time.sleeps.count == 2)
        #expect(throttled.failures.get() == 7)

        let (broken, _) = Self.world(failing: 10, with: ProviderError(.permanent, "no such API"))
        await #expect(throws: ProviderError.self) { try await Refresher(providers: ProviderRegistry([broken]), retry: retry).refresh(states) }
        #expect(broken.failures.get() == 9)
        #expect(time.sleeps.count == 2)
    }
}

@Suite("Engine time comes from the injected clock", .timeLimit(.minutes(3)))
struct EngineClockTests {
    @Test func commitsAreDatedOnTheExecutorsClock() async throws {
        let fake = try World().provider
        let registry = ProviderRegistry([fake])
        let store = InMemoryStateStore()
        let time = VirtualClock(start: Date(timeIntervalSince1970: 2_000_000_000))
        let plan = try Planner(providers: registry).plan(stack: try independentThings(3), snapshot: await store.read(workspace: "w"), refreshed: nil, now: time.date)
        let result = try await Executor(
            providers: registry, store: store, workspace: "w", parallelism: 1, retry: RetryPolicy(clock: time.clock), clock: time.clock
        ).apply(plan)
        #expect(result.ok)
        let history = await store.history(workspace: "w")
        #expect(history.count == 3)
        #expect(history.allSatisfy { $0.time == Date(timeIntervalSince1970: 2_000_000_000) })
    }
}
