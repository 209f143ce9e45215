/// What the cloud clients share: HTTP transport, per-endpoint adaptive rate limits
/// (`EndpointRateLimits`), an operation poller for long-running operations, an OAuth2
/// bearer-token cache with the token exchange and authorized calls, a Sendable JSON document
/// (`CloudJSON`), redaction of secrets in logs and errors, and the boot script of a
/// cloud node (`NodeBootScript`); plus, for now, AWS's credentials and request signing.
public enum StratumCloud {}
