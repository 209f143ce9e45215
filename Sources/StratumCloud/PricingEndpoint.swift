import Foundation
import StratumCore

/// Calls to the clouds' public pricing endpoints (`stratum catalog update`): plain GETs whose
/// failures name the endpoint (secrets masked) and the cloud's own message.
public enum PricingEndpoint {
    /// GETs `url` and parses the JSON answer.
    public static func json(
        _ url: URL, headers: [(String, String)] = [], transport: any HTTPTransport, timeout: Duration = .seconds(60), secrets: [String] = []
    ) async throws -> CloudJSON {
        let response = try await transport.send(HTTPRequestData(method: "GET", url: url, headers: headers), timeout: timeout)
        try check(response, url: url, secrets: secrets)
        guard let document = CloudJSON.parse(response.body) else {
            throw ProviderError(.transient, "\(Redaction.standard.url(url)) answered with something that is not JSON")
        }
        return document
    }

    /// Throws for an answer that is not a success, naming the endpoint and what it said.
    public static func check(_ response: HTTPResponseData, url: URL, secrets: [String] = []) throws {
        guard !(200..<300).contains(response.status) else { return }
        let kind: ProviderError.Kind =
            switch response.status {
            case 401, 403: .auth
            case 429: .throttled
            case 500...: .transient
            default: .permanent
            }
        let said = Redaction.standard.json(response.body, secrets: secrets).prefix(400)
        throw ProviderError(kind, "\(Redaction.standard.url(url)) answered HTTP \(response.status): \(said)")
    }

    /// `text` percent-encoded for a query value (RFC 3986 unreserved characters kept).
    public static func queryValue(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
