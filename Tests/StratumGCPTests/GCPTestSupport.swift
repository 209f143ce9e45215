import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import _CryptoExtras
@testable import StratumGCP

/// Requests a loopback server received, in order.
final class ReceivedRequests: Sendable {
    private let requests = LockedValue([ProxyRequest]())

    func append(_ request: ProxyRequest) { requests.update { $0.append(request) } }
    var all: [ProxyRequest] { requests.get() }
    func count(pathPrefix: String) -> Int { all.filter { $0.uri.hasPrefix(pathPrefix) }.count }
}

/// A scratch directory removed when the test ends.
struct ScratchDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "stratum-gcp-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ json: GCPJSON) throws -> String {
        let file = path + "/" + name
        try json.data.write(to: URL(fileURLWithPath: file))
        return file
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A service-account key made for a test, with the public half kept to verify signatures.
struct TestServiceAccount {
    static let email = "stratum-test@example-project.iam.gserviceaccount.com"
    let privateKey: _RSA.Signing.PrivateKey

    init() throws {
        privateKey = try Self.sharedKey.get()
    }

    /// One key for every test: a 2048-bit key takes seconds to make in a debug build, and each
    /// making held a thread of the shared pool.
    private static let sharedKey = Result { try _RSA.Signing.PrivateKey(keySize: .bits2048) }

    func keyFile(tokenURI: URL, project: String = "example-project") -> GCPJSON {
        [
            "type": "service_account", "project_id": .string(project), "private_key_id": "key-1",
            "private_key": .string(privateKey.pkcs8PEMRepresentation), "client_email": .string(Self.email),
            "token_uri": .string(tokenURI.absoluteString),
        ]
    }

    /// Verifies an RS256 JWT with the public key; its claims when the signature holds.
    func verifiedClaims(_ jwt: String) -> (header: GCPJSON, claims: GCPJSON)? {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = GCPJWTSigner.decodeBase64URL(parts[2]),
            let headerData = GCPJWTSigner.decodeBase64URL(parts[0]), let claimsData = GCPJWTSigner.decodeBase64URL(parts[1]),
            let header = GCPJSON.parse(headerData), let claims = GCPJSON.parse(claimsData)
        else { return nil }
        let signed = Data("\(parts[0]).\(parts[1])".utf8)
        guard privateKey.publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: signed, padding: .insecurePKCS1v1_5)
        else { return nil }
        return (header, claims)
    }
}

func jsonResponse(_ status: Int, _ json: GCPJSON, headers: [(String, String)] = []) -> ProxyResponse {
    ProxyResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: json.data)
}

/// A Google error body: `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`.
func googleError(_ status: Int, reason: String, message: String, domain: String = "global") -> ProxyResponse {
    jsonResponse(status, ["error": ["code": .number(Double(status)), "message": .string(message), "errors": [["domain": .string(domain), "reason": .string(reason), "message": .string(message)]]]])
}

/// The path of a request without its query.
func pathOf(_ request: ProxyRequest) -> String {
    String(request.uri.prefix { $0 != "?" })
}

/// The query parameters of a request.
func queryOf(_ request: ProxyRequest) -> [String: String] {
    var out: [String: String] = [:]
    for item in URLComponents(string: request.uri)?.queryItems ?? [] { out[item.name] = item.value ?? "" }
    return out
}
