// Fleet placement under scarce capacity, on the fake clouds of `stratum-fixture`:
//
// 1. Time to a fully landed 16-node gang (128 H100s) when the two cheapest landings are stocked
//    out and every provider call (a create, a refusal, a read) takes T: failover one landing at
//    a time versus `apply --race 3`, side by side in one run.
// 2. A 64-node gang that may land on three fake clouds under 30 % throttling: the first cloud is
//    down, the second has room for only part of the gang in its first zone. Failed runs,
//    machines leaked (in a cloud, unknown to state), machines duplicated (one address live
//    twice), wall time.
//
//   swift build -c release --product stratum-fixture && swift run -c release stratum-placement-bench [--t-ms 1000] [--runs 3]
import Foundation
import StratumTesting

let arguments = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let value = Int(arguments[index + 1]) else { return fallback }
    return value
}
let tMilliseconds = option("--t-ms", 1000)
let runs = option("--runs", 3)

struct Outcome {
    var status: Int32
    /// The whole apply.
    var seconds: Double
    /// From the start until the last node of the gang that stayed was created.
    var landedAfter: Double
    var landed: [String]
    var leaked: Int
    var duplicated: Int
    var creates: Int
    var refusals: Int
    var throttled: Int
}

/// One `stratum apply` of the fake-cluster stack in a fresh directory, and what it left.
func apply(_ label: String, config: String, rules: [String: [String]], extra: [String], environment: [String: String]) async throws -> Outcome {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-placement-bench-\(label)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir.appendingPathComponent("Stacks"), withIntermediateDirectories: true)
    try Data(config.utf8).write(to: dir.appendingPathComponent("Stacks/fake-cluster.dev.yaml"))
    let clouds = ["fake", "fake2", "fake3"].map { FakeCloudProvider(root: dir.appendingPathComponent(".stratum/\($0)-cloud"), name: $0) }
    for cloud in clouds { if let lines = rules[cloud.name] { try cloud.setCapacityRules(lines) } }
    let started = Date().timeIntervalSince1970
    let run = try await BuiltBinary.run(
        "stratum-fixture", ["apply", "--stack", "fake-cluster", "--auto-approve", "--parallelism", "64"] + extra, in: dir, environment: environment)
    let seconds = Date().timeIntervalSince1970 - started
    let state = try await BuiltBinary.run("stratum-fixture", ["state", "list", "--stack", "fake-cluster"], in: dir, environment: [:])
    let recorded = Set(state.stdout.split(separator: "\n").map(String.init))
    var landed: [String] = []
    var leaked = 0
    var live: [String: Int] = [:]
    var creates = 0, refusals = 0, throttled = 0
    var landedAt = started
    for cloud in clouds {
        let createdAt = cloud.createdAt()
        for item in try cloud.inventory().values {
            if item.address.type.hasSuffix("_node") { landedAt = max(landedAt, createdAt[item.address.description] ?? started) }
            let address = item.address.description
            live[address, default: 0] += 1
            if !recorded.contains(address) { leaked += 1 }
            if item.address.type.hasSuffix("_node"), item.address.index == 0 {
                landed.append("\(cloud.name) \(item.attributes["zone"]?.stringValue ?? "?")")
            }
        }
        let events = cloud.events()
        creates += events.filter { $0.hasPrefix("create ") && $0.contains("_node.") }.count
        refusals += events.filter { $0.hasPrefix("refused ") }.count
        throttled += events.filter { $0.hasPrefix("throttled ") }.count
    }
    if run.status != 0 { FileHandle.standardError.write(Data("[\(label)] apply failed:\n\(run.stderr.suffix(2000))\n".utf8)) }
    try? FileManager.default.removeItem(at: dir)
    return Outcome(
        status: run.status, seconds: seconds, landedAfter: landedAt - started, landed: landed, leaked: leaked, duplicated: live.values.filter { $0 > 1 }.count, creates: creates,
        refusals: refusals, throttled: throttled)
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

print("Fleet placement on fake clouds (stratum-fixture), T = \(tMilliseconds) ms per provider call, \(runs) run(s) each\n")

// 1. Serial failover vs --race 3.
let stockedOut = ["fake": ["capacity fk.gpu8 default-a", "capacity fk.gpu8 default-b"]]
let slow = ["STRATUM_FAKE_LATENCY_MS": String(tMilliseconds)]
var serial: [Double] = [], raced: [Double] = [], serialApply: [Double] = [], racedApply: [Double] = []
for run in 1...runs {
    let one = try await apply("serial", config: "gpus: 128\n", rules: stockedOut, extra: [], environment: slow)
    let three = try await apply("race", config: "gpus: 128\n", rules: stockedOut, extra: ["--race", "3"], environment: slow)
    for (name, outcome) in [("one at a time", one), ("--race 3", three)] {
        print(String(format: "  run %d  %-14@ landed whole after %6.2f s (apply done after %6.2f s)  status %d  on %@  leaked %d  duplicated %d", run,
                     name as NSString, outcome.landedAfter, outcome.seconds, outcome.status, (outcome.landed.first ?? "nowhere") as NSString, outcome.leaked,
                     outcome.duplicated))
    }
    serial.append(one.landedAfter)
    raced.append(three.landedAfter)
    serialApply.append(one.seconds)
    racedApply.append(three.seconds)
}
let t = Double(tMilliseconds) / 1000
print(String(format: "\n16-node gang, two cheapest landings stocked out, medians: landed whole after %.2f s (%.1f T) one at a time, %.2f s (%.1f T) with --race 3: %.2f× sooner; whole apply %.2f s vs %.2f s\n",
             median(serial), median(serial) / t, median(raced), median(raced) / t, median(serial) / median(raced), median(serialApply), median(racedApply)))

// 2. 64 nodes, three clouds, 30 % throttling.
let scarce = ["fake": ["down"], "fake2": ["capacity f2.gpu8 yonder-1 40"]]
let config = "gpus: 512\nsites: [\"fake:default\", \"fake2:yonder\", \"fake3:elsewhere\"]\n"
let throttling = ["STRATUM_FAKE_LATENCY_MS": "20", "STRATUM_FAKE_THROTTLE": "0.3"]
var failed = 0, leaked = 0, duplicated = 0
var times: [Double] = []
for run in 1...runs {
    let outcome = try await apply("throttled", config: config, rules: scarce, extra: [], environment: throttling)
    print(String(format: "  run %d  %6.2f s  status %d  landed %@  node creates %d  refusals %d  throttled %d  leaked %d  duplicated %d", run, outcome.seconds,
                 outcome.status, (outcome.landed.first ?? "nowhere") as NSString, outcome.creates, outcome.refusals, outcome.throttled, outcome.leaked,
                 outcome.duplicated))
    if outcome.status != 0 { failed += 1 }
    leaked += outcome.leaked
    duplicated += outcome.duplicated
    times.append(outcome.seconds)
}
print(String(format: "\n64-node gang, three clouds, 30 %% throttling: %d of %d runs failed, %d machines leaked, %d duplicated, median wall time %.2f s",
             failed, runs, leaked, duplicated, median(times)))
