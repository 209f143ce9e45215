import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumState

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would change, without changing anything.",
        discussion: """
            Reads live state from the providers (one call per resource type and region), compares \
            it and the recorded state with the stack, and prints every change: + create, ~ update \
            in place, -/+ replace, - destroy. Values the cloud assigns show as (known after apply).

            Save the plan with --out and apply exactly that plan later with `stratum apply FILE`; \
            it is refused if the state changed in between.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: ChangeOptions

    @Option(name: .long, help: ArgumentHelp("Save the plan to this file for `stratum apply FILE`.", valueName: "FILE"))
    var out: String?

    @Flag(name: .long, help: "Plan the destruction of every resource instead.")
    var destroy = false

    @Flag(name: .long, help: "Exit 0 when there are no changes, 2 when there are, 1 on error.")
    var detailedExitcode = false

    @Flag(name: .long, inversion: .prefixedNo, help: "Take the state lock and settle interrupted operations first. --no-lock only reads state: it works on a read-only state file and creates nothing.")
    var lock = true

    func run() async throws {
        let context = RunContext(global)
        let interruption = Interruption(console: context.console)
        interruption.install()
        var hasChanges = false
        try await reportingErrors(context.console) {
            let stack = destroy ? nil : try await context.evaluate(replacePlacement: change.replacePlacement)
            let name: String
            if let stack { name = stack.name } else { name = try await context.stackNameForDestroy() }
            let plan: Plan
            if lock {
                let store = try await context.openStore()
                plan = try await context.locked(store, workspace: context.workspace(for: name), operation: "plan", interruption: interruption) {
                    try await interruption.cancellable { try await context.plan(stack: stack, stackName: name, store: store, change: change, destroy: destroy) }
                }
            } else {
                let store = try await context.openStore(readOnly: true)
                let pending = try await store.pendingOperations(workspace: context.workspace(for: name))
                if !pending.isEmpty {
                    context.console.error(context.console.yellow("Warning: \(pending.count) interrupted operation(s) in the journal are not settled by plan --no-lock; the plan may be out of date (run plan with the lock to settle them)."))
                }
                plan = try await interruption.cancellable { try await context.plan(stack: stack, stackName: name, store: store, change: change, destroy: destroy) }
            }
            try context.show(plan, limit: change.planLimit)
            if let out {
                try PlanFile.write(plan, to: out, sealer: context.stateKey)
                if !global.json { context.console.output("Saved the plan to \(out). Apply it with: stratum apply \(out)") }
            }
            hasChanges = plan.hasChanges
        }
        if detailedExitcode, hasChanges { throw ExitCode(2) }
    }
}

/// Saved plans: JSON of the `Plan`, written with mode 0600 as it holds resource attributes.
/// Secrets in the plan are sealed with the state key, as in state.
enum PlanFile {
    static func write(_ plan: Plan, to path: String, sealer: any ValueSealer) throws {
        let encoder = StateCodec(sealer: sealer).encoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(plan)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw CLIError("--out \(path) is a directory; name a file in it, such as \(URL(fileURLWithPath: path).appendingPathComponent("plan.bin").path)")
        }
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
            let reason = FileManager.default.fileExists(atPath: parent) ? "\(parent) is not writable" : "the directory \(parent) does not exist"
            throw CLIError("cannot write the plan to \(path): \(reason)")
        }
    }

    static func read(_ path: String, sealer: any ValueSealer) throws -> Plan {
        let made = "plan files are made by `stratum plan --out FILE`"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("plan file \(path) does not exist; \(made)") }
        guard !isDirectory.boolValue else { throw CLIError("\(path) is a directory, not a plan file; \(made)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read plan file \(path): permission denied") }
        guard !data.isEmpty else { throw CLIError("\(path) is empty, not a plan (the `stratum plan --out` that wrote it may not have finished); make it again") }
        if data.starts(with: Data("SQLite format 3".utf8)) {
            throw CLIError("\(path) is a SQLite database (a state file?), not a plan; \(made)")
        }
        // The format first, so a plan from another version is named as such.
        guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil else {
            let object = data.first { !Set(" \t\r\n".utf8).contains($0) } == UInt8(ascii: "{")
            throw CLIError(object
                ? "\(path) is truncated or corrupt: it is not complete JSON; make the plan again"
                : "\(path) is not a Stratum plan file (it is not JSON); \(made)")
        }
        struct Header: Decodable { var format: Int? }
        guard let format = (try? JSONDecoder().decode(Header.self, from: data))?.format else {
            throw CLIError("\(path) is JSON but not a Stratum plan file (it has no plan format); \(made)")
        }
        guard format == Plan.currentFormat else {
            throw CLIError("\(path) has plan format \(format); this stratum reads format \(Plan.currentFormat). Make the plan again with this version")
        }
        let decoder = StateCodec(sealer: sealer).decoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(Plan.self, from: data)
        } catch let error as StateError {
            throw CLIError("cannot read the plan \(path): \(error)")
        } catch let error as DecodingError {
            throw CLIError("\(path) is a damaged plan file: \(Self.explain(error)); make the plan again")
        }
    }

    /// A decoding error in words: which field, and what is wrong with it.
    static func explain(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            let text = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "the top level" : String(text.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(field(context.codingPath + [key])) is missing"
        case .valueNotFound(_, let context): return "\(field(context.codingPath)) is empty"
        case .typeMismatch(let type, let context): return "\(field(context.codingPath)) is not \(type == String.self ? "text" : "a valid \(type)")"
        case .dataCorrupted(let context): return "\(field(context.codingPath)) is invalid (\(context.debugDescription))"
        @unknown default: return "\(error)"
        }
    }
}
