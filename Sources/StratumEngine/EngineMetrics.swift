import Dispatch
import Metrics
import StratumCore

/// The metrics the engine and the reconcile loop report through swift-metrics (whatever backend
/// the process bootstrapped; none: they cost nothing). Every name, its kind, labels and help
/// text is listed in `catalog`, which the Prometheus exposition and the dashboards' checks read.
public enum EngineMetrics {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    public struct Metric: Sendable {
        public var name: String
        public var kind: Kind
        public var labels: [String]
        public var help: String
    }

    public static let providerCalls = "stratum_provider_calls_total"
    public static let providerCallSeconds = "stratum_provider_call_duration_seconds"
    public static let throttles = "stratum_provider_throttles_total"
    public static let retries = "stratum_retries_total"
    public static let stepSeconds = "stratum_step_duration_seconds"
    public static let resources = "stratum_resources"
    public static let nodes = "stratum_nodes"
    public static let drift = "stratum_drift_resources"
    public static let costPerHour = "stratum_cost_per_hour_dollars"
    public static let reconcileRuns = "stratum_reconcile_runs_total"
    public static let reconcileSeconds = "stratum_reconcile_duration_seconds"
    public static let lastSuccess = "stratum_reconcile_last_success_timestamp_seconds"

    public static let catalog: [Metric] = [
        Metric(name: providerCalls, kind: .counter, labels: ["provider", "type", "operation", "outcome"],
               help: "Provider calls (create, read, update, delete) by provider, resource type, operation and outcome (ok, or the error's kind)."),
        Metric(name: providerCallSeconds, kind: .histogram, labels: ["provider", "type", "operation"], help: "How long provider calls took."),
        Metric(name: throttles, kind: .counter, labels: ["provider"], help: "Provider calls the cloud refused as throttled."),
        Metric(name: retries, kind: .counter, labels: ["kind"], help: "Operations the engine tried again, by the kind of error that made it."),
        Metric(name: stepSeconds, kind: .histogram, labels: ["type", "action", "outcome"], help: "How long each apply step (a resource's create, update, replace or delete) took."),
        Metric(name: resources, kind: .gauge, labels: ["stack", "environment", "state"], help: "Resources in state, by whether they are ok or failed, at the last reconcile."),
        Metric(name: nodes, kind: .gauge, labels: ["stack", "environment", "provider", "zone", "health"],
               help: "Nodes by provider, zone and health (ok, unhealthy, failed, unknown) at the last reconcile."),
        Metric(name: drift, kind: .gauge, labels: ["stack", "environment", "kind"], help: "Resources out of shape at the last reconcile, by kind of drift."),
        Metric(name: costPerHour, kind: .gauge, labels: ["stack", "environment"], help: "The stack's hourly cost in US dollars, as the catalogs price it, after the last reconcile."),
        Metric(name: reconcileRuns, kind: .counter, labels: ["stack", "environment", "outcome"], help: "Reconcile passes by outcome (in-shape, fixed, reported, failed, skipped)."),
        Metric(name: reconcileSeconds, kind: .histogram, labels: ["stack", "environment"], help: "How long reconcile passes took."),
        Metric(name: lastSuccess, kind: .gauge, labels: ["stack", "environment"], help: "When a reconcile last ended without error, in seconds since the epoch."),
    ]

    /// Help text by name.
    public static let help: [String: String] = Dictionary(uniqueKeysWithValues: catalog.map { ($0.name, $0.help) })

    /// One provider call: counted by provider, type, operation and outcome, and timed; a
    /// throttled one is also counted as a throttle.
    public static func call<T: Sendable>(provider: String, type: String, operation: String, _ body: () async throws -> T) async throws -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        func done(_ outcome: String) {
            Counter(label: providerCalls, dimensions: [("provider", provider), ("type", type), ("operation", operation), ("outcome", outcome)]).increment()
            Timer(label: providerCallSeconds, dimensions: [("provider", provider), ("type", type), ("operation", operation)])
                .recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
        }
        do {
            let result = try await body()
            done("ok")
            return result
        } catch let error as ProviderError {
            done(error.kind.rawValue)
            if error.kind == .throttled { Counter(label: throttles, dimensions: [("provider", provider)]).increment() }
            throw error
        } catch {
            done("error")
            throw error
        }
    }

    static func retried(_ error: ProviderError) {
        Counter(label: retries, dimensions: [("kind", error.kind.rawValue)]).increment()
    }

    static func step(type: String, action: String, outcome: String, nanoseconds: UInt64) {
        Timer(label: stepSeconds, dimensions: [("type", type), ("action", action), ("outcome", outcome)]).recordNanoseconds(Int64(nanoseconds))
    }
}
