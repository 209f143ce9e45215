import Crypto
import Foundation

/// An HTTP request in the shape SigV4 signs: method, path, query, headers and body.
public struct SignableRequest: Sendable {
    public var method: String
    /// The URI path, already percent-encoded as it goes on the wire (e.g. `/my%20key`).
    public var path: String
    /// Query parameters, unencoded; encoded and sorted while signing.
    public var query: [(String, String)]
    /// Header names as given; values as given.
    public var headers: [(String, String)]
    public var body: Data

    public init(method: String, path: String = "/", query: [(String, String)] = [], headers: [(String, String)] = [], body: Data = Data()) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.0.lowercased() == name.lowercased() }
        headers.append((name, value))
    }
}

/// AWS Signature Version 4 (header-based), as specified for every AWS API.
///
/// The intermediate strings are exposed so tests can compare them line by line with the
/// published test suite: a wrong signature alone does not say which step went wrong.
public struct SigV4Signer: Sendable {
    public var service: String
    public var region: String
    /// S3 signs the payload hash as a header; most services do not need it.
    public var signsPayloadHashHeader: Bool

    public init(service: String, region: String, signsPayloadHashHeader: Bool = false) {
        self.service = service
        self.region = region
        self.signsPayloadHashHeader = signsPayloadHashHeader
    }

    /// What signing produced, for tests and debugging (never includes the secret).
    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var authorization: String
    }

    /// Adds `X-Amz-Date`, the session token and `Authorization` to `request`.
    @discardableResult
    public func sign(_ request: inout SignableRequest, credentials: AWSCredentials, date: Date) -> Signature {
        let amzDate = Self.amzDate(date)
        request.setHeader("X-Amz-Date", amzDate)
        if let token = credentials.sessionToken { request.setHeader("X-Amz-Security-Token", token) }
        let payloadHash = request.header("x-amz-content-sha256") ?? Self.hex(SHA256.hash(data: request.body))
        if signsPayloadHashHeader, request.header("x-amz-content-sha256") == nil {
            request.setHeader("x-amz-content-sha256", payloadHash)
        }
        let result = signature(for: request, credentials: credentials, amzDate: amzDate, payloadHash: payloadHash)
        request.setHeader("Authorization", result.authorization)
        return result
    }

    /// The signature of a request that already carries its `X-Amz-Date` (and every header to sign).
    public func signature(for request: SignableRequest, credentials: AWSCredentials, amzDate: String, payloadHash: String) -> Signature {
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"

        var canonicalHeaders: [String: String] = [:]
        for (name, value) in request.headers where name.lowercased() != "authorization" {
            let key = name.lowercased()
            let trimmed = Self.collapseSpaces(value)
            canonicalHeaders[key] = canonicalHeaders[key].map { "\($0),\(trimmed)" } ?? trimmed
        }
        let names = canonicalHeaders.keys.sorted()
        let signedHeaders = names.joined(separator: ";")
        let headerBlock = names.map { "\($0):\(canonicalHeaders[$0] ?? "")\n" }.joined()

        let canonicalRequest = [
            request.method.uppercased(),
            request.path.isEmpty ? "/" : request.path,
            Self.canonicalQuery(request.query),
            headerBlock,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")

        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8))),
        ].joined(separator: "\n")

        let key = signingKey(secret: credentials.secretAccessKey, day: day)
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return Signature(canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature, authorization: authorization)
    }

    func signingKey(secret: String, day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data("AWS4\(secret)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    /// `20150830T123600Z`.
    public static func amzDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0) ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ n: Int?) -> String { let v = n ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        return "\(c.year ?? 1970)\(two(c.month))\(two(c.day))T\(two(c.hour))\(two(c.minute))\(two(c.second))Z"
    }

    /// Query parameters encoded per RFC 3986 and sorted by name, then value.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        let encoded: [(name: String, value: String)] = query.map { pair in
            (AWSPercentEncoding.encode(pair.0), AWSPercentEncoding.encode(pair.1))
        }
        // Byte order, not locale order.
        let sorted = encoded.sorted { a, b in
            a.name == b.name ? Array(a.value.utf8).lexicographicallyPrecedes(b.value.utf8) : Array(a.name.utf8).lexicographicallyPrecedes(b.name.utf8)
        }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    static func collapseSpaces(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ").trimmingCharacters(in: .whitespaces)
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { byte in
            let s = String(byte, radix: 16)
            return byte < 16 ? "0" + s : s
        }.joined()
    }

    /// SHA-256 of `data` in lowercase hex.
    public static func sha256Hex(_ data: Data) -> String { hex(SHA256.hash(data: data)) }
}

/// Percent-encoding as AWS specifies it: everything but `A-Z a-z 0-9 - _ . ~` is encoded.
public enum AWSPercentEncoding {
    static let slash = UInt8(ascii: "/")
    static let unreserved: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~".utf8))

    public static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved.contains(byte) || (keepSlash && byte == slash) {
                out.append(Character(UnicodeScalar(byte)))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += byte < 16 ? "%0\(hex)" : "%\(hex)"
            }
        }
        return out
    }

    /// `application/x-www-form-urlencoded` body of the Query API, in the order given.
    public static func formBody(_ parameters: [(String, String)]) -> String {
        parameters.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    /// Decodes `%XX` escapes and `+` (form encoding) back to text.
    public static func decode(_ text: String) -> String {
        (text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding) ?? text
    }
}

extension SigV4Signer {
    /// Base64 MD5 of `data`: S3 wants it as `Content-MD5` on configuration PUTs.
    public static func md5Base64(_ data: Data) -> String {
        Data(Insecure.MD5.hash(data: data)).base64EncodedString()
    }
}
