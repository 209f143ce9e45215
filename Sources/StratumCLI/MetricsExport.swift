import CoreMetrics
import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import StratumEngine

/// swift-metrics backed by swift-prometheus, with each metric's help text from
/// `EngineMetrics.catalog` (so the exposition passes `promtool check metrics`). Bootstrapped once
/// per process, by the commands that export metrics.
struct StratumMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let prometheus: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        var prometheus = PrometheusMetricsFactory(registry: registry)
        // Cloud calls and apply steps take from milliseconds to many minutes.
        prometheus.defaultDurationHistogramBuckets = [
            .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600),
        ]
        self.prometheus = prometheus
    }

    func help(_ label: String) -> String { EngineMetrics.help[label] ?? "" }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: help(label)) }
        return registry.makeValueHistogram(name: label, labels: dimensions, buckets: prometheus.defaultValueHistogramBuckets, help: help(label))
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: help(label))
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(name: label, labels: dimensions, buckets: prometheus.defaultDurationHistogramBuckets, help: help(label))
    }

    func destroyCounter(_ handler: any CounterHandler) { prometheus.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { prometheus.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { prometheus.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { prometheus.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { prometheus.destroyTimer(handler) }
}

/// Where a command's metrics go: a node-exporter textfile, an HTTP endpoint, or both.
final class MetricsExport: Sendable {
    let registry: PrometheusCollectorRegistry
    let textfile: String?
    private let server: (any Channel)?
    private let group: MultiThreadedEventLoopGroup?

    /// Bootstraps swift-metrics with the Prometheus backend (once per process) and starts the
    /// listener. nil when neither a textfile nor a listener is asked for.
    static func start(textfile: String?, listen: String?) async throws -> MetricsExport? {
        guard textfile != nil || listen != nil else { return nil }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(StratumMetricsFactory(registry: registry))
        var server: (any Channel)?
        var group: MultiThreadedEventLoopGroup?
        if let listen {
            let (host, port) = try Self.address(listen)
            let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            group = loops
            do {
                server = try await ServerBootstrap(group: loops)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(MetricsHTTPHandler(registry: registry)) }
                    }
                    .bind(host: host, port: port).get()
            } catch {
                try? await loops.shutdownGracefully()
                throw CLIError("cannot listen for metrics on \(listen): \(error)")
            }
        }
        return MetricsExport(registry: registry, textfile: textfile, server: server, group: group)
    }

    private init(registry: PrometheusCollectorRegistry, textfile: String?, server: (any Channel)?, group: MultiThreadedEventLoopGroup?) {
        self.registry = registry
        self.textfile = textfile
        self.server = server
        self.group = group
    }

    /// The port the listener is bound to (for `--metrics-listen 127.0.0.1:0`).
    var port: Int? { server?.localAddress?.port }

    /// `host:port` (or `:port`, all interfaces) as host and port.
    static func address(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw CLIError("--metrics-listen '\(text)' is not HOST:PORT (e.g. 127.0.0.1:9469, or :9469 for every interface)")
        }
        let host = String(text[..<colon])
        return (host.isEmpty ? "0.0.0.0" : host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    /// Writes the textfile, whole (a temporary file renamed over it, as the node exporter's
    /// textfile collector asks).
    func flush() throws {
        guard let textfile else { return }
        try ReportFile.write(Data(registry.emitToBuffer()), to: textfile)
    }

    func stop() async {
        try? await server?.close()
        try? await group?.shutdownGracefully()
    }
}

/// Answers GET /metrics with the registry's exposition; anything else with 404.
final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    private var path = ""

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): path = String(head.uri.prefix { $0 != "?" })
        case .body: break
        case .end:
            let found = path == "/metrics"
            let body = found ? registry.emitToBuffer() : Array("not found: metrics are at /metrics\n".utf8)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            headers.add(name: "Content-Length", value: "\(body.count)")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: found ? .ok : .notFound, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
