/// What the cloud clients share: HTTP transport, per-endpoint adaptive rate limits
/// (`EndpointRateLimits`), an operation poller for long-running operations, an OAuth2
/// bearer-token cache, and redaction of secrets in logs and errors; plus, for now, AWS's
/// credentials and request signing.
public enum StratumCloud {}
