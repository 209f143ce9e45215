// Crash-safety figures: `swift build --product stratum-fixture && swift run stratum-chaos [RUNS]`.
// Kills apply/destroy of a 30-resource stack with SIGKILL at random moments, reruns each, and
// prints how many resources leaked, were created twice, or disagree with state.
import Foundation
import StratumTesting

let arguments = CommandLine.arguments.dropFirst()
let runs = arguments.first.flatMap(Int.init) ?? 100
let seed = arguments.dropFirst().first.flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970)
let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
let fixture = binaries.appendingPathComponent("stratum-fixture")
guard FileManager.default.isExecutableFile(atPath: fixture.path) else {
    FileHandle.standardError.write(Data("stratum-chaos: build the fixture first: swift build --product stratum-fixture\n".utf8))
    exit(2)
}
let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-chaos-\(getpid())")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }

print("Chaos: \(runs) runs alternating apply and destroy of 30 fake resources (40 ms per call, half before and half after it takes effect), SIGKILL at a random moment, then a clean rerun. Seed \(seed).")
let harness = ChaosHarness(fixture: fixture, runs: runs, latencyMilliseconds: 40, seed: seed)
let figures = try await harness.run(in: directory) { print("  \($0)") }
print("")
print("runs               \(figures.runs)")
print("killed mid-run     \(figures.killedMidRun)")
print("adopted (recovery) \(figures.adopted)")
print("leaked             \(figures.leaked)")
print("duplicated         \(figures.duplicated)")
print("mismatched         \(figures.mismatched)")
print(String(format: "wall time          %.1f s", figures.seconds))
for failure in figures.failures { print("  \(failure)") }
exit(figures.leaked + figures.duplicated + figures.mismatched == 0 ? 0 : 1)
