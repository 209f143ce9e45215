import Foundation

/// Runs blocking work (a child process waited for, a pipe read to its end, a poll) on a thread
/// of its own and awaits it. Swift's cooperative pool has one thread per core: a test that
/// blocks one for seconds holds up every other suite's async work, and on two cores a pair of
/// them stalled HTTP answers past their deadline.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        startThread { continuation.resume(with: Result { try body() }) }
    }
}

/// `offThePool` for work that cannot throw.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        startThread { continuation.resume(returning: body()) }
    }
}

private func startThread(_ main: @escaping @Sendable () -> Void) {
    let thread = Thread(block: main)
    thread.stackSize = 1 << 20
    thread.start()
}
