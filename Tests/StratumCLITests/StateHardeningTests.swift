import Foundation
import GRDB
import StratumCLI
import StratumState
import StratumTesting
import Testing

/// State files at their edges, through the built binaries: many first users at once, read-only
/// files, empty files, undecodable rows, and configurations the trainer would refuse.
@Suite("State and config hardening (real processes)", .serialized, .timeLimit(.minutes(3)))
struct StateHardeningTests {
    /// Every file and directory under `root` with its size, to prove a command created nothing.
    func listing(_ root: URL) -> [String] {
        let paths = (try? FileManager.default.subpathsOfDirectory(atPath: root.path)) ?? []
        return paths.sorted().map { path in
            let size = (try? FileManager.default.attributesOfItem(atPath: root.appendingPathComponent(path).path)[.size] as? Int) ?? -1
            return "\(path) \(size)"
        }
    }

    /// Runs every command at once as its own process and returns their results in order.
    func runTogether(_ cli: CLI, _ commands: [[String]]) throws -> [CLI.Result] {
        let started = try commands.map { try cli.start($0) }
        return started.map { process, out, err in
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return CLI.Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
        }
    }

    @Test func sixConcurrentFirstUsesOfANewStateFileAllSucceed() async throws {
        let dir = try TestSupport.temporaryDirectory("first-use")
        let cli = CLI("stratum-fixture", in: dir)
        let environments = (0..<6).map { "e\($0)" }
        // Each environment has its own (empty) config file, so every plan is an intended one.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("Stacks"), withIntermediateDirectories: true)
        for env in environments {
            try Data("# fake-fan in \(env): defaults\n".utf8).write(to: dir.appendingPathComponent("Stacks/fake-fan.\(env).yaml"))
        }
        // Several rounds, each on a path nobody has used (its directory does not exist yet):
        // plans in six environments race to create, migrate and write the same file, while
        // read-only listings race them.
        for round in 0..<3 {
            let state = "round\(round)/nested/state.db"
            let plans = environments.map { ["plan", "--stack", "fake-fan", "--env", $0, "--state", state] }
            let lists = environments.prefix(2).map { ["state", "list", "--stack", "fake-fan", "--env", $0, "--state", state] }
            let results = try runTogether(cli, plans + lists)
            for (command, result) in zip(plans + lists, results) {
                #expect(result.status == 0, "\(command.joined(separator: " ")) failed: \(result.stderr)")
                #expect(!result.stderr.contains("Error"), "\(result.stderr)")
            }
            let path = dir.appendingPathComponent(state).path
            let workspaces = try await SQLiteStateStore.openForReading(path: path).workspaces()
            #expect(workspaces == environments.map { "fake-fan/\($0)" })
            // No migration of an existing file ran, so no backup was taken.
            let siblings = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("round\(round)/nested").path)
            #expect(!siblings.contains { $0.contains("backup") || $0.contains(".new-") }, "\(siblings)")
        }
    }

    @Test func readCommandsWorkOnAReadOnlyStateFileAndCreateNothing() async throws {
        let dir = try TestSupport.temporaryDirectory("read-only")
        let cli = CLI("stratum-fixture", in: dir)
        let base = ["--stack", "fake-fan"]
        let applied = try await cli.run(["apply", "--auto-approve"] + base)
        #expect(applied.status == 0, "\(applied.stderr)")
        let stateDir = dir.appendingPathComponent(".stratum")
        let db = stateDir.appendingPathComponent("state.db").path
        // As the state is left when no Stratum runs (the last connection to close folds the WAL
        // into the file), then without write permission.
        try closeOnce(db)
        #expect(!FileManager.default.fileExists(atPath: db + "-wal"))
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: db)
        try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: stateDir.path)
        defer {
            try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: stateDir.path)
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: db)
        }
        let before = listing(dir)

        let list = try await cli.run(["state", "list"] + base)
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("fake_thing.root"))
        let show = try await cli.run(["state", "show", "fake_thing.root"] + base)
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("# fake_thing.root"))
        let history = try await cli.run(["state", "history"] + base)
        #expect(history.status == 0, "\(history.stderr)")
        #expect(history.stdout.contains("serial 1"))
        let output = try await cli.run(["output", "root_id"] + base)
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.hasPrefix("thing-"))
        let plan = try await cli.run(["plan", "--no-lock", "--detailed-exitcode"] + base)
        #expect(plan.status == 0, "plan --no-lock: \(plan.stdout) \(plan.stderr)")
        #expect(plan.stdout.contains("No changes"), "\(plan.stdout)")

        #expect(listing(dir) == before, "a read command created or changed a file")

        // A state path that does not exist is read as empty state and is not created.
        let missing = try await cli.run(["state", "list", "--state", "nowhere/state.db"] + base)
        #expect(missing.status == 0, "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("nowhere").path))
    }

    @Test func anEmptyStateFileIsReportedAndLeftAlone() async throws {
        let dir = try TestSupport.temporaryDirectory("empty-state")
        let cli = CLI("stratum-fixture", in: dir)
        let path = dir.appendingPathComponent("state.db").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        for command in [["state", "list"], ["plan"], ["plan", "--no-lock"], ["apply", "--auto-approve"]] {
            let result = try await cli.run(command + ["--stack", "fake-fan", "--state", path])
            #expect(result.status == 1, "\(command): \(result.stdout)")
            #expect(result.stderr.contains("state file \(path) is empty (0 bytes)"), "\(result.stderr)")
            #expect(result.stderr.contains("Restore it from a backup"), "\(result.stderr)")
        }
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) == 0)
    }

    @Test func anUndecodableRowIsNamedAndStateRmRemovesIt() async throws {
        let dir = try TestSupport.temporaryDirectory("bad-row")
        let cli = CLI("stratum-fixture", in: dir)
        let base = ["--stack", "fake-fan"]
        #expect(try await cli.run(["apply", "--auto-approve"] + base).status == 0)
        let db = dir.appendingPathComponent(".stratum/state.db").path
        // Hand-edited: the row's attributes are no longer JSON.
        let queue = try DatabaseQueue(path: db)
        try await queue.write { try $0.execute(sql: "UPDATE resource SET attributes = CAST('{\"value\": ' AS BLOB) WHERE address = 'fake_thing.child[3]'") }
        try queue.close()

        for command in [["state", "list"], ["plan"], ["state", "show", "fake_thing.root"]] {
            let result = try await cli.run(command + base)
            #expect(result.status == 1, "\(command)")
            #expect(result.stderr.contains("fake_thing.child[3] (attributes: malformed"), "\(result.stderr)")
            #expect(result.stderr.contains("stratum state rm fake_thing.child[3]"), "\(result.stderr)")
        }
        let removed = try await cli.run(["state", "rm", "fake_thing.child[3]"] + base)
        #expect(removed.status == 0, "\(removed.stderr)")
        let list = try await cli.run(["state", "list"] + base)
        #expect(list.status == 0, "\(list.stderr)")
        #expect(!list.stdout.contains("fake_thing.child[3]"))
        #expect(list.stdout.contains("fake_thing.child[2]"))
        // Another undecodable row is still refused by name when it is not the one removed.
        #expect(try await cli.run(["state", "rm", "fake_thing.child[3]"] + base).stderr.contains("is not in state"))
    }

    @Test func aStatePathThatIsADirectoryIsSaidSo() async throws {
        let dir = try TestSupport.temporaryDirectory("state-dir")
        let cli = CLI("stratum-fixture", in: dir)
        let stateDir = dir.appendingPathComponent("states")
        try FileManager.default.createDirectory(at: stateDir, withIntermediateDirectories: true)
        for command in [["state", "list"], ["plan"], ["output"]] {
            let result = try await cli.run(command + ["--stack", "fake-fan", "--state", stateDir.path])
            #expect(result.status == 1)
            #expect(result.stderr.contains("the state path \(stateDir.path) is a directory, not a state file"), "\(result.stderr)")
            #expect(!result.stderr.contains("I/O error"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: stateDir.path).isEmpty)
    }

    // MARK: Configuration checked against what it feeds

    func localDemo(config: String) throws -> (CLI, URL) {
        let dir = try TestSupport.temporaryDirectory("local-demo-config")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("Stacks"), withIntermediateDirectories: true)
        try Data(config.utf8).write(to: dir.appendingPathComponent("Stacks/local-demo.dev.yaml"))
        return (CLI("stratum", in: dir), dir)
    }

    @Test func aConfigTheTrainerWouldRefuseFailsValidateAndPlanNamingTheKey() async throws {
        let cases: [(yaml: String, expected: String)] = [
            ("threads: 0\n", "threads = 0: must be 1...1024 (the trainer's train.threads)"),
            ("threads: 1025\n", "threads = 1025: must be 1...1024"),
            ("width: 33\n", "width = 33: must be divisible by the model's 2 attention heads"),
            ("workers: 4097\n", "workers = 4097: must be 0...4096 (the trainer's diloco.workers)"),
            ("metrics_port: 65535\nworkers: 2\n", "metrics_port = 65535: worker i listens on metrics_port + i"),
            ("inner_steps: 0\n", "inner_steps = 0: must be 1...1000000000"),
        ]
        for (yaml, expected) in cases {
            let (cli, dir) = try localDemo(config: yaml)
            for command in [["validate"], ["plan"]] {
                let result = try await cli.run(command + ["--stack", "local-demo"])
                #expect(result.status == 1, "\(yaml) \(command)")
                #expect(result.stderr.contains("local-demo.dev.yaml: \(expected)"), "\(result.stderr)")
            }
            // Nothing was planned, so no state was created.
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent(".stratum/state.db").path))
        }
        // Several problems are reported together.
        let (cli, _) = try localDemo(config: "threads: 0\nrounds: 0\n")
        let both = try await cli.run(["validate", "--stack", "local-demo"])
        #expect(both.stderr.contains("rounds = 0") && both.stderr.contains("threads = 0"), "\(both.stderr)")
        // The bounds themselves are valid.
        let (edge, _) = try localDemo(config: "threads: 1024\nwidth: 65536\nworkers: 1\nmetrics_port: 65535\n")
        let valid = try await edge.run(["validate", "--stack", "local-demo"])
        #expect(valid.status == 0, "\(valid.stderr)")
    }

    @Test func aFloatWhereAnIntegerIsExpectedNamesTheKey() async throws {
        for (yaml, shown) in [("threads: 1.5\n", "1.5"), ("workers: 1e300\n", "1e+300"), ("rounds: .inf\n", "")] {
            let (cli, _) = try localDemo(config: yaml)
            let result = try await cli.run(["validate", "--stack", "local-demo"])
            #expect(result.status == 1)
            let key = String(yaml.prefix { $0 != ":" })
            #expect(result.stderr.contains("local-demo.dev.yaml: config key '\(key)'"), "\(result.stderr)")
            #expect(result.stderr.contains("expected an integer"), "\(result.stderr)")
            #expect(shown.isEmpty || result.stderr.contains(shown), "\(result.stderr)")
            #expect(!result.stderr.contains("DecodingError") && !result.stderr.contains("codingPath"), "\(result.stderr)")
        }
    }

    /// The Swift limits are the trainer's: the built trainer accepts each bound and refuses
    /// one past it. (A value it accepts gets as far as the cross-key check, which this config
    /// fails on purpose, so nothing trains.)
    @Test func theSwiftLimitsAgreeWithTheTrainer() async throws {
        let dir = try TestSupport.temporaryDirectory("trainer-limits")
        let config = dir.appendingPathComponent("trainer.yaml")
        try Data("model: {context: 1}\ntrain: {seq_len: 2}\n".utf8).write(to: config)
        let trainer = CLI("stratum-trainer", in: dir)
        func run(_ key: TrainerLimits.Key, _ value: Int64) async throws -> CLI.Result {
            try await trainer.run(["--config", config.path, "--set", "\(key.name)=\(value)"])
        }
        for key in TrainerLimits.all {
            for value in [key.range.lowerBound, key.range.upperBound] {
                let accepted = try await run(key, value)
                #expect(accepted.status == 2)
                #expect(!accepted.stderr.contains("out of range"), "\(key.name)=\(value): \(accepted.stderr)")
                #expect(accepted.stderr.contains("must not exceed") || accepted.stderr.contains("divisible"), "\(key.name)=\(value): \(accepted.stderr)")
            }
            for value in [key.range.lowerBound - 1, key.range.upperBound + 1] {
                let refused = try await run(key, value)
                #expect(refused.status == 2)
                #expect(refused.stderr.contains("'\(key.name)'"), "\(key.name)=\(value): \(refused.stderr)")
                #expect(refused.stderr.contains("out of range") || refused.stderr.contains("non-negative"), "\(key.name)=\(value): \(refused.stderr)")
            }
        }
    }
}

/// Opens and closes the state file, which checkpoints and removes its WAL.
func closeOnce(_ path: String) throws {
    try SQLiteStateStore(path: path).close()
}
