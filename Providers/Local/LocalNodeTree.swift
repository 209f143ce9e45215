import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The environment entries every process of a node carries (children inherit them): how a
/// node's processes are found again when its files are gone.
enum NodeMarker {
    static let directory = "STRATUM_NODE_DIR"
    /// The lineage of the state that created the node: whose node it is.
    static let owner = "STRATUM_NODE_OWNER"
}

/// One line of `/proc/<pid>/stat`.
struct ProcessStat {
    var state: Character
    var pgid: Int32
    var sid: Int32
    /// Start time in clock ticks since boot: tells a process from a later one reusing its pid.
    var startTicks: UInt64

    var isLive: Bool { state != "Z" && state != "X" }

    static func read(_ pid: Int32) -> ProcessStat? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state, ppid, pgrp, session, ..., starttime (22nd overall).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let pgid = Int32(fields[2]), let sid = Int32(fields[3]),
            let ticks = UInt64(fields[19])
        else { return nil }
        return ProcessStat(state: state, pgid: pgid, sid: sid, startTicks: ticks)
    }
}

/// One pass over `/proc`: every live process with its group, session, start time and node
/// markers. Zombies are left out (and reaped when they are node leaders this process started).
struct ProcessTable {
    struct Entry {
        var pid: Int32
        var stat: ProcessStat
        var nodeDirectory: String?
        var owner: String?
    }

    var entries: [Int32: Entry] = [:]

    static func scan() -> ProcessTable {
        var table = ProcessTable()
        let me = getpid()
        let directoryPrefix = Array("\(NodeMarker.directory)=".utf8)
        let ownerPrefix = Array("\(NodeMarker.owner)=".utf8)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), pid != me, let stat = ProcessStat.read(pid) else { continue }
            guard stat.isLive else {
                reap(pid)
                continue
            }
            var entry = Entry(pid: pid, stat: stat)
            if let data = FileManager.default.contents(atPath: "/proc/\(name)/environ") {
                for item in data.split(separator: 0) {
                    if item.starts(with: directoryPrefix) {
                        entry.nodeDirectory = String(decoding: item.dropFirst(directoryPrefix.count), as: UTF8.self)
                    } else if item.starts(with: ownerPrefix) {
                        entry.owner = String(decoding: item.dropFirst(ownerPrefix.count), as: UTF8.self)
                    }
                }
            }
            table.entries[pid] = entry
        }
        return table
    }

    /// Collects the exit status of a node leader this process started, so it does not linger as
    /// a zombie; any other child is left to whoever waits for it.
    static func reap(_ pid: Int32) {
        SpawnedLeaders.shared.reap(pid)
    }

    func isRunning(pid: Int32, startTicks: UInt64) -> Bool {
        entries[pid]?.stat.startTicks == startTicks
    }
}

/// Everything that identifies the processes of one node instance, whether or not its files
/// survive: its directory (every process carries it as `STRATUM_NODE_DIR`), its leader's
/// session and process group, and its cgroup when it has one.
struct NodeTree {
    var directory: URL
    /// The leader's pid: its session and process group ids.
    var leader: Int32?
    /// The node's cgroup directory, in cgroup mode.
    var cgroup: String?

    /// The live processes of the node: its cgroup's members, every process carrying its
    /// marker, and the leader's session and process group once a marked process or a cgroup
    /// member proves they are still the node's (an id is not reused while its group has members).
    func members(in table: ProcessTable) -> Set<Int32> {
        var members = Set<Int32>()
        if let cgroup {
            for pid in NodeCgroups.processes(in: cgroup) where table.entries[pid] != nil { members.insert(pid) }
        }
        let path = directory.path
        for entry in table.entries.values where entry.nodeDirectory == path { members.insert(entry.pid) }
        if let leader, members.contains(where: { table.entries[$0].map { $0.stat.sid == leader || $0.stat.pgid == leader } ?? false }) {
            for entry in table.entries.values where entry.stat.sid == leader || entry.stat.pgid == leader { members.insert(entry.pid) }
        }
        return members
    }

    /// Whether the leader's group and session can be signalled as a whole.
    private func groupIsOurs(_ members: Set<Int32>, in table: ProcessTable) -> Bool {
        guard let leader else { return false }
        return members.contains { table.entries[$0]?.stat.pgid == leader }
    }

    /// Stops every process of the node: SIGTERM, then SIGKILL (through `cgroup.kill` in cgroup
    /// mode) to whatever remains after `grace`, rescanning so that processes forked meanwhile
    /// are caught. Returns whether none remain.
    @discardableResult
    func terminate(grace: Duration) async -> Bool {
        let clock = ContinuousClock()
        guard send(SIGTERM) else { return true }
        let termDeadline = clock.now + grace
        while clock.now < termDeadline {
            if (try? await Task.sleep(for: .milliseconds(25))) == nil { break }
            if members(in: .scan()).isEmpty { return true }
        }
        if let cgroup { NodeCgroups.killAll(in: cgroup) }
        let killDeadline = clock.now + .seconds(5)
        while send(SIGKILL) {
            guard clock.now < killDeadline else { return false }
            usleep(10_000)
        }
        return true
    }

    /// Kills every process of the node at once with SIGKILL (through `cgroup.kill` in cgroup
    /// mode), as a machine that loses power stops them: nothing gets to clean up. Rescans
    /// until none remain; returns whether none do within `deadline`.
    @discardableResult
    func killAtOnce(deadline: Duration = .seconds(5)) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + deadline
        if let cgroup { NodeCgroups.killAll(in: cgroup) }
        while send(SIGKILL) {
            guard clock.now < end else { return false }
            if (try? await Task.sleep(for: .milliseconds(10))) == nil { return false }
        }
        return true
    }

    /// Sends `signal` to every live process of the node; false when there were none.
    private func send(_ signal: Int32) -> Bool {
        let table = ProcessTable.scan()
        let members = members(in: table)
        guard !members.isEmpty else { return false }
        if let leader, groupIsOurs(members, in: table) { kill(-leader, signal) }
        for pid in members { kill(pid, signal) }
        return true
    }
}

/// Node cgroups (cgroup v2): one per node instance, under a directory of this Stratum's own
/// cgroup, so the kernel tracks every process the node starts, even one that leaves its
/// session. Used where the hierarchy is writable; elsewhere nodes run as process groups.
enum NodeCgroups {
    /// Setting `STRATUM_LOCAL_ISOLATION=process-group` turns cgroups off.
    static let isolationVariable = "STRATUM_LOCAL_ISOLATION"

    /// `<cgroup2 mount><own cgroup>/stratum-local`, when cgroups are on and that place is
    /// writable (it is made with the first node's cgroup; reading makes nothing).
    static let base: String? = {
        if ProcessInfo.processInfo.environment[isolationVariable] == "process-group" { return nil }
        guard let mount = cgroup2Mount(), let own = ownCgroup2Path() else { return nil }
        let parent = mount + (own == "/" ? "" : own)
        let base = parent + "/stratum-local"
        return access(base, F_OK) == 0 ? (access(base, W_OK) == 0 ? base : nil) : (access(parent, W_OK) == 0 ? base : nil)
    }()

    /// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
    static func cgroup2Mount() -> String? {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        for line in mounts.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { continue }
            let fields = halves[0].split(separator: " ")
            if fields.count > 4 { return String(fields[4]) }
        }
        return nil
    }

    /// This process's cgroup in the v2 hierarchy (the `0::` line of /proc/self/cgroup).
    static func ownCgroup2Path() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
    }

    /// The directory holding the cgroups of the nodes under `nodes` (one per Local root).
    static func directory(forNodes nodes: URL) -> String? {
        guard let base else { return nil }
        // FNV-1a of the root's path: stable across runs, distinct per project directory.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in nodes.standardizedFileURL.path.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return base + "/" + String(hash, radix: 16)
    }

    /// The cgroup a node instance named `name` gets (whether or not it exists).
    static func path(forNodes nodes: URL, instance name: String) -> String? {
        directory(forNodes: nodes).map { $0 + "/" + name }
    }

    /// Creates the cgroup (and the directories above it up to `base`); false when the hierarchy refuses.
    static func create(_ path: String) -> Bool {
        let root = (path as NSString).deletingLastPathComponent
        for directory in [(root as NSString).deletingLastPathComponent, root, path] {
            if mkdir(directory, 0o755) != 0, errno != EEXIST { return false }
        }
        return true
    }

    static func exists(_ path: String) -> Bool { access(path + "/cgroup.procs", F_OK) == 0 }

    /// Members of the cgroup (none if it does not exist).
    static func processes(in path: String) -> [Int32] {
        guard let text = try? String(contentsOfFile: path + "/cgroup.procs", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    /// SIGKILL to every member at once (`cgroup.kill`, Linux 5.14 and later).
    static func killAll(in path: String) {
        let fd = open(path + "/cgroup.kill", O_WRONLY)
        guard fd >= 0 else { return }
        _ = write(fd, "1", 1)
        close(fd)
    }

    /// Removes the cgroup once it is empty, and the root's directory once no node uses it.
    static func remove(_ path: String) {
        guard exists(path) else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while rmdir(path) != 0, errno == EBUSY, ContinuousClock.now < deadline { usleep(10_000) }
        rmdir((path as NSString).deletingLastPathComponent)
    }

    /// Names of the node cgroups of `nodes`.
    static func instances(forNodes nodes: URL) -> [String] {
        guard let directory = directory(forNodes: nodes) else { return [] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { exists(directory + "/" + $0) }
    }
}
