/// The identity a node of one cloud presents to another: OIDC tokens its cloud's metadata
/// service issues for it (a GCP service account's Google ID token, an Azure managed identity's
/// Entra token). A cloud that holds a bucket can trust such an identity (`PlacementLowering.grant`)
/// so that nodes elsewhere reach the bucket with no key in their user data.
public struct WorkloadIdentity: Sendable {
    /// The tokens' issuer, e.g. `accounts.google.com`.
    public var issuer: any StringExpression
    /// The tokens' subject: the node identity's id at its issuer (a reference to it).
    public var subject: any StringExpression
    /// The audience nodes ask their tokens for.
    public var audience: String
    /// Where the trainer asks for tokens (`STRATUM_WEB_IDENTITY`): `gcp` or `azure`.
    public var tokenSource: String

    public init(issuer: any StringExpression, subject: any StringExpression, audience: String, tokenSource: String) {
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.tokenSource = tokenSource
    }
}
