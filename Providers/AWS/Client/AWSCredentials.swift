import Foundation

/// An AWS access key pair, optionally temporary. Its description never shows the secret or
/// the session token, so credentials can be logged or put in an error by accident safely.
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials stop working (IMDS, SSO); nil for long-term keys.
    public var expiration: Date?
    /// Where they came from, for messages: `environment`, `profile default`, `instance metadata`.
    public var source: String

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil, source: String = "static") {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    /// The access key id with all but its last four characters hidden.
    public var redactedKeyId: String {
        guard accessKeyId.count > 4 else { return "****" }
        return String(repeating: "*", count: 4) + accessKeyId.suffix(4)
    }

    public var description: String { "AWSCredentials(\(redactedKeyId) from \(source))" }
    public var debugDescription: String { description }

    /// Whether they expire within `margin` of `now`.
    public func expires(within margin: TimeInterval, of now: Date) -> Bool {
        guard let expiration else { return false }
        return expiration.timeIntervalSince(now) < margin
    }
}

/// Credentials could not be found or loaded.
public struct AWSCredentialsError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
