import StratumCore

/// A resource a provider holds with Stratum's ownership that no state knows.
public struct Orphan: Sendable {
    public let provider: any Provider
    public let owned: OwnedResource

    public init(provider: any Provider, owned: OwnedResource) {
        self.provider = provider
        self.owned = owned
    }
}

/// Finds orphans: asks every kind of every provider what it holds with Stratum's ownership on
/// it (`ResourceKind.owned()`), and keeps what no state knows — an unknown workspace, a lineage
/// that is not that workspace's, or an address that state does not record.
public enum OrphanSearch {
    /// What one workspace's state holds.
    public struct Known: Sendable {
        public var lineage: String
        public var addresses: Set<ResourceAddress>

        public init(lineage: String, addresses: Set<ResourceAddress>) {
            self.lineage = lineage
            self.addresses = addresses
        }
    }

    public struct Result: Sendable {
        public var orphans: [Orphan]
        /// The types that cannot list what they hold: not searched, so not known to be clean.
        public var unlisted: [String]
        /// Providers whose search failed (no credentials, say), with the error; the rest of
        /// their types were not searched.
        public var failed: [(provider: String, error: any Error)]
    }

    /// `known` by workspace; `searching` is told each provider and type before it is asked.
    public static func run(
        providers: [any Provider], known: [String: Known], searching: (_ provider: String, _ type: String) -> Void = { _, _ in }
    ) async throws -> Result {
        var result = Result(orphans: [], unlisted: [], failed: [])
        for provider in providers.sorted(by: { $0.name < $1.name }) {
            do {
                for kind in provider.kinds.values.sorted(by: { $0.type < $1.type }) {
                    searching(provider.name, kind.type)
                    guard let owned = try await kind.owned() else {
                        result.unlisted.append(kind.type)
                        continue
                    }
                    for item in owned {
                        let state = known[item.ownership.stack]
                        if state?.lineage != item.ownership.lineage || state?.addresses.contains(item.state.address) != true {
                            result.orphans.append(Orphan(provider: provider, owned: item))
                        }
                    }
                }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                result.failed.append((provider.name, error))
            }
        }
        return result
    }
}

/// Deletes orphans in passes. Their state records no dependencies, so the order that works
/// (machines before their subnet, objects before their bucket) is found by trying: each pass
/// tries every orphan left, and what failed is tried again while the pass before deleted
/// something, or, for transient failures, after a wait while the clouds may still be letting go
/// (a terminated machine holds its subnet for a while).
public struct OrphanDeletion: Sendable {
    public enum Event: Sendable {
        case deleted(Orphan)
        /// A pass left this many; the next starts after a wait.
        case waiting(Int)
        /// Given up on: the last error.
        case failed(Orphan, any Error)
    }

    public var backoff = Backoff(base: .seconds(2), cap: .seconds(30))
    public var clock: StratumClock = .system
    /// Passes in a row that delete nothing before giving up on transient failures.
    public var patience = 4
    let report: @Sendable (Event) -> Void

    public init(report: @escaping @Sendable (Event) -> Void) {
        self.report = report
    }

    /// Whether resources of `type` are machines that run a workload.
    static func isMachine(_ type: String) -> Bool {
        ["_node", "_instance", "_instance_gang", "_virtual_machine"].contains { type.hasSuffix($0) }
    }

    /// True when every orphan was deleted.
    public func run(_ orphans: [Orphan]) async throws -> Bool {
        // Machines first: a running workload may still write to the bucket or network beside it
        // (a worker checkpoints as it is stopped), which would bring back what went before it.
        let machines = orphans.filter { Self.isMachine($0.owned.state.address.type) }
        var left = machines + orphans.filter { !Self.isMachine($0.owned.state.address.type) }
        var idle = 0
        var pass = 0
        while !left.isEmpty {
            pass += 1
            var failures: [(Orphan, any Error)] = []
            for orphan in left {
                do {
                    try await orphan.provider.delete(orphan.owned.state)
                    report(.deleted(orphan))
                } catch {
                    failures.append((orphan, error))
                }
            }
            idle = failures.count == left.count ? idle + 1 : 0
            left = failures.map(\.0)
            if left.isEmpty { return true }
            // Nothing deleted, and nothing left that waiting could change: give up now.
            let settled = failures.allSatisfy { ($0.1 as? ProviderError)?.isRetryable == false }
            if idle >= patience || (idle > 0 && settled) {
                for (orphan, error) in failures { report(.failed(orphan, error)) }
                return false
            }
            if idle > 0 {
                report(.waiting(left.count))
                try await clock.sleep(backoff.delay(afterAttempt: idle))
            }
        }
        return true
    }
}
