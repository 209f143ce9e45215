import Crypto
import Foundation
import StratumCloud

/// A loopback fake of the Azure Blob service for one storage account, path-style as the
/// storage emulators serve it (`http://127.0.0.1:PORT/ACCOUNT/container/blob`): Create
/// Container, Put Blob, Put Block, Put Block List, Get Blob (whole or a range, `x-ms-range` or
/// `Range`), Get Blob Properties, List Blobs (`prefix`, `marker`, `maxresults`, `NextMarker`)
/// and Delete Blob, with ETags, the conditional headers `If-Match` / `If-None-Match`, blob
/// metadata (`x-ms-meta-*`, answered by Get Blob and Get Blob Properties) and a Put Blob's
/// `Content-MD5` checked against the bytes received (400 `Md5Mismatch`).
///
/// Every request must be authorised the way Blob Storage checks it: `SharedKey ACCOUNT:SIG`
/// with the HMAC-SHA256 of the canonical request under the account key (403
/// AuthenticationFailed otherwise), or `Bearer TOKEN` with the token the fake hands out (401
/// InvalidAuthenticationInfo otherwise). It also serves the managed-identity route of the
/// instance metadata service (`/metadata/identity/oauth2/token`, header `Metadata: true`,
/// resource `https://storage.azure.com/`), so a client can point its IMDS host here. Errors
/// carry Blob Storage's XML body (`<Error><Code/><Message/></Error>`) and `x-ms-error-code`.
public actor AzureBlobFake {
    public nonisolated let account: String
    /// The account key, base64 as a connection string holds it.
    public nonisolated let accountKey: String
    /// The bearer token the IMDS route hands out and the blob routes accept.
    public private(set) var token: String

    /// Requests answered per operation ("PutBlob", "PutBlock", "PutBlockList", "GetBlob",
    /// "GetBlobProperties", "ListBlobs", "DeleteBlob", "CreateContainer", "Token").
    public private(set) var calls: [String: Int] = [:]
    /// Requests refused for their authorisation (401 or 403).
    public private(set) var refused = 0
    /// The most blobs a List Blobs page holds, whatever `maxresults` asks for (the service's cap is 5000).
    public private(set) var maxPageSize = 5000
    /// Lifetime of the tokens the IMDS route hands out, in seconds.
    public private(set) var tokenLifetime = 3599

    private struct Blob {
        var data: Data
        var metadata: [(String, String)] = []
        var etag: String
        var created: Date
        var modified: Date
    }

    private var containers: Set<String> = []
    private var blobs: [String: [String: Blob]] = [:]
    /// Uncommitted blocks per container/blob, by block id.
    private var blocks: [String: [String: Data]] = [:]
    private var etagCounter = 0x8DC_0000_0000_0000

    /// `accountKey`: the key requests are signed with (base64); nil: a random one.
    public init(account: String = "stratumtest", accountKey: String? = nil, containers: [String] = []) {
        self.account = account
        self.accountKey = accountKey ?? Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        self.token = "eyJ0eXAiOiJKV1Qi.stratum-test-\(UInt32.random(in: 0...UInt32.max))"
        self.containers = Set(containers)
        for c in containers { blobs[c] = [:] }
    }

    /// Serves the fake on 127.0.0.1.
    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    /// The blob endpoint of `server` for this account (a connection string's `BlobEndpoint`).
    public nonisolated func blobEndpoint(_ server: LoopbackHTTPServer) -> String { "http://127.0.0.1:\(server.port)/\(account)" }

    /// A connection string for `server`; without the key when `withKey` is false (the endpoint only).
    public nonisolated func connectionString(_ server: LoopbackHTTPServer, withKey: Bool = true) -> String {
        "DefaultEndpointsProtocol=http;AccountName=\(account);" + (withKey ? "AccountKey=\(accountKey);" : "") + "BlobEndpoint=\(blobEndpoint(server));"
    }

    public func set(maxPageSize: Int) { self.maxPageSize = max(1, maxPageSize) }

    /// Revokes the current token: the IMDS route hands out a new one lasting `lifetime` seconds.
    public func rotateToken(lifetime: Int = 3599) {
        token = "eyJ0eXAiOiJKV1Qi.stratum-test-\(UInt32.random(in: 0...UInt32.max))"
        tokenLifetime = lifetime
    }

    public func createContainer(_ name: String) {
        containers.insert(name)
        blobs[name, default: [:]] = blobs[name] ?? [:]
    }

    /// The committed content of a blob, or nil.
    public func blob(_ container: String, _ name: String) -> Data? { blobs[container]?[name]?.data }

    /// The metadata of a blob (`x-ms-meta-` names without the prefix, lower-cased), or nil.
    public func metadata(_ container: String, _ name: String) -> [String: String]? {
        blobs[container]?[name].map { Dictionary($0.metadata.map { (String($0.0.dropFirst("x-ms-meta-".count)), $0.1) }) { $1 } }
    }

    /// Names of the committed blobs of a container, sorted.
    public func blobNames(_ container: String) -> [String] { (blobs[container] ?? [:]).keys.sorted() }

    // MARK: - Requests

    func handle(_ request: ProxyRequest) -> ProxyResponse {
        let (rawPath, query) = Self.split(request.uri)
        if rawPath == "/metadata/identity/oauth2/token" { return imdsToken(request, query) }
        if let refusal = authorise(request, rawPath: rawPath, query: query) {
            refused += 1
            return refusal
        }
        let segments = rawPath.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard segments.first == account, segments.count >= 2, !segments[1].isEmpty else {
            return error(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        }
        let container = segments[1]
        let blob = segments.count > 2 ? (segments[2].removingPercentEncoding ?? segments[2]) : ""
        if blob.isEmpty {
            if request.method == "PUT", query["restype"] == "container" { return createContainer(container) }
            if request.method == "GET", query["restype"] == "container", query["comp"] == "list" {
                return listBlobs(container, query, request)
            }
            return error(400, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")
        }
        guard containers.contains(container) else { return error(404, "ContainerNotFound", "The specified container does not exist.") }
        switch (request.method, query["comp"]) {
        case ("PUT", "block"): return putBlock(container, blob, query, request)
        case ("PUT", "blocklist"): return putBlockList(container, blob, request)
        case ("PUT", nil): return putBlob(container, blob, request)
        case ("GET", nil): return getBlob(container, blob, request)
        case ("HEAD", nil): return properties(container, blob, request)
        case ("DELETE", nil): return deleteBlob(container, blob, request)
        default: return error(400, "UnsupportedQueryParameter", "One of the query parameters specified in the request URI is not supported.")
        }
    }

    private func count(_ operation: String) { calls[operation, default: 0] += 1 }

    private func imdsToken(_ request: ProxyRequest, _ query: [String: String]) -> ProxyResponse {
        guard request.header("Metadata") == "true" else {
            return json(400, ["error": "invalid_request", "error_description": "Required metadata header not specified"])
        }
        guard query["resource"] == "https://storage.azure.com/" || query["resource"] == "https://storage.azure.com" else {
            return json(400, ["error": "invalid_resource", "error_description": "AADSTS500011: resource not found"])
        }
        count("Token")
        let now = Int(Date().timeIntervalSince1970)
        return json(200, ["access_token": token, "expires_in": "\(tokenLifetime)", "expires_on": "\(now + tokenLifetime)",
                          "resource": "https://storage.azure.com/", "token_type": "Bearer"])
    }

    // MARK: - Authorisation

    /// nil when the request is authorised, else the refusal.
    private func authorise(_ request: ProxyRequest, rawPath: String, query: [String: String]) -> ProxyResponse? {
        guard let auth = request.header("Authorization") else {
            return error(401, "NoAuthenticationInformation", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")
        }
        if auth.hasPrefix("Bearer ") {
            guard auth.dropFirst("Bearer ".count) == token else {
                return error(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")
            }
            guard let version = request.header("x-ms-version"), version >= "2017-11-09" else {
                return error(400, "InvalidHeaderValue", "Bearer tokens need x-ms-version 2017-11-09 or later.")
            }
            return nil
        }
        guard auth == "SharedKey \(account):\(signature(request, rawPath: rawPath))",
              request.header("x-ms-date") != nil || request.header("Date") != nil
        else {
            return error(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
        }
        return nil
    }

    /// The SharedKey signature Blob Storage expects for `request`: HMAC-SHA256 under the
    /// account key of the verb, the standard headers, the x-ms-* headers, the resource and the query.
    func signature(_ request: ProxyRequest, rawPath: String) -> String {
        let standard = ["Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type", "Date",
                        "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range"]
        var lines = [request.method]
        for name in standard {
            let value = request.header(name) ?? ""
            lines.append(name == "Content-Length" && value == "0" ? "" : value)
        }
        let msHeaders = request.headers.map { ($0.0.lowercased(), $0.1.trimmingCharacters(in: .whitespaces)) }
            .filter { $0.0.hasPrefix("x-ms-") }
            // The service sorts names as Windows' invariant culture does: hyphens weigh nothing at first.
            .sorted { ($0.0.replacingOccurrences(of: "-", with: ""), $0.0) < ($1.0.replacingOccurrences(of: "-", with: ""), $1.0) }
        var text = lines.joined(separator: "\n") + "\n"
        for (name, value) in msHeaders { text += "\(name):\(value)\n" }
        text += "/\(account)\(rawPath)"
        let queryText = request.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        var params: [String: [String]] = [:]
        for pair in queryText.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            params[String(parts[0]).lowercased(), default: []].append(value)
        }
        for name in params.keys.sorted() { text += "\n\(name):\(params[name]!.joined(separator: ","))" }
        let key = SymmetricKey(data: Data(base64Encoded: accountKey)!)
        return Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)).base64EncodedString()
    }

    // MARK: - Operations

    private func createContainer(_ container: String) -> ProxyResponse {
        count("CreateContainer")
        guard !containers.contains(container) else { return error(409, "ContainerAlreadyExists", "The specified container already exists.") }
        containers.insert(container)
        blobs[container] = [:]
        return ProxyResponse(status: 201, headers: standardHeaders() + [("ETag", nextETag()), ("Last-Modified", HTTPDate.string(Date()))])
    }

    /// nil when the conditional headers hold for the blob as it is, else the refusal.
    private func preconditionFailure(_ existing: Blob?, _ request: ProxyRequest, write: Bool) -> ProxyResponse? {
        if let match = request.header("If-Match"), match != "*" ? existing?.etag != match : existing == nil {
            return error(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
        }
        if let noneMatch = request.header("If-None-Match"), let existing {
            if noneMatch == "*" && write { return error(409, "BlobAlreadyExists", "The specified blob already exists.") }
            if noneMatch == "*" || noneMatch == existing.etag {
                return write ? error(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
                    : ProxyResponse(status: 304, headers: standardHeaders() + [("ETag", existing.etag)])
            }
        }
        return nil
    }

    private func commit(_ container: String, _ name: String, _ data: Data, _ operation: String, _ request: ProxyRequest) -> ProxyResponse {
        let now = Date()
        let metadata = request.headers.map { ($0.0.lowercased(), $0.1) }.filter { $0.0.hasPrefix("x-ms-meta-") }
        let blob = Blob(data: data, metadata: metadata, etag: nextETag(), created: blobs[container]?[name]?.created ?? now, modified: now)
        blobs[container, default: [:]][name] = blob
        blocks["\(container)/\(name)"] = nil
        var headers = standardHeaders() + [("ETag", blob.etag), ("Last-Modified", HTTPDate.string(now)), ("x-ms-request-server-encrypted", "true")]
        if operation == "PutBlob" { headers.append(("Content-MD5", Data(Insecure.MD5.hash(data: data)).base64EncodedString())) }
        return ProxyResponse(status: 201, headers: headers)
    }

    private func putBlob(_ container: String, _ name: String, _ request: ProxyRequest) -> ProxyResponse {
        count("PutBlob")
        guard request.header("x-ms-blob-type") == "BlockBlob" else {
            return error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.")
        }
        if let refusal = preconditionFailure(blobs[container]?[name], request, write: true) { return refusal }
        if let md5 = request.header("Content-MD5"), md5 != Data(Insecure.MD5.hash(data: request.body)).base64EncodedString() {
            return error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
        }
        return commit(container, name, request.body, "PutBlob", request)
    }

    private func putBlock(_ container: String, _ name: String, _ query: [String: String], _ request: ProxyRequest) -> ProxyResponse {
        count("PutBlock")
        guard let id = query["blockid"], let raw = Data(base64Encoded: id), !raw.isEmpty, raw.count <= 64 else {
            return error(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid.")
        }
        blocks["\(container)/\(name)", default: [:]][id] = request.body
        return ProxyResponse(status: 201, headers: standardHeaders() + [("Content-MD5", Data(Insecure.MD5.hash(data: request.body)).base64EncodedString()),
                                                                          ("x-ms-request-server-encrypted", "true")])
    }

    private func putBlockList(_ container: String, _ name: String, _ request: ProxyRequest) -> ProxyResponse {
        count("PutBlockList")
        let xml = String(decoding: request.body, as: UTF8.self)
        guard xml.contains("<BlockList>") else { return error(400, "InvalidXmlDocument", "XML specified is not syntactically valid.") }
        let existing = blobs[container]?[name]
        if let refusal = preconditionFailure(existing, request, write: true) { return refusal }
        let uncommitted = blocks["\(container)/\(name)"] ?? [:]
        var data = Data()
        var rest = xml[...]
        while let open = rest.range(of: #"<(Latest|Uncommitted|Committed)>"#, options: .regularExpression) {
            guard let close = rest.range(of: "</", range: open.upperBound..<rest.endIndex) else { break }
            let id = String(rest[open.upperBound..<close.lowerBound])
            // Committed blocks of the current blob are not kept apart in this fake: only uncommitted ones resolve.
            guard let block = uncommitted[id] else {
                return error(400, "InvalidBlockList", "The specified block list is invalid.")
            }
            data.append(block)
            rest = rest[close.upperBound...]
        }
        return commit(container, name, data, "PutBlockList", request)
    }

    private func blobHeaders(_ blob: Blob) -> [(String, String)] {
        standardHeaders() + [("ETag", blob.etag), ("Last-Modified", HTTPDate.string(blob.modified)), ("x-ms-creation-time", HTTPDate.string(blob.created)),
                             ("x-ms-blob-type", "BlockBlob"), ("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"),
                             ("x-ms-server-encrypted", "true"), ("x-ms-lease-state", "available"), ("x-ms-lease-status", "unlocked")] + blob.metadata
    }

    private func getBlob(_ container: String, _ name: String, _ request: ProxyRequest) -> ProxyResponse {
        count("GetBlob")
        guard let blob = blobs[container]?[name] else { return error(404, "BlobNotFound", "The specified blob does not exist.") }
        if let refusal = preconditionFailure(blob, request, write: false) { return refusal }
        guard let range = request.header("x-ms-range") ?? request.header("Range") else {
            return ProxyResponse(status: 200, headers: blobHeaders(blob), body: blob.data)
        }
        let bounds = range.hasPrefix("bytes=") ? range.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false) : []
        guard bounds.count == 2, let start = Int(bounds[0]), bounds[1].isEmpty || Int(bounds[1]).map({ $0 >= start }) == true else {
            return error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.")
        }
        guard start < blob.data.count else {
            var refusal = error(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
            refusal.headers.append(("Content-Range", "bytes */\(blob.data.count)"))
            return refusal
        }
        let end = min(Int(bounds[1]) ?? blob.data.count - 1, blob.data.count - 1)
        let body = blob.data.subdata(in: start..<(end + 1))
        return ProxyResponse(status: 206, headers: blobHeaders(blob) + [("Content-Range", "bytes \(start)-\(end)/\(blob.data.count)")], body: body)
    }

    private func properties(_ container: String, _ name: String, _ request: ProxyRequest) -> ProxyResponse {
        count("GetBlobProperties")
        guard let blob = blobs[container]?[name] else {
            return ProxyResponse(status: 404, headers: standardHeaders() + [("x-ms-error-code", "BlobNotFound")])
        }
        if let refusal = preconditionFailure(blob, request, write: false) {
            return ProxyResponse(status: refusal.status, headers: refusal.headers)
        }
        // A HEAD answer carries the blob's length with no body (LoopbackHTTPServer keeps it).
        return ProxyResponse(status: 200, headers: blobHeaders(blob) + [("Content-Length", "\(blob.data.count)")])
    }

    private func deleteBlob(_ container: String, _ name: String, _ request: ProxyRequest) -> ProxyResponse {
        count("DeleteBlob")
        guard let blob = blobs[container]?[name] else { return error(404, "BlobNotFound", "The specified blob does not exist.") }
        if let refusal = preconditionFailure(blob, request, write: true) { return refusal }
        blobs[container]?[name] = nil
        blocks["\(container)/\(name)"] = nil
        return ProxyResponse(status: 202, headers: standardHeaders() + [("x-ms-delete-type-permanent", "true")])
    }

    private func listBlobs(_ container: String, _ query: [String: String], _ request: ProxyRequest) -> ProxyResponse {
        count("ListBlobs")
        guard containers.contains(container) else { return error(404, "ContainerNotFound", "The specified container does not exist.") }
        let prefix = query["prefix"] ?? ""
        let marker = query["marker"] ?? ""
        let pageSize = min(maxPageSize, Int(query["maxresults"] ?? "") ?? 5000)
        let names = blobNames(container).filter { $0.hasPrefix(prefix) && (marker.isEmpty || $0 >= marker) }
        let page = names.prefix(pageSize)
        let next = names.count > page.count ? names[page.count] : ""
        var xml = #"<?xml version="1.0" encoding="utf-8"?>"#
        xml += #"<EnumerationResults ServiceEndpoint="http://127.0.0.1/\#(account)/" ContainerName="\#(Self.escape(container))">"#
        xml += "<Prefix>\(Self.escape(prefix))</Prefix>" + (marker.isEmpty ? "" : "<Marker>\(Self.escape(marker))</Marker>")
        if query["maxresults"] != nil { xml += "<MaxResults>\(pageSize)</MaxResults>" }
        xml += "<Blobs>"
        for name in page {
            let blob = blobs[container]![name]!
            xml += "<Blob><Name>\(Self.escape(name))</Name><Properties>"
            xml += "<Creation-Time>\(HTTPDate.string(blob.created))</Creation-Time><Last-Modified>\(HTTPDate.string(blob.modified))</Last-Modified>"
            xml += "<Etag>\(blob.etag)</Etag><Content-Length>\(blob.data.count)</Content-Length>"
            xml += "<Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType>"
            xml += "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>"
            xml += "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>"
            xml += "</Properties></Blob>"
        }
        xml += "</Blobs><NextMarker>\(Self.escape(next))</NextMarker></EnumerationResults>"
        return ProxyResponse(status: 200, headers: standardHeaders() + [("Content-Type", "application/xml")], body: Data(xml.utf8))
    }

    // MARK: - Answers

    private func nextETag() -> String {
        etagCounter += 1
        return "\"0x\(String(etagCounter, radix: 16, uppercase: true))\""
    }

    private func standardHeaders() -> [(String, String)] {
        [("x-ms-request-id", UUID().uuidString.lowercased()), ("x-ms-version", "2021-12-02"), ("Date", HTTPDate.string(Date())),
         ("Server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0")]
    }

    private func error(_ status: Int, _ code: String, _ message: String) -> ProxyResponse {
        let requestID = UUID().uuidString.lowercased()
        let body = #"<?xml version="1.0" encoding="utf-8"?><Error><Code>\#(code)</Code><Message>\#(message)"#
            + "\nRequestId:\(requestID)\nTime:\(ISO8601DateFormatter().string(from: Date()))</Message></Error>"
        return ProxyResponse(status: status, headers: standardHeaders() + [("x-ms-error-code", code), ("Content-Type", "application/xml")],
                             body: Data(body.utf8))
    }

    private func json(_ status: Int, _ object: [String: String]) -> ProxyResponse {
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return ProxyResponse(status: status, headers: [("Content-Type", "application/json")], body: body)
    }

    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query[String(kv[0]).lowercased()] = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
            }
        }
        return (String(parts[0]), query)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
