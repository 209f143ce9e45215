import Foundation
import StratumState
import StratumTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A `stratum` process on a pseudo-terminal of its own, as a shell runs it: a new session
/// whose controlling terminal is the pty, so typing Ctrl-C sends SIGINT to its process group.
final class TerminalProcess: @unchecked Sendable {
    let pid: pid_t
    private let master: Int32
    private let lock = NSLock()
    private var buffer = Data()
    private var exitStatus: Int32?
    private var closed = false

    init(_ cli: CLI, _ arguments: [String], extraEnvironment: [String: String] = [:]) throws {
        #if os(Linux)
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard master >= 0 else { throw TerminalError("cannot open /dev/ptmx: errno \(errno)") }
        // TIOCSPTLCK (unlock the pair) and TIOCGPTN (its number), as grantpt/unlockpt/ptsname do.
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard ioctl(master, UInt(0x4004_5431), &unlock) == 0, ioctl(master, UInt(0x8004_5430), &number) == 0 else {
            close(master)
            throw TerminalError("cannot set up a pseudo-terminal: errno \(errno)")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // POSIX_SPAWN_SETSID (glibc): a new session, which the terminal opened below then leads.
        let setsid: Int32 = 0x80
        posix_spawnattr_setflags(&attributes, Int16(setsid | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Leave the test process's other descriptors behind (glibc 2.34+).
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/pts/\(number)", O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)

        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        for (key, value) in cli.environment.merging(extraEnvironment, uniquingKeysWith: { $1 }) { environment[key] = value }
        // env -C runs the binary itself (same pid) in the test's directory.
        let argv = ["/usr/bin/env", "-C", cli.directory.path, cli.binary.path] + arguments
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArguments + cEnvironment).forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, argv[0], &actions, &attributes, &cArguments, &cEnvironment)
        guard spawned == 0 else {
            close(master)
            throw TerminalError("posix_spawn failed: \(spawned)")
        }
        pid = child
        let thread = Thread { [self] in readUntilClosed() }
        thread.start()
        #else
        throw TerminalError("pseudo-terminal tests run on Linux")
        #endif
    }

    deinit { close(master) }

    private func readUntilClosed() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(master, &chunk, chunk.count)
            if count > 0 {
                lock.withLock { buffer.append(contentsOf: chunk[0..<count]) }
            } else if count < 0, errno == EINTR {
                continue
            } else {
                // EIO: every process holding the terminal is gone and its output is read.
                lock.withLock { closed = true }
                return
            }
        }
    }

    /// Everything written to the terminal so far.
    var output: String { lock.withLock { String(decoding: buffer, as: UTF8.self) } }

    /// Types Ctrl-C: the terminal sends SIGINT to the foreground process group.
    func typeInterrupt() {
        var byte: UInt8 = 3
        _ = write(master, &byte, 1)
    }

    func type(_ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { write(master, $0.baseAddress, $0.count - 1) }
    }

    /// Sends `signal` to the whole process group, as a terminal or a service manager does.
    func signalGroup(_ signal: Int32) { Glibc.kill(-pid, signal) }

    /// The exit code (128 + the signal when killed by one), or nil if it is still running at
    /// the deadline. Once it returns a code, `output` holds everything the process wrote.
    func waitForExit(seconds: Double) async -> Int32? {
        _ = await eventually(seconds: seconds) { reaped() }
        return lock.withLock { closed ? exitStatus : nil }
    }

    /// Reaps the child if it ended; whether it ended and its output is all read.
    private func reaped() -> Bool {
        if lock.withLock({ exitStatus == nil }) {
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return false }
            let signal = status & 0x7f
            lock.withLock { exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal }
        }
        return lock.withLock { closed }
    }

    func waitForOutput(_ text: String, seconds: Double) async -> Bool {
        await eventually(seconds: seconds) { output.contains(text) }
    }

    /// Makes sure nothing outlives the test.
    /// Kills the child and reaps it, on this thread: a `defer`'s clean-up, which cannot await
    /// (a SIGKILLed child ends at once).
    func kill() {
        _ = reaped()
        // Only a child not yet reaped: its pid cannot have been reused.
        if lock.withLock({ exitStatus == nil }) { Glibc.kill(pid, SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while !reaped(), Date() < deadline { usleep(10_000) }
    }
}

struct TerminalError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A directory with the fake-fan fixture, its fake cloud, and helpers to look at both.
struct FixtureWorkspace {
    let directory: URL
    let cli: CLI
    let cloud: FakeCloudProvider

    init(_ label: String) throws {
        directory = try TestSupport.temporaryDirectory(label)
        cli = CLI("stratum-fixture", in: directory)
        cloud = FakeCloudProvider(root: directory.appendingPathComponent(".stratum/fake-cloud"))
    }

    /// Writes a config file with `count` children and returns its path.
    func config(count: Int) throws -> String {
        let file = directory.appendingPathComponent("fan-\(count).yaml")
        try "count: \(count)\n".write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    var stratumDirectory: URL { directory.appendingPathComponent(".stratum") }

    func contents() -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }

    /// The lock events of the fake-fan workspace, oldest first (kind only).
    func lockEvents() async throws -> [String] {
        let history = try await cli.run(["state", "history", "--stack", "fake-fan", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [String: Any]
        let events = object?["lockEvents"] as? [[String: Any]] ?? []
        return events.compactMap { $0["kind"] as? String }
    }

    func stateAddresses() async throws -> Set<String> {
        Set(try await cli.run(["state", "list", "--stack", "fake-fan"]).stdout.split(separator: "\n").map(String.init))
    }

    /// Whether state and the fake cloud hold the same resources, each created once.
    func isConsistent(expected: Int) async throws -> Bool {
        let inventory = try cloud.inventory()
        let created = cloud.createCounts()
        let recorded = try await stateAddresses()
        return inventory.count == expected && Set(inventory.values.map(\.address.description)) == recorded
            && created.values.allSatisfy { $0 == 1 }
    }
}

@Suite("CLI hardening: typos fail loudly", .serialized)
struct CLITypoTests {
    @Test(.timeLimit(.minutes(2)))
    func unknownTargetOrExcludeExitsOneNamingIt() async throws {
        let work = try FixtureWorkspace("typo-target")
        let plan = try await work.cli.run(["plan", "--stack", "fake-fan", "--target", "fake_thing.chld"])
        #expect(plan.status == 1)
        #expect(plan.stderr.contains("--target fake_thing.chld matches no resource in the stack or its state"), "\(plan.stderr)")
        #expect(plan.stderr.contains("did you mean fake_thing.child?"), "\(plan.stderr)")
        #expect(!plan.stdout.contains("No changes"))

        let apply = try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve", "--exclude", "fake_thing.child[9]", "--target", "fake_thing.root"])
        #expect(apply.status == 1)
        #expect(apply.stderr.contains("--exclude fake_thing.child[9] matches no resource"), "\(apply.stderr)")
        #expect(try work.cloud.inventory().isEmpty)

        // Good addresses still work; a destroy names what state lacks.
        #expect(try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve", "--target", "fake_thing.child[1]"]).status == 0)
        await #expect(try work.stateAddresses() == ["fake_thing.child[1]", "fake_thing.root"])
        let destroy = try await work.cli.run(["destroy", "--stack", "fake-fan", "--auto-approve", "--target", "fake_thing.child[2]"])
        #expect(destroy.status == 1)
        #expect(destroy.stderr.contains("--target fake_thing.child[2] matches no resource in the state"), "\(destroy.stderr)")
        #expect(try work.cloud.inventory().count == 2)
    }

    @Test(.timeLimit(.minutes(3)))
    func aScopeThatExcludesEverythingSaysSo() async throws {
        let work = try FixtureWorkspace("typo-scope")
        // Every child needs the root, so excluding the root leaves nothing.
        let plan = try await work.cli.run(["plan", "--stack", "fake-fan", "--exclude", "fake_thing.root"])
        #expect(plan.status == 1)
        #expect(plan.stderr.contains("--exclude fake_thing.root leaves no resource in scope: all 6 resource(s) are left out"), "\(plan.stderr)")
        #expect(!plan.stdout.contains("No changes"))
    }

    @Test(.timeLimit(.minutes(3)))
    func malformedTargetIsRejectedBeforeTheLockIsTaken() async throws {
        let work = try FixtureWorkspace("typo-malformed")
        // On a fresh directory nothing at all is created.
        let fresh = try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve", "--target", "not an address"])
        #expect(fresh.status != 0)
        #expect(fresh.stderr.contains("--target 'not an address' is not a resource address"), "\(fresh.stderr)")
        #expect(work.contents().isEmpty, "\(work.contents())")

        #expect(try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve"]).status == 0)
        let before = try await work.lockEvents()
        #expect(before == ["acquired", "released"])
        for arguments in [["plan", "--target", "fake_thing["], ["destroy", "--auto-approve", "--exclude", "fake_thing.child[x]"]] {
            let result = try await work.cli.run(arguments + ["--stack", "fake-fan"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("is not a resource address"), "\(result.stderr)")
        }
        #expect(try await work.lockEvents() == before)
        #expect(try work.cloud.inventory().count == 6)
    }

    @Test(.timeLimit(.minutes(3)))
    func aStackTheBinaryDoesNotCarryCreatesNothing() async throws {
        let work = try FixtureWorkspace("typo-stack")
        for arguments in [["destroy", "--stack", "unknown", "--auto-approve"], ["plan", "--destroy", "--stack", "unknown"], ["plan", "--stack", "unknown"], ["output", "--stack", "unknown"]] {
            let result = try await work.cli.run(arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stderr.contains("no stack named 'unknown'"), "\(result.stderr)")
            #expect(result.stderr.contains("fake-fan"), "\(result.stderr)")
        }
        #expect(work.contents().isEmpty, "\(work.contents())")

        // With state for other stacks, the unknown one still gets no workspace, lock or row.
        #expect(try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve"]).status == 0)
        let statePath = work.stratumDirectory.appendingPathComponent("state.db").path
        let destroy = try await work.cli.run(["destroy", "--stack", "unknown", "--auto-approve"])
        #expect(destroy.status == 1)
        #expect(destroy.stderr.contains("no stack named 'unknown'"))
        let store = try SQLiteStateStore(path: statePath)
        let workspaces = try await store.workspaces()
        #expect(workspaces == ["fake-fan/dev"])
    }

    @Test(.timeLimit(.minutes(3)))
    func anUnknownEnvironmentNamesTheFilesItLookedFor() async throws {
        let work = try FixtureWorkspace("typo-env")
        let plan = try await work.cli.run(["plan", "--stack", "fake-fan", "--env", "prdo"])
        #expect(plan.status == 1)
        #expect(plan.stderr.contains("environment 'prdo' of fake-fan has no config file and no state"), "\(plan.stderr)")
        #expect(plan.stderr.contains("looked for Stacks/fake-fan.prdo.yaml"), "\(plan.stderr)")
        #expect(plan.stderr.contains(".stratum/state.db"), "\(plan.stderr)")
        #expect(plan.stderr.contains("--new-env"))
        let fromEnvironment = try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve"], extraEnvironment: ["STRATUM_ENV": "prdo"])
        #expect(fromEnvironment.status == 1)
        #expect(fromEnvironment.stderr.contains("looked for Stacks/fake-fan.prdo.yaml"))
        // The state commands, reading or writing, refuse it the same way.
        for command in [["state", "list"], ["state", "pending"], ["state", "rm", "fake_thing.child[0]"], ["output"]] {
            let typo = try await work.cli.run(command + ["--stack", "fake-fan", "--env", "prdo"])
            #expect(typo.status == 1, "\(command): \(typo.stderr)")
            #expect(typo.stderr.contains("looked for Stacks/fake-fan.prdo.yaml"), "\(command): \(typo.stderr)")
        }
        #expect(work.contents().isEmpty, "\(work.contents())")

        // The flag makes it intentional; once it has state, the flag is no longer needed.
        let started = try await work.cli.run(["apply", "--stack", "fake-fan", "--env", "prdo", "--new-env", "--auto-approve"])
        #expect(started.status == 0, "\(started.stderr)")
        #expect(try await work.cli.run(["plan", "--stack", "fake-fan", "--env", "prdo", "--detailed-exitcode"]).status == 0)
        // A config file is enough, too.
        try FileManager.default.createDirectory(at: work.directory.appendingPathComponent("Stacks"), withIntermediateDirectories: true)
        try "count: 1\n".write(to: work.directory.appendingPathComponent("Stacks/fake-fan.staging.yaml"), atomically: true, encoding: .utf8)
        #expect(try await work.cli.run(["plan", "--stack", "fake-fan", "--env", "staging"]).status == 0)
    }
}

@Suite("CLI hardening: scale", .serialized)
struct CLIScaleTests {
    @Test(.timeLimit(.minutes(2)))
    func createsStopEarlyWhenTheQuotaRunsOut() async throws {
        let work = try FixtureWorkspace("quota")
        let config = try work.config(count: 60)
        let apply = try await work.cli.run(["apply", "--stack", "fake-fan", "--config", config, "--auto-approve", "--parallelism", "1"], extraEnvironment: ["STRATUM_FAKE_QUOTA": "4"])
        #expect(apply.status == 1)
        #expect(apply.stderr.contains("Stopped starting creates: 3 creates in a row failed because an account quota is used up"), "\(apply.stderr)")
        #expect(apply.stderr.contains("54 create(s) were not attempted"), "\(apply.stderr)")
        #expect(apply.stderr.contains("Raise the quota"))
        // Four creates fit, three were refused, and nothing else was asked of the cloud.
        #expect(work.cloud.createCounts().values.reduce(0, +) == 4)
        #expect(work.cloud.refusals() == 3)
        await #expect(try work.stateAddresses().count == 4)

        // In parallel and as JSON: the attempts stay bounded and every skipped step is listed.
        let json = try await work.cli.run(
            ["apply", "--stack", "fake-fan", "--config", config, "--auto-approve", "--parallelism", "8", "--json"],
            extraEnvironment: ["STRATUM_FAKE_QUOTA": "4", "STRATUM_FAKE_EXHAUSTION": "capacity"])
        #expect(json.status == 1)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let result = try #require(document?["result"] as? [String: Any])
        let notStarted = result["not_started"] as? [Any] ?? []
        let failed = result["failed"] as? [Any] ?? []
        #expect((result["stopped_because"] as? String)?.contains("no capacity left") == true, "\(result)")
        #expect(failed.count >= 3 && failed.count <= 3 + 8 - 1)
        #expect(notStarted.count + failed.count == 57)
        #expect(work.cloud.refusals() == 3 + failed.count)

        // --exhaustion-limit 0 tries every create.
        let refusals = work.cloud.refusals()
        let stubborn = try await work.cli.run(
            ["apply", "--stack", "fake-fan", "--config", config, "--auto-approve", "--parallelism", "1", "--exhaustion-limit", "0"],
            extraEnvironment: ["STRATUM_FAKE_QUOTA": "4"])
        #expect(stubborn.status == 1)
        #expect(!stubborn.stderr.contains("Stopped starting creates"))
        #expect(work.cloud.refusals() - refusals == 57)
    }

    @Test(.timeLimit(.minutes(2)))
    func aLargePlanIsSummarizedAndFullOrJSONShowEverything() async throws {
        let work = try FixtureWorkspace("large-plan")
        let config = try work.config(count: 3000)
        let plan = try await work.cli.run(["plan", "--stack", "fake-fan", "--config", config])
        #expect(plan.status == 0, "\(plan.stderr)")
        let lines = plan.stdout.split(separator: "\n", omittingEmptySubsequences: false).count
        #expect(lines < 600, "\(lines) lines")
        #expect(plan.stdout.components(separatedBy: " will be created").count - 1 == 50)
        #expect(plan.stdout.contains("2951 more change(s) not shown; `--full` prints every one"))
        #expect(plan.stdout.contains("Changes by type:\n  fake_thing  3001 to add\n"))
        #expect(plan.stdout.contains("Plan: 3001 to add, 0 to change, 0 to destroy."))

        let full = try await work.cli.run(["plan", "--stack", "fake-fan", "--config", config, "--full"])
        #expect(full.stdout.components(separatedBy: " will be created").count - 1 == 3001)
        let json = try await work.cli.run(["plan", "--stack", "fake-fan", "--config", config, "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((document?["resource_changes"] as? [Any])?.count == 3001)
    }
}

@Suite("CLI hardening: clear messages", .serialized)
struct CLIMessageTests {
    @Test(.timeLimit(.minutes(3)))
    func configDirectoryAndDamagedPlanFilesAreExplained() async throws {
        let work = try FixtureWorkspace("messages")
        let directory = work.directory.appendingPathComponent("configs")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = try await work.cli.run(["plan", "--stack", "fake-fan", "--config", directory.path])
        #expect(config.status == 1)
        #expect(config.stderr.contains("--config \(directory.path) is a directory; pass a YAML file"), "\(config.stderr)")

        let intoDirectory = try await work.cli.run(["plan", "--stack", "fake-fan", "--out", directory.path])
        #expect(intoDirectory.status == 1)
        #expect(intoDirectory.stderr.contains("--out \(directory.path) is a directory; name a file in it"), "\(intoDirectory.stderr)")
        let nowhere = try await work.cli.run(["plan", "--stack", "fake-fan", "--out", work.directory.appendingPathComponent("no/such/plan.bin").path])
        #expect(nowhere.stderr.contains("the directory \(work.directory.appendingPathComponent("no/such").path) does not exist"), "\(nowhere.stderr)")

        let good = work.directory.appendingPathComponent("good.plan").path
        #expect(try await work.cli.run(["plan", "--stack", "fake-fan", "--out", good]).status == 0)
        let data = try Data(contentsOf: URL(fileURLWithPath: good))
        func planFile(_ name: String, _ contents: Data) async throws -> String {
            let path = work.directory.appendingPathComponent(name).path
            try contents.write(to: URL(fileURLWithPath: path))
            return path
        }
        var withoutChanges = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        withoutChanges["changes"] = nil
        var wrongType = withoutChanges
        wrongType["changes"] = "none"
        var future = withoutChanges
        future["format"] = 99
        let cases: [(String, String)] = await [
            (try planFile("empty.plan", Data()), "is empty, not a plan"),
            (try planFile("truncated.plan", data.prefix(data.count / 2)), "is truncated or corrupt: it is not complete JSON"),
            (try planFile("binary.plan", Data([0x00, 0xFF, 0x13, 0x37])), "is not a Stratum plan file (it is not JSON)"),
            (try planFile("foreign.plan", Data(#"{"resource_changes": []}"#.utf8)), "is JSON but not a Stratum plan file"),
            (try planFile("missing.plan", try JSONSerialization.data(withJSONObject: withoutChanges)), "is a damaged plan file: changes is missing"),
            (try planFile("mistyped.plan", try JSONSerialization.data(withJSONObject: wrongType)), "is a damaged plan file: changes is not"),
            (try planFile("future.plan", try JSONSerialization.data(withJSONObject: future)), "has plan format 99; this stratum reads format 1"),
            (work.stratumDirectory.appendingPathComponent("state.db").path, "is a SQLite database (a state file?), not a plan"),
            (directory.path, "is a directory, not a plan file"),
        ]
        for (path, words) in cases {
            let result = try await work.cli.run(["apply", path])
            #expect(result.status == 1, "\(path)")
            #expect(result.stderr.contains(words), "\(path): \(result.stderr)")
            for raw in ["DecodingError", "keyNotFound", "dataCorrupted", "typeMismatch", "Swift."] {
                #expect(!result.stderr.contains(raw), "\(path): \(result.stderr)")
            }
        }
        #expect(try work.cloud.inventory().isEmpty)
    }
}

@Suite("CLI hardening: interrupts", .serialized)
struct CLIInterruptTests {
    /// Waits until the fake cloud logged `count` creates (or deletes).
    func waitForEvents(_ work: FixtureWorkspace, _ kind: String, count: Int) async -> Bool {
        await eventually(seconds: 60) { work.cloud.events().filter { $0.hasPrefix(kind) }.count >= count }
    }

    @Test(.timeLimit(.minutes(2)))
    func sigintDuringApplyReleasesTheLockAndTheNextRunFinishes() async throws {
        let work = try FixtureWorkspace("sigint-apply")
        let config = try work.config(count: 12)
        let args = ["apply", "--stack", "fake-fan", "--config", config, "--auto-approve", "--parallelism", "1"]
        // child[2]'s create is held in flight until the test lets it go, one call at a time: the
        // signal lands mid-run however slowly a loaded machine shows this test the held call.
        let terminal = try TerminalProcess(work.cli, args, extraEnvironment: ["STRATUM_FAKE_HOLD_ON": "fake_thing.child[2]"])
        defer { terminal.kill() }
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: work.cloud.blockedMarker.path) }, "\(terminal.output)")
        terminal.typeInterrupt()
        #expect(await terminal.waitForOutput("waiting for", seconds: 60), "\(terminal.output)")
        try Data().write(to: work.cloud.releaseMarker)
        let status = await terminal.waitForExit(seconds: 60)
        #expect(status == 130, "\(terminal.output)")
        let output = terminal.output
        #expect(output.contains("Interrupted by SIGINT: "), "\(output)")
        #expect(output.contains("not started; what finished is recorded in state. Run `stratum apply --stack fake-fan` to finish."), "\(output)")
        let created = try work.cloud.inventory().count
        #expect(created >= 3 && created < 13)

        // The lock was released (not left for the next run to take over), the journal is settled,
        // and state holds exactly what the cloud holds.
        #expect(try await work.lockEvents().suffix(2) == ["acquired", "released"])
        #expect(try await work.cli.run(["state", "pending", "--stack", "fake-fan"]).stdout.contains("No pending operations"))
        #expect(try await work.isConsistent(expected: created))

        let rerun = try await work.cli.run(args)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(!rerun.stderr.contains("took over"), "\(rerun.stderr)")
        #expect(rerun.stdout.contains("Plan: \(13 - created) to add"), "\(rerun.stdout)")
        #expect(try await work.isConsistent(expected: 13))
    }

    @Test(.timeLimit(.minutes(2)))
    func sigtermToTheProcessGroupDuringDestroy() async throws {
        let work = try FixtureWorkspace("sigterm-destroy")
        let config = try work.config(count: 10)
        #expect(try await work.cli.run(["apply", "--stack", "fake-fan", "--config", config, "--auto-approve"]).status == 0)
        let terminal = try TerminalProcess(
            work.cli, ["destroy", "--stack", "fake-fan", "--auto-approve", "--parallelism", "1"], extraEnvironment: ["STRATUM_FAKE_HOLD_ON": "fake_thing.child[5]"])
        defer { terminal.kill() }
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: work.cloud.blockedMarker.path) }, "\(terminal.output)")
        terminal.signalGroup(SIGTERM)
        #expect(await terminal.waitForOutput("waiting for", seconds: 60), "\(terminal.output)")
        try Data().write(to: work.cloud.releaseMarker)
        await #expect(terminal.waitForExit(seconds: 60) == 143, "\(terminal.output)")
        #expect(terminal.output.contains("Interrupted by SIGTERM: "), "\(terminal.output)")
        #expect(terminal.output.contains("Run `stratum destroy --stack fake-fan` to finish."), "\(terminal.output)")
        let left = try work.cloud.inventory().count
        #expect(left > 0 && left <= 9)
        #expect(try await work.lockEvents().suffix(2) == ["acquired", "released"])
        #expect(try await work.isConsistent(expected: left))

        let rerun = try await work.cli.run(["destroy", "--stack", "fake-fan", "--auto-approve"])
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(try work.cloud.inventory().isEmpty)
        await #expect(try work.stateAddresses().isEmpty)
    }

    @Test(.timeLimit(.minutes(2)))
    func aSecondSigintExitsAtOnceAndTheJournalIsRecovered() async throws {
        let work = try FixtureWorkspace("sigint-twice")
        let args = ["apply", "--stack", "fake-fan", "--auto-approve", "--parallelism", "1"]
        // The third child's create never returns: only a forced exit ends the run.
        let terminal = try TerminalProcess(work.cli, args, extraEnvironment: ["STRATUM_FAKE_BLOCK_ON": "fake_thing.child[2]"])
        defer { terminal.kill() }
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: work.cloud.blockedMarker.path) }, "\(terminal.output)")
        terminal.typeInterrupt()
        #expect(await terminal.waitForOutput("waiting for 1 provider call(s) in flight to finish; starting no new ones. Press Ctrl-C again", seconds: 30), "\(terminal.output)")
        await #expect(terminal.waitForExit(seconds: 0) == nil)
        terminal.typeInterrupt()
        await #expect(terminal.waitForExit(seconds: 30) == 130, "\(terminal.output)")
        #expect(terminal.output.contains("SIGINT again: exiting now; the 1 provider call(s) in flight are journaled"), "\(terminal.output)")

        let pending = try await work.cli.run(["state", "pending", "--stack", "fake-fan"])
        #expect(pending.stdout.contains("fake_thing.child[2]"), "\(pending.stdout)")
        let rerun = try await work.cli.run(args)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("Recovering 1 interrupted operation(s)"), "\(rerun.stderr)")
        #expect(try await work.isConsistent(expected: 6))
    }

    @Test(.timeLimit(.minutes(2)))
    func sigintWhilePlanningOrAtThePromptChangesNothing() async throws {
        let work = try FixtureWorkspace("sigint-plan")
        #expect(try await work.cli.run(["apply", "--stack", "fake-fan", "--auto-approve"]).status == 0)

        // During the refresh (each read takes long): stops at once, lock released.
        let planning = try TerminalProcess(work.cli, ["plan", "--stack", "fake-fan"], extraEnvironment: ["STRATUM_FAKE_LATENCY_MS": "20000"])
        defer { planning.kill() }
        #expect(await planning.waitForOutput("Refreshing 6 resource(s)", seconds: 60), "\(planning.output)")
        planning.typeInterrupt()
        #expect(await planning.waitForExit(seconds: 30) == 130, "\(planning.output)")
        #expect(planning.output.contains("Interrupted by SIGINT: stopped before changing anything."), "\(planning.output)")
        #expect(try await work.lockEvents().suffix(2) == ["acquired", "released"])

        // At the confirmation prompt of a change.
        let config = try work.config(count: 8)
        let prompt = try TerminalProcess(work.cli, ["apply", "--stack", "fake-fan", "--config", config])
        defer { prompt.kill() }
        #expect(await prompt.waitForOutput("Enter a value:", seconds: 60), "\(prompt.output)")
        prompt.typeInterrupt()
        #expect(await prompt.waitForExit(seconds: 30) == 130, "\(prompt.output)")
        #expect(prompt.output.contains("Interrupted by SIGINT: cancelled at the prompt; nothing was changed."), "\(prompt.output)")
        #expect(try await work.lockEvents().suffix(2) == ["acquired", "released"])
        #expect(try await work.isConsistent(expected: 6))
    }
}
