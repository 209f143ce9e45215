import Foundation
import StratumCLI
import StratumTesting

// The Stratum CLI with the fake cloud and the test stacks linked in: tests run it as a real
// process (to kill it mid-apply, or to race two of them for the lock). The fake cloud lives in
// STRATUM_FAKE_CLOUD, or beside the state file.
let fake = ProviderFactory(catalog: FakeCloudProvider.catalog) { work in
    let root = ProcessInfo.processInfo.environment["STRATUM_FAKE_CLOUD"].map { URL(fileURLWithPath: $0) } ?? work.appendingPathComponent("fake-cloud")
    return FakeCloudProvider(root: root, options: .fromEnvironment())
}
// A second fake cloud (GPU clusters fail over to it), in STRATUM_FAKE2_CLOUD or beside the state file.
let fake2 = ProviderFactory(catalog: FakeCloudProvider.secondCatalog) { work in
    let root = ProcessInfo.processInfo.environment["STRATUM_FAKE2_CLOUD"].map { URL(fileURLWithPath: $0) } ?? work.appendingPathComponent("fake2-cloud")
    return FakeCloudProvider(root: root, name: "fake2", options: .fromEnvironment())
}
// A third fake cloud (benchmarks), in STRATUM_FAKE3_CLOUD or beside the state file.
let fake3 = ProviderFactory(catalog: FakeCloudProvider.thirdCatalog) { work in
    let root = ProcessInfo.processInfo.environment["STRATUM_FAKE3_CLOUD"].map { URL(fileURLWithPath: $0) } ?? work.appendingPathComponent("fake3-cloud")
    return FakeCloudProvider(root: root, name: "fake3", options: .fromEnvironment())
}
// A cloud whose creates wait on long-running operations, beside the fake cloud.
let longRunning = ProviderFactory { LongRunningProvider(root: $0.appendingPathComponent("lro-cloud")) }
await StratumCLI.main(stacks: [FakeFanStack.self, FakeFleetStack.self, FakeClusterStack.self, LocalShellStack.self, LongRunningStack.self, ElsewhereStack.self, ChurnShellStack.self], providers: [.local, fake, fake2, fake3, longRunning])
