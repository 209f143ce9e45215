import Crypto
import Foundation
import StratumCloud
import StratumCore

/// Blob Storage's data plane for what Stratum itself puts in a cluster's container (the
/// trainer's archive): Put Blob, Get Blob Properties and Delete Blob, each signed with the
/// storage account's key (`SharedKey`), which Resource Manager hands the provider's
/// credentials (`listKeys`). The key lives only for the call that signs with it: it is in no
/// state, log or error, and the Resource Manager token never goes to the storage host.
///
/// Blobs are at `https://{account}.blob.core.windows.net/{container}/{blob}`, or path-style
/// at `{storage}/{account}/{container}/{blob}` when `AzureEndpoints.storage` is set (as
/// storage emulators serve them).
struct AzureBlobStorage: Sendable {
    /// The service version every request names.
    static let version = "2021-12-02"

    let client: AzureClient

    /// A blob by its container's ARM id
    /// (`/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/c`).
    struct Location: Sendable, Hashable {
        /// The storage account's ARM id.
        var accountID: String
        var account: String
        var container: String
        var blob: String

        init(containerID: String, blob: String) throws {
            let parts = containerID.split(separator: "/").map(String.init)
            guard let index = parts.firstIndex(where: { $0.lowercased() == "storageaccounts" }), index + 4 < parts.count,
                parts[index + 2].lowercased() == "blobservices", parts[index + 4].lowercased() == "containers", index + 5 < parts.count
            else { throw ProviderError(.permanent, "'\(containerID)' is not a blob container's ARM id") }
            accountID = "/" + parts[...(index + 1)].joined(separator: "/")
            account = parts[index + 1]
            container = parts[index + 5]
            self.blob = blob
        }

        /// `az://{account}/{container}/{blob}`: how nodes and the trainer name it.
        var url: String { "az://\(account)/\(container)/\(blob)" }
    }

    /// A key of the account, asked of Resource Manager for the call at hand. Nil when the
    /// account does not exist.
    func accountKey(_ location: Location, address: ResourceAddress?) async throws -> SymmetricKey? {
        let answer: AzureClient.Answer
        do {
            answer = try await client.in(subscriptionOf: location.accountID).post("\(location.accountID)/listKeys", action: "storageAccounts.listKeys", address: address)
        } catch let error as ProviderError where error.kind == .notFound {
            return nil
        }
        guard let value = answer.json?["keys"]?.array.first(where: { $0["permissions"]?.string?.lowercased() != "read" })?["value"]?.string,
            let key = Data(base64Encoded: value)
        else {
            throw ProviderError(.permanent, "storage account \(location.account) answered no key to write with (Stratum signs its uploads with the account's key)", address: address)
        }
        return SymmetricKey(data: key)
    }

    /// The blob's URL on the storage endpoint.
    func url(_ location: Location) throws -> URL {
        let base = client.configuration.endpoints.storage.map { "\($0.absoluteString)/\(location.account)" } ?? "https://\(location.account).blob.core.windows.net"
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#[]@!$&'()*+,;=")
        let path = ([location.container] + location.blob.split(separator: "/").map(String.init))
            .map { $0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0 }.joined(separator: "/")
        guard let url = URL(string: "\(base)/\(path)") else { throw ProviderError(.permanent, "cannot form a blob URL for \(location.url)") }
        return url
    }

    /// Sends one request signed with `key`; the answer whatever its status.
    func send(
        _ method: String, _ location: Location, key: SymmetricKey, headers extra: [(String, String)] = [], body: Data = Data(), action: String,
        address: ResourceAddress?
    ) async throws -> HTTPResponseData {
        let url = try url(location)
        var headers = extra + [("x-ms-date", HTTPDate.string(client.clock.date())), ("x-ms-version", Self.version)]
        headers.append(("Authorization", "SharedKey \(location.account):\(Self.signature(method, url: url, account: location.account, headers: headers, contentLength: body.count, key: key))"))
        do {
            client.metrics.record(action)
            return try await client.transport.send(HTTPRequestData(method: method, url: url, headers: headers, body: body), timeout: client.configuration.timeout)
        } catch let error as HTTPConnectionError {
            throw ProviderError(.transient, "Azure Blob \(action): \(error)", address: address)
        }
    }

    /// A failed answer as the taxonomy's error: Blob Storage's code (the `x-ms-error-code`
    /// header; a HEAD has no body) and the status.
    static func failure(_ response: HTTPResponseData, action: String, location: Location, address: ResourceAddress?) -> ProviderError {
        let code = response.header("x-ms-error-code") ?? "HTTP \(response.status)"
        let kind: ProviderError.Kind
        switch response.status {
        case 404: kind = .notFound
        case 401, 403: kind = .auth
        case 429, 503: kind = .throttled
        case 500...: kind = .transient
        default: kind = .permanent
        }
        return ProviderError(kind, "Azure Blob \(action) of \(location.url) answered \(response.status) \(code)", address: address)
    }

    /// The SharedKey signature of a request: HMAC-SHA256 under the account key of the verb, the
    /// standard headers' values in their fixed order (Content-Length empty when 0), the
    /// `x-ms-` headers sorted, and the resource with its query parameters.
    static func signature(_ method: String, url: URL, account: String, headers: [(String, String)], contentLength: Int, key: SymmetricKey) -> String {
        func value(_ name: String) -> String { headers.last { $0.0.lowercased() == name.lowercased() }?.1 ?? "" }
        let standard = ["Content-Encoding", "Content-Language", "", "Content-MD5", "Content-Type", "Date", "If-Modified-Since", "If-Match",
                        "If-None-Match", "If-Unmodified-Since", "Range"]
        let fixed = standard.map { $0.isEmpty ? (contentLength == 0 ? "" : String(contentLength)) : value($0) }
        let canonicalHeaders = headers.filter { $0.0.lowercased().hasPrefix("x-ms-") }
            .map { (name: $0.0.lowercased(), value: $0.1.trimmingCharacters(in: .whitespaces)) }
            .sorted { $0.name < $1.name }.map { "\($0.name):\($0.value)" }
        var resource = "/\(account)\(URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? url.path)"
        let query = URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []
        for name in Set(query.map { $0.name.lowercased() }).sorted() {
            resource += "\n\(name):" + query.filter { $0.name.lowercased() == name }.compactMap(\.value).sorted().joined(separator: ",")
        }
        let text = ([method] + fixed + canonicalHeaders + [resource]).joined(separator: "\n")
        return Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)).base64EncodedString()
    }
}

extension AzureClient {
    /// This client calling into the subscription an ARM id names (its own for any other path).
    func `in`(subscriptionOf id: String) -> AzureClient {
        guard let subscription = AzureVMInputs.subscription(ofID: id) else { return self }
        var client = self
        client.subscription = subscription
        return client
    }
}
