import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

@Suite("CLI: journal, secrets, import/export, history, bad directories", .serialized)
struct CLIJournalAndSecretsTests {
    @Test func aCreateKilledAfterItTookEffectIsPendingThenAdopted() async throws {
        let dir = try TestSupport.temporaryDirectory("pending")
        let cli = CLI("stratum-fixture", in: dir)
        let cloud = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud"))
        let args = ["apply", "--stack", "fake-fan", "--auto-approve", "--parallelism", "1"]

        let (process, _, _) = try cli.start(args, extraEnvironment: ["STRATUM_FAKE_BLOCK_AFTER_ON": "fake_thing.child[1]"])
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: cloud.blockedMarker.path) })
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()

        // The journal shows the create that reached the cloud but not the state.
        let pending = try await cli.run(["state", "pending", "--stack", "fake-fan"])
        #expect(pending.status == 0)
        #expect(pending.stdout.contains("create fake_thing.child[1]"))
        #expect(pending.stdout.contains("1 pending operation"))

        // A lock the dead process held is taken over; recovery adopts the orphan by its token.
        let rerun = try await cli.run(args)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("took over the state lock"))
        #expect(rerun.stderr.contains("fake_thing.child[1]: the interrupted create had succeeded; adopted"))
        #expect(cloud.createCounts().values.allSatisfy { $0 == 1 })
        #expect(try cloud.inventory().count == 6)
        #expect(try await cli.run(["state", "pending", "--stack", "fake-fan"]).stdout.contains("No pending operations"))
        let history = try await cli.run(["state", "history", "--stack", "fake-fan"]).stdout
        #expect(history.contains("lock taken-over"))
        #expect(history.contains("recover (adopted"))
    }

    @Test func secretsNeverReachOutputLogsOrFilesInPlainText() async throws {
        let dir = try TestSupport.temporaryDirectory("cli-secret")
        let secret = "hunter2-\(UUID().uuidString.prefix(8))"
        let config = dir.appendingPathComponent("secret.yaml")
        try "count: 1\ntoken: \(secret)\n".write(to: config, atomically: true, encoding: .utf8)
        let cli = CLI("stratum-fixture", in: dir)
        let base = ["--stack", "fake-fan", "--config", config.path]

        var printed = ""
        func run(_ args: [String], expect status: Int32 = 0) async throws -> CLI.Result {
            let result = try await cli.run(args)
            #expect(result.status == status, "\(args): \(result.stderr)")
            printed += result.stdout + result.stderr
            return result
        }
        _ = try await run(["plan"] + base + ["--log-level", "trace", "--out", "saved.plan"])
        _ = try await run(["plan"] + base + ["--json"])
        _ = try await run(["apply", "saved.plan", "--log-level", "trace"])
        let show = try await run(["state", "show", "fake_thing.root"] + base)
        #expect(show.stdout.contains("token = (sensitive)"))
        _ = try await run(["state", "show", "fake_thing.root", "--json"] + base)
        let outputs = try await run(["output"] + base)
        #expect(outputs.stdout.contains("root_token = (sensitive)"))
        _ = try await run(["output", "--json"] + base)
        let export = try await run(["state", "export"] + base)
        #expect(export.stdout.contains("$stratum.sealed"))
        _ = try await run(["state", "history", "--diff", "1"] + base)
        _ = try await run(["plan", "--detailed-exitcode"] + base + ["--log-level", "trace"])
        #expect(!printed.contains(secret))

        for name in ["state.db", "state.db-wal", "saved.plan"] {
            let file = name == "saved.plan" ? dir.appendingPathComponent(name) : dir.appendingPathComponent(".stratum/\(name)")
            let bytes = FileManager.default.contents(atPath: file.path) ?? Data()
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(name) holds the secret")
        }
        // Asked for explicitly, the value is there.
        let revealed = try await cli.run(["output", "root_token", "--show-sensitive"] + base)
        #expect(revealed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == secret)
    }

    @Test func importExportAndHistoryDiff() async throws {
        let dir = try TestSupport.temporaryDirectory("import")
        let cli = CLI("stratum-fixture", in: dir)
        let config = dir.appendingPathComponent("c.yaml")
        try "count: 0\nvalue: v1\n".write(to: config, atomically: true, encoding: .utf8)
        let base = ["--stack", "fake-fan", "--config", config.path]
        let cloud = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud"))

        #expect(try await cli.run(["apply", "--auto-approve"] + base).status == 0)
        try "count: 0\nvalue: v2\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try await cli.run(["apply", "--auto-approve"] + base).status == 0)
        let history = try await cli.run(["state", "history"] + base).stdout
        let updateSerial = try #require(history.split(separator: "\n").first { $0.contains("update fake_thing.root") }.flatMap { line in
            line.split(separator: " ").firstIndex(of: "serial").map { Int(line.split(separator: " ")[$0 + 1])! }
        })
        let diff = try await cli.run(["state", "history", "--diff", String(updateSerial)] + base)
        #expect(diff.stdout.contains("~ fake_thing.root"))
        #expect(diff.stdout.contains("~ value = \"v1\" -> \"v2\""))
        #expect(try await cli.run(["state", "history", "--diff", "999"] + base).stderr.contains("serial 999 is not in the history"))

        // A resource made outside Stratum is adopted by its id.
        let made = try await awaitCreate(cloud, ResourceAddress(type: "fake_thing", name: "outside"))
        let imported = try await cli.run(["state", "import", "fake_thing.adopted", made] + base)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(try await cli.run(["state", "show", "fake_thing.adopted"] + base).stdout.contains("id       = \(made)"))
        #expect(try await cli.run(["state", "import", "fake_thing.adopted", made] + base).stderr.contains("already in state"))
        #expect(try await cli.run(["state", "import", "fake_thing.other", "thing-nope"] + base).stderr.contains("has no fake_thing with id 'thing-nope'"))

        let export = try await cli.run(["state", "export"] + base)
        let document = try JSONSerialization.jsonObject(with: Data(export.stdout.utf8)) as? [String: Any]
        #expect((document?["resources"] as? [Any])?.count == 2)
        #expect(document?["lineage"] as? String != nil)
    }

    /// As a user without write access (root ignores permissions, so the CLI runs as nobody).
    @Test func aReadOnlyDirectoryGivesAClearErrorAndKeepsTheState() async throws {
        let dir = try TestSupport.temporaryDirectory("readonly")
        let cli = CLI("stratum-fixture", in: dir)
        let base = ["--stack", "fake-fan"]
        #expect(try await cli.run(["apply", "--auto-approve"] + base).status == 0)
        let stateDir = dir.appendingPathComponent(".stratum")
        let db = stateDir.appendingPathComponent("state.db").path

        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            // Not root: plain permissions are enough.
            try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: stateDir.path)
            defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: stateDir.path) }
            let result = try await cli.run(["plan"] + base)
            #expect(result.status == 1)
            #expect(result.stderr.contains("not writable"))
            return
        }
        for path in [dir.path, stateDir.path] + ((try? FileManager.default.subpathsOfDirectory(atPath: stateDir.path)) ?? []).map({ stateDir.appendingPathComponent($0).path }) {
            _ = chown(path, 65534, 65534)
        }
        // Checkpoint the WAL so nobody needs to write it, then make the directory read-only.
        _ = try SQLiteStateStore(path: db)
        try? FileManager.default.removeItem(atPath: db + "-wal")
        try? FileManager.default.removeItem(atPath: db + "-shm")
        try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: stateDir.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: stateDir.path) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", cli.binary.path, "plan"] + base
        process.currentDirectoryURL = dir
        process.environment = ["PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": dir.path]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1)
        #expect(stderr.contains("not writable"), "\(stderr)")
        let snapshot = try await awaitRead(db)
        #expect(snapshot.resources.count == 6)
    }
}

func awaitCreate(_ cloud: FakeCloudProvider, _ address: ResourceAddress) async throws -> String {
    try await cloud.create(ResolvedResource(address: address, region: "default", inputs: ["value": "outside"], dependencies: []), token: "import-test").id
}

func awaitRead(_ path: String) async throws -> StateSnapshot {
    try await SQLiteStateStore(path: path).read(workspace: "fake-fan/dev")
}


@Suite("CLI: apply --json")
struct CLIApplyJSONTests {
    @Test func applyAndDestroyPrintOneJSONDocumentWithTheResult() async throws {
        let dir = try TestSupport.temporaryDirectory("apply-json")
        let cli = CLI("stratum-fixture", in: dir)
        // child[1] fails: the document says which, what was skipped, and the run exits 1.
        let failing = try await cli.run(["apply", "--stack", "fake-fan", "--auto-approve", "--json"], extraEnvironment: ["STRATUM_FAKE_FAIL_ON": "fake_thing.root"])
        #expect(failing.status == 1)
        let failed = try #require(try JSONSerialization.jsonObject(with: Data(failing.stdout.utf8)) as? [String: Any])
        let result = try #require(failed["result"] as? [String: Any])
        #expect(result["ok"] as? Bool == false)
        #expect((result["failed"] as? [[String: Any]])?.first?["address"] as? String == "fake_thing.root")
        #expect((result["skipped"] as? [[String: Any]])?.count == 5)
        #expect(failing.stderr.contains("fake_thing.root: Creating..."))

        let ok = try await cli.run(["apply", "--stack", "fake-fan", "--auto-approve", "--json"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(ok.stdout.utf8)) as? [String: Any])
        #expect((document["result"] as? [String: Any])?["added"] as? Int == 6)
        #expect(((document["plan"] as? [String: Any])?["resource_changes"] as? [Any])?.count == 6)

        let nothing = try await cli.run(["apply", "--stack", "fake-fan", "--auto-approve", "--json"])
        let unchanged = try #require(try JSONSerialization.jsonObject(with: Data(nothing.stdout.utf8)) as? [String: Any])
        #expect((unchanged["result"] as? [String: Any])?["ok"] as? Bool == true)

        let destroy = try await cli.run(["destroy", "--stack", "fake-fan", "--auto-approve", "--json"])
        let destroyed = try #require(try JSONSerialization.jsonObject(with: Data(destroy.stdout.utf8)) as? [String: Any])
        #expect((destroyed["result"] as? [String: Any])?["destroyed"] as? Int == 6)
    }
}
