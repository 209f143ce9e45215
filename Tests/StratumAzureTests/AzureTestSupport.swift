import Crypto
import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
import _CryptoExtras
@testable import StratumAzure

/// Requests a loopback server received, in order.
final class RecordedRequests: Sendable {
    private let requests = LockedValue([ProxyRequest]())

    func append(_ request: ProxyRequest) { requests.update { $0.append(request) } }
    var all: [ProxyRequest] { requests.get() }
    func matching(_ method: String, pathSuffix: String) -> [ProxyRequest] {
        all.filter { $0.method == method && pathOf($0).hasSuffix(pathSuffix) }
    }
}

func jsonAnswer(_ status: Int, _ json: CloudJSON, headers: [(String, String)] = []) -> ProxyResponse {
    ProxyResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: json.data)
}

/// ARM's error body: `{"error": {"code", "message", "details": [{"code", "message"}]}}`.
func armError(_ status: Int, code: String, message: String, details: [(String, String)] = [], headers: [(String, String)] = []) -> ProxyResponse {
    let listed: [CloudJSON] = details.map { ["code": .string($0.0), "message": .string($0.1)] }
    return jsonAnswer(status, ["error": ["code": .string(code), "message": .string(message), "details": .array(listed)]], headers: headers)
}

/// The path of a request without its query.
func pathOf(_ request: ProxyRequest) -> String {
    String(request.uri.prefix { $0 != "?" })
}

/// The query parameters of a request.
func queryOf(_ request: ProxyRequest) -> [String: String] {
    URLComponents(string: "http://x" + request.uri)?.queryItems?.reduce(into: [String: String]()) { $0[$1.name] = $1.value ?? "" } ?? [:]
}

/// A loopback ARM that answers each `METHOD path` from a script, in order (the last answer
/// repeats), and records what it was sent. `{base}` in an answer's headers or body becomes the
/// server's own URL.
final class ScriptedARM: Sendable {
    let received = RecordedRequests()
    private let script = LockedValue([String: [ProxyResponse]]())
    private let server = LockedValue<LoopbackHTTPServer?>(nil)

    static func start() async throws -> ScriptedARM {
        let arm = ScriptedARM()
        let server = try await LoopbackHTTPServer.start { [arm] request in
            arm.received.append(request)
            guard request.header("Authorization") == "Bearer arm-token" else { return armError(401, code: "InvalidAuthenticationToken", message: "no token") }
            let key = "\(request.method) \(pathOf(request))"
            let answer = arm.script.update { script -> ProxyResponse? in
                guard var answers = script[key], let first = answers.first else { return nil }
                if answers.count > 1 { answers.removeFirst() }
                script[key] = answers
                return first
            }
            return answer ?? armError(404, code: "ResourceNotFound", message: "no script for \(key)")
        }
        arm.server.update { $0 = server }
        return arm
    }

    var url: URL { server.get()!.url }

    /// Answers for `METHOD path`, in order.
    func on(_ method: String, _ path: String, _ answers: ProxyResponse...) {
        let base = url.absoluteString
        let filled = answers.map { answer in
            ProxyResponse(
                status: answer.status, headers: answer.headers.map { ($0.0, $0.1.replacingOccurrences(of: "{base}", with: base)) },
                body: Data(String(decoding: answer.body, as: UTF8.self).replacingOccurrences(of: "{base}", with: base).utf8))
        }
        script.update { $0[key(method, path)] = filled }
    }

    private func key(_ method: String, _ path: String) -> String { "\(method) \(path)" }

    func shutdown() async { await server.get()?.shutdown() }

    /// A client of this ARM with a fixed token, on `clock`.
    func client(clock: VirtualClock, subscription: String = "sub-1") throws -> AzureClient {
        let tokens = BearerTokenCache(clock: clock.clock) { BearerToken(value: "arm-token", lifetime: .seconds(3600)) }
        let credentials = AzureCredentials(source: .managedIdentity(clientId: nil), subscription: subscription, tokens: tokens)
        return try AzureClient(
            configuration: AzureClient.Configuration(endpoints: AzureEndpoints(resourceManager: url)), credentials: credentials,
            transport: AsyncHTTPTransport(), clock: clock.clock)
    }
}

/// Runs a command to its end; its standard output.
@discardableResult
func run(_ arguments: [String], in directory: String) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ProviderError(.permanent, "\(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    return data
}

/// A self-signed certificate and its key made by openssl for a test, in one PEM file as Azure's
/// SDKs read it, with what a verifier knows: the public key and openssl's own SHA-1 thumbprint.
struct TestCertificate {
    let directory: String
    let pemPath: String
    let publicKey: _RSA.Signing.PublicKey
    /// openssl's SHA-1 fingerprint of the certificate, as bytes.
    let sha1: Data

    init() throws {
        directory = NSTemporaryDirectory() + "stratum-azure-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=stratum-test",
             "-days", "1"], in: directory)
        let key = try String(contentsOfFile: directory + "/key.pem", encoding: .utf8)
        let certificate = try String(contentsOfFile: directory + "/cert.pem", encoding: .utf8)
        pemPath = directory + "/client.pem"
        try (key + certificate).write(toFile: pemPath, atomically: true, encoding: .utf8)
        let publicPEM = String(decoding: try run(["openssl", "x509", "-in", "cert.pem", "-pubkey", "-noout"], in: directory), as: UTF8.self)
        publicKey = try _RSA.Signing.PublicKey(pemRepresentation: publicPEM)
        // "SHA1 Fingerprint=AB:CD:…"
        let fingerprint = String(decoding: try run(["openssl", "x509", "-in", "cert.pem", "-noout", "-fingerprint", "-sha1"], in: directory), as: UTF8.self)
        let hex = fingerprint.split(separator: "=").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        sha1 = Data(hex.split(separator: ":").compactMap { UInt8($0, radix: 16) })
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// Verifies an RS256 JWT with the certificate's public key; its header and claims when it holds.
    func verified(_ jwt: String) -> (header: CloudJSON, claims: CloudJSON)? {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = decodeBase64URL(parts[2]), let headerData = decodeBase64URL(parts[0]),
            let claimsData = decodeBase64URL(parts[1]), let header = CloudJSON.parse(headerData), let claims = CloudJSON.parse(claimsData)
        else { return nil }
        let signed = Data("\(parts[0]).\(parts[1])".utf8)
        guard publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: signed, padding: .insecurePKCS1v1_5) else {
            return nil
        }
        return (header, claims)
    }
}

func decodeBase64URL(_ text: some StringProtocol) -> Data? {
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    return Data(base64Encoded: base64)
}
