import Crypto
import Foundation
import StratumCore

/// A loopback fake of the IAM API v1 for service accounts: `create`, `get`, `list` (paginated),
/// `patch` and `delete`. Every request is checked against Google's iam v1 discovery document
/// first; what is wrong with it is recorded in `violations` (tests assert there are none).
/// Account ids follow IAM's rules (6-30 of a-z, 0-9 and '-', starting with a letter), and
/// display names and descriptions its limits (100 and 256 UTF-8 bytes); a second create of an
/// id answers 409 `ALREADY_EXISTS`. Errors use Google's body shape.
public actor GCPIAMFake {
    public let project: String
    public let validator: DiscoveryValidator
    /// What was wrong with received requests, as `METHOD uri: violation`.
    public private(set) var violations: [String] = []
    /// Calls received per discovery method id (`iam.projects.serviceAccounts.create`).
    public private(set) var calls: [String: Int] = [:]
    /// The most accounts a list page holds.
    public private(set) var maxPageSize = 100

    private var accounts: [String: Value] = [:]
    private var lostResponses: [String: Int] = [:]

    public init(project: String = "stratum-test") throws {
        self.project = project
        self.validator = try DiscoveryValidator.named("iam.v1")
    }

    /// Serves the fake on 127.0.0.1; point the client's IAM root at `url`.
    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    public func set(maxPageSize: Int) { self.maxPageSize = max(1, maxPageSize) }

    /// The next `times` calls of `methodID` take effect but answer 503, as a lost answer would.
    public func loseResponses(of methodID: String, times: Int = 1) { lostResponses[methodID, default: 0] += times }

    /// The emails of the accounts, sorted.
    public func emails() -> [String] { accounts.keys.sorted() }

    public func account(_ email: String) -> Value? { accounts[email] }

    /// Whether `email` names an account that exists (for the Storage fake's policy checks).
    public func exists(_ email: String) -> Bool { accounts[email] != nil }

    /// Removes an account at once, as someone acting outside Stratum would.
    public func deleteOutOfBand(_ email: String) { accounts[email] = nil }

    // MARK: Requests

    public func handle(_ request: ProxyRequest) -> ProxyResponse {
        let outcome = validator.validate(method: request.method, uri: request.uri, body: request.body)
        for violation in outcome.violations { violations.append("\(request.method) \(request.uri): \(violation)") }
        guard let match = outcome.match else { return GCPComputeFake.error(404, reason: "notFound", message: "Not Found") }
        calls[match.methodID, default: 0] += 1
        let body = (try? JSONDecoder().decode(Value.self, from: request.body))?.mapValue ?? [:]
        let project = match.pathParameters["projectsId"] ?? ""
        let email = match.pathParameters["serviceAccountsId"] ?? ""
        guard project == self.project else {
            return GCPComputeFake.error(403, reason: "forbidden", message: "Permission 'iam.serviceAccounts.\(match.methodID.split(separator: ".").last ?? "")' denied on resource (or it may not exist).")
        }
        let response: ProxyResponse
        switch match.methodID {
        case "iam.projects.serviceAccounts.create": response = create(body)
        case "iam.projects.serviceAccounts.get": response = accounts[email].map { GCPComputeFake.json(200, $0) } ?? missing(email)
        case "iam.projects.serviceAccounts.list": response = list(match.query)
        case "iam.projects.serviceAccounts.patch": response = patch(email, body)
        case "iam.projects.serviceAccounts.delete":
            guard accounts.removeValue(forKey: email) != nil else { return missing(email) }
            response = GCPComputeFake.json(200, .map([:]))
        default:
            response = GCPComputeFake.error(501, reason: "notImplemented", message: "\(match.methodID) is not implemented by the IAM fake")
        }
        if let lost = lostResponses[match.methodID], lost > 0, (200..<300).contains(response.status) {
            lostResponses[match.methodID] = lost - 1
            return GCPComputeFake.error(503, reason: "backendError", message: "The service is currently unavailable.")
        }
        return response
    }

    private func missing(_ email: String) -> ProxyResponse {
        GCPComputeFake.error(404, reason: "notFound", message: "Unknown service account: projects/\(project)/serviceAccounts/\(email)")
    }

    private func create(_ body: [String: Value]) -> ProxyResponse {
        let id = body["accountId"]?.stringValue ?? ""
        guard id.range(of: "^[a-z][-a-z0-9]{4,28}[a-z0-9]$", options: .regularExpression) != nil else {
            return GCPComputeFake.error(
                400, reason: "badRequest", message: "Invalid value for accountId: '\(id)'. It must match [a-z]([-a-z0-9]*[a-z0-9]) and be 6-30 characters.")
        }
        let email = "\(id)@\(project).iam.gserviceaccount.com"
        if accounts[email] != nil {
            return GCPComputeFake.error(409, reason: "alreadyExists", message: "Service account \(id) already exists within project projects/\(project).")
        }
        let given = body["serviceAccount"]?.mapValue ?? [:]
        if let refusal = Self.invalidText(given) { return refusal }
        let digest = SHA256.hash(data: Data(email.utf8)).prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let uniqueID = String(digest % 900_000_000_000_000_000 + 100_000_000_000_000_000)
        var account: [String: Value] = [
            "name": .string("projects/\(project)/serviceAccounts/\(email)"), "projectId": .string(project), "uniqueId": .string(uniqueID),
            "email": .string(email), "oauth2ClientId": .string(uniqueID), "etag": "MDEwMjE5MjA=",
        ]
        for key in ["displayName", "description"] { if let value = given[key] { account[key] = value } }
        accounts[email] = .map(account)
        return GCPComputeFake.json(200, .map(account))
    }

    private func patch(_ email: String, _ body: [String: Value]) -> ProxyResponse {
        guard var account = accounts[email]?.mapValue else { return missing(email) }
        let mask = (body["updateMask"]?.stringValue ?? "").split(separator: ",").map(String.init)
        let given = body["serviceAccount"]?.mapValue ?? [:]
        if let refusal = Self.invalidText(given) { return refusal }
        for field in mask {
            guard ["displayName", "description"].contains(field) else {
                return GCPComputeFake.error(400, reason: "badRequest", message: "Invalid update mask field: \(field)")
            }
            account[field] = given[field]
        }
        accounts[email] = .map(account)
        return GCPComputeFake.json(200, .map(account))
    }

    /// 400 for a display name over 100 or a description over 256 UTF-8 bytes, as IAM refuses them.
    static func invalidText(_ account: [String: Value]) -> ProxyResponse? {
        for (field, limit) in [("displayName", 100), ("description", 256)] {
            if let text = account[field]?.stringValue, text.utf8.count > limit {
                return GCPComputeFake.error(400, reason: "badRequest", message: "Invalid \(field): it is \(text.utf8.count) bytes; the maximum is \(limit).")
            }
        }
        return nil
    }

    private func list(_ query: [String: [String]]) -> ProxyResponse {
        let items = accounts.keys.sorted().compactMap { accounts[$0] }
        let size = min(maxPageSize, max(1, Int(query["pageSize"]?.first ?? "") ?? maxPageSize))
        let start = query["pageToken"]?.first.map { Int($0.dropFirst("page-".count)) ?? -1 } ?? 0
        guard start >= 0, start <= items.count else { return GCPComputeFake.error(400, reason: "badRequest", message: "Invalid page token.") }
        let end = min(items.count, start + size)
        var answer: [String: Value] = ["accounts": .list(Array(items[start..<end]))]
        if end < items.count { answer["nextPageToken"] = .string("page-\(end)") }
        return GCPComputeFake.json(200, .map(answer))
    }
}
