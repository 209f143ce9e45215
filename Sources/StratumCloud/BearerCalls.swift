import Foundation
import Logging
import StratumCore

/// `application/x-www-form-urlencoded` encoding, as OAuth2 token requests and query strings
/// want it.
public enum FormEncoding {
    /// One name or value.
    public static func encode(_ text: String) -> String {
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    /// `name=value&…`.
    public static func encode(_ fields: [(String, String)]) -> String {
        fields.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}

extension BearerToken {
    /// Posts `form` to an OAuth2 token endpoint and reads the token it answers. `what` names
    /// the endpoint in errors; `secrets` (a client secret, a signed assertion) are masked in them.
    public static func exchange(
        _ form: [(String, String)], at endpoint: URL, transport: any HTTPTransport, timeout: Duration, what: String, secrets: [String]
    ) async throws -> BearerToken {
        let request = HTTPRequestData(
            method: "POST", url: endpoint, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Data(FormEncoding.encode(form).utf8))
        let response: HTTPResponseData
        do {
            response = try await transport.send(request, timeout: timeout)
        } catch let error as HTTPConnectionError {
            throw ProviderError(.transient, "cannot get an access token from \(what): \(error)")
        }
        guard response.status == 200 else { throw failure(response, from: what, secrets: secrets) }
        return try parse(response.body)
    }

    /// An OAuth2 error answer (`error`, `error_description`) as a taxonomy error, secrets masked:
    /// 429 is throttling, 5xx transient, the rest an auth failure.
    public static func failure(_ response: HTTPResponseData, from what: String, secrets: [String]) -> ProviderError {
        let json = CloudJSON.parse(response.body)
        let reason = [json?["error"]?.string, json?["error_description"]?.string].compactMap { $0 }.joined(separator: ": ")
        let detail = reason.isEmpty ? String(decoding: response.body.prefix(200), as: UTF8.self) : reason
        let kind: ProviderError.Kind = response.status == 429 ? .throttled : response.status >= 500 ? .transient : .auth
        return ProviderError(kind, "\(what) answered HTTP \(response.status): \(Redaction.standard.text(detail, secrets: secrets))")
    }
}

extension BearerTokenCache {
    /// Sends one API call with this cache's token as `Authorization` (after `headers`), traced
    /// with its secrets masked. A connection failure is a transient error, a token that cannot
    /// be got fails the call naming `address`, and a 401 drops the cached token so the next
    /// call fetches a new one. `label` prefixes errors and log messages (`GCP`, `Azure`).
    public nonisolated func send(
        _ method: String, _ url: URL, headers: [(String, String)] = [], body: Data = Data(), over transport: any HTTPTransport, timeout: Duration,
        label: String, action: String, address: ResourceAddress?, logger: Logger
    ) async throws -> HTTPResponseData {
        let response: HTTPResponseData
        do {
            let request = HTTPRequestData(method: method, url: url, headers: [("Authorization", try await authorization())] + headers, body: body)
            logger.trace("\(label.lowercased()) request", metadata: [
                "action": "\(action)", "method": "\(method)", "url": "\(Redaction.standard.url(url))",
                "headers": "\(Redaction.standard.headers(request.headers).map { "\($0.0): \($0.1)" }.joined(separator: ", "))",
            ])
            response = try await transport.send(request, timeout: timeout)
        } catch let error as HTTPConnectionError {
            throw ProviderError(.transient, "\(label) \(action): \(error)", address: address)
        } catch var error as ProviderError {
            error.address = error.address ?? address
            throw error
        }
        if response.status == 401 {
            // The token was revoked or expired early.
            await invalidate()
        }
        return response
    }
}
