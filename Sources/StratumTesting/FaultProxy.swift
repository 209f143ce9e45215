import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request as a loopback server received it.
public struct ProxyRequest: Sendable {
    public var method: String
    /// Path and query, as sent.
    public var uri: String
    public var headers: [(String, String)]
    public var body: Data

    public init(method: String, uri: String, headers: [(String, String)], body: Data) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// Fields of an `application/x-www-form-urlencoded` body (EC2's Query API).
    public var formFields: [String: String] {
        guard header("content-type")?.contains("x-www-form-urlencoded") == true else { return [:] }
        var fields: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(parts[1])) : ""
            fields[key] = value
        }
        return fields
    }
}

/// A response a loopback server sends.
public struct ProxyResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: Int, xml: String) {
        self.init(status: status, headers: [("Content-Type", "text/xml")], body: Data(xml.utf8))
    }
}

/// An HTTP/1.1 server on 127.0.0.1 with an ephemeral port, answering every request with an
/// async handler: the base of test doubles (instance metadata, fault proxies).
public final class LoopbackHTTPServer: Sendable {
    public let port: Int
    private let channel: any Channel

    public var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    public static func start(_ handler: @escaping @Sendable (ProxyRequest) async -> ProxyResponse) async throws -> LoopbackHTTPServer {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(handler: handler))
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else { throw CancellationError() }
        return LoopbackHTTPServer(port: port, channel: channel)
    }

    public func shutdown() async {
        try? await channel.close().get()
    }
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let handler: @Sendable (ProxyRequest) async -> ProxyResponse
    var head: HTTPRequestHead?
    var body = Data()

    init(handler: @escaping @Sendable (ProxyRequest) async -> ProxyResponse) {
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = Data()
        case .body(var buffer):
            if let bytes = buffer.readBytes(length: buffer.readableBytes) { body.append(contentsOf: bytes) }
        case .end:
            guard let head else { return }
            let request = ProxyRequest(method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body)
            let handler = self.handler
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let version = head.version
            let isHead = head.method == .HEAD
            let eventLoop = context.eventLoop
            Task {
                let response = await handler(request)
                eventLoop.execute {
                    let context = bound.value
                    var headers = HTTPHeaders(response.headers)
                    // A HEAD answer may state the length of what a GET would return.
                    if !isHead || !headers.contains(name: "Content-Length") {
                        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
                    }
                    headers.replaceOrAdd(name: "Connection", value: "close")
                    let status = HTTPResponseStatus(statusCode: response.status)
                    context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
                    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
                    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
                }
            }
        }
    }
}

/// A loopback proxy in front of a real server (an emulator) that can answer some requests
/// itself: injected throttling, stockouts, lost responses, actions the emulator lacks.
public final class FaultProxy: Sendable {
    /// What to do with one request.
    public enum Decision: Sendable {
        /// Pass it on and return the upstream answer.
        case forward
        /// Answer without asking upstream.
        case respond(ProxyResponse)
        /// Pass it on (it takes effect), then answer this instead: a response lost on the way back.
        case forwardThenRespond(ProxyResponse)
        /// Pass this request on instead (to translate what the emulator does not understand).
        case forwardRewritten(ProxyRequest)
    }

    public let server: LoopbackHTTPServer
    public var url: URL { server.url }

    private init(server: LoopbackHTTPServer) {
        self.server = server
    }

    /// `upstream` sends a request on to the real server; `decide` picks each request's fate;
    /// `observe` sees every upstream answer (to learn ids, zones).
    public static func start(
        upstream: @escaping @Sendable (ProxyRequest) async throws -> ProxyResponse,
        decide: @escaping @Sendable (ProxyRequest) async -> Decision,
        observe: @escaping @Sendable (ProxyRequest, ProxyResponse) async -> Void = { _, _ in }
    ) async throws -> FaultProxy {
        let server = try await LoopbackHTTPServer.start { request in
            func forward(_ request: ProxyRequest = request) async -> ProxyResponse {
                do {
                    let response = try await upstream(request)
                    await observe(request, response)
                    return response
                } catch {
                    return ProxyResponse(status: 502, xml: "<Error><Code>ProxyUpstreamFailed</Code><Message>\(error)</Message></Error>")
                }
            }
            switch await decide(request) {
            case .forward: return await forward()
            case .respond(let response): return response
            case .forwardThenRespond(let response):
                _ = await forward()
                return response
            case .forwardRewritten(let rewritten):
                return await forward(rewritten)
            }
        }
        return FaultProxy(server: server)
    }

    public func shutdown() async { await server.shutdown() }
}
