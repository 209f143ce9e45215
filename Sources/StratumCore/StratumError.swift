/// The error taxonomy every provider maps its failures into; the engine's retry and
/// failover decisions depend only on `kind`.
public struct ProviderError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        /// The cloud has no capacity for the request here; another zone, region or cloud may.
        case capacity
        /// An account limit; needs a human or another region.
        case quota
        /// Rate limited; back off and slow down.
        case throttled
        /// A passing failure; retry with backoff.
        case transient
        /// The request is wrong; retrying will not help.
        case permanent
        /// Credentials are missing, wrong or lack permission.
        case auth
        /// The resource does not exist.
        case notFound
    }

    /// How far a capacity or quota failure reaches, so placement knows how far to fall back:
    /// another zone may have capacity a zone lacks; a quota holds for a whole region.
    public enum Scope: Sendable, Hashable, Codable {
        /// One zone (named when the cloud said which).
        case zone(String?)
        /// One region (named when known).
        case region(String?)
        /// The whole cloud account.
        case cloud
    }

    public var kind: Kind
    public var message: String
    public var address: ResourceAddress?
    /// Set for `.capacity` and `.quota` where the provider knows how far the failure reaches.
    public var scope: Scope?
    /// How long the cloud asked to wait before the next try (a throttled answer's
    /// `Retry-After`); retries wait at least this long.
    public var retryAfter: Duration?

    public init(_ kind: Kind, _ message: String, address: ResourceAddress? = nil, scope: Scope? = nil, retryAfter: Duration? = nil) {
        self.kind = kind
        self.message = message
        self.address = address
        self.scope = scope
        self.retryAfter = retryAfter
    }

    public var isRetryable: Bool { kind == .throttled || kind == .transient }

    public var description: String {
        if let address { return "\(address): \(message)" }
        return message
    }
}

/// A problem found in a stack before any provider is called.
public struct Diagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public var address: ResourceAddress?
    public var message: String
    public var location: SourceLocation?

    public init(address: ResourceAddress? = nil, message: String, location: SourceLocation? = nil) {
        self.address = address
        self.message = message
        self.location = location
    }

    public var description: String {
        var parts: [String] = []
        if let address { parts.append("\(address):") }
        parts.append(message)
        if let location { parts.append("(declared at \(location))") }
        return parts.joined(separator: " ")
    }
}

/// One or more diagnostics; the stack is invalid and nothing was changed.
public struct ValidationError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]

    public init(_ diagnostics: [Diagnostic]) {
        self.diagnostics = diagnostics
    }

    public var description: String {
        let lines = diagnostics.map { "  - \($0)" }
        return "the stack is invalid (\(diagnostics.count) error\(diagnostics.count == 1 ? "" : "s")):\n" + lines.joined(separator: "\n")
    }
}
