import Foundation
import StratumCore
import StratumEngine
import StratumState

/// Kills `stratum apply` / `stratum destroy` with SIGKILL at random moments and checks that a
/// clean rerun leaves the cloud and the state in agreement: nothing leaked, nothing created
/// twice, no mismatch. Drives the real `stratum-fixture` binary against the file-backed fake
/// cloud (30 resources, with latency on every call).
public struct ChaosHarness: Sendable {
    /// The `stratum-fixture` binary.
    public var fixture: URL
    /// Killed runs; they alternate between apply and destroy.
    public var runs: Int
    /// Latency of each fake cloud call, half before it takes effect and half after.
    public var latencyMilliseconds: Int
    /// Children of the root resource: the stack has `children + 1` resources.
    public var children: Int
    public var seed: UInt64
    public var parallelism: Int

    public init(fixture: URL, runs: Int = 50, latencyMilliseconds: Int = 40, children: Int = 29, seed: UInt64 = 1, parallelism: Int = 10) {
        self.fixture = fixture
        self.runs = runs
        self.latencyMilliseconds = latencyMilliseconds
        self.children = children
        self.seed = seed
        self.parallelism = parallelism
    }

    public struct Figures: Sendable, CustomStringConvertible {
        public var runs = 0
        /// Runs whose process was killed before it finished (the rest finished first).
        public var killedMidRun = 0
        /// Resources alive in the cloud but absent from state after the rerun.
        public var leaked = 0
        /// Extra resources made for an address within one apply (a second create of the same thing).
        public var duplicated = 0
        /// State entries that disagree with the cloud (missing, stale or extra), plus unsettled journal rows.
        public var mismatched = 0
        /// Interrupted creates the rerun found by their token and adopted.
        public var adopted = 0
        public var seconds = 0.0
        public var failures: [String] = []

        public var description: String {
            String(
                format: "%d runs (%d killed mid-run), %d adopted by recovery: leaked %d, duplicated %d, mismatched %d (%.1f s)",
                runs, killedMidRun, adopted, leaked, duplicated, mismatched, seconds)
        }
    }

    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    public func run(in directory: URL, progress: (String) -> Void = { _ in }) async throws -> Figures {
        let config = directory.appendingPathComponent("chaos.yaml")
        try "count: \(children)\nvalue: chaos\n".write(to: config, atomically: true, encoding: .utf8)
        let cloud = FakeCloudProvider(root: directory.appendingPathComponent(".stratum/fake-cloud"))
        var random = Generator(state: seed)
        var figures = Figures()
        let clock = ContinuousClock()
        let started = clock.now

        // Calibrate: how long an undisturbed apply and destroy take here, the quickest of three
        // (one slowed by a busy moment would put most kills after the run has ended).
        var applyTime = Double.infinity, destroyTime = Double.infinity
        for _ in 0..<3 {
            applyTime = min(applyTime, try await timed { try invoke("apply", config: config, in: directory, killAfter: nil) })
            destroyTime = min(destroyTime, try await timed { try invoke("destroy", config: config, in: directory, killAfter: nil) })
        }
        progress(String(format: "calibration: apply %.2f s, destroy %.2f s", applyTime, destroyTime))

        for run in 0..<runs {
            let command = run % 2 == 0 ? "apply" : "destroy"
            let window = command == "apply" ? applyTime : destroyTime
            let before = Self.eventCount(cloud)
            let delay = Double.random(in: 0...(window * 1.1), using: &random)
            let killed = try await offThePool { try invoke(command, config: config, in: directory, killAfter: delay) }
            if killed { figures.killedMidRun += 1 }
            // The clean rerun: must settle the journal and finish the job.
            let rerun = try await offThePool { try invokeCapturing(command, config: config, in: directory) }
            figures.adopted += rerun.components(separatedBy: "adopted ").count - 1
            let check = try await verify(command: command, cloud: cloud, eventsBefore: before, directory: directory)
            figures.leaked += check.leaked
            figures.duplicated += check.duplicated
            figures.mismatched += check.mismatched
            if check.leaked + check.duplicated + check.mismatched > 0 {
                figures.failures.append("run \(run) (\(command), killed after \(String(format: "%.3f", delay)) s): \(check.detail)")
            }
            figures.runs += 1
            if (run + 1) % 10 == 0 { progress("\(run + 1)/\(runs) runs: \(figures)") }
        }
        figures.seconds = (clock.now - started).seconds
        return figures
    }

    struct Check {
        var leaked = 0
        var duplicated = 0
        var mismatched = 0
        var detail = ""
    }

    private func verify(command: String, cloud: FakeCloudProvider, eventsBefore: Int, directory: URL) async throws -> Check {
        var check = Check()
        let store = try SQLiteStateStore(path: directory.appendingPathComponent(".stratum/state.db").path)
        let workspace = "fake-fan/dev"
        let snapshot = try await store.read(workspace: workspace)
        let pending = try await store.pendingOperations(workspace: workspace)
        let live = try cloud.inventory()
        let stateIDs = Set(snapshot.resources.values.map(\.id))

        let leakedIDs = live.keys.filter { !stateIDs.contains($0) }
        check.leaked = leakedIDs.count
        var notes: [String] = leakedIDs.map { "leaked \($0) (\(live[$0]!.address))" }

        // Distinct ids made per address during this run and its rerun.
        let creates = Self.eventLines(cloud, from: eventsBefore).filter { $0.hasPrefix("create ") }
        var made: [ResourceAddress: Set<String>] = [:]
        for line in creates {
            let parts = line.split(separator: " ")
            if parts.count == 3, let address = ResourceAddress(parsing: String(parts[1])) { made[address, default: []].insert(String(parts[2])) }
        }
        for (id, item) in live { made[item.address, default: []].insert(id) }
        if command == "apply" {
            for (address, ids) in made where ids.count > 1 {
                // A second id is a duplicate unless the first was deleted as part of a replace (none here).
                check.duplicated += ids.count - 1
                notes.append("\(address) created \(ids.count) times")
            }
            let expected = children + 1
            for state in snapshot.resources.values {
                guard let item = live[state.id] else {
                    check.mismatched += 1
                    notes.append("\(state.address) in state as \(state.id) but not in the cloud")
                    continue
                }
                if item.address != state.address || item.attributes["value"] != state.attributes["value"] {
                    check.mismatched += 1
                    notes.append("\(state.address) differs from the cloud")
                }
            }
            if snapshot.resources.count != expected {
                check.mismatched += abs(snapshot.resources.count - expected)
                notes.append("state holds \(snapshot.resources.count) resources, expected \(expected)")
            }
        } else {
            // A destroy creates nothing; anything it made is a duplicate.
            check.duplicated += creates.count
            if !creates.isEmpty { notes.append("destroy created \(creates.count) resources") }
            check.mismatched += snapshot.resources.count
            if !snapshot.resources.isEmpty { notes.append("state still holds \(snapshot.resources.count) after destroy") }
        }
        if !pending.isEmpty {
            check.mismatched += pending.count
            notes.append("\(pending.count) journal rows left unsettled")
        }
        check.detail = notes.joined(separator: "; ")
        return check
    }

    static func eventLines(_ cloud: FakeCloudProvider, from start: Int = 0) -> [String] {
        Array(cloud.events().dropFirst(start))
    }

    static func eventCount(_ cloud: FakeCloudProvider) -> Int { cloud.events().count }

    /// Times `body`, run off the shared pool (it waits on a child process).
    private func timed(_ body: @escaping @Sendable () throws -> Bool) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        _ = try await offThePool(body)
        return (clock.now - start).seconds
    }

    private func environment(_ directory: URL) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env["STRATUM_FAKE_LATENCY_MS"] = String(latencyMilliseconds)
        env.removeValue(forKey: "STRATUM_FAKE_BLOCK_ON")
        env.removeValue(forKey: "STRATUM_FAKE_FAIL_ON")
        return env
    }

    private func process(_ command: String, config: URL, in directory: URL) -> Process {
        let process = Process()
        process.executableURL = fixture
        process.arguments = [command, "--stack", "fake-fan", "--config", config.path, "--auto-approve", "--parallelism", String(parallelism)]
        process.currentDirectoryURL = directory
        process.environment = environment(directory)
        process.standardInput = FileHandle.nullDevice
        return process
    }

    /// Runs the command, SIGKILLing it after `killAfter` seconds; true when it was killed
    /// before it finished.
    private func invoke(_ command: String, config: URL, in directory: URL, killAfter: Double?) throws -> Bool {
        let process = process(command, config: config, in: directory)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        if let killAfter {
            let deadline = Date().addingTimeInterval(killAfter)
            while process.isRunning, Date() < deadline { usleep(1000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return true
            }
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ChaosError("undisturbed `\(command)` exited \(process.terminationStatus)")
        }
        return false
    }

    /// Runs the command to completion and returns what it printed on stderr.
    private func invokeCapturing(_ command: String, config: URL, in directory: URL) throws -> String {
        let process = process(command, config: config, in: directory)
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ChaosError("the rerun of `\(command)` after a kill exited \(process.terminationStatus): \(text)")
        }
        return text
    }
}

public struct ChaosError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

