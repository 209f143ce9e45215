import Foundation

/// Runs an executable built next to the test bundle (`stratum`, `stratum-fixture`) as a child
/// process and waits for it without blocking a thread.
public enum BuiltBinary {
    public struct Run: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// A started child process: its output goes to files, its end is awaited without blocking.
    public final class Started: @unchecked Sendable {
        // `Process` is only touched through its thread-safe accessors and `kill(2)`.
        let process: Process
        let stdout: URL
        let stderr: URL
        let ended: AsyncStream<Int32>

        init(process: Process, stdout: URL, stderr: URL, ended: AsyncStream<Int32>) {
            self.process = process
            self.stdout = stdout
            self.stderr = stderr
            self.ended = ended
        }

        public var isRunning: Bool { process.isRunning }

        /// The file the process's standard output goes to while it runs (removed by `finish`).
        public var stdoutURL: URL { stdout }

        /// Sends `signal` (SIGKILL: the process gets no chance to clean up).
        public func kill(_ signal: Int32 = SIGKILL) { _ = Foundation.kill(process.processIdentifier, signal) }

        /// Waits for the process to end; its status and output.
        public func finish() async throws -> Run {
            var status: Int32 = -1
            for await code in ended {
                status = code
                break
            }
            defer { try? FileManager.default.removeItem(at: stdout.deletingLastPathComponent()) }
            return Run(status: status, stdout: try String(contentsOf: stdout, encoding: .utf8), stderr: try String(contentsOf: stderr, encoding: .utf8))
        }
    }

    /// Where the built product `name` is: beside the test runner.
    public static func url(_ name: String) -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Starts `name` with `arguments` in `directory`, the process's environment overlaid with
    /// `environment` (and `NO_COLOR`). Output goes to files of the run's own (removed by
    /// `finish`) rather than pipes, so nothing waits on a full pipe and runs in one directory
    /// at once keep their output apart.
    public static func start(_ name: String, _ arguments: [String], in directory: URL, environment: [String: String]) throws -> Started {
        let binary = url(name)
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment.merging(["NO_COLOR": "1"]) { $1 }) { $1 }
        let outputs = FileManager.default.temporaryDirectory.appendingPathComponent("stratum-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outputs, withIntermediateDirectories: true)
        let out = outputs.appendingPathComponent("stdout"), err = outputs.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        let (ended, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(1))
        process.terminationHandler = { continuation.yield($0.terminationStatus); continuation.finish() }
        try process.run()
        return Started(process: process, stdout: out, stderr: err, ended: ended)
    }

    /// Runs `name` as `start` does and waits for it to end.
    public static func run(_ name: String, _ arguments: [String], in directory: URL, environment: [String: String]) async throws -> Run {
        try await start(name, arguments, in: directory, environment: environment).finish()
    }
}
