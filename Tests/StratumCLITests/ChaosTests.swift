import Foundation
import StratumTesting
import Testing

@Suite("Chaos: SIGKILL at random moments", .serialized)
struct ChaosTests {
    /// 50 runs alternating apply and destroy of a 30-resource stack, each SIGKILLed at a random
    /// moment and rerun: recovery must leave nothing leaked, duplicated or mismatched.
    @Test func killedAppliesAndDestroysLeaveNoLeakNoDuplicateNoMismatch() async throws {
        let dir = try TestSupport.temporaryDirectory("chaos")
        let runs = Int(ProcessInfo.processInfo.environment["STRATUM_CHAOS_RUNS"] ?? "") ?? 50
        let fixture = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("stratum-fixture")
        let harness = ChaosHarness(fixture: fixture, runs: runs, latencyMilliseconds: 40, seed: 20261124)
        let figures = try await harness.run(in: dir) { print("chaos: \($0)") }
        print("chaos: \(figures)")
        #expect(figures.runs == runs)
        // Most kills must land mid-run, or the test proves little.
        #expect(figures.killedMidRun * 2 > runs)
        #expect(figures.leaked == 0, "\(figures.failures)")
        #expect(figures.duplicated == 0, "\(figures.failures)")
        #expect(figures.mismatched == 0, "\(figures.failures)")
    }
}
