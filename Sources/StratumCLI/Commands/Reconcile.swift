import ArgumentParser
import Foundation
import StratumCloud
import StratumCore
import StratumEngine
import StratumState

/// What reconcile does with drift it finds.
enum ReconcilePolicy: String, ExpressibleByArgument, CaseIterable, Sendable {
    case fix, report
}

/// What a reconcile does when another run holds the workspace's lock.
enum LockPolicy: String, ExpressibleByArgument, CaseIterable, Sendable {
    case wait, skip
}

struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find where the stack, its state and the clouds disagree, and put it right (or report it).",
        discussion: """
            Refreshes every resource, then compares the stack, the state and what the clouds \
            hold. Drift is a resource that is missing (deleted outside Stratum), changed outside \
            Stratum, failed or preempted, or gone and no longer declared. With --policy fix (the \
            default) it is healed as `apply` would heal it, without asking; with --policy report \
            nothing is changed. Changes the stack itself declares are applied (or reported) too, \
            and listed apart from drift.

            Exit codes, for cron and CI: 0 the stack is in shape (or the run was skipped because \
            another held the lock, with --if-locked skip); 2 drift or declared changes were found \
            (and, with fix, healed); 1 an error, including a fix that failed.

            --report FILE writes what was found and done as JSON: each resource with its kind, \
            reason, attributes before and after, the action and its outcome; the run's duration; \
            the stack's hourly cost before and after.

            --watch runs it as a controller: a pass every --interval until SIGTERM or SIGINT, \
            which end it cleanly after the pass in progress (exit 0).

            A nightly job:
              stratum reconcile --stack training --env prod --report /var/lib/stratum/drift.json
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("fix: heal drift as apply would; report: change nothing, only find and report it.", valueName: "POLICY"))
    var policy: ReconcilePolicy = .fix

    @Option(help: ArgumentHelp("Write what was found and done to this file as JSON (each pass, with --watch).", valueName: "FILE"))
    var report: String?

    @Option(help: ArgumentHelp("When another run holds the state lock: wait for it (up to --lock-timeout), or skip this run (exit 0).", valueName: "wait|skip"))
    var ifLocked: LockPolicy = .wait

    @Option(help: ArgumentHelp("How long --if-locked wait waits for the lock.", valueName: "SECONDS"))
    var lockTimeout: Double = 600

    @Flag(help: "Keep running: a pass every --interval until SIGTERM or SIGINT.")
    var watch = false

    @Option(help: ArgumentHelp("Time between passes with --watch: a number of seconds, or with s, m or h (30s, 10m, 1h).", valueName: "DURATION"))
    var interval = "10m"

    @Option(help: "How many provider operations run at once when fixing.")
    var parallelism = 10

    @Option(help: ArgumentHelp("Write the run's metrics here, in Prometheus text format, for the node exporter's textfile collector (each pass, with --watch).", valueName: "PATH"))
    var metricsTextfile: String?

    @Option(help: ArgumentHelp("With --watch, serve the metrics at http://ADDR/metrics for Prometheus to scrape (HOST:PORT; :PORT for every interface).", valueName: "ADDR"))
    var metricsListen: String?

    @Option(help: ArgumentHelp("How long a node's /healthz may go unanswered (counted across passes and runs) before the node is replaced.", valueName: "DURATION"))
    var grace = "10m"

    func validate() throws {
        guard lockTimeout >= 0, lockTimeout <= 86400 else { throw ValidationError("--lock-timeout must be from 0 to 86400 seconds (got \(lockTimeout))") }
        guard parallelism >= 1 else { throw ValidationError("--parallelism must be at least 1 (got \(parallelism))") }
        let graceSeconds = try Self.seconds(grace, option: "--grace")
        guard graceSeconds >= 0, graceSeconds <= 7 * 86400 else { throw ValidationError("--grace must be from 0s to 7 days (got \(grace))") }
        let seconds = try Self.seconds(interval, option: "--interval")
        guard seconds >= 1, seconds <= 7 * 86400 else { throw ValidationError("--interval must be from 1s to 7 days (got \(interval))") }
        if global.json, watch { throw ValidationError("--json prints one report and does not combine with --watch; write each pass's with --report FILE") }
        if metricsListen != nil, !watch {
            throw ValidationError("--metrics-listen serves a long-lived --watch; a single run writes its metrics with --metrics-textfile PATH")
        }
        if let metricsListen { _ = try MetricsExport.address(metricsListen) }
    }

    /// `90`, `30s`, `10m`, `1h` as seconds.
    static func seconds(_ text: String, option: String) throws -> Double { try durationSeconds(text, option: option, units: "smh") }

    func run() async throws {
        let context = RunContext(global)
        let interruption = Interruption(console: context.console)
        interruption.install()
        let reconciler = Reconciler(
            context: context, policy: policy, ifLocked: ifLocked, lockTimeout: lockTimeout, parallelism: parallelism, grace: try Self.seconds(grace, option: "--grace"),
            interruption: interruption)
        let metrics = try await MetricsExport.start(textfile: metricsTextfile, listen: metricsListen)
        if let port = metrics?.port, let metricsListen {
            context.console.progress("Serving metrics at /metrics on port \(port) (--metrics-listen \(metricsListen)).")
        }
        if !watch {
            let outcome = await reconciler.pass()
            _ = outcome.record()
            try metrics?.flush()
            try finish(outcome, context: context)
            if outcome.exit_code != 0 { throw ExitCode(outcome.exit_code) }
            return
        }
        let every = try Self.seconds(interval, option: "--interval")
        context.console.progress("Reconciling every \(interval) until SIGTERM or SIGINT.")
        var passes = 0
        var series: Set<[String]> = []
        while !interruption.isRequested {
            let outcome = await reconciler.pass()
            passes += 1
            series = outcome.record(previousNodes: series)
            do {
                try metrics?.flush()
                try finish(outcome, context: context)
            } catch {
                context.console.error("Error: \(describe(error))")
            }
            // Waits in short steps, so a signal ends the wait at once.
            let next = ContinuousClock.now + .milliseconds(Int(every * 1000))
            while !interruption.isRequested, ContinuousClock.now < next {
                try? await Task.sleep(for: min(.milliseconds(200), next - ContinuousClock.now))
            }
        }
        await metrics?.stop()
        context.console.progress("Stopped by \(Interruption.name(interruption.signal ?? SIGTERM)) after \(passes) pass(es).")
    }

    /// Writes the report where asked and says how the pass ended.
    func finish(_ outcome: DriftReport, context: RunContext) throws {
        guard report != nil || global.json else { return }
        let encoded = try outcome.encoded()
        if let report { try ReportFile.write(encoded, to: report) }
        if global.json { context.console.output(String(decoding: encoded, as: UTF8.self)) }
    }
}

/// Writes a file whole or not at all (a temporary file renamed over it).
enum ReportFile {
    static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try data.write(to: temporary)
            guard rename(temporary.path, url.path) == 0 else { throw CLIError(String(cString: strerror(errno))) }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw CLIError("cannot write the report to \(path): \(error.localizedDescription)")
        }
    }
}

/// One reconcile pass after another: refresh, classify, fix or report.
struct Reconciler {
    let context: RunContext
    let policy: ReconcilePolicy
    let ifLocked: LockPolicy
    let lockTimeout: Double
    let parallelism: Int
    /// Seconds a node's /healthz may go unanswered before it is replaced.
    let grace: Double
    let interruption: Interruption

    /// A pass, whatever happens: errors become a report with exit code 1.
    func pass() async -> DriftReport {
        let started = Date()
        var stackName = context.options.stack ?? "?"
        do {
            let stack = try await context.evaluate(replacePlacement: false)
            stackName = stack.name
            let store = try await context.openStore()
            let workspace = context.workspace(for: stack.name)
            guard let report = try await lockedOrSkipped(store, workspace: workspace, body: { try await self.inside(stack: stack, store: store, started: started) })
            else {
                return DriftReport(
                    stack: stack.name, environment: context.options.environment, policy: policy.rawValue, outcome: "skipped", exitCode: 0, startedAt: started,
                    finishedAt: Date(), resources: 0, drift: [], cost: nil, error: "another run holds the state lock")
            }
            return report
        } catch {
            context.console.error("Error: \(describe(error))")
            return DriftReport(
                stack: stackName, environment: context.options.environment, policy: policy.rawValue, outcome: "failed", exitCode: 1, startedAt: started,
                finishedAt: Date(), resources: 0, drift: [], cost: nil, error: describe(error))
        }
    }

    /// Runs `body` holding the lock; nil when it is held and the policy is to skip. With wait,
    /// tries again every two seconds until --lock-timeout.
    func lockedOrSkipped(_ store: any StateStore, workspace: String, body: @escaping @Sendable () async throws -> DriftReport) async throws -> DriftReport? {
        let deadline = ContinuousClock.now + .milliseconds(Int(lockTimeout * 1000))
        var said = false
        while true {
            do {
                return try await context.locked(store, workspace: workspace, operation: "reconcile", interruption: interruption, body)
            } catch let held as LockHeldError {
                let holder = "\(held.lock.holder) (\(held.lock.operation), pid \(held.lock.pid), since \(held.lock.acquiredAt.formatted(.iso8601)))"
                if ifLocked == .skip {
                    context.console.error("Skipped: the state of \(workspace) is locked by \(holder).")
                    return nil
                }
                guard ContinuousClock.now < deadline else {
                    throw CLIError("the state of \(workspace) was still locked by \(holder) after \(Int(lockTimeout)) s (--lock-timeout)")
                }
                if !said {
                    context.console.progress("Waiting for the state lock, held by \(holder)...")
                    said = true
                }
                try interruption.check("stopped while waiting for the state lock")
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    /// The pass, holding the lock.
    func inside(stack: EvaluatedStack, store: any StateStore, started: Date) async throws -> DriftReport {
        let console = context.console
        let workspace = context.workspace(for: stack.name)
        let snapshot = try await store.read(workspace: workspace)
        if !context.options.json { console.progress("Refreshing \(snapshot.resources.count) resource(s) of \(workspace)...") }
        var nodes: [DriftReport.Node] = []
        var refreshed = snapshot.resources.isEmpty ? nil : try await interruption.cancellable { try await Refresher(providers: context.providers).refresh(snapshot.resources) }
        if let found = refreshed {
            // Nodes that stopped answering /healthz, marked failed once past the grace.
            let watch = HealthWatch(
                store: store, probe: NodeProbe(transport: AsyncHTTPTransport(), timeout: .seconds(2)), stackWorkspace: workspace,
                grace: .milliseconds(Int(grace * 1000)))
            (refreshed, nodes) = try await watch.apply(to: found, now: Date())
        }
        let change = try ChangeOptions.parse(["--parallelism", "\(parallelism)"])
        let plan = try await context.plan(stack: stack, stackName: stack.name, store: store, change: change, destroy: false, refreshed: refreshed)
        var items = DriftReport.items(plan: plan, recorded: snapshot.resources, refreshed: refreshed)
        let cost = plan.cost.map { DriftReport.Cost(hourly_before: $0.hourlyBefore, hourly_after: $0.hourlyAfter, unpriced: $0.unpriced.map(\.description)) }
        func report(_ outcome: String, _ code: Int32, error: String? = nil) -> DriftReport {
            var report = DriftReport(
                stack: stack.name, environment: context.options.environment, policy: policy.rawValue, outcome: outcome, exitCode: code, startedAt: started,
                finishedAt: Date(), resources: snapshot.resources.count, drift: items, cost: cost, error: error)
            report.nodes = nodes
            return report
        }
        guard !items.isEmpty else {
            if !context.options.json { console.output("In shape: \(stack.name) (\(context.options.environment)), \(snapshot.resources.count) resource(s).") }
            return report("in-shape", 0)
        }
        if !context.options.json {
            let drifted = items.filter { $0.kind != .declared }
            let declared = items.count - drifted.count
            console.output("\(drifted.count) drifted\(declared > 0 ? ", \(declared) declared change(s)" : "") in \(stack.name) (\(context.options.environment)):")
            for item in items { console.output("  \(item.address): \(item.kind.rawValue), \(item.reason) → \(item.action)") }
        }
        guard policy == .fix else {
            for index in items.indices { items[index].outcome = "reported" }
            return report("reported", 2)
        }
        try interruption.check()
        let (ok, result) = try await context.execute(plan, store: store, parallelism: parallelism, interruption: interruption)
        let failures = Dictionary(result.failed.map { ($0.step.address.description, describe($0.error)) }, uniquingKeysWith: { a, _ in a })
        let skipped = Set(result.skipped.map { $0.step.address.description } + result.notStarted.map(\.address.description))
        for index in items.indices {
            if let error = failures[items[index].address] {
                items[index].outcome = "failed"
                items[index].error = error
            } else if skipped.contains(items[index].address) {
                items[index].outcome = "not attempted"
            } else {
                items[index].outcome = "fixed"
            }
        }
        return ok ? report("fixed", 2) : report("failed", 1, error: "\(result.failed.count) change(s) failed")
    }
}
