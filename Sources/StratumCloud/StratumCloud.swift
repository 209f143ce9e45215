/// HTTP transport, credentials and request signing shared by the cloud providers.
public enum StratumCloud {}
