import Foundation
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
let streamSocket = Int32(SOCK_STREAM.rawValue)
#elseif canImport(Darwin)
import Darwin
let streamSocket = SOCK_STREAM
#endif

/// Every trainer test runs one at a time: they are CPU-bound and timed on a shared machine.
@Suite(.serialized) enum TrainerSuite {}

/// A fresh directory under the system temp dir, removed by the caller.
func makeTempDir(_ tag: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-trainer-\(tag)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A config built from defaults plus "section.key" overrides, failing the test on a bad key.
func makeConfig(_ overrides: [String: String]) throws -> tc_config {
    var cfg = tc_config()
    tc_config_defaults(&cfg)
    for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
        var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
        let rc = tc_config_set(&cfg, key, value, &err, err.count)
        try #require(rc == 0, "\(key)=\(value): \(errorText(err))")
    }
    return cfg
}

/// A tiny model and batch that train in well under a second per hundred steps.
let tinyModel: [String: String] = [
    "model.layers": "1", "model.width": "32", "model.heads": "2", "model.context": "32",
    "train.batch_size": "4", "train.seq_len": "32", "train.threads": "2", "train.log_every": "0",
    "train.lr": "3e-3", "train.warmup_steps": "5",
]

func errorText(_ err: [CChar]) -> String {
    String(decoding: err.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Path of the stratum-trainer executable built next to the test bundle.
func trainerBinary() throws -> URL {
    if let env = ProcessInfo.processInfo.environment["STRATUM_TRAINER_BIN"] {
        return URL(fileURLWithPath: env)
    }
    // Linux: the test runner binary; macOS: the .xctest bundle's parent holds the products.
    let runner = FileManager.default.fileExists(atPath: "/proc/self/exe")
        ? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        : Bundle.main.bundleURL
    var dir = runner.deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("stratum-trainer")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    throw TrainerTestError.missing("stratum-trainer executable next to the test bundle (set STRATUM_TRAINER_BIN)")
}

enum TrainerTestError: Error, CustomStringConvertible {
    case missing(String)
    case timeout(String)
    var description: String {
        switch self {
        case .missing(let what): return "missing \(what)"
        case .timeout(let what): return "timed out: \(what)"
        }
    }
}

/// A child process with its stdout+stderr captured to a file.
final class Child {
    let process = Process()
    let logURL: URL

    init(_ executable: URL, _ arguments: [String], log: URL, environment: [String: String] = [:]) throws {
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        logURL = log
        try process.run()
    }

    var output: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Polls until the process exits or the deadline passes, suspended between looks: a thread
    /// of the shared pool held for a whole training run starves every other suite.
    func wait(seconds: Double) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                throw TrainerTestError.timeout("\(process.executableURL?.lastPathComponent ?? "child") after \(seconds)s:\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    func kill() {
        #if canImport(Glibc)
        _ = Glibc.kill(process.processIdentifier, SIGKILL)
        #else
        _ = Darwin.kill(process.processIdentifier, SIGKILL)
        #endif
    }
}

/// Runs the trainer CLI to completion and returns (exit status, output).
func runTrainer(_ arguments: [String], in dir: URL, name: String, seconds: Double = 120,
                environment: [String: String] = [:]) async throws -> (Int32, String) {
    let child = try Child(try trainerBinary(), arguments, log: dir.appendingPathComponent("\(name).log"), environment: environment)
    let status = try await child.wait(seconds: seconds)
    return (status, child.output)
}

/// Writes a YAML file and returns its path.
func writeYAML(_ text: String, in dir: URL, name: String = "trainer.yaml") throws -> String {
    let url = dir.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}


/// Connects `fd` to 127.0.0.1:port; returns connect(2)'s result.
func connectLoopback(_ fd: Int32, port: Int) -> Int32 {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// True when something accepts TCP connections on 127.0.0.1:port.
func loopbackAccepts(_ port: Int) -> Bool {
    let fd = socket(AF_INET, streamSocket, 0)
    defer { close(fd) }
    let rc = connectLoopback(fd, port: port)
    return rc == 0
}

/// Sends one HTTP/1.0 GET over loopback and returns the raw response.
func httpGet(port: Int, path: String) throws -> String {
    let fd = socket(AF_INET, streamSocket, 0)
    defer { close(fd) }
    // A server that never closes the connection fails the test after 30 s instead of hanging it.
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let rc = connectLoopback(fd, port: port)
    try #require(rc == 0, "connect to 127.0.0.1:\(port) failed")
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var response = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: response, as: UTF8.self)
}
