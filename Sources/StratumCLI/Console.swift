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

    /// Asks on a terminal; refuses without one so nothing changes unattended by accident.
    func confirm(_ question: String, autoApprove: Bool) throws -> Bool {
        if autoApprove { return true }
        guard isatty(STDIN_FILENO) != 0 else {
            throw CLIError("stdin is not a terminal, so nothing can be confirmed; pass --auto-approve to proceed without asking")
        }
        output("\(question)\n  Only 'yes' will be accepted.\n")
        FileHandle.standardOutput.write(Data("  Enter a value: ".utf8))
        return readLine()?.trimmingCharacters(in: .whitespaces) == "yes"
    }
}

/// Prints a line as each resource starts and finishes, with elapsed time.
struct ProgressObserver: ApplyObserver {
    var console: Console
    var logger: Logger

    func stepStarted(_ step: ExecutionStep) {
        console.output("\(step.address): \(step.verb)...")
    }

    func stepFinished(_ step: ExecutionStep, outcome: StepOutcome, elapsed: Duration) {
        let seconds = String(format: "%.1fs", elapsed.seconds)
        logger.debug("step finished", metadata: ["address": "\(step.address)", "kind": "\(step.kind.rawValue)", "elapsed": "\(elapsed)"])
        switch outcome {
        case .succeeded(let state):
            let id = state.map { " [id=\($0.id)]" } ?? ""
            console.output("\(step.address): \(step.pastTense) complete after \(seconds)\(id)")
        case .failed(let error):
            console.error("\(step.address): \(step.verb) FAILED after \(seconds): \(describe(error))")
        case .skipped(let cause):
            console.error("\(step.address): skipped, because \(cause) failed")
        }
    }
}
