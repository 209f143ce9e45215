import Foundation

/// How many nodes the Local provider lets one stack ask for on this machine.
///
/// The limit is the least of three shares of the machine:
/// - **processes**: free task slots / 16 (room for a node's supervisor, workload and helpers),
///   where free slots are the least room left under `kernel.pid_max`, `kernel.threads-max` and
///   `RLIMIT_NPROC` (less the tasks running on the machine) and under the `pids.max` of this
///   process's cgroup (less its `pids.current`);
/// - **memory**: memory / 64 MiB, where memory is the physical memory or this process's
///   cgroup memory limit, whichever is smaller;
/// - **CPUs**: 32 × the CPUs this process may run on.
///
/// `STRATUM_LOCAL_MAX_NODES` replaces the derived limit with its value.
public struct LocalCapacity: Sendable, Equatable {
    public static let overrideVariable = "STRATUM_LOCAL_MAX_NODES"
    public static let tasksPerNode = 16
    public static let memoryPerNode: UInt64 = 64 << 20
    public static let nodesPerCPU = 32

    /// The number of nodes a stack may ask for.
    public var nodes: Int
    /// How `nodes` was found, for the error message.
    public var explanation: String

    /// The limit for this machine, or the override; a failure when the override is malformed.
    public static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<LocalCapacity, Diagnosed> {
        if let text = environment[overrideVariable] {
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                return .failure(Diagnosed(message: "\(overrideVariable) must be a whole number of nodes, not '\(text)'"))
            }
            return .success(LocalCapacity(nodes: value, explanation: "set by \(overrideVariable)=\(value)"))
        }
        return .success(derived(MachineFacts.read()))
    }

    public struct Diagnosed: Error, Sendable, Equatable {
        public var message: String
    }

    /// What the limit is derived from.
    public struct MachineFacts: Sendable, Equatable {
        /// Tasks (processes and threads) that can still be started: the least room left under
        /// each limit that applies.
        public var freeTaskSlots: Int
        public var memoryBytes: UInt64
        public var cpus: Int

        public init(freeTaskSlots: Int, memoryBytes: UInt64, cpus: Int) {
            self.freeTaskSlots = freeTaskSlots
            self.memoryBytes = memoryBytes
            self.cpus = cpus
        }

        public static func read() -> MachineFacts {
            // /proc/loadavg's fourth field is running/total scheduling entities (threads).
            let loadavg = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
            let running = loadavg.split(separator: " ").dropFirst(3).first?.split(separator: "/").last.flatMap { Int($0) } ?? 0
            // Machine-wide limits count every task; RLIMIT_NPROC counts the user's, bounded by that too.
            var room = [readInt("/proc/sys/kernel/pid_max"), readInt("/proc/sys/kernel/threads-max")].compactMap { $0 }.map { $0 - running }
            // RLIMIT_NPROC's soft value ("unlimited" parses as nothing).
            let rlimits = (try? String(contentsOfFile: "/proc/self/limits", encoding: .utf8)) ?? ""
            if let line = rlimits.split(separator: "\n").first(where: { $0.hasPrefix("Max processes") }),
                let soft = line.dropFirst("Max processes".count).split(separator: " ").first.flatMap({ Int($0) })
            {
                room.append(soft - running)
            }
            // This process's pids cgroup counts its own members.
            if let max = cgroupValue("pids", file: "pids.max") {
                room.append(max - (cgroupValue("pids", file: "pids.current") ?? 0))
            }
            var memory = UInt64(ProcessInfo.processInfo.physicalMemory)
            for file in ["memory.max", "memory.limit_in_bytes"] {
                if let limit = cgroupValue("memory", file: file), limit > 0 { memory = min(memory, UInt64(limit)) }
            }
            return MachineFacts(freeTaskSlots: max(0, room.min() ?? 0), memoryBytes: memory, cpus: max(1, ProcessInfo.processInfo.activeProcessorCount))
        }

        static func readInt(_ path: String) -> Int? {
            (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        /// A limit file of this process's cgroup: the v2 hierarchy, then the v1 controller's.
        static func cgroupValue(_ controller: String, file: String) -> Int? {
            guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3 else { continue }
                let path = String(parts[2])
                if parts[1].isEmpty, let mount = NodeCgroups.cgroup2Mount(), let value = readInt(mount + path + "/" + file) { return value }
                if parts[1].split(separator: ",").contains(Substring(controller)), let value = readInt("/sys/fs/cgroup/\(controller)\(path)/\(file)") {
                    return value
                }
            }
            return nil
        }
    }

    public static func derived(_ facts: MachineFacts) -> LocalCapacity {
        let free = facts.freeTaskSlots
        let byTasks = free / tasksPerNode
        let byMemory = Int(clamping: facts.memoryBytes / memoryPerNode)
        let byCPU = facts.cpus * nodesPerCPU
        let gib = String(format: "%.1f", Double(facts.memoryBytes) / Double(1 << 30))
        let explanation = "the least of \(nodesPerCPU) per CPU × \(facts.cpus) CPUs = \(byCPU), 1 per 64 MiB of \(gib) GiB memory = \(byMemory), "
            + "1 per \(tasksPerNode) free process slots of \(free) = \(byTasks)"
        return LocalCapacity(nodes: min(byTasks, byMemory, byCPU), explanation: explanation)
    }
}
