import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumState

struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Inspect and edit recorded state.",
        subcommands: [StateList.self, StateShow.self, StateRemove.self, StateMove.self, StateHistory.self]
    )
}

struct StateList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the resources in state.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let snapshot = try await context.openStore().read(workspace: context.workspace(for: try context.stackEntry().name))
            let addresses = snapshot.resources.keys.sorted()
            if global.json {
                context.console.output(try jsonText(addresses.map(\.description)))
            } else {
                for address in addresses { context.console.output(address.description) }
            }
        }
    }
}

struct StateShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one resource's recorded attributes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The resource address, e.g. local_bucket.data.") var address: String

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let target = try parseAddress(address)
            let snapshot = try await context.openStore().read(workspace: context.workspace(for: try context.stackEntry().name))
            guard let state = snapshot.resources[target] else { throw CLIError("\(target) is not in state") }
            if global.json {
                context.console.output(try jsonText(state))
                return
            }
            var lines = ["# \(state.address)", "provider = \(state.provider)", "region   = \(state.region)", "id       = \(state.id)"]
            for (key, value) in state.attributes.sorted(by: { $0.key < $1.key }) { lines.append("\(key) = \(value)") }
            if !state.dependencies.isEmpty { lines.append("depends on: " + state.dependencies.map(\.description).joined(separator: ", ")) }
            context.console.output(lines.joined(separator: "\n"))
        }
    }
}

struct StateRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Forget a resource without deleting it.",
        discussion: "The resource keeps running; Stratum stops managing it. The next plan will want to create it again if the stack still declares it.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The resource address.") var address: String

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let target = try parseAddress(address)
            let store = try context.openStore()
            let workspace = context.workspace(for: try context.stackEntry().name)
            try await StateLock(store: store, workspace: workspace).run(operation: "state rm") { _ in
                guard try await store.read(workspace: workspace).resources[target] != nil else { throw CLIError("\(target) is not in state") }
                try await store.commit(workspace: workspace, StateMutation(removals: [target], changes: [HistoryChange(address: target.description, action: "rm")]), at: Date())
            }
            context.console.output("Removed \(target) from state.")
        }
    }
}

struct StateMove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mv", abstract: "Rename a resource in state, e.g. after renaming it in the stack.",
        discussion: "Only the record moves; nothing in the cloud changes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The current address.") var source: String
    @Argument(help: "The new address (same type).") var destination: String

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let from = try parseAddress(source)
            let to = try parseAddress(destination)
            guard from.type == to.type else { throw CLIError("cannot move \(from) to a different type (\(to.type))") }
            let store = try context.openStore()
            let workspace = context.workspace(for: try context.stackEntry().name)
            try await StateLock(store: store, workspace: workspace).run(operation: "state mv") { _ in
                let snapshot = try await store.read(workspace: workspace)
                guard var state = snapshot.resources[from] else { throw CLIError("\(from) is not in state") }
                guard snapshot.resources[to] == nil else { throw CLIError("\(to) is already in state") }
                state.address = to
                // Whatever depended on the old address now depends on the new one.
                var upserts = [state]
                for var other in snapshot.resources.values where other.dependencies.contains(from) {
                    other.dependencies = other.dependencies.map { $0 == from ? to : $0 }
                    upserts.append(other)
                }
                try await store.commit(workspace: workspace, StateMutation(upserts: upserts, removals: [from], changes: [HistoryChange(address: "\(from) -> \(to)", action: "mv")]), at: Date())
            }
            context.console.output("Moved \(from) to \(to).")
        }
    }
}

struct StateHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "List every serial of the state with what changed.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let store = try context.openStore()
            let workspace = context.workspace(for: try context.stackEntry().name)
            let entries = try await store.history(workspace: workspace)
            if global.json {
                context.console.output(try jsonText(entries))
                return
            }
            let formatter = ISO8601DateFormatter()
            if entries.isEmpty { context.console.output("No history yet for \(workspace).") }
            for entry in entries {
                let what = entry.changes.map { "\($0.action) \($0.address)" }.joined(separator: ", ")
                context.console.output("serial \(entry.serial)  \(formatter.string(from: entry.time))  \(what)")
            }
        }
    }
}

func parseAddress(_ text: String) throws -> ResourceAddress {
    guard let address = ResourceAddress(parsing: text) else {
        throw CLIError("'\(text)' is not a resource address (expected type.name or type.name[0])")
    }
    return address
}
