import Crypto
import Foundation
import StratumCore
import _CryptoExtras

/// Signs the JWT a service account trades for an access token (OAuth2 JWT bearer grant,
/// RFC 7523): RS256, that is RSASSA-PKCS1-v1_5 with SHA-256, over
/// `base64url(header).base64url(claims)`.
public struct GCPJWTSigner: Sendable {
    /// How long an assertion is valid; Google accepts at most one hour.
    public static let assertionLifetime: Int = 3600

    let key: _RSA.Signing.PrivateKey
    let keyId: String?
    public let issuer: String

    public init(serviceAccount: GCPServiceAccountKey) throws {
        do {
            key = try _RSA.Signing.PrivateKey(pemRepresentation: serviceAccount.privateKey)
        } catch {
            // The key's text stays out of the message.
            throw ProviderError(.auth, "the private key of \(serviceAccount.clientEmail) is not an RSA key in PEM form")
        }
        keyId = serviceAccount.privateKeyId
        issuer = serviceAccount.clientEmail
    }

    /// The signed assertion for `scopes` and `audience` (the token endpoint), issued at `now`.
    public func assertion(scopes: [String], audience: String, now: Date) throws -> String {
        let issued = Int(now.timeIntervalSince1970)
        // `kid` names the key, so the token endpoint checks against the right public half.
        var header: [String: GCPJSON] = ["alg": "RS256", "typ": "JWT"]
        if let keyId { header["kid"] = .string(keyId) }
        let claims: GCPJSON = [
            "iss": .string(issuer), "scope": .string(scopes.joined(separator: " ")), "aud": .string(audience),
            "iat": .number(Double(issued)), "exp": .number(Double(issued + Self.assertionLifetime)),
        ]
        let signingInput = Self.base64URL(GCPJSON.object(header).data) + "." + Self.base64URL(claims.data)
        let signature = try key.signature(for: Data(signingInput.utf8), padding: .insecurePKCS1v1_5)
        return signingInput + "." + Self.base64URL(signature.rawRepresentation)
    }

    /// Base64url without padding (RFC 7515 §2).
    public static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Decodes base64url with or without padding.
    public static func decodeBase64URL(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}
