import ArgumentParser
import Foundation
import StratumCore

struct Output: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the stack's outputs as of the last apply.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Print only this output's value (strings without quotes).")
    var name: String?

    @Flag(name: .long, help: "Print secret values instead of (sensitive).")
    var showSensitive = false

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let stackName = try await context.stackName()
            let snapshot = try await context.openStore(readOnly: true).read(workspace: context.workspace(for: stackName))
            // Text shows a secret as (sensitive); JSON carries the string "(sensitive)" in its place.
            let outputs = showSensitive ? snapshot.outputs.mapValues(\.revealed) : global.json ? snapshot.outputs.mapValues(\.redacted) : snapshot.outputs
            if let name {
                guard let value = outputs[name] else {
                    throw CLIError("no output named '\(name)'; outputs: \(snapshot.outputs.keys.sorted().joined(separator: ", "))")
                }
                if global.json {
                    context.console.output(try jsonText(value))
                } else {
                    context.console.output(value.stringValue ?? value.description)
                }
                return
            }
            if global.json {
                context.console.output(try jsonText(Value.map(outputs)))
            } else if outputs.isEmpty {
                context.console.output("No outputs. Apply the stack first.")
            } else {
                for (key, value) in outputs.sorted(by: { $0.key < $1.key }) { context.console.output("\(key) = \(value)") }
            }
        }
    }
}

func jsonText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
