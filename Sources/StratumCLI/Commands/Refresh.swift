import ArgumentParser
import Foundation
import StratumCore
import StratumEngine
import StratumState

struct Refresh: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read live state from the providers and record it, changing no resource.",
        discussion: "Resources that no longer exist are removed from state; the next plan will recreate them."
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let context = RunContext(global)
        try await reportingErrors(context.console) {
            let name = try await context.stackName()
            let store = try await context.openStore()
            let workspace = context.workspace(for: name)
            try await context.locked(store, workspace: workspace, operation: "refresh") {
                let snapshot = try await store.read(workspace: workspace)
                let refreshed = try await Refresher(providers: context.providers).refresh(snapshot.resources)
                let gone = refreshed.live.filter { $0.value == nil }.keys.sorted()
                let changed = refreshed.existing.values.filter { snapshot.resources[$0.address] != $0 }.sorted { $0.address < $1.address }
                for address in gone { context.console.output("\(address): no longer exists; removed from state") }
                for state in changed where state.failure == nil { context.console.output("\(state.address): changed outside Stratum; state updated") }
                let failed = refreshed.existing.values.filter { $0.failure != nil }.sorted { $0.address < $1.address }
                for state in failed { context.console.output("\(state.address): failed: \(state.failure ?? ""); the next apply replaces it") }
                if !gone.isEmpty || !changed.isEmpty {
                    let history = gone.map { HistoryChange(address: $0.description, action: "refresh-gone") }
                        + changed.map { HistoryChange(address: $0.address.description, action: "refresh") }
                    try await store.commit(workspace: workspace, StateMutation(upserts: changed, removals: gone, changes: history), at: Date())
                }
                context.console.output("Refreshed \(snapshot.resources.count) resource(s) with \(refreshed.readCalls) read call(s): \(gone.count) gone, \(changed.count) changed\(failed.isEmpty ? "" : ", \(failed.count) failed").")
            }
        }
    }
}
