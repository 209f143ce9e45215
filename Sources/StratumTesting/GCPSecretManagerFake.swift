import Foundation
import StratumCore

/// A loopback fake of the Secret Manager API v1: secrets `create`, `get`, `delete`,
/// `addVersion`, `setIamPolicy` and `getIamPolicy`, and `versions.access` (`latest` or a
/// number). Every request is checked against Google's secretmanager v1 discovery document
/// first; what is wrong with it is recorded in `violations`.
///
/// Reading a value is guarded as on GCP: the bearer token must belong to an identity that holds
/// `roles/secretmanager.secretAccessor` on the secret (tokens are given identities with
/// `grant(token:to:)`), otherwise 403. Every other call is the deploying credentials' and is
/// allowed. Errors use Google's body shape.
public actor GCPSecretManagerFake {
    public let project: String
    public let validator: DiscoveryValidator
    public private(set) var violations: [String] = []
    /// Calls received per discovery method id (`secretmanager.projects.secrets.create`).
    public private(set) var calls: [String: Int] = [:]

    private var secrets: [String: (resource: Value, versions: [Data], accessors: Set<String>)] = [:]
    private var identities: [String: String] = [:]

    public init(project: String = "stratum-test") throws {
        self.project = project
        self.validator = try DiscoveryValidator.named("secretmanager.v1")
    }

    /// Serves the fake on 127.0.0.1; point the client's Secret Manager root at `url`.
    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    /// Requests bearing `token` act as `member` (`serviceAccount:x@p.iam.gserviceaccount.com`).
    public func grant(token: String, to member: String) { identities[token] = member }

    /// The ids of the project's secrets, sorted.
    public func secretIDs() -> [String] { secrets.keys.sorted() }

    /// The newest version's value of a secret.
    public func value(of id: String) -> Data? { secrets[id]?.versions.last }

    /// The members that may read a secret's value.
    public func accessors(of id: String) -> Set<String> { secrets[id]?.accessors ?? [] }

    // MARK: Requests

    public func handle(_ request: ProxyRequest) -> ProxyResponse {
        let outcome = validator.validate(method: request.method, uri: request.uri, body: request.body)
        for violation in outcome.violations { violations.append("\(request.method) \(request.uri): \(violation)") }
        guard let match = outcome.match else { return GCPComputeFake.error(404, reason: "notFound", message: "Not Found") }
        calls[match.methodID, default: 0] += 1
        guard match.pathParameters["projectsId"] == project else {
            return GCPComputeFake.error(403, reason: "forbidden", message: "Permission denied on resource project \(match.pathParameters["projectsId"] ?? "").")
        }
        let body = (try? JSONDecoder().decode(Value.self, from: request.body))?.mapValue ?? [:]
        let id = match.pathParameters["secretsId"] ?? ""
        switch match.methodID {
        case "secretmanager.projects.secrets.create":
            return create(match.query["secretId"]?.first ?? "", body)
        case "secretmanager.projects.secrets.get":
            return secrets[id].map { GCPComputeFake.json(200, $0.resource) } ?? missing(id)
        case "secretmanager.projects.secrets.delete":
            guard secrets.removeValue(forKey: id) != nil else { return missing(id) }
            return GCPComputeFake.json(200, .map([:]))
        case "secretmanager.projects.secrets.addVersion":
            guard secrets[id] != nil else { return missing(id) }
            guard let encoded = body["payload"]?.mapValue?["data"]?.stringValue, let data = Data(base64Encoded: encoded) else {
                return GCPComputeFake.error(400, reason: "badRequest", message: "Payload data must be base64.")
            }
            secrets[id]?.versions.append(data)
            let number = secrets[id]?.versions.count ?? 0
            return GCPComputeFake.json(200, ["name": .string("\(name(id))/versions/\(number)"), "state": "ENABLED", "createTime": "2026-01-01T00:00:00Z"])
        case "secretmanager.projects.secrets.setIamPolicy":
            guard secrets[id] != nil else { return missing(id) }
            var accessors = Set<String>()
            for binding in body["policy"]?.mapValue?["bindings"]?.listValue ?? [] where binding.mapValue?["role"]?.stringValue == "roles/secretmanager.secretAccessor" {
                accessors.formUnion(binding.mapValue?["members"]?.listValue?.compactMap(\.stringValue) ?? [])
            }
            secrets[id]?.accessors = accessors
            return GCPComputeFake.json(200, policy(id))
        case "secretmanager.projects.secrets.getIamPolicy":
            guard secrets[id] != nil else { return missing(id) }
            return GCPComputeFake.json(200, policy(id))
        case "secretmanager.projects.secrets.versions.access":
            return access(id, version: match.pathParameters["versionsId"] ?? "", token: Self.bearer(request))
        default:
            return GCPComputeFake.error(501, reason: "notImplemented", message: "\(match.methodID) is not implemented by the Secret Manager fake")
        }
    }

    private func name(_ id: String) -> String { "projects/\(project)/secrets/\(id)" }

    private func missing(_ id: String) -> ProxyResponse {
        GCPComputeFake.error(404, reason: "notFound", message: "Secret [\(name(id))] not found or has no versions.")
    }

    private func create(_ id: String, _ body: [String: Value]) -> ProxyResponse {
        guard id.range(of: "^[A-Za-z0-9_-]{1,255}$", options: .regularExpression) != nil else {
            return GCPComputeFake.error(400, reason: "badRequest", message: "Invalid secret id '\(id)'.")
        }
        guard body["replication"] != nil else { return GCPComputeFake.error(400, reason: "badRequest", message: "Secret.replication is required.") }
        guard secrets[id] == nil else { return GCPComputeFake.error(409, reason: "alreadyExists", message: "Secret [\(name(id))] already exists.") }
        var resource = body
        resource["name"] = .string(name(id))
        resource["createTime"] = "2026-01-01T00:00:00Z"
        resource["etag"] = "\"1\""
        secrets[id] = (.map(resource), [], [])
        return GCPComputeFake.json(200, .map(resource))
    }

    private func policy(_ id: String) -> Value {
        let members = (secrets[id]?.accessors ?? []).sorted()
        return .map(["version": 1, "etag": "BwY=", "bindings": members.isEmpty ? .list([]) : [["role": "roles/secretmanager.secretAccessor", "members": .list(members.map(Value.string))]]])
    }

    private func access(_ id: String, version: String, token: String?) -> ProxyResponse {
        guard let secret = secrets[id] else { return missing(id) }
        guard let token, let member = identities[token], secret.accessors.contains(member) else {
            return GCPComputeFake.error(
                403, reason: "forbidden", message: "Permission 'secretmanager.versions.access' denied for resource '\(name(id))/versions/\(version)' (or it may not exist).")
        }
        let index = version == "latest" ? secret.versions.count - 1 : (Int(version) ?? 0) - 1
        guard secret.versions.indices.contains(index) else { return missing(id) }
        return GCPComputeFake.json(200, [
            "name": .string("\(name(id))/versions/\(index + 1)"), "payload": ["data": .string(secret.versions[index].base64EncodedString())],
        ])
    }

    static func bearer(_ request: ProxyRequest) -> String? {
        guard let value = request.header("Authorization"), value.hasPrefix("Bearer ") else { return nil }
        return String(value.dropFirst("Bearer ".count))
    }
}
