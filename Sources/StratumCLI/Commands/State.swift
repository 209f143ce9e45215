import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumState

struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Inspect and edit recorded state.",
        subcommands: [
            StateList.self, StateShow.self, StateRemove.self, StateMove.self, StateImport.self, StateExport.self,
            StateHistory.self, StatePending.self,
        ]
    )
}

struct StateList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the resources in state.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let (store, workspace) = try await context.openWorkspace(readOnly: true)
            let snapshot = try await store.read(workspace: workspace)
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
            let (store, workspace) = try await context.openWorkspace(readOnly: true)
            let snapshot = try await store.read(workspace: workspace)
            guard let state = snapshot.resources[target] else { throw CLIError("\(target) is not in state") }
            if global.json {
                var redacted = state
                redacted.attributes = state.attributes.mapValues(\.redacted)
                context.console.output(try jsonText(redacted))
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
            let (store, workspace) = try await context.openWorkspace()
            try await context.locked(store, workspace: workspace, operation: "state rm") {
                // A record that cannot be decoded can still be forgotten: that is how it is fixed.
                let present: Bool
                do {
                    present = try await store.read(workspace: workspace).resources[target] != nil
                } catch let error as UndecodableResourcesError where error.addresses.contains(target.description) {
                    present = true
                }
                guard present else { throw CLIError("\(target) is not in state") }
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
            let (store, workspace) = try await context.openWorkspace()
            try await context.locked(store, workspace: workspace, operation: "state mv") {
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
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "List every serial of the state with what changed, and every lock event.",
        discussion: """
            `--diff SERIAL` shows what that serial changed, attribute by attribute (secrets stay \
            `(sensitive)`).
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: ArgumentHelp("Show the attribute changes of one serial.", valueName: "SERIAL")) var diff: Int?

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let (store, workspace) = try await context.openWorkspace(readOnly: true)
            if let diff {
                guard let delta = try await store.delta(workspace: workspace, serial: diff) else {
                    throw CLIError("serial \(diff) is not in the history of \(workspace)")
                }
                context.console.output(HistoryDiff.render(delta))
                return
            }
            let entries = try await store.history(workspace: workspace)
            let events = try await store.lockEvents(workspace: workspace)
            if global.json {
                struct Document: Encodable {
                    var serials: [HistoryEntry]
                    var lockEvents: [LockEvent]
                }
                context.console.output(try jsonText(Document(serials: entries, lockEvents: events)))
                return
            }
            if entries.isEmpty && events.isEmpty { context.console.output("No history yet for \(workspace).") }
            // One timeline: serials and lock events by time.
            var lines: [(Date, Int, String)] = []
            for entry in entries {
                let what = entry.changes.map { "\($0.action) \($0.address)" }.joined(separator: ", ")
                lines.append((entry.time, 1, "serial \(entry.serial)  \(what)"))
            }
            for event in events {
                let detail = event.detail.isEmpty ? "" : " (\(event.detail))"
                lines.append((event.time, 0, "lock \(event.kind.rawValue) \(event.lockID) by \(event.holder)\(detail)"))
            }
            let formatter = ISO8601DateFormatter()
            for (time, _, text) in lines.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
                context.console.output("\(formatter.string(from: time))  \(text)")
            }
        }
    }
}

/// Renders what one serial changed, resource by resource and attribute by attribute.
enum HistoryDiff {
    static func render(_ delta: StateDelta) -> String {
        let formatter = ISO8601DateFormatter()
        var lines = ["serial \(delta.serial) at \(formatter.string(from: delta.time)): " + delta.changes.map { "\($0.action) \($0.address)" }.joined(separator: ", ")]
        if delta.addresses.isEmpty { lines.append("  (no resource changed)") }
        for address in delta.addresses {
            switch (delta.before[address], delta.after[address]) {
            case (nil, let after?):
                lines.append("+ \(address) (\(after.id))")
                for (key, value) in after.attributes.sorted(by: { $0.key < $1.key }) { lines.append("    + \(key) = \(value)") }
            case (let before?, nil):
                lines.append("- \(address) (\(before.id))")
                for (key, value) in before.attributes.sorted(by: { $0.key < $1.key }) { lines.append("    - \(key) = \(value)") }
            case (let before?, let after?):
                lines.append("~ \(address)" + (before.id == after.id ? " (\(after.id))" : " (\(before.id) -> \(after.id))"))
                for key in Set(before.attributes.keys).union(after.attributes.keys).sorted() {
                    let old = before.attributes[key]
                    let new = after.attributes[key]
                    guard old != new else { continue }
                    switch (old, new) {
                    case (nil, let new?): lines.append("    + \(key) = \(new)")
                    case (let old?, nil): lines.append("    - \(key) = \(old)")
                    case (let old?, let new?): lines.append("    ~ \(key) = \(old) -> \(new)")
                    default: break
                    }
                }
            case (nil, nil):
                break
            }
        }
        return lines.joined(separator: "\n")
    }
}

struct StatePending: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pending", abstract: "List operations that started but were never settled (the journal).",
        discussion: """
            Each provider call is journaled before it is made and settled with its result. A row \
            left here means a run was killed between the two; the next plan, apply or refresh \
            settles it first, asking the provider by the operation's idempotency token whether \
            it took effect (or, where the row names a long-running cloud operation, resuming \
            that operation).
            """)
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let (store, workspace) = try await context.openWorkspace(readOnly: true)
            let pending = try await store.pendingOperations(workspace: workspace)
            if global.json {
                struct Row: Encodable {
                    var id, address, action, provider, region, token: String
                    var handle: String?
                    var startedAt: Date
                }
                context.console.output(try jsonText(pending.map {
                    Row(
                        id: $0.id, address: $0.address.description, action: $0.action.rawValue, provider: $0.provider, region: $0.region, token: $0.token,
                        handle: $0.handle, startedAt: $0.startedAt)
                }))
                return
            }
            if pending.isEmpty {
                context.console.output("No pending operations for \(workspace).")
                return
            }
            let formatter = ISO8601DateFormatter()
            for operation in pending {
                let handle = operation.handle.map { "  operation \($0)" } ?? ""
                context.console.output("\(operation.id)  \(operation.action.rawValue) \(operation.address)  token \(operation.token)\(handle)  started \(formatter.string(from: operation.startedAt))")
            }
            context.console.output("\(pending.count) pending operation(s); the next plan, apply or refresh settles them.")
        }
    }
}

struct StateImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Adopt an existing resource into state by its provider id.",
        discussion: """
            Reads the resource from its provider and records it at ADDRESS; nothing in the cloud \
            changes. The address's type picks the provider (local_bucket → local). Run `stratum \
            plan` afterwards to see how it differs from the stack.

            Example: stratum state import local_bucket.data data
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Where to record it, e.g. aws_instance.worker[0].") var address: String
    @Argument(help: "The provider's id for it (instance id, bucket name, …).") var id: String
    @Option(name: .long, help: "The region it lives in (default: the provider's default).") var region: String?

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let target = try parseAddress(address)
            let providerName = String(target.type.prefix { $0 != "_" })
            guard let provider = context.providers[providerName], provider.kinds[target.type] != nil else {
                throw CLIError("no provider in this build manages '\(target.type)'")
            }
            let region = region ?? (providerName == "local" ? "local" : "default")
            let (store, workspace) = try await context.openWorkspace()
            let imported = try await context.locked(store, workspace: workspace, operation: "state import") {
                guard try await store.read(workspace: workspace).resources[target] == nil else {
                    throw CLIError("\(target) is already in state; `stratum state rm` it first to import another resource there")
                }
                guard var state = try await RetryPolicy().run({ try await provider.importResource(type: target.type, region: region, id: id, address: target) }) else {
                    throw CLIError("\(providerName) has no \(target.type) with id '\(id)' in \(region)")
                }
                state.address = target
                state = Sensitivity.protect(state, schema: provider.schema(for: target.type), template: [:])
                try await store.commit(workspace: workspace, StateMutation(upserts: [state], changes: [HistoryChange(address: target.description, action: "import \(id)")]), at: Date())
                return state
            }
            context.console.output("Imported \(imported.id) as \(target). Run `stratum plan` to compare it with the stack.")
        }
    }
}

struct StateExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Print the workspace's state as JSON (secrets stay encrypted).",
        discussion: "The document holds lineage, serial, resources and outputs; sensitive values appear only as sealed `$stratum.sealed` text.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let (store, workspace) = try await context.openWorkspace(readOnly: true)
            let snapshot = try await store.read(workspace: workspace)
            let document = StateExportDocument(
                format: 1, workspace: workspace, lineage: snapshot.lineage, serial: snapshot.serial,
                resources: snapshot.resources.values.sorted { $0.address < $1.address }, outputs: snapshot.outputs)
            let encoder = StateCodec(sealer: context.stateKey).encoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            encoder.dateEncodingStrategy = .iso8601
            context.console.output(String(decoding: try encoder.encode(document), as: UTF8.self))
        }
    }
}

/// What `stratum state export` prints.
struct StateExportDocument: Codable {
    var format: Int
    var workspace: String
    var lineage: String
    var serial: Int
    var resources: [ResourceState]
    var outputs: [String: Value]
}

func parseAddress(_ text: String) throws -> ResourceAddress {
    guard let address = ResourceAddress(parsing: text) else {
        throw CLIError("'\(text)' is not a resource address (expected type.name or type.name[0])")
    }
    return address
}
