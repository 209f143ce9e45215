import Foundation
import Testing
import TrainerCore

extension TrainerSuite {
    @Suite struct MetricsTests {
        @Test func servesPrometheusTextAndHealth() async throws {
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let m = try #require(tc_metrics_start(0, 1, &err, err.count), "\(errorText(err))")
            defer { tc_metrics_stop(m) }
            let port = Int(tc_metrics_port(m))
            #expect(port > 0)
            tc_metrics_update(m, 42, 1.2345, 9876.5, 1_700_000_000, 123_456_789)
            let metrics = try httpGet(port: port, path: "/metrics")
            #expect(metrics.hasPrefix("HTTP/1.0 200"))
            #expect(metrics.contains("Content-Type: text/plain; version=0.0.4"))
            #expect(metrics.contains("\nstratum_trainer_step 42\n"))
            #expect(metrics.contains("\nstratum_trainer_loss 1.234500\n"))
            #expect(metrics.contains("\nstratum_trainer_tokens_per_second 9876.500\n"))
            #expect(metrics.contains("\nstratum_trainer_last_checkpoint_timestamp_seconds 1700000000\n"))
            #expect(metrics.contains("\nstratum_trainer_bytes_exchanged_total 123456789\n"))
            #expect(metrics.contains("# TYPE stratum_trainer_step counter"))
            tc_metrics_update(m, 43, 1.0, 1.0, 0, 0)
            #expect(try httpGet(port: port, path: "/metrics").contains("\nstratum_trainer_step 43\n"))
            let health = try httpGet(port: port, path: "/healthz")
            #expect(health.hasPrefix("HTTP/1.0 200") && health.hasSuffix("ok\n"))
            #expect(try httpGet(port: port, path: "/nope").hasPrefix("HTTP/1.0 404"))
        }

        @Test func portInUseNamesTheKey() async throws {
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let m = try #require(tc_metrics_start(0, 1, &err, err.count))
            defer { tc_metrics_stop(m) }
            #expect(tc_metrics_start(tc_metrics_port(m), 1, &err, err.count) == nil)
            #expect(errorText(err).contains("'metrics.port'"), "\(errorText(err))")
        }
    }
}
