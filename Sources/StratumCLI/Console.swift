import Foundation
import Logging
import StratumCore
import StratumEngine

/// Where the CLI writes: results to stdout, progress and errors to stderr.
struct Console: Sendable {
    var color: Bool

    func output(_ text: String) {
        FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    func progress(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    func bold(_ text: String) -> String { color ? "\u{1B}[1m\(text)\u{1B}[0m" : text }
    func yellow(_ text: String) -> String { color ? "\u{1B}[33m\(text)\u{1B}[0m" : text }

    /// Asks on a terminal; refuses without one so nothing changes unattended by accident.
    /// An interrupt while it waits for the answer cancels.
    func confirm(_ question: String, autoApprove: Bool, interruption: Interruption? = nil) throws -> Bool {
        if autoApprove { return true }
        guard isatty(STDIN_FILENO) != 0 else {
            throw CLIError("stdin is not a terminal, so nothing can be confirmed; pass --auto-approve to proceed without asking")
        }
        output("\(question)\n  Only 'yes' will be accepted.\n")
        FileHandle.standardOutput.write(Data("  Enter a value: ".utf8))
        if let interruption {
            // Wait for a line in short slices so that an interrupt is noticed.
            var request = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            while true {
                let ready = poll(&request, 1, 100)
                try interruption.check("cancelled at the prompt; nothing was changed")
                if ready > 0 || (ready < 0 && errno != EINTR) { break }
            }
        }
        return readLine()?.trimmingCharacters(in: .whitespaces) == "yes"
    }
}

/// Prints a line as each resource starts and finishes, with elapsed time and overall
/// progress, and (through `reportStillRunning`) a reminder for steps that take long.
final class ProgressObserver: ApplyObserver, @unchecked Sendable {
    let console: Console
    let logger: Logger
    let total: Int
    private let lock = NSLock()
    private var running: [ExecutionStep: ContinuousClock.Instant] = [:]
    private var done = 0
    private let clock = ContinuousClock()

    /// Step lines go to stdout, or to stderr when stdout carries a JSON document.
    let toStderr: Bool

    func line(_ text: String) {
        if toStderr { console.progress(text) } else { console.output(text) }
    }

    init(console: Console, logger: Logger, total: Int, toStderr: Bool = false) {
        self.toStderr = toStderr
        self.console = console
        self.logger = logger
        self.total = total
    }

    /// How many steps are running now.
    var inFlight: Int { lock.withLock { running.count } }

    func stepStarted(_ step: ExecutionStep) {
        lock.withLock { running[step] = clock.now }
        line("\(step.address): \(step.verb)...")
    }

    func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration) {
        let finished = lock.withLock {
            running[step] = nil
            done += 1
            return done
        }
        let seconds = String(format: "%.1fs", elapsed.seconds)
        let progress = "[\(finished)/\(total)]"
        logger.debug("step finished", metadata: ["address": "\(step.address)", "kind": "\(step.kind.rawValue)", "elapsed": "\(elapsed)"])
        switch outcome {
        case .succeeded(let state):
            let id = state.map { " [id=\($0.id)]" } ?? ""
            line("\(step.address): \(step.pastTense) complete after \(seconds)\(id) \(progress)")
        case .failed(let error):
            console.error("\(step.address): \(step.verb) FAILED after \(seconds): \(describe(error)) \(progress)")
        case .skipped(let cause):
            console.error("\(step.address): skipped, because \(cause) failed \(progress)")
        }
    }

    /// Prints `Still creating... [20s elapsed]` for every step running longer than `every`.
    func reportStillRunning(every interval: Duration) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { return }
            let now = clock.now
            let slow = lock.withLock { running.filter { now - $0.value >= interval } }
            for (step, started) in slow.sorted(by: { $0.key.address < $1.key.address }) {
                line("\(step.address): Still \(step.verb.lowercased())... [\(Int((now - started).seconds))s elapsed]")
            }
        }
    }
}

/// Rows as columns padded to the widest cell, two spaces apart (the first row is the header).
func textTable(_ rows: [[String]]) -> String {
    let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            .trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}
