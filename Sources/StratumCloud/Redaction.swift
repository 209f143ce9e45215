import Foundation

/// Masks secrets in what cloud clients log or put into errors: credential headers, signed
/// query parameters (presigned URLs, SAS tokens), JSON fields of token and credential answers,
/// and any known secret value wherever it appears in free text.
public struct Redaction: Sendable {
    /// What a masked value becomes.
    public static let mask = "[REDACTED]"

    /// Header names, lowercased.
    public var headers: Set<String>
    /// Query parameter names, lowercased.
    public var queryParameters: Set<String>
    /// JSON object keys, lowercased (matched at any depth).
    public var jsonFields: Set<String>

    public init(headers: Set<String>, queryParameters: Set<String>, jsonFields: Set<String>) {
        self.headers = Set(headers.map { $0.lowercased() })
        self.queryParameters = Set(queryParameters.map { $0.lowercased() })
        self.jsonFields = Set(jsonFields.map { $0.lowercased() })
    }

    /// The secrets every cloud's API carries somewhere.
    public static let standard = Redaction(
        headers: [
            "authorization", "proxy-authorization", "cookie", "set-cookie", "x-amz-security-token", "x-amz-server-side-encryption-customer-key",
            "x-goog-api-key", "x-ms-authorization-auxiliary", "metadata-flavor-token", "x-aws-ec2-metadata-token", "ocp-apim-subscription-key",
        ],
        queryParameters: [
            "x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature", "sig", "access_token", "id_token", "refresh_token",
            "client_secret", "code", "key", "token", "password",
        ],
        jsonFields: [
            "access_token", "refresh_token", "id_token", "client_secret", "private_key", "password", "secret", "token", "secretaccesskey",
            "sessiontoken", "primarykey", "secondarykey", "connectionstring",
        ])

    /// Headers with every secret value masked.
    public func headers(_ headers: [(String, String)]) -> [(String, String)] {
        headers.map { self.headers.contains($0.0.lowercased()) ? ($0.0, Self.mask) : $0 }
    }

    /// The URL as text, with secret query parameters masked and any user:password dropped.
    public func url(_ url: URL) -> String {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return Self.mask }
        if components.password != nil { components.password = Self.mask }
        if let items = components.queryItems, !items.isEmpty {
            components.queryItems = items.map { queryParameters.contains($0.name.lowercased()) ? URLQueryItem(name: $0.name, value: Self.mask) : $0 }
        }
        return components.string ?? Self.mask
    }

    /// A JSON document with the values of secret fields masked at any depth; text that is not
    /// JSON comes back through `text`, with `secrets` masked.
    public func json(_ body: Data, secrets: [String] = []) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]),
            let data = try? JSONSerialization.data(withJSONObject: masked(object), options: [.sortedKeys, .fragmentsAllowed])
        else { return text(String(decoding: body, as: UTF8.self), secrets: secrets) }
        return text(String(decoding: data, as: UTF8.self), secrets: secrets)
    }

    /// `text` with every occurrence of a known secret value masked (values shorter than four
    /// characters are left: masking them would garble the text and hide nothing).
    public func text(_ text: String, secrets: [String] = []) -> String {
        var result = text
        for secret in secrets.filter({ $0.count >= 4 }).sorted(by: { $0.count > $1.count }) {
            result = result.replacingOccurrences(of: secret, with: Self.mask)
        }
        return result
    }

    private func masked(_ object: Any) -> Any {
        if let dictionary = object as? [String: Any] {
            var out: [String: Any] = [:]
            for (key, value) in dictionary {
                out[key] = jsonFields.contains(key.lowercased()) && !(value is [String: Any]) && !(value is [Any]) ? Self.mask : masked(value)
            }
            return out
        }
        if let array = object as? [Any] { return array.map(masked) }
        return object
    }
}
