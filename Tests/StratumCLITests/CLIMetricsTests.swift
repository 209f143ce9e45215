import Foundation
import StratumCloud
import StratumEngine
import StratumTesting
import Testing

/// The engine's metrics through swift-metrics and swift-prometheus: a cron run's textfile passes
/// Debian's `promtool check metrics` and says what the run did; a `--watch` controller's
/// endpoint is scraped by a real Prometheus server, whose query API then returns the series.
@Suite("Engine metrics in Prometheus (CLI)", .serialized)
struct CLIMetricsTests {
    static func tool(_ name: String) -> String? {
        ["/usr/bin/\(name)", "/usr/local/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs Debian's `promtool` with `arguments` and `input` on its standard input: its exit
    /// status and output; nil when it is not installed.
    static func promtool(_ arguments: [String], input: String = "") throws -> (Int32, String)? {
        guard let promtool = tool("promtool") else { return nil }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: promtool)
        check.arguments = arguments
        let stdin = Pipe(), output = Pipe()
        check.standardInput = stdin
        check.standardOutput = output
        check.standardError = output
        try check.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        return (check.terminationStatus, said)
    }

    /// Samples of an exposition: `name{labels} value` lines, by the line's series.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test(.timeLimit(.minutes(2)))
    func theTextfileOfACronRunPassesPromtoolAndSaysWhatItDid() async throws {
        let work = try FixtureWorkspace("metrics-textfile")
        let config = try work.config(count: 2)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        try work.cloud.preempt("fake_thing.child[0]")
        let textfile = work.directory.appendingPathComponent("stratum.prom").path
        let run = try await work.cli.run(["reconcile", "--metrics-textfile", textfile] + base)
        #expect(run.status == 2, "\(run.stderr)")
        let text = try String(contentsOfFile: textfile, encoding: .utf8)
        let samples = Self.samples(text)
        let scope = #"stack="fake-fan",environment="dev""#
        #expect(samples["stratum_drift_resources{\(scope),kind=\"missing\"}"] == 1, "\(text)")
        #expect(samples["stratum_reconcile_runs_total{\(scope),outcome=\"fixed\"}"] == 1)
        #expect(samples["stratum_resources{\(scope),state=\"ok\"}"] == 3)
        #expect(samples[#"stratum_provider_calls_total{provider="fake",type="fake_thing",operation="create",outcome="ok"}"#] == 1)
        #expect(samples[#"stratum_provider_calls_total{provider="fake",type="fake_thing",operation="read",outcome="ok"}"#] == 1)
        #expect(samples[#"stratum_step_duration_seconds_count{type="fake_thing",action="create",outcome="ok"}"#] == 1)
        #expect((samples["stratum_reconcile_last_success_timestamp_seconds{\(scope)}"] ?? 0) > Date().timeIntervalSince1970 - 600)
        // Every name in the file is one the catalog lists (and so one the dashboards may use).
        let names = Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        #expect(names.isSubset(of: Set(EngineMetrics.catalog.map(\.name))), "\(names)")

        guard let (status, said) = try Self.promtool(["check", "metrics"], input: text) else {
            print("skipped promtool: not installed (apt-get install prometheus)")
            return
        }
        #expect(status == 0, "promtool: \(said)")
    }

    @Test(.timeLimit(.minutes(3)))
    func aWatchingControllerIsScrapedByPrometheus() async throws {
        guard let prometheus = Self.tool("prometheus") else {
            print("skipped the scrape: prometheus is not installed (apt-get install prometheus)")
            return
        }
        let work = try FixtureWorkspace("metrics-scrape")
        let config = try work.config(count: 2)
        let base = ["--stack", "fake-fan", "--config", config]
        #expect(try await work.cli.run(["apply", "--auto-approve"] + base).status == 0)
        let metricsPort = freeLoopbackPort()
        let (watcher, _, _) = try work.cli.start(["reconcile", "--watch", "--interval", "1s", "--metrics-listen", "127.0.0.1:\(metricsPort)"] + base)
        defer { if watcher.isRunning { kill(watcher.processIdentifier, SIGTERM); watcher.waitUntilExit() } }

        let data = work.directory.appendingPathComponent("prometheus")
        let scrapeConfig = work.directory.appendingPathComponent("prometheus.yml")
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: stratum
                static_configs: [{targets: ["127.0.0.1:\(metricsPort)"]}]
            """.write(to: scrapeConfig, atomically: true, encoding: .utf8)
        let webPort = freeLoopbackPort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: prometheus)
        server.arguments = [
            "--config.file=\(scrapeConfig.path)", "--storage.tsdb.path=\(data.path)", "--web.listen-address=127.0.0.1:\(webPort)",
        ]
        let log = work.directory.appendingPathComponent("prometheus.log")
        try Data().write(to: log)
        let handle = try FileHandle(forWritingTo: log)
        server.standardOutput = handle
        server.standardError = handle
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }

        let transport = AsyncHTTPTransport()
        func query(_ expression: String) async -> [[String: Any]] {
            var components = URLComponents(string: "http://127.0.0.1:\(webPort)/api/v1/query")!
            components.queryItems = [URLQueryItem(name: "query", value: expression)]
            guard let answer = try? await transport.send(HTTPRequestData(method: "GET", url: components.url!), timeout: .seconds(5)),
                let json = try? JSONSerialization.jsonObject(with: answer.body) as? [String: Any],
                let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]]
            else { return [] }
            return result
        }
        var runs: [[String: Any]] = []
        let deadline = ContinuousClock.now + .seconds(90)
        while runs.isEmpty, ContinuousClock.now < deadline {
            runs = await query(#"stratum_reconcile_runs_total{stack="fake-fan",outcome="in-shape"}"#)
            if runs.isEmpty { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(!runs.isEmpty, "Prometheus never returned the series; its log:\n\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        #expect((runs.first?["metric"] as? [String: String])?["job"] == "stratum")
        #expect(!(await query(#"stratum_provider_calls_total{provider="fake",operation="read"}"#)).isEmpty)
        #expect(!(await query(#"stratum_reconcile_last_success_timestamp_seconds{stack="fake-fan"}"#)).isEmpty)
        #expect((await query(#"up{job="stratum"}"#)).first.flatMap { ($0["value"] as? [Any])?.last as? String } == "1")
    }
}
