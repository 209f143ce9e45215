import Dispatch
import Foundation

/// SIGINT and SIGTERM during plan, apply and destroy. The first one stops new work: read-only
/// work (recovery, refresh, planning, the confirmation prompt) is cancelled, and an apply lets
/// the provider calls in flight finish while it starts no new one; the command then unwinds,
/// releasing the lock, and says what happened and what to run next. A second signal exits at
/// once: every provider call in flight already has its journal row, so the next command
/// settles it, and the lock of a process that is gone is taken over.
final class Interruption: @unchecked Sendable {
    private let lock = NSLock()
    private var received: Int32?
    private var count = 0
    private var cancelCurrent: (@Sendable () -> Void)?
    private var sources: [any DispatchSourceSignal] = []
    private let console: Console
    private var countInFlight: @Sendable () -> Int = { 0 }

    /// The provider calls running now, for the messages.
    var inFlight: @Sendable () -> Int {
        get { lock.withLock { countInFlight } }
        set { lock.withLock { countInFlight = newValue } }
    }

    init(console: Console) {
        self.console = console
    }

    /// Starts listening; until then the signals keep their default action.
    func install() {
        for signalNumber in [SIGINT, SIGTERM] {
            #if canImport(Darwin)
            // Darwin delivers signal sources through kqueue alongside the default action.
            signal(signalNumber, SIG_IGN)
            #endif
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [weak self] in self?.receive(signalNumber) }
            source.resume()
            sources.append(source)
        }
    }

    /// The first signal received, if any.
    var signal: Int32? { lock.withLock { received } }

    var isRequested: Bool { signal != nil }

    private func receive(_ signalNumber: Int32) {
        let (count, cancel) = lock.withLock {
            self.count += 1
            if received == nil { received = signalNumber }
            return (self.count, cancelCurrent)
        }
        let name = Self.name(signalNumber)
        if count == 1 {
            let running = inFlight()
            if running > 0 {
                console.error("\n\(name): waiting for \(running) provider call(s) in flight to finish; starting no new ones. \(name == "SIGINT" ? "Press Ctrl-C" : "Send it") again to exit at once.")
            } else {
                console.error("\n\(name): stopping.")
            }
            cancel?()
            return
        }
        let running = inFlight()
        let journaled = running > 0 ? "the \(running) provider call(s) in flight are journaled and the next command settles them" : "no provider call was in flight"
        console.error("\(name) again: exiting now; \(journaled).")
        _exit(128 + signalNumber)
    }

    /// Runs `body`, cancelling it on an interrupt: for work that changes nothing a rerun would
    /// not redo (recovery, refresh, planning).
    func cancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try check()
        let task = Task { try await body() }
        lock.withLock { cancelCurrent = { task.cancel() } }
        defer { lock.withLock { cancelCurrent = nil } }
        // A signal that came before the task was registered cancels it here.
        if isRequested { task.cancel() }
        do {
            let value = try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
            try check()
            return value
        } catch {
            try check()
            throw error
        }
    }

    /// Throws `Interrupted` once a signal came.
    func check(_ what: String = "stopped before changing anything") throws {
        if let signal { throw Interrupted(signal: signal, message: "Interrupted by \(Self.name(signal)): \(what).") }
    }

    static func name(_ signalNumber: Int32) -> String {
        switch signalNumber {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(signalNumber)"
        }
    }
}

/// The command stopped on a signal; exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
struct Interrupted: Error, CustomStringConvertible {
    var signal: Int32
    var message: String
    var description: String { message }
}
