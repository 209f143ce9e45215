import Foundation
import StratumTesting
import Testing

/// `stratum chaos churn` on the Local provider, as real processes: refusals, a declared
/// schedule run with no flags, SIGINT while a node is down, and the demo's training surviving
/// a worker stopped and brought back.
@Suite("Churn schedules on the Local provider (CLI, end to end)")
struct CLIChurnTests {
    /// The fixture's `churn-shell` stack with `config`, in a fresh directory.
    static func shell(_ name: String, config: String) throws -> (CLI, [String]) {
        let dir = try TestSupport.temporaryDirectory(name)
        let file = dir.appendingPathComponent("churn.yaml")
        try config.write(to: file, atomically: true, encoding: .utf8)
        return (CLI("stratum-fixture", in: dir), ["--stack", "churn-shell", "--config", file.path])
    }

    static func apply(_ cli: CLI, _ common: [String]) async throws {
        let apply = try await cli.run(["apply", "--auto-approve"] + common)
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
    }

    static func destroy(_ cli: CLI, _ common: [String]) async {
        let destroy = try? await cli.run(["destroy", "--auto-approve"] + common)
        #expect(destroy?.status == 0, "\(destroy?.stdout ?? "")\(destroy?.stderr ?? "")")
    }

    /// The pid of each node of pool `pool`, by index, from the node directories.
    static func leaders(_ cli: CLI, pool: String) throws -> [Int: Int32] {
        let nodes = cli.directory.appendingPathComponent(".stratum/local/nodes")
        var found: [Int: Int32] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: nodes.path) where name.hasPrefix("local_node.\(pool)_") {
            let index = Int(name.dropFirst("local_node.\(pool)_".count).prefix { $0.isNumber })
            let text = try? String(contentsOf: nodes.appendingPathComponent(name).appendingPathComponent("pid"), encoding: .utf8)
            if let index, let pid = text.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }), isAlive(pid) { found[index] = pid }
        }
        return found
    }

    /// `stratum chaos churn` with arguments, expected to be refused with a message.
    struct Refusals {
        let cli: CLI
        let common: [String]

        func check(_ arguments: [String], _ message: String, status: Int32 = 1) async throws {
            let run = try await cli.run(["chaos", "churn"] + common + arguments)
            #expect(run.status == status, "\(arguments): \(run.stdout)\(run.stderr)")
            #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
    }

    /// `(address, old pid, new pid)` of each node the output says was stopped and came back.
    static func returns(in output: String) -> [(address: String, old: Int32, new: Int32)] {
        output.split(separator: "\n").flatMap { line -> [(String, Int32, Int32)] in
            guard line.contains(" back as pid-") else { return [] }
            return line.components(separatedBy: "; ").compactMap { part in
                let words = part.split(separator: " ")
                guard let back = words.firstIndex(of: "back"), back > 0, back + 2 < words.count,
                    let new = Int32(words[back + 2].dropFirst(4)),
                    let was = words.firstIndex(of: "(was"), was + 1 < words.count,
                    let old = Int32(words[was + 1].dropFirst(4).dropLast())
                else { return nil }
                return (String(words[back - 1]), old, new)
            }
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func whatCannotRunIsRefused() async throws {
        let (cli, common) = try Self.shell("churn-refuse", config: "declared: false\n")
        let refused = Refusals(cli: cli, common: common)
        try await refused.check([], "stack 'churn-shell' declares no churn schedule and no flags give one")
        try await refused.check(["--kill", "1"], "stack 'churn-shell' declares no churn schedule, so --every and --down are needed")
        try await refused.check(["--every", "2x", "--down", "1s"], "--every '2x' is not a duration", status: 64)
        try await refused.check(["--every", "10s", "--down", "10s"], "churn down (10s) must be shorter than every (10s)")
        try await refused.check(["--every", "10s", "--down", "1s", "--pool", "jobs"], "churn names the pool 'jobs', which the stack does not declare (its pools: job)")
        try await refused.check(["--every", "10s", "--down", "1s", "--kill", "3"], "churn stops 3 nodes a cycle, but the stack has 2")
        try await refused.check(["--every", "10s", "--down", "1s", "--cycles", "2", "--for", "1m"], "give --for or --cycles, not both", status: 64)
        try await refused.check(["--every", "10s", "--down", "1s"], "holds no nodes: apply the stack first")

        // A pool on another provider: refused by the command, and by the plan when declared.
        let (elsewhere, fake) = try Self.shell("churn-fake", config: "declared: false\nprovider: fake\n")
        let run = try await elsewhere.run(["chaos", "churn", "--every", "10s", "--down", "1s"] + fake)
        #expect(run.status == 1)
        #expect(run.stderr.contains("churn stops and restarts nodes on the Local provider only, for now; fake_node.job[0] is on 'fake'"), "\(run.stderr)")
        let (declaredElsewhere, declaredFake) = try Self.shell("churn-fake-plan", config: "provider: fake\n")
        let plan = try await declaredElsewhere.run(["plan"] + declaredFake)
        #expect(plan.status == 1)
        #expect(plan.stderr.contains("Local provider only, for now; fake_node.job[0] is on 'fake'"), "\(plan.stdout)\(plan.stderr)")

        // More nodes a cycle than are running: one of the two is already gone.
        try await Self.apply(cli, common)
        do {
            try await Self.tooFewRunning(cli, refused)
        } catch {
            await Self.destroy(cli, common)
            throw error
        }
        await Self.destroy(cli, common)

        let help = try await cli.run(["chaos", "churn", "--help"])
        #expect(help.stdout.contains("stratum chaos churn --stack local-demo --kill 1 --every 2m --down 1m"), "\(help.stdout)")
        #expect(help.stdout.contains("--cycles <N>") && help.stdout.contains("--for <DURATION>") && help.stdout.contains("--seed <N>"))
    }

    /// The stack's own schedule, shown by plan and run with no flags: one node stopped and
    /// replaced by reconcile with a new process, the other untouched; the same seed chooses the
    /// same node again.
    @Test(.timeLimit(.minutes(3)))
    func theDeclaredScheduleRunsWithoutFlags() async throws {
        let (cli, common) = try Self.shell("churn-declared", config: "seed: 5\nevery_seconds: 2\ndown_seconds: 1\ncycles: 1\non_pool: true\n")
        try await Self.apply(cli, common)
        do {
            try await Self.runDeclared(cli, common)
        } catch {
            await Self.destroy(cli, common)
            throw error
        }
        await Self.destroy(cli, common)
    }

    /// SIGINT while a node is down: the wait ends, reconcile brings it back, exit 0.
    @Test(.timeLimit(.minutes(3)))
    func aSignalBringsTheDownedNodeBack() async throws {
        let (cli, common) = try Self.shell("churn-signal", config: "declared: false\ncount: 1\n")
        try await Self.apply(cli, common)
        do {
            try await Self.interrupt(cli, common)
        } catch {
            await Self.destroy(cli, common)
            throw error
        }
        await Self.destroy(cli, common)
    }

    /// The demo's two workers train; churn stops one for real, reconcile replaces it, and the
    /// replacement resumes from its checkpoint and trains on past it.
    @Test(.timeLimit(.minutes(6)))
    func trainingSurvivesAWorkerStoppedAndBroughtBack() async throws {
        let dir = try TestSupport.temporaryDirectory("churn-demo")
        let cli = CLI("stratum", in: dir)
        let config = dir.appendingPathComponent("demo.yaml")
        try "workers: 2\ninner_steps: 20\nrounds: 200\n".write(to: config, atomically: true, encoding: .utf8)
        let common = ["--stack", "local-demo", "--config", config.path]
        try await Self.apply(cli, common)
        do {
            try await Self.churnTheDemo(cli, common, dir: dir)
        } catch {
            await Self.destroy(cli, common)
            throw error
        }
        await Self.destroy(cli, common)
    }

    // MARK: bodies, run between apply and destroy

    static func tooFewRunning(_ cli: CLI, _ refused: Refusals) async throws {
        let pids = try Self.leaders(cli, pool: "job")
        let first = try #require(pids[0])
        killpg(first, SIGKILL)
        #expect(await eventually(seconds: 10) { !isAlive(first) })
        try await refused.check(["--every", "10s", "--down", "1s", "--kill", "2"], "churn stops 2 nodes a cycle, but 1 node is running")
    }

    static func runDeclared(_ cli: CLI, _ common: [String]) async throws {
        let plan = try await cli.run(["plan"] + common)
        #expect(plan.stdout.contains("Churn schedule: 1 node of pool 'job' every 2s, down 1s, 1 cycle, seed 5 (`stratum chaos churn --stack churn-shell` runs it)"), "\(plan.stdout)")
        let before = try Self.leaders(cli, pool: "job")
        #expect(before.count == 2)

        let churn = try await cli.run(["chaos", "churn"] + common)
        #expect(churn.status == 0, "\(churn.stdout)\(churn.stderr)")
        #expect(churn.stdout.contains("Churn on churn-shell (dev): 1 node of pool 'job' every 2s, down 1s, 1 cycle; seed 5 (--seed 5 chooses the same nodes again)."), "\(churn.stdout)")
        #expect(churn.stdout.contains("Churn done: 1 cycle, 1 node stopped and brought back."), "\(churn.stdout)")
        let back = Self.returns(in: churn.stdout)
        let node = try #require(back.first, "\(churn.stdout)")
        #expect(back.count == 1)
        let index = try #require(Int(node.address.dropFirst("local_node.job[".count).dropLast()))
        #expect(node.old == before[index])
        #expect(!isAlive(node.old))
        let after = try Self.leaders(cli, pool: "job")
        #expect(after[index] == node.new && node.new != node.old)
        #expect(after[1 - index] == before[1 - index], "the other node was touched")
        #expect(churn.stdout.contains("reconcile took "), "\(churn.stdout)")
        #expect(try await cli.run(["plan", "--detailed-exitcode"] + common).status == 0)

        // The same seed, the same live nodes: the same node.
        let again = try await cli.run(["chaos", "churn"] + common)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(Self.returns(in: again.stdout).map(\.address) == [node.address], "\(again.stdout)")
    }

    static func interrupt(_ cli: CLI, _ common: [String]) async throws {
        let before = try #require(try Self.leaders(cli, pool: "job")[0])
        let started = try BuiltBinary.start("stratum-fixture", ["chaos", "churn", "--every", "1h", "--down", "30m"] + common, in: cli.directory, environment: [:])
        let stdout = started.stdoutURL
        let wentDown = await eventually(seconds: 60) { Self.text(stdout).contains("cycle 1: stopped local_node.job[0]") }
        #expect(wentDown)
        #expect(!isAlive(before))
        started.kill(SIGINT)
        let run = try await started.finish()
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("cycle 1: bringing back local_node.job[0] through reconcile early, as the schedule was stopped"), "\(run.stdout)")
        #expect(run.stdout.contains("Stopped by SIGINT after 1 cycle, 1 node stopped and brought back."), "\(run.stdout)")
        let now = try #require(try Self.leaders(cli, pool: "job")[0], "the node did not come back")
        #expect(now != before)
        #expect(Self.returns(in: run.stdout).first?.new == now)
    }

    static func churnTheDemo(_ cli: CLI, _ common: [String], dir: URL) async throws {
        for index in 0..<2 {
            let checkpoints = dir.appendingPathComponent(".stratum/local/buckets/demo-checkpoints/worker-\(index)")
            let saved = await eventually(seconds: 120) { hasCompleteCheckpoint(checkpoints) }
            #expect(saved, "no checkpoint of worker \(index)")
        }
        let churn = try await cli.run(["chaos", "churn", "--cycles", "1", "--every", "2s", "--down", "1s", "--seed", "3"] + common)
        #expect(churn.status == 0, "\(churn.stdout)\(churn.stderr)")
        let node = try #require(Self.returns(in: churn.stdout).first, "\(churn.stdout)\(churn.stderr)")
        let index = try #require(Int(node.address.dropFirst("local_node.worker[".count).dropLast()))
        #expect(!isAlive(node.old))
        #expect(isAlive(node.new))

        // The replacement's log: resumed from a checkpoint, then a round past it.
        let nodes = dir.appendingPathComponent(".stratum/local/nodes")
        let names = try FileManager.default.contentsOfDirectory(atPath: nodes.path).filter { $0.hasPrefix("local_node.worker_\(index)_-") }
        let directory = try #require(names.first { Self.text(nodes.appendingPathComponent($0).appendingPathComponent("pid")).trimmingCharacters(in: .whitespacesAndNewlines) == String(node.new) })
        let log = nodes.appendingPathComponent(directory).appendingPathComponent("node.log")
        let trained = await eventually(seconds: 180) { Self.progress(Self.text(log), worker: index)?.later != nil }
        #expect(trained, "\(Self.text(log))")
        let progress = try #require(Self.progress(Self.text(log), worker: index))
        #expect(progress.step >= 20, "resumed at step \(progress.step)")
        #expect((progress.later ?? 0) > progress.round)
        #expect(try await cli.run(["plan", "--detailed-exitcode"] + common).status == 0)
    }

    static func text(_ file: URL) -> String { (try? String(contentsOf: file, encoding: .utf8)) ?? "" }

    /// From a worker's log: the step and round it resumed from its checkpoint at, and the
    /// first round it finished after them (nil until it has).
    static func progress(_ log: String, worker: Int) -> (step: Int, round: Int, later: Int?)? {
        let lines = log.split(separator: "\n")
        // worker 0: resumed from its checkpoint at step 40 (round 2)
        guard let at = lines.firstIndex(where: { $0.contains("worker \(worker): resumed from its checkpoint at step ") }) else { return nil }
        let words = lines[at].split(separator: " ")
        guard words.count > 10, let step = Int(words[8]), let round = Int(words[10].dropLast()) else { return nil }
        // worker 0: round 4/200 inner loss ...
        var later: Int?
        for line in lines[(at + 1)...] where line.hasPrefix("worker \(worker): round ") {
            let fraction = line.split(separator: " ").dropFirst(3).first ?? ""
            if fraction.contains("/"), let number = Int(fraction.split(separator: "/").first ?? ""), number > round {
                later = number
                break
            }
        }
        return (step, round, later)
    }
}
