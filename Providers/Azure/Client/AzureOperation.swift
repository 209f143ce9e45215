import Foundation
import StratumCloud
import StratumCore

/// A long-running ARM operation: how to look at it, and where its result is. Its `handle` is
/// what a resource kind journals before it waits, so a later process can resume the wait.
///
/// ARM reports progress in one of three ways, tried in this order on the first answer: an
/// `Azure-AsyncOperation` header (a status resource: `InProgress`, then `Succeeded`, `Failed`
/// or `Canceled`, with `error` on failure), a `Location` header (202 while running, then the
/// result or an error status), or neither, with the resource's `properties.provisioningState`
/// not yet terminal (the resource itself is polled; a DELETE's resource is gone when it 404s).
public struct AzureOperation: Sendable, Hashable, CustomStringConvertible {
    public enum Style: String, Sendable, Hashable {
        case asyncOperation = "azure-async-operation"
        case location
        case provisioningState = "provisioning-state"
    }

    public var style: Style
    /// The method that started it (`PUT`, `PATCH`, `DELETE`, `POST`).
    public var method: String
    /// The URL polled.
    public var url: URL
    /// Where the result is read once the operation succeeded (a PUT's or PATCH's resource, a
    /// POST's `Location`); nil when the poll's last answer is the result or there is none.
    public var resultURL: URL?

    public init(style: Style, method: String, url: URL, resultURL: URL? = nil) {
        self.style = style
        self.method = method
        self.url = url
        self.resultURL = resultURL
    }

    /// `style method url [resultURL]`: URLs hold no spaces.
    public var handle: String {
        [style.rawValue, method, url.absoluteString, resultURL?.absoluteString].compactMap { $0 }.joined(separator: " ")
    }

    /// Reads a handle written by `handle`.
    public init?(handle: String) {
        let parts = handle.split(separator: " ").map(String.init)
        guard (3...4).contains(parts.count), let style = Style(rawValue: parts[0]), let url = URL(string: parts[2]) else { return nil }
        let result = parts.count == 4 ? URL(string: parts[3]) : nil
        if parts.count == 4 && result == nil { return nil }
        self.init(style: style, method: parts[1], url: url, resultURL: result)
    }

    public var description: String { "\(style.rawValue) operation of a \(method)" }

    /// The operation a mutating call's first answer started, or nil when the answer is final.
    /// `requestURL` is the URL the call went to.
    static func started(method: String, requestURL: URL, response: HTTPResponseData) -> AzureOperation? {
        let location = response.header("Location").flatMap { URL(string: $0, relativeTo: requestURL)?.absoluteURL }
        if let async = response.header("Azure-AsyncOperation").flatMap({ URL(string: $0, relativeTo: requestURL)?.absoluteURL }) {
            let result: URL? = switch method {
            case "PUT", "PATCH": requestURL
            case "POST": location
            default: nil
            }
            return AzureOperation(style: .asyncOperation, method: method, url: async, resultURL: result)
        }
        if let location, response.status == 202 {
            return AzureOperation(style: .location, method: method, url: location, resultURL: method == "PUT" || method == "PATCH" ? requestURL : nil)
        }
        if method == "DELETE" && response.status == 202 {
            return AzureOperation(style: .provisioningState, method: method, url: requestURL)
        }
        if method == "PUT" || method == "PATCH", let state = CloudJSON.parse(response.body).flatMap(provisioningState), !isTerminal(state) {
            return AzureOperation(style: .provisioningState, method: method, url: requestURL)
        }
        return nil
    }

    static func provisioningState(_ json: CloudJSON) -> String? {
        json["properties"]?["provisioningState"]?.string ?? json["provisioningState"]?.string
    }

    static func isTerminal(_ state: String) -> Bool {
        ["succeeded", "failed", "canceled", "cancelled"].contains(state.lowercased())
    }
}
