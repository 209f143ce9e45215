import Foundation
import StratumCore
import StratumState
import Testing

/// The lock lease and its event history, on every backend. Times are injected: every lease is
/// built from `testEpoch`, and PostgreSQL is given the same instant as its caller's clock.
@Suite("StateStore contract: lock")
struct LockContractTests {
    @Test(arguments: Backend.contract)
    func lockIsExclusiveUntilReleasedOrExpired(_ backend: Backend) async throws {
        try await backend.withStore(clock: { testEpoch }) { subject in
            let store = subject.store
            let now = testEpoch
            let first = LockInfo(id: "one", holder: "a@h", operation: "apply", pid: 1, host: "h", acquiredAt: now, expiresAt: now.addingTimeInterval(60))
            let second = LockInfo(id: "two", holder: "b@h", operation: "apply", pid: 2, host: "h", acquiredAt: now, expiresAt: now.addingTimeInterval(60))
            let taken = try await store.lock(workspace: "w", first, isAbandoned: { _ in false })
            #expect(taken.lock == first && taken.replaced == nil)
            #expect(try await store.currentLock(workspace: "w") == first)
            let error = try await #require(throws: LockHeldError.self) { try await store.lock(workspace: "w", second, isAbandoned: { _ in false }) }
            #expect(error.lock.id == "one")
            #expect(error.description.contains("a@h") && error.description.contains("force-unlock one"))

            // The wrong id cannot release it, nor renew it.
            await #expect(throws: StateError.self) { try await store.unlock(workspace: "w", id: "two") }
            await #expect(throws: StateError.self) { try await store.renewLock(workspace: "w", id: "two", until: now.addingTimeInterval(600)) }

            // An abandoned holder (its process died) is taken over.
            let takeover = try await store.lock(workspace: "w", second, isAbandoned: { $0.id == "one" })
            #expect(takeover.replaced?.id == "one")
            #expect(try await store.currentLock(workspace: "w")?.id == "two")

            // An expired lease is taken over too.
            let later = now.addingTimeInterval(120)
            let third = LockInfo(id: "three", holder: "c@h", operation: "plan", pid: 3, host: "h", acquiredAt: later, expiresAt: later.addingTimeInterval(60))
            let expired = try await store.lock(workspace: "w", third, isAbandoned: { _ in false })
            #expect(expired.replaced?.id == "two")
            try await store.renewLock(workspace: "w", id: "three", until: later.addingTimeInterval(600))
            let renewed = try #require(try await store.currentLock(workspace: "w"))
            #expect(abs(renewed.expiresAt.timeIntervalSince(later.addingTimeInterval(600))) < 0.01)
            try await store.unlock(workspace: "w", id: "three")
            #expect(try await store.currentLock(workspace: "w") == nil)
            // Unlocking what is already free is not an error, and a freed lock is no longer renewable.
            try await store.unlock(workspace: "w", id: "three")
            await #expect(throws: StateError.self) { try await store.renewLock(workspace: "w", id: "three", until: later.addingTimeInterval(900)) }
        }
    }

    @Test(arguments: Backend.contract)
    func everyLockEventIsRecorded(_ backend: Backend) async throws {
        try await backend.withStore(clock: { testEpoch }) { subject in
            let store = subject.store
            let t0 = testEpoch
            let never: @Sendable (LockInfo) -> Bool = { _ in false }

            _ = try await store.lock(workspace: "w", sampleLock("a", at: t0), isAbandoned: never)
            try await store.renewLock(workspace: "w", id: "a", until: t0.addingTimeInterval(120))
            try await store.unlock(workspace: "w", id: "a")

            // Expired on the injected time: b's lease ends at t0+60, c asks at t0+61.
            _ = try await store.lock(workspace: "w", sampleLock("b", at: t0), isAbandoned: never)
            let afterExpiry = try await store.lock(workspace: "w", sampleLock("c", at: t0.addingTimeInterval(61), pid: 4242), isAbandoned: never)
            #expect(afterExpiry.replaced?.id == "b")
            #expect(afterExpiry.replaced?.holder == "b@h")

            // Abandoned: c's lease still runs, but its process is gone.
            let afterCrash = try await store.lock(workspace: "w", sampleLock("d", at: t0.addingTimeInterval(62)), isAbandoned: { $0.pid == 4242 })
            #expect(afterCrash.replaced?.id == "c")

            try await store.unlock(workspace: "w", id: "d", forced: true)

            let events = try await store.lockEvents(workspace: "w")
            #expect(events.map(\.kind) == [.acquired, .renewed, .released, .acquired, .takenOver, .takenOver, .forceReleased])
            #expect(events.map(\.lockID) == ["a", "a", "a", "b", "c", "d", "d"])
            #expect(events.map(\.holder) == ["a@h", "a@h", "a@h", "b@h", "c@h", "d@h", "d@h"])
            #expect(events[0].time == t0)
            #expect(events[1].detail.contains("until"))
            #expect(events[4].detail.contains("replaced lock b held by b@h") && events[4].detail.contains("lease expired"))
            #expect(events[5].detail.contains("replaced lock c held by c@h") && events[5].detail.contains("pid 4242"))
            #expect(try await store.lockEvents(workspace: "other").isEmpty)
            #expect(try await store.currentLock(workspace: "w") == nil)
        }
    }

    @Test(arguments: Backend.contract)
    func manyConcurrentLockersExactlyOneWins(_ backend: Backend) async throws {
        try await backend.withStore(clock: { testEpoch }) { subject in
            // Half the contenders go through a second store on the same storage: another
            // process (SQLite) or another machine's client (PostgreSQL).
            let stores = [subject.store, try await subject.reopen(sealer: nil, clock: { testEpoch })]
            let contenders = 24
            let outcomes = await withTaskGroup(of: Result<LockAcquisition, any Error>.self) { group in
                for index in 0..<contenders {
                    let store = stores[index % stores.count]
                    group.addTask {
                        do {
                            return .success(try await store.lock(workspace: "w", sampleLock("l\(index)", at: testEpoch, pid: Int32(index)), isAbandoned: { _ in false }))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: [Result<LockAcquisition, any Error>]()) { $0.append($1) }
            }
            let winners = outcomes.compactMap { try? $0.get() }
            try #require(winners.count == 1)
            let winner = winners[0].lock
            #expect(winners[0].replaced == nil)
            for case .failure(let error) in outcomes {
                let held = try #require(error as? LockHeldError, "a loser failed with \(error)")
                #expect(held.lock.id == winner.id)
            }
            #expect(try await subject.store.currentLock(workspace: "w")?.id == winner.id)
            #expect(try await subject.store.lockEvents(workspace: "w").map(\.kind) == [.acquired])
        }
    }
}
