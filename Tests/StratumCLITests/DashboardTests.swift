import Foundation
import StratumCloud
import StratumEngine
import StratumTesting
import Testing

/// The Grafana dashboards and the alerting rules under docs/ use only metrics Stratum exports:
/// the engine's (its catalog, from which its exposition is written) and the trainer's (read
/// from a real trainer's /metrics, with the interconnect check's result it serves). The rules
/// pass `promtool check rules`.
@Suite("Grafana dashboards and alerting rules name real metrics", .serialized)
struct DashboardTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The metric names an expression uses (`stratum_…`), histogram series named by their family.
    static func names(in expression: String) -> Set<String> {
        var names: Set<String> = []
        var rest = Substring(expression)
        while let start = rest.range(of: "stratum_") {
            let tail = rest[start.lowerBound...]
            let name = String(tail.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
            names.insert(name)
            rest = tail.dropFirst(name.count)
        }
        return Set(names.map { name in
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                let family = String(name.dropLast(suffix.count))
                if EngineMetrics.catalog.contains(where: { $0.name == family && $0.kind == .histogram }) { return family }
            }
            return name
        })
    }

    /// Every expression of a dashboard: its panels' targets and its variables' queries.
    static func expressions(_ dashboard: [String: Any]) -> [String] {
        let panels = dashboard["panels"] as? [[String: Any]] ?? []
        let targets = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        let variables = ((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []).compactMap { $0["definition"] as? String }
        return targets + variables
    }

    /// What a running trainer serves at /metrics, with an interconnect check's result included.
    static func trainerExposition() async throws -> String {
        let dir = try TestSupport.temporaryDirectory("dashboard-trainer")
        let trainer = CLI("stratum-trainer", in: dir)
        let check = dir.appendingPathComponent("allreduce.prom")
        // A check of two ranks on this machine (rank 0 writes the result).
        let rendezvous = dir.appendingPathComponent("port").path
        let common = ["allreduce-check", "--world", "2", "--port-file", rendezvous, "--bytes", "4096", "--iterations", "1", "--timeout", "30"]
        let (rankZero, _, _) = try trainer.start(common + ["--rank", "0", "--output", check.path])
        let rankOne = try await trainer.run(common + ["--rank", "1", "--coordinator", "127.0.0.1"])
        await exited(rankZero)
        #expect(rankZero.terminationStatus == 0 && rankOne.status == 0, "the check failed: \(rankOne.stdout)\(rankOne.stderr)")
        #expect(FileManager.default.fileExists(atPath: check.path), "the check wrote no result")
        let portFile = dir.appendingPathComponent("metrics-port")
        let config = dir.appendingPathComponent("trainer.yaml")
        try """
            model: {layers: 1, width: 32, heads: 2, context: 32}
            train: {batch_size: 4, seq_len: 32, steps: 1000000, threads: 1, log_every: 50}
            data: {source: synthetic}
            metrics: {port: 0, port_file: "\(portFile.path)", include: "\(check.path)"}
            """.write(to: config, atomically: true, encoding: .utf8)
        let (process, _, _) = try trainer.start(["--config", config.path])
        defer { process.terminate(); process.waitUntilExit() }
        var port: Int?
        let deadline = ContinuousClock.now + .seconds(60)
        while port == nil, ContinuousClock.now < deadline {
            port = (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if port == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let served = try #require(port, "the trainer never wrote its metrics port")
        let answer = try await AsyncHTTPTransport().send(HTTPRequestData(method: "GET", url: URL(string: "http://127.0.0.1:\(served)/metrics")!), timeout: .seconds(60))
        return String(decoding: answer.body, as: UTF8.self)
    }

    @Test(.timeLimit(.minutes(2)))
    func everyExpressionNamesAnExportedMetric() async throws {
        let exposition = try await Self.trainerExposition()
        let trainerNames = Set(exposition.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        #expect(trainerNames.contains("stratum_trainer_loss") && trainerNames.contains("stratum_allreduce_ok"), "\(exposition)")
        let exported = trainerNames.union(EngineMetrics.catalog.map(\.name))

        let dashboards = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("docs/grafana").path).filter { $0.hasSuffix(".json") }
        #expect(Set(dashboards) == ["fleet.json", "training.json"])
        var used: Set<String> = []
        for file in dashboards {
            let data = try Data(contentsOf: Self.root.appendingPathComponent("docs/grafana/\(file)"))
            let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(file) is not a JSON object")
            #expect(dashboard["uid"] as? String != nil && dashboard["title"] as? String != nil)
            let expressions = Self.expressions(dashboard)
            #expect(!expressions.isEmpty)
            for expression in expressions {
                let names = Self.names(in: expression)
                #expect(!names.isEmpty, "\(file): '\(expression)' names no Stratum metric")
                #expect(names.isSubset(of: exported), "\(file): '\(expression)' names \(names.subtracting(exported).sorted()), which nothing exports")
                used.formUnion(names)
            }
        }
        // What the issue asks the two dashboards to show.
        for wanted in [
            "stratum_nodes", "stratum_cost_per_hour_dollars", "stratum_drift_resources", "stratum_reconcile_last_success_timestamp_seconds",
            "stratum_trainer_loss", "stratum_trainer_tokens_per_second", "stratum_trainer_step", "stratum_trainer_last_checkpoint_timestamp_seconds",
            "stratum_trainer_bytes_exchanged_total", "stratum_allreduce_bus_bandwidth_bytes_per_second",
        ] {
            #expect(used.contains(wanted), "no dashboard shows \(wanted)")
        }

        // The alerting rules: valid for promtool, and about exported metrics only.
        let rules = Self.root.appendingPathComponent("docs/prometheus/stratum-rules.yml")
        let text = try String(contentsOf: rules, encoding: .utf8)
        for line in text.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("expr:") {
            let names = Self.names(in: String(line))
            #expect(!names.isEmpty && names.isSubset(of: exported), "rule '\(line)' names \(names.subtracting(exported).sorted())")
        }
        guard let (status, said) = try CLIMetricsTests.promtool(["check", "rules", rules.path]) else {
            print("skipped promtool check rules: promtool is not installed (apt-get install prometheus)")
            return
        }
        #expect(status == 0 && said.contains("SUCCESS: 7 rules found"), "\(said)")
    }
}
