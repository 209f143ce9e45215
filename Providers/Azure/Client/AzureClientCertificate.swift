import Crypto
import Foundation
import StratumCloud
import StratumCore
import _CryptoExtras

/// A service principal's certificate (`AZURE_CLIENT_CERTIFICATE_PATH`): one PEM file with the
/// private key and the certificate, as Azure's SDKs read it. It signs the client assertion
/// Microsoft Entra takes instead of a secret. Its private key never prints.
public struct AzureClientCertificate: Sendable, CustomStringConvertible {
    /// How long an assertion is valid (Microsoft's libraries use ten minutes).
    public static let assertionLifetime: Int = 600

    let key: _RSA.Signing.PrivateKey
    /// The certificate's thumbprint as the JWT header's `x5t`: base64url of the SHA-1 of its DER.
    public let thumbprint: String
    /// Where the certificate was read from (for messages).
    public let source: String

    /// Reads `pem`: a private key (`PRIVATE KEY` or `RSA PRIVATE KEY`) and a certificate, in
    /// either order. Errors name `source` and what is missing, never the key.
    public init(pem: String, source: String) throws {
        let blocks = Self.pemBlocks(pem)
        guard let certificate = blocks.first(where: { $0.label == "CERTIFICATE" }) else {
            throw ProviderError(.auth, "the Azure client certificate \(source) holds no CERTIFICATE block")
        }
        if blocks.contains(where: { $0.label == "ENCRYPTED PRIVATE KEY" }) {
            throw ProviderError(.auth, "the private key in the Azure client certificate \(source) is encrypted; Stratum reads unencrypted PEM keys")
        }
        guard let keyBlock = blocks.first(where: { $0.label == "PRIVATE KEY" || $0.label == "RSA PRIVATE KEY" }) else {
            throw ProviderError(.auth, "the Azure client certificate \(source) holds no PRIVATE KEY block")
        }
        do {
            key = try _RSA.Signing.PrivateKey(pemRepresentation: keyBlock.text)
        } catch {
            throw ProviderError(.auth, "the private key in the Azure client certificate \(source) is not an RSA key")
        }
        thumbprint = Self.base64URL(Data(Insecure.SHA1.hash(data: certificate.der)))
        self.source = source
    }

    /// Reads the PEM file at `path`.
    public static func load(_ path: String) throws -> AzureClientCertificate {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ProviderError(.auth, "cannot read the Azure client certificate \(path)")
        }
        return try AzureClientCertificate(pem: String(decoding: data, as: UTF8.self), source: path)
    }

    public var description: String { "certificate \(source) (x5t \(thumbprint), key \(Redaction.mask))" }

    /// The signed client assertion (RFC 7523, as Microsoft Entra wants it): RS256 with the
    /// certificate's `x5t`, issued and subject the client id, for `audience` (the token endpoint).
    public func assertion(clientId: String, audience: String, now: Date, id: String = UUID().uuidString) throws -> String {
        let issued = Int(now.timeIntervalSince1970)
        let header: CloudJSON = ["alg": "RS256", "typ": "JWT", "x5t": .string(thumbprint)]
        let claims: CloudJSON = [
            "aud": .string(audience), "iss": .string(clientId), "sub": .string(clientId), "jti": .string(id),
            "nbf": .number(Double(issued)), "iat": .number(Double(issued)), "exp": .number(Double(issued + Self.assertionLifetime)),
        ]
        let signingInput = Self.base64URL(header.data) + "." + Self.base64URL(claims.data)
        let signature = try key.signature(for: Data(signingInput.utf8), padding: .insecurePKCS1v1_5)
        return signingInput + "." + Self.base64URL(signature.rawRepresentation)
    }

    struct PEMBlock {
        var label: String
        /// The block with its BEGIN and END lines.
        var text: String
        var der: Data
    }

    static func pemBlocks(_ pem: String) -> [PEMBlock] {
        var blocks: [PEMBlock] = []
        var label: String?
        var lines: [Substring] = []
        for line in pem.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("-----BEGIN "), trimmed.hasSuffix("-----") {
                label = String(trimmed.dropFirst(11).dropLast(5))
                lines = []
            } else if trimmed.hasPrefix("-----END "), let open = label {
                if let der = Data(base64Encoded: lines.joined()) {
                    let body = lines.joined(separator: "\n")
                    blocks.append(PEMBlock(label: open, text: "-----BEGIN \(open)-----\n\(body)\n-----END \(open)-----\n", der: der))
                }
                label = nil
            } else if label != nil {
                lines.append(Substring(trimmed))
            }
        }
        return blocks
    }

    /// Base64url without padding (RFC 7515 §2).
    public static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
