import Foundation
import StratumCloud
import StratumCore

/// A service-account JSON key (`"type": "service_account"`). Its private key never prints.
public struct GCPServiceAccountKey: Sendable, Decodable, CustomStringConvertible {
    public var clientEmail: String
    public var privateKey: String
    public var privateKeyId: String?
    public var projectId: String?
    public var tokenURI: String?

    enum CodingKeys: String, CodingKey {
        case clientEmail = "client_email", privateKey = "private_key", privateKeyId = "private_key_id", projectId = "project_id"
        case tokenURI = "token_uri"
    }

    public init(clientEmail: String, privateKey: String, privateKeyId: String? = nil, projectId: String? = nil, tokenURI: String? = nil) {
        self.clientEmail = clientEmail
        self.privateKey = privateKey
        self.privateKeyId = privateKeyId
        self.projectId = projectId
        self.tokenURI = tokenURI
    }

    public var description: String { "service account \(clientEmail) (key \(Redaction.mask))" }
}

/// An `authorized_user` Application Default Credentials file (what `gcloud auth
/// application-default login` writes): a refresh token and the OAuth client it belongs to.
public struct GCPAuthorizedUser: Sendable, Decodable, CustomStringConvertible {
    public var clientId: String
    public var clientSecret: String
    public var refreshToken: String
    public var quotaProjectId: String?

    enum CodingKeys: String, CodingKey {
        case clientId = "client_id", clientSecret = "client_secret", refreshToken = "refresh_token", quotaProjectId = "quota_project_id"
    }

    public init(clientId: String, clientSecret: String, refreshToken: String, quotaProjectId: String? = nil) {
        self.clientId = clientId
        self.clientSecret = clientSecret
        self.refreshToken = refreshToken
        self.quotaProjectId = quotaProjectId
    }

    public var description: String { "authorized user (OAuth client \(clientId), refresh token \(Redaction.mask))" }
}

/// What a credentials file holds.
public enum GCPCredentialFile: Sendable {
    case serviceAccount(GCPServiceAccountKey)
    case authorizedUser(GCPAuthorizedUser)

    /// Reads a credentials file; the error names the file and what is wrong, never its secrets.
    public static func load(_ path: String) throws -> GCPCredentialFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ProviderError(.auth, "cannot read the GCP credentials file \(path)")
        }
        return try parse(data, source: path)
    }

    public static func parse(_ data: Data, source: String) throws -> GCPCredentialFile {
        struct Kind: Decodable { var type: String? }
        guard let kind = try? JSONDecoder().decode(Kind.self, from: data) else {
            throw ProviderError(.auth, "the GCP credentials file \(source) is not a JSON object")
        }
        do {
            switch kind.type {
            case "service_account": return .serviceAccount(try JSONDecoder().decode(GCPServiceAccountKey.self, from: data))
            case "authorized_user": return .authorizedUser(try JSONDecoder().decode(GCPAuthorizedUser.self, from: data))
            default:
                throw ProviderError(
                    .auth, "the GCP credentials file \(source) has type '\(kind.type ?? "none")'; Stratum reads 'service_account' and 'authorized_user' files")
            }
        } catch let error as DecodingError {
            throw ProviderError(.auth, "the GCP credentials file \(source) lacks a field: \(Self.missingField(error))")
        }
    }

    static func missingField(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return key.stringValue
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return context.codingPath.map(\.stringValue).joined(separator: ".")
        @unknown default: return "?"
        }
    }
}
