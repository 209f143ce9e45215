import Foundation
import StratumCloud
import StratumCore

/// An error Azure Resource Manager answered with, from either place it reports one: the body
/// of a failed call or the `error` of a failed asynchronous operation, both in ARM's shape
/// `{"error": {"code", "message", "target", "details": [{"code", "message"}, …]}}`.
public struct AzureServiceError: Error, Sendable, CustomStringConvertible {
    /// One entry of `details[]` (nested details are flattened in order).
    public struct Detail: Sendable, Equatable {
        public var code: String
        public var message: String

        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    /// The HTTP status; nil for an operation's error.
    public var status: Int?
    public var code: String
    public var message: String
    public var details: [Detail]
    /// How long Azure asked to wait before trying again (`Retry-After`), where it said.
    public var retryAfter: Duration?

    public init(status: Int?, code: String, message: String, details: [Detail] = [], retryAfter: Duration? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retryAfter = retryAfter
    }

    /// Every code: the error's and its details'.
    public var codes: [String] { [code] + details.map(\.code) }

    public var description: String {
        var text = code.isEmpty ? message : "\(code): \(message)"
        let named = details.filter { !$0.code.isEmpty || !$0.message.isEmpty }
        if !named.isEmpty { text += " (" + named.map { $0.code.isEmpty ? $0.message : "\($0.code): \($0.message)" }.joined(separator: "; ") + ")" }
        return text
    }

    /// Reads a failed call's body; falls back to the status and the body's first bytes.
    public static func parse(status: Int, body: Data, retryAfter: Duration? = nil) -> AzureServiceError {
        let json = CloudJSON.parse(body)
        // ARM wraps the error in `error`; a few resource providers answer the object bare.
        if let error = json?["error"] ?? json, case .object = error, error["code"]?.string != nil {
            var parsed = parse(error: error, status: status)
            parsed.retryAfter = retryAfter
            return parsed
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return AzureServiceError(status: status, code: "", message: text.isEmpty ? "HTTP status \(status)" : text, retryAfter: retryAfter)
    }

    /// Reads an `error` object (a failed call's or a failed operation's).
    public static func parse(error: CloudJSON, status: Int?) -> AzureServiceError {
        func flatten(_ items: [CloudJSON]) -> [Detail] {
            items.flatMap { [Detail(code: $0["code"]?.string ?? "", message: $0["message"]?.string ?? "")] + flatten($0["details"]?.array ?? []) }
        }
        return AzureServiceError(
            status: status, code: error["code"]?.string ?? "", message: error["message"]?.string ?? "the operation failed",
            details: flatten(error["details"]?.array ?? []))
    }
}

/// Maps ARM's errors onto Stratum's taxonomy, with how far a capacity or quota failure
/// reaches: an allocation failure in a zone is that zone's (the region's when the request named
/// no zone); a core quota is the region's.
public enum AzureErrorClassifier {
    static let capacity: Set<String> = [
        "SkuNotAvailable", "AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest", "OverconstrainedZonalAllocationRequest",
    ]
    static let zonal: Set<String> = ["ZonalAllocationFailed", "OverconstrainedZonalAllocationRequest"]
    static let quota: Set<String> = ["QuotaExceeded"]
    static let throttled: Set<String> = ["TooManyRequests", "SubscriptionRequestsThrottled", "ResourceRequestsThrottled"]
    static let auth: Set<String> = [
        "AuthorizationFailed", "LinkedAuthorizationFailed", "AuthenticationFailed", "InvalidAuthenticationToken", "InvalidAuthenticationTokenTenant",
        "ExpiredAuthenticationToken",
    ]
    static let notFound: Set<String> = ["ResourceNotFound", "ResourceGroupNotFound", "NotFound", "SubscriptionNotFound"]
    static let transient: Set<String> = [
        "InternalServerError", "InternalExecutionError", "InternalOperationError", "ServiceUnavailable", "GatewayTimeout", "RetryableError",
    ]

    public static func kind(of error: AzureServiceError) -> ProviderError.Kind {
        let codes = Set(error.codes)
        if !codes.isDisjoint(with: capacity) { return .capacity }
        if !codes.isDisjoint(with: quota) || isCoreQuota(error) { return .quota }
        if !codes.isDisjoint(with: throttled) || error.status == 429 { return .throttled }
        if !codes.isDisjoint(with: auth) || error.status == 401 || error.status == 403 { return .auth }
        if !codes.isDisjoint(with: notFound) || error.status == 404 { return .notFound }
        if !codes.isDisjoint(with: transient) || (error.status ?? 0) >= 500 { return .transient }
        return .permanent
    }

    /// `OperationNotAllowed` is how Compute refuses a request beyond a core quota ("… results
    /// in exceeding approved standardNCADSH100v5Family Cores quota …").
    static func isCoreQuota(_ error: AzureServiceError) -> Bool {
        let texts = [(error.code, error.message)] + error.details.map { ($0.code, $0.message) }
        return texts.contains { $0.0 == "OperationNotAllowed" && $0.1.lowercased().contains("quota") }
    }

    /// How far a failure reaches. `zone` and `region` are where the request asked for.
    public static func scope(of error: AzureServiceError, kind: ProviderError.Kind, zone: String?, region: String?) -> ProviderError.Scope? {
        let messages = [error.message] + error.details.map(\.message)
        let namedRegion = region ?? messages.lazy.compactMap { quoted(after: "location '", in: $0) ?? quoted(after: "Location: ", in: $0, terminators: [",", " "]) }.first
        switch kind {
        case .capacity:
            let namedZone = zone ?? messages.lazy.compactMap { quoted(after: "zones '", in: $0) ?? quoted(after: "zone '", in: $0) }.first
            if let namedZone { return .zone(namedZone) }
            if !Set(error.codes).isDisjoint(with: zonal) { return .zone(nil) }
            return .region(namedRegion)
        case .quota:
            return .region(namedRegion)
        default:
            return nil
        }
    }

    /// The taxonomy error for `error`, keeping ARM's code and message and naming the resource
    /// (`resource`: its ARM id or the URL called).
    public static func providerError(
        _ error: AzureServiceError, action: String, address: ResourceAddress?, resource: String? = nil, zone: String? = nil, region: String? = nil
    ) -> ProviderError {
        let kind = kind(of: error)
        var message = "Azure \(action)\(resource.map { " on \($0)" } ?? "") failed: \(error)"
        switch kind {
        case .capacity: message += " (Azure has no capacity for this request here; another zone or region may)"
        case .quota: message += " (a subscription quota: request an increase or use another region)"
        case .throttled: if let wait = error.retryAfter { message += " (Azure asked to wait \(Int(wait.seconds.rounded(.up))) s before retrying)" }
        case .auth: message += " (check the Azure credentials Stratum uses and that their role allows \(action))"
        default: break
        }
        return ProviderError(
            kind, message, address: address, scope: scope(of: error, kind: kind, zone: zone, region: region), retryAfter: kind == .throttled ? error.retryAfter : nil)
    }

    static func quoted(after prefix: String, in text: String, terminators: Set<Character> = ["'"]) -> String? {
        guard let start = text.range(of: prefix)?.upperBound else { return nil }
        let value = text[start...].prefix { !terminators.contains($0) }
        return value.isEmpty ? nil : String(value)
    }
}
