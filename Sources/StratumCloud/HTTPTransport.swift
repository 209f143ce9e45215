import AsyncHTTPClient
import Foundation
import StratumCore
import NIOCore
import NIOHTTP1

/// One HTTP request as the cloud clients build it.
public struct HTTPRequestData: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(String, String)]
    public var body: Data

    public init(method: String, url: URL, headers: [(String, String)] = [], body: Data = Data()) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// One HTTP response, body fully read.
public struct HTTPResponseData: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Sends HTTP requests. The real one is async-http-client; tests can put anything behind it.
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData
    /// Sends a request and hands a successful (2xx) answer's body to `chunk` piece by piece as
    /// it arrives, for bodies too large to hold (the returned response's body is then empty);
    /// any other answer comes back whole.
    func stream(_ request: HTTPRequestData, timeout: Duration, chunk: (Data) async throws -> Void) async throws -> HTTPResponseData
}

extension HTTPTransport {
    /// Reads the whole answer, then hands it over in one piece.
    public func stream(_ request: HTTPRequestData, timeout: Duration, chunk: (Data) async throws -> Void) async throws -> HTTPResponseData {
        var response = try await send(request, timeout: timeout)
        guard (200..<300).contains(response.status) else { return response }
        try await chunk(response.body)
        response.body = Data()
        return response
    }
}

/// The connection failed or timed out before any response: worth retrying.
public struct HTTPConnectionError: Error, Sendable, CustomStringConvertible {
    public var host: String
    public var reason: String
    public var description: String { "cannot reach \(host): \(reason)" }
}

/// `HTTPTransport` over async-http-client with a shared connection pool.
public final class AsyncHTTPTransport: HTTPTransport {
    let client: HTTPClient
    /// Most response bodies are small XML; Describe pages of 1,000 instances stay well under this.
    let maxBodyBytes: Int

    public init(client: HTTPClient = .shared, maxBodyBytes: Int = 64 << 20) {
        self.client = client
        self.maxBodyBytes = maxBodyBytes
    }

    public func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        try await execute(request, timeout: timeout) { response in
            let body = try await response.body.collect(upTo: maxBodyBytes)
            return HTTPResponseData(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: Data(body.readableBytesView))
        }
    }

    public func stream(_ request: HTTPRequestData, timeout: Duration, chunk: (Data) async throws -> Void) async throws -> HTTPResponseData {
        try await execute(request, timeout: timeout) { response in
            let headers = response.headers.map { ($0.name, $0.value) }
            guard (200..<300).contains(Int(response.status.code)) else {
                let body = try await response.body.collect(upTo: maxBodyBytes)
                return HTTPResponseData(status: Int(response.status.code), headers: headers, body: Data(body.readableBytesView))
            }
            for try await buffer in response.body { try await chunk(Data(buffer.readableBytesView)) }
            return HTTPResponseData(status: Int(response.status.code), headers: headers)
        }
    }

    /// Sends `request` and reads the answer with `read`; a failure to connect or a timeout
    /// becomes an `HTTPConnectionError`.
    private func execute(
        _ request: HTTPRequestData, timeout: Duration, read: (HTTPClientResponse) async throws -> HTTPResponseData
    ) async throws -> HTTPResponseData {
        var outgoing = HTTPClientRequest(url: request.url.absoluteString)
        outgoing.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
        if !request.body.isEmpty || request.method == "PUT" || request.method == "POST" {
            outgoing.body = .bytes(ByteBuffer(bytes: request.body))
        }
        let milliseconds = max(1, Int64(timeout.seconds * 1000))
        do {
            return try await read(try await client.execute(outgoing, timeout: .milliseconds(milliseconds)))
        } catch let error as HTTPClientError {
            throw HTTPConnectionError(host: request.url.host ?? "?", reason: "\(error)")
        } catch let error as ChannelError {
            throw HTTPConnectionError(host: request.url.host ?? "?", reason: "\(error)")
        } catch let error as IOError {
            throw HTTPConnectionError(host: request.url.host ?? "?", reason: "\(error)")
        }
    }
}

/// Dates as HTTP headers carry them (RFC 7231's IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`).
public enum HTTPDate {
    public static func string(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}
