import Foundation
import StratumCore

/// An error Google answered with, from either place Compute reports one: the body of a failed
/// call (`{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`) or the
/// `error.errors[]` of a finished operation (`{"code", "message", "errorDetails": [{"quotaInfo"}]}`).
public struct GCPServiceError: Error, Sendable, CustomStringConvertible {
    /// One entry of `errors[]`.
    public struct Item: Sendable, Equatable {
        /// `reason` of a call's error, `code` of an operation's (`ZONE_RESOURCE_POOL_EXHAUSTED`).
        public var reason: String
        public var message: String
        /// `quotaInfo.metricName` where the error carries it (`GPUS_ALL_REGIONS`).
        public var quotaMetric: String?
        /// `quotaInfo.dimensions` (`region`, `gpu_family`, …).
        public var quotaDimensions: [String: String]

        public init(reason: String, message: String, quotaMetric: String? = nil, quotaDimensions: [String: String] = [:]) {
            self.reason = reason
            self.message = message
            self.quotaMetric = quotaMetric
            self.quotaDimensions = quotaDimensions
        }
    }

    /// The HTTP status (an operation's `httpErrorStatusCode`); nil when unknown.
    public var status: Int?
    public var message: String
    public var items: [Item]

    public init(status: Int?, message: String, items: [Item]) {
        self.status = status
        self.message = message
        self.items = items
    }

    public var description: String {
        let reasons = items.map(\.reason).filter { !$0.isEmpty }
        return reasons.isEmpty ? message : "\(reasons.joined(separator: ", ")): \(message)"
    }

    /// Reads a failed call's body; falls back to the status and the body's first bytes.
    public static func parse(status: Int, body: Data) -> GCPServiceError {
        guard let error = GCPJSON.parse(body)?["error"], case .object = error else {
            let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return GCPServiceError(status: status, message: text.isEmpty ? "HTTP status \(status)" : text, items: [])
        }
        let items = error["errors"]?.array.map(item) ?? []
        let message = error["message"]?.string ?? items.first?.message ?? "HTTP status \(status)"
        return GCPServiceError(status: status, message: message, items: items)
    }

    /// Reads a finished operation's `error` (with its `httpErrorStatusCode` and message).
    public static func parse(operationError error: GCPJSON, status: Int?, httpMessage: String?) -> GCPServiceError {
        let items = error["errors"]?.array.map(item) ?? []
        let message = items.map(\.message).filter { !$0.isEmpty }.joined(separator: "; ")
        return GCPServiceError(status: status, message: message.isEmpty ? (httpMessage ?? "the operation failed") : message, items: items)
    }

    static func item(_ json: GCPJSON) -> Item {
        let quota = json["errorDetails"]?.array.lazy.compactMap { $0["quotaInfo"] }.first
        return Item(
            reason: json["reason"]?.string ?? json["code"]?.string ?? "", message: json["message"]?.string ?? "",
            quotaMetric: quota?["metricName"]?.string, quotaDimensions: quota?["dimensions"]?.object.compactMapValues(\.string) ?? [:])
    }
}

/// Maps Google's errors onto Stratum's taxonomy, with how far a capacity or quota failure
/// reaches: a stockout is one zone's; a quota is a region's, or the whole project's for the
/// `*_ALL_REGIONS` metrics.
public enum GCPErrorClassifier {
    static let capacity: Set<String> = ["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "RESOURCE_POOL_EXHAUSTED"]
    static let quota: Set<String> = ["QUOTA_EXCEEDED", "quotaExceeded"]
    static let throttled: Set<String> = ["rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"]
    static let auth: Set<String> = ["authError", "forbidden", "insufficientPermissions", "accessNotConfigured", "required"]
    static let notFound: Set<String> = ["notFound", "RESOURCE_NOT_FOUND"]
    static let transient: Set<String> = ["resourceNotReady", "backendError", "internalError", "INTERNAL_ERROR", "RESOURCE_NOT_READY"]

    public static func kind(of error: GCPServiceError) -> ProviderError.Kind {
        let reasons = Set(error.items.map(\.reason))
        if !reasons.isDisjoint(with: capacity) { return .capacity }
        // An API rate quota ("… limit 'Read requests per minute' …") is throttling, not a resource quota.
        if !reasons.isDisjoint(with: throttled) || error.status == 429 || isRateQuota(error) { return .throttled }
        if !reasons.isDisjoint(with: quota) { return .quota }
        if !reasons.isDisjoint(with: auth) || error.status == 401 { return .auth }
        if !reasons.isDisjoint(with: notFound) || error.status == 404 { return .notFound }
        if !reasons.isDisjoint(with: transient) || (error.status ?? 0) >= 500 { return .transient }
        if error.status == 403 { return .auth }
        return .permanent
    }

    /// Whether a quota error is about the rate of API calls (a limit per minute, per 100
    /// seconds, per day) rather than resources.
    static func isRateQuota(_ error: GCPServiceError) -> Bool {
        let texts = [error.message] + error.items.map(\.message)
        return texts.contains { text in [" per minute", " per second", " per 100 seconds", " per day"].contains { text.contains($0) } }
    }

    /// The quota metric named by the error: `quotaInfo.metricName`, else the name in Google's
    /// message ("Quota 'NVIDIA_H100_GPUS' exceeded. …").
    public static func quotaMetric(of error: GCPServiceError) -> String? {
        for item in error.items where quota.contains(item.reason) {
            if let metric = item.quotaMetric { return metric }
            if let metric = quoted(after: "Quota '", in: item.message) { return metric }
        }
        return quoted(after: "Quota '", in: error.message)
    }

    /// How far a failure reaches. `zone` and `region` are where the call went.
    public static func scope(of error: GCPServiceError, kind: ProviderError.Kind, zone: String?, region: String?) -> ProviderError.Scope? {
        switch kind {
        case .capacity:
            return .zone(zone ?? error.items.lazy.compactMap { zoneNamed(in: $0.message) }.first)
        case .quota:
            let metric = quotaMetric(of: error)
            // Names come as `GPUS_ALL_REGIONS` in messages, `compute.googleapis.com/gpus_all_regions` in quotaInfo.
            if metric?.uppercased().hasSuffix("_ALL_REGIONS") == true { return .cloud }
            let item = error.items.first { quota.contains($0.reason) }
            if let named = item?.quotaDimensions["region"] { return .region(named) }
            if (item?.message ?? error.message).contains("globally") { return .cloud }
            return .region(region ?? zone.map { regionOf(zone: $0) })
        default:
            return nil
        }
    }

    /// The taxonomy error for `error`, keeping Google's words and naming the resource.
    public static func providerError(
        _ error: GCPServiceError, action: String, address: ResourceAddress?, zone: String? = nil, region: String? = nil
    ) -> ProviderError {
        let kind = kind(of: error)
        var message = "GCP \(action) failed: \(error)"
        switch kind {
        case .capacity: message += " (Compute Engine has no capacity for this request in this zone; another zone may)"
        case .quota: message += " (a project quota\(quotaMetric(of: error).map { " (\($0))" } ?? ""): request an increase or use another region)"
        case .auth: message += " (check the GCP credentials Stratum uses and that they allow \(action))"
        default: break
        }
        return ProviderError(kind, message, address: address, scope: scope(of: error, kind: kind, zone: zone, region: region))
    }

    /// `us-central1` for `us-central1-a`.
    public static func regionOf(zone: String) -> String {
        guard let dash = zone.lastIndex(of: "-") else { return zone }
        return String(zone[..<dash])
    }

    static func zoneNamed(in message: String) -> String? {
        quoted(after: "zones/", in: message, terminators: ["'", "/", " ", "\""])
    }

    static func quoted(after prefix: String, in text: String, terminators: Set<Character> = ["'"]) -> String? {
        guard let start = text.range(of: prefix)?.upperBound else { return nil }
        let value = text[start...].prefix { !terminators.contains($0) }
        return value.isEmpty ? nil : String(value)
    }
}
