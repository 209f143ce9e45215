import Foundation
import StratumCore

/// An error AWS answered with: its code, message and HTTP status.
public struct AWSServiceError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var status: Int
    public var requestId: String?

    public init(code: String, message: String, status: Int, requestId: String? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.requestId = requestId
    }

    public var description: String { "\(code): \(message)" }

    /// Reads EC2's `<Response><Errors><Error>` or S3's `<Error>` body; falls back to the status.
    public static func parse(status: Int, body: Data) -> AWSServiceError {
        if let root = XMLTree.parse(body), let error = root.first(named: "Error") {
            return AWSServiceError(
                code: error.string("Code") ?? "HTTP\(status)", message: error.string("Message") ?? "",
                status: status, requestId: root.string("RequestID") ?? root.string("RequestId") ?? error.string("RequestId"))
        }
        // The JSON protocol (SSM and others): {"__type": "…#ParameterNotFound", "message": "…"}.
        if let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any], let type = object["__type"] as? String {
            let message = (object["message"] as? String) ?? (object["Message"] as? String) ?? ""
            return AWSServiceError(code: String(type.split(separator: "#").last ?? Substring(type)), message: message, status: status)
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return AWSServiceError(code: "HTTP\(status)", message: text.isEmpty ? "HTTP status \(status)" : text, status: status)
    }
}

/// Maps AWS error codes and statuses onto Stratum's error taxonomy.
public enum AWSErrorClassifier {
    static let capacity: Set<String> = [
        "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity", "InsufficientAddressCapacity", "Unsupported.InsufficientCapacity",
    ]
    static let quota: Set<String> = [
        "InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "VpcLimitExceeded",
        "AddressLimitExceeded", "SecurityGroupLimitExceeded", "RulesPerSecurityGroupLimitExceeded",
        "TooManyBuckets", "InternetGatewayLimitExceeded", "RouteTableLimitExceeded", "SubnetLimitExceeded",
        "ResourceLimitExceeded", "SpotMaxPriceTooLow",
    ]
    static let throttled: Set<String> = [
        "RequestLimitExceeded", "Throttling", "ThrottlingException", "ThrottledException", "SlowDown",
        "TooManyRequestsException", "RequestThrottled", "RequestThrottledException", "BandwidthLimitExceeded",
        "EC2ThrottledException", "PriorRequestNotComplete",
    ]
    static let auth: Set<String> = [
        "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnauthorizedOperation", "AccessDenied",
        "AccessDeniedException", "InvalidAccessKeyId", "ExpiredToken", "ExpiredTokenException", "InvalidToken",
        "MissingAuthenticationToken", "OptInRequired", "Blocked", "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
        "UnrecognizedClientException", "IncompleteSignature", "RequestExpired",
    ]
    static let transient: Set<String> = [
        "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout", "RequestTimeoutException",
        "IdempotentParameterMismatch.InProgress", "IncorrectState", "DependencyViolation.InProgress",
    ]

    public static func kind(of error: AWSServiceError) -> ProviderError.Kind {
        let code = error.code
        if capacity.contains(code) { return .capacity }
        if quota.contains(code) || code.hasSuffix("LimitExceeded") && !throttled.contains(code) { return .quota }
        if throttled.contains(code) || error.status == 429 { return .throttled }
        if error.status == 503, code == "SlowDown" || code.hasPrefix("HTTP") { return .throttled }
        if auth.contains(code) || error.status == 401 { return .auth }
        if code.hasSuffix(".NotFound") || code.hasSuffix("NotFound") || code == "NoSuchBucket" || code == "NoSuchEntity" { return .notFound }
        if transient.contains(code) || error.status >= 500 { return .transient }
        if error.status == 403 { return .auth }
        return .permanent
    }

    /// How far a failure of `kind` reaches: a stockout is one zone's, a quota the region's.
    public static func scope(of kind: ProviderError.Kind, region: String?) -> ProviderError.Scope? {
        switch kind {
        case .capacity: return .zone(nil)
        case .quota: return .region(region)
        default: return nil
        }
    }

    /// The taxonomy error for `error`, naming the resource and keeping AWS's own words.
    public static func providerError(_ error: AWSServiceError, action: String, address: ResourceAddress?, region: String? = nil) -> ProviderError {
        let kind = kind(of: error)
        var message = "AWS \(action) failed: \(error.code): \(error.message)"
        switch kind {
        case .auth: message += " (check the AWS credentials Stratum uses and that they allow \(action))"
        case .quota: message += " (an account limit: request an increase or use another region)"
        case .capacity: message += " (AWS has no capacity for this request here; another zone or region may)"
        default: break
        }
        return ProviderError(kind, message, address: address, scope: scope(of: kind, region: region))
    }
}
