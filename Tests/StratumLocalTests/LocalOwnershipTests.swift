import Foundation
import StratumCore
import CStratumSpawn
@testable import StratumLocal
import StratumTesting
import Testing

@Suite("Local node limit")
struct LocalCapacityTests {
    @Test func theLimitIsTheLeastOfProcessesMemoryAndCPUs() {
        let gib: UInt64 = 1 << 30
        let roomy = LocalCapacity.derived(.init(freeTaskSlots: 32000, memoryBytes: 8 * gib, cpus: 2))
        #expect(roomy.nodes == 64)  // 2 CPUs × 32; memory allows 128, processes 2000
        #expect(roomy.explanation.contains("32 per CPU × 2 CPUs = 64"))
        #expect(LocalCapacity.derived(.init(freeTaskSlots: 32000, memoryBytes: gib, cpus: 8)).nodes == 16)
        #expect(LocalCapacity.derived(.init(freeTaskSlots: 160, memoryBytes: 8 * gib, cpus: 8)).nodes == 10)
        #expect(LocalCapacity.derived(.init(freeTaskSlots: 0, memoryBytes: 8 * gib, cpus: 8)).nodes == 0)
        #expect(LocalCapacity.derived(.read()).nodes >= 0)
    }

    @Test func theOverrideReplacesTheDerivedLimit() throws {
        let set = try LocalCapacity.current(environment: [LocalCapacity.overrideVariable: "5"]).get()
        #expect(set.nodes == 5)
        #expect(set.explanation == "set by STRATUM_LOCAL_MAX_NODES=5")
        #expect(throws: LocalCapacity.Diagnosed.self) { try LocalCapacity.current(environment: [LocalCapacity.overrideVariable: "-1"]).get() }
    }

    @Test func runningOutOfProcessesOrMemoryIsACapacityError() {
        let address = ResourceAddress(type: "local_node", name: "w", index: 0)
        func kind(step: UInt32, errno: Int32) -> ProviderError.Kind {
            LocalProcesses.SpawnFailure(step: Int32(step), errno: errno, program: "/bin/sh", address: address).providerError.kind
        }
        #expect(kind(step: STRATUM_SPAWN_FORK.rawValue, errno: EAGAIN) == .capacity)
        #expect(kind(step: STRATUM_SPAWN_FORK.rawValue, errno: ENOMEM) == .capacity)
        #expect(kind(step: STRATUM_SPAWN_EXEC.rawValue, errno: ENOMEM) == .capacity)
        #expect(kind(step: STRATUM_SPAWN_EXEC.rawValue, errno: ENOENT) == .permanent)
        // The machine is the local provider's whole capacity.
        #expect(LocalProcesses.SpawnFailure(step: Int32(STRATUM_SPAWN_FORK.rawValue), errno: EAGAIN, program: "/bin/sh", address: address).providerError.scope == .cloud)
    }
}

@Suite("Local provider ownership")
struct LocalOwnershipTests {
    @Test func aFailedBucketCreateNeverRemovesADirectoryItDidNotMake() async throws {
        let root = try TestSupport.temporaryDirectory("local-foreign")
        let provider = LocalProvider(root: root)
        let foreign = root.appendingPathComponent("buckets/data")
        try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
        let address = ResourceAddress(type: "local_bucket", name: "data")
        let inputs: [String: Value] = ["name": "data"]
        await #expect(throws: ProviderError.self) {
            try await provider.create(ResolvedResource(address: address, region: "local", inputs: inputs, dependencies: []), token: "tok-mine")
        }
        // What the executor does after a failed create: ask what the create left.
        #expect(try await provider.recover(operation(address, token: "tok-mine", inputs: inputs)) == nil)
        #expect(FileManager.default.fileExists(atPath: foreign.path))

        // Killed after writing its record but before making its directory: nothing to adopt.
        let fresh = ResourceAddress(type: "local_bucket", name: "fresh")
        try LocalRecord(id: "fresh", token: "tok-2", attributes: [:]).save(provider.bucketRecord("fresh"))
        #expect(try await provider.recover(operation(fresh, token: "tok-2", inputs: ["name": "fresh"])) == nil)
        #expect(!FileManager.default.fileExists(atPath: provider.bucketRecord("fresh").path))
    }

    @Test func aNodeWhoseProcessesWereKilledIsReportedLostAndItsDeleteRemovesItsDirectory() async throws {
        let root = try TestSupport.temporaryDirectory("local-lost")
        let provider = LocalProvider(root: root)
        let address = ResourceAddress(type: "local_node", name: "w", index: 0)
        let created = try await provider.create(
            ResolvedResource(address: address, region: "local", inputs: ["command": ["/bin/sh", "-c", "sleep 1000 & sleep 1000"]], dependencies: []), token: "tok-lost")
        #expect(created.attributes["status"] == "running")
        let directory = try #require(LocalProcesses.directory(of: created))
        let tree = LocalProcesses.tree(directory, record: LocalProcesses.loadRecord(in: directory), recordedPid: LocalProcesses.recordedPid(created))
        let deadline = ContinuousClock.now + .seconds(20)
        while tree.members(in: .scan()).count < 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(tree.members(in: .scan()).count >= 3)

        // Killed from outside, the leader first: no exit status is recorded.
        for pid in tree.members(in: .scan()).sorted() { kill(pid, SIGKILL) }
        while !tree.members(in: .scan()).isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let read = try #require(try await provider.read(type: "local_node", resources: [created]).first ?? nil)
        #expect(read.attributes["status"] == "lost")
        #expect(read.failure?.contains("stopped outside Stratum") == true)

        try await provider.delete(read)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        #expect(try await provider.read(type: "local_node", resources: [read]).first == .some(nil))
    }

    @Test func aProgramThatDoesNotExistFailsTheCreate() async throws {
        let root = try TestSupport.temporaryDirectory("local-missing")
        let provider = LocalProvider(root: root)
        let address = ResourceAddress(type: "local_node", name: "w", index: 0)
        do {
            _ = try await provider.create(ResolvedResource(address: address, region: "local", inputs: ["command": ["no-such-program-here"]], dependencies: []), token: "tok-x")
            Issue.record("the create succeeded")
        } catch let error as ProviderError {
            #expect(error.kind == .permanent)
            #expect(error.message.contains("not found on PATH"))
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("nodes").path)) ?? []).isEmpty)
    }
}

@Suite("Local process scans")
struct LocalProcessScanTests {
    /// A scan reaps only node leaders this process started: another child's exit status stays
    /// for the code that waits for it (as `Foundation.Process` waits for its own).
    @Test(.timeLimit(.minutes(3)))
    func aScanNeverReapsAChildItDidNotStart() async throws {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup("exit 7"), nil]
        defer { argv.forEach { free($0) } }
        #expect(posix_spawn(&pid, "/bin/sh", nil, nil, argv, nil) == 0)
        let deadline = ContinuousClock.now + .seconds(20)
        while ProcessStat.read(pid)?.isLive != false, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(ProcessStat.read(pid)?.state == "Z", "the child has exited and waits to be collected")
        #expect(ProcessTable.scan().entries[pid] == nil, "a zombie is not a live process")
        var status: Int32 = 0
        #expect(waitpid(pid, &status, WNOHANG) == pid, "the scan left the exit status to its waiter")
        #expect((status >> 8) & 0xff == 7)
    }
}
