import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting

// Plan benchmark: a synthetic stack of N resources (instances, disks that refer to them, and
// addresses) already applied, against a provider with a fixed latency per API call. Prints
// wall time per phase, provider read calls and peak RSS; then a baseline that reads one
// resource per call with 10 reads in flight, in the same process, and the ratio.
//
//   swift run -c release stratum-bench [--latency-ms 50] [--sizes 1000,10000,100000] [--baseline-sizes 1000,10000]

func argument(_ name: String, default value: String) -> String {
    let args = CommandLine.arguments
    guard let index = args.firstIndex(of: name), index + 1 < args.count else { return value }
    return args[index + 1]
}

let latency = Duration.milliseconds(Int(argument("--latency-ms", default: "50")) ?? 50)
let sizes = argument("--sizes", default: "1000,10000,100000").split(separator: ",").compactMap { Int($0) }
let baselineSizes = Set(argument("--baseline-sizes", default: "1000,10000").split(separator: ",").compactMap { Int($0) })

func peakRSSMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kb / 1024
}

/// The synthetic stack: a third each of instances, disks (referring to an instance) and addresses.
func syntheticStack(size: Int) throws -> EvaluatedStack {
    var content = StackContent()
    let third = size / 3
    for i in 0..<third {
        let instance = CustomResource("synthetic_instance", "node", index: i, provider: "synthetic", region: "r\(i % 4)", inputs: ["size": 8, "value": "a"])
        instance.declare(into: &content)
        CustomResource("synthetic_disk", "disk", index: i, provider: "synthetic", region: "r\(i % 4)", inputs: ["size": 100, "parent": instance["id"]]).declare(into: &content)
    }
    for i in 0..<(size - 2 * third) {
        CustomResource("synthetic_address", "ip", index: i, provider: "synthetic", region: "r\(i % 4)", inputs: ["value": "10.0.\(i / 250).\(i % 250)"]).declare(into: &content)
    }
    return try StackEvaluator.evaluate(content, name: "bench", environment: "bench")
}

/// State and cloud as if the stack had been applied, with 1 % of instances drifted.
func seed(_ stack: EvaluatedStack, provider: SyntheticProvider, store: any StateStore) async throws {
    var states: [ResourceState] = []
    var ids: [ResourceAddress: String] = [:]
    for resource in stack.resources where resource.address.type == "synthetic_instance" {
        ids[resource.address] = "i-\(resource.address.index ?? 0)"
    }
    for resource in stack.resources {
        let id = ids[resource.address] ?? "\(resource.address.type)-\(resource.address.index ?? 0)"
        var attributes = resource.inputs.mapValues { value in
            value.resolvingReferences { ref in .string(ids[ref.address] ?? "") }
        }
        attributes["id"] = .string(id)
        states.append(ResourceState(address: resource.address, provider: "synthetic", region: resource.region, id: id, attributes: attributes, dependencies: resource.dependencies))
    }
    try await store.commit(workspace: "bench", StateMutation(upserts: states, changes: []), at: Date())
    var live = states
    for index in stride(from: 0, to: live.count, by: 100) where live[index].address.type == "synthetic_instance" {
        live[index].attributes["value"] = "drifted"
    }
    provider.seed(live)
}

struct Measurement {
    var total: Double
    var phases: [(String, Double)]
    var readCalls: Int
    var changes: Int
}

func measurePlan(stackSize: Int, batched: Bool) async throws -> Measurement {
    let provider = SyntheticProvider(latency: latency, batchedReads: batched, readParallelism: 10)
    let registry = ProviderRegistry([provider])
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-bench-\(UUID().uuidString.prefix(8))")
    defer { try? FileManager.default.removeItem(at: directory) }
    let store = try SQLiteStateStore(path: directory.appendingPathComponent("state.db").path)
    try await seed(try syntheticStack(size: stackSize), provider: provider, store: store)
    provider.resetCounts()

    let clock = ContinuousClock()
    var phases: [(String, Double)] = []
    let start = clock.now
    var mark = start
    func lap(_ name: String) {
        let now = clock.now
        phases.append((name, (now - mark).seconds))
        mark = now
    }
    let stack = try syntheticStack(size: stackSize)
    try Planner(providers: registry).validate(stack)
    lap("evaluate")
    let snapshot = try await store.read(workspace: "bench")
    lap("state")
    let refreshed = try await Refresher(providers: registry).refresh(snapshot.resources)
    lap("refresh")
    let plan = try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, now: Date())
    lap("diff")
    return Measurement(total: (clock.now - start).seconds, phases: phases, readCalls: provider.callCounts()["read"] ?? 0, changes: plan.actionable.count)
}

print("Stratum plan benchmark: \(latency.seconds * 1000) ms per provider call")
print(String(repeating: "-", count: 100))
for size in sizes {
    let batched = try await measurePlan(stackSize: size, batched: true)
    let phaseText = batched.phases.map { String(format: "%@ %.3fs", $0.0, $0.1) }.joined(separator: ", ")
    print(String(format: "%7d resources  batched   plan %.3fs  read calls %6d  changes %5d  peak RSS %.0f MB  (%@)", size, batched.total, batched.readCalls, batched.changes, peakRSSMegabytes(), phaseText))
    if baselineSizes.contains(size) {
        let baseline = try await measurePlan(stackSize: size, batched: false)
        print(String(format: "%7d resources  per-item  plan %.3fs  read calls %6d  changes %5d  -> batched is %.1fx faster", size, baseline.total, baseline.readCalls, baseline.changes, baseline.total / batched.total))
    }
}
