import Foundation

/// A throwaway Debian root to run a node's setup in as the node would: a root file system made
/// once by debootstrap (from the mirror apt uses here, with the packages the setup has
/// cloud-init install) and cached; each run mounts it read-only under a fresh writable layer
/// (overlayfs) in its own mount and PID namespaces, chroots into it, and shares the host's
/// network, so the setup reaches loopback fakes. Killing the run ends every process in it.
public enum DebianRoot {
    /// What a node setup has cloud-init install before it runs (its `packages:`), beside minbase.
    public static let packages = ["curl", "ca-certificates", "build-essential", "libyaml-dev", "libcurl4-openssl-dev", "libssl-dev", "python3", "make"]

    /// Why this machine cannot run a root, or nil when it can.
    public static func unavailableReason() -> String? {
        guard getuid() == 0 else { return "needs root (mount and chroot)" }
        guard (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8))?.contains("overlay") == true else { return "the kernel has no overlayfs" }
        guard run(["unshare", "--mount", "--pid", "--fork", "true"]) == 0 else { return "this machine forbids mount and PID namespaces (unshare failed)" }
        if FileManager.default.fileExists(atPath: cacheDirectory.appendingPathComponent("etc/debian_version").path) { return nil }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/debootstrap") else { return "debootstrap is not installed (.ci/run installs it)" }
        guard mirror() != nil, suite() != nil else { return "no Debian mirror or release in this machine's apt sources to build a root from" }
        return nil
    }

    /// `STRATUM_ROOTFS_CACHE`, else a directory under /var/cache/stratum named by the release
    /// and the package list.
    public static var cacheDirectory: URL {
        if let configured = ProcessInfo.processInfo.environment["STRATUM_ROOTFS_CACHE"], !configured.isEmpty { return URL(fileURLWithPath: configured) }
        let key = String(packages.joined(separator: ",").hashValueStable, radix: 16)
        return URL(fileURLWithPath: "/var/cache/stratum/rootfs-\(suite() ?? "debian")-\(key)")
    }

    /// The cached root, made by debootstrap when missing (minutes, once; later runs reuse it).
    public static func cached() throws -> URL {
        let root = cacheDirectory
        if FileManager.default.fileExists(atPath: root.appendingPathComponent("etc/debian_version").path) { return root }
        guard let mirror = mirror(), let suite = suite() else { throw RootError(message: "no Debian mirror or release in the apt sources") }
        let building = URL(fileURLWithPath: root.path + ".building-\(getpid())")
        try? FileManager.default.removeItem(at: building)
        try FileManager.default.createDirectory(at: building.deletingLastPathComponent(), withIntermediateDirectories: true)
        let log = URL(fileURLWithPath: root.path + ".debootstrap.log")
        let status = run(["debootstrap", "--variant=minbase", "--include=\(packages.joined(separator: ","))", suite, building.path, mirror], log: log)
        guard status == 0 else {
            throw RootError(message: "debootstrap \(suite) from \(mirror) failed with status \(status); see \(log.path)")
        }
        // Another run may have finished first: keep whichever is in place.
        if (try? FileManager.default.moveItem(at: building, to: root)) == nil { try? FileManager.default.removeItem(at: building) }
        return root
    }

    /// The first Debian mirror of this machine's apt sources (deb822 or one-line format).
    static func mirror() -> String? {
        let directory = "/etc/apt/sources.list.d"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted().map { "\(directory)/\($0)" } + ["/etc/apt/sources.list"]
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ").map(String.init)
                if words.first == "URIs:", let uri = words.dropFirst().first(where: { $0.hasPrefix("http") && $0.hasSuffix("/debian") }) { return uri }
                if words.first == "deb", let uri = words.first(where: { $0.hasPrefix("http") && $0.hasSuffix("/debian") }) { return uri }
            }
        }
        return nil
    }

    /// This machine's Debian release (`bookworm`), the one the root is made of.
    static func suite() -> String? {
        let release = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        return release.split(separator: "\n").first { $0.hasPrefix("VERSION_CODENAME=") }.map { String($0.dropFirst("VERSION_CODENAME=".count)) }
    }

    @discardableResult
    static func run(_ arguments: [String], log: URL? = nil) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let log {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.standardOutput = try? FileHandle(forWritingTo: log)
            process.standardError = process.standardOutput
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    public struct RootError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// One run: the cached root under a writable layer whose files the caller puts in
    /// `layer` before `start`, running `script` (as root, in the chroot) until `stop`.
    public final class Run: @unchecked Sendable {
        public let layer: URL
        let work: URL
        let merged: URL
        let lower: URL
        let log: URL
        var process: Process?

        public init(lower: URL, scratch: URL) throws {
            self.lower = lower
            layer = scratch.appendingPathComponent("layer")
            work = scratch.appendingPathComponent("work")
            merged = scratch.appendingPathComponent("merged")
            log = scratch.appendingPathComponent("run.log")
            for directory in [layer, work, merged] { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        }

        /// Writes `contents` at `path` inside the root (in the writable layer), with `mode`.
        public func write(_ path: String, _ contents: String, mode: Int = 0o644) throws {
            let file = layer.appendingPathComponent(String(path.drop { $0 == "/" }))
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: file)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file.path)
        }

        /// A file of the root as the run left it (the layer's copy, else the cached root's).
        public func read(_ path: String) -> String? {
            let relative = String(path.drop { $0 == "/" })
            for base in [layer, lower] {
                if let text = try? String(contentsOf: base.appendingPathComponent(relative), encoding: .utf8) { return text }
            }
            return nil
        }

        /// What the run printed so far.
        public var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// Starts `script` with /bin/sh in the chroot; it runs until `stop`.
        public func start(_ script: String) throws {
            let inside = "\(merged.path)"
            let setup = [
                "mount -t overlay overlay -o lowerdir=\(lower.path),upperdir=\(layer.path),workdir=\(work.path) \(inside)",
                "mount --rbind /dev \(inside)/dev",
                "mount -t proc proc \(inside)/proc",
                "mount -t tmpfs tmpfs \(inside)/tmp",
                "exec chroot \(inside) /bin/sh -c \(shellQuote(script))",
            ].joined(separator: " && ")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "/bin/sh", "-c", setup]
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            // Nothing of this process's environment (keys other tests set) leaks into the root.
            process.environment = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"]
            try process.run()
            self.process = process
        }

        public var isRunning: Bool { process?.isRunning ?? false }

        /// Ends the run and every process in it (its PID namespace goes with its first process).
        public func stop() {
            guard let process, process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        func shellQuote(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
    }
}

extension String {
    /// A hash that is the same in every process (Swift's `hashValue` is seeded per process).
    var hashValueStable: UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }
}
