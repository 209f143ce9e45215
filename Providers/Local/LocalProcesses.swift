import Foundation
import CStratumSpawn
import StratumCore

#if canImport(Glibc)
import Glibc
#endif

/// Nodes as detached OS process trees. Each node instance has a directory under
/// `nodes/<address>-<token>` with its log, its record and its workload's exit status; its
/// leader is a small `/bin/sh` supervisor that runs the workload as a child and writes the
/// exit status when it ends. The leader starts a new session (so the node is its own process
/// group) inside the node's own cgroup where the machine allows it.
enum LocalProcesses {
    struct NodeRecord: Codable {
        var pid: Int32
        /// The kernel's start time of the leader (clock ticks since boot): guards against pid reuse.
        var startTicks: UInt64
        var token: String
        var labels: [String: Value]
        var startedAt: Date
        /// The lineage of the state that created the node (absent in records of older versions).
        var owner: String?
        /// The node's cgroup directory; nil when the node runs as a process group only.
        var cgroup: String?
        /// The workspace and address that created it (absent in records of older versions):
        /// what `stratum sweep` compares with every state to find orphans.
        var workspace: String?
        var address: String?
        /// Who an ephemeral environment is for, and when it expires (`stratum up --owner --ttl`).
        var person: String?
        var expires: Date?
        /// The node's namespace, veth and address when it runs on a real Local network.
        var network: NodeNetwork?
        /// Where the node's traffic goes when it runs on the host network: why its link is not
        /// applied, when it carries one.
        var hostNote: String?
    }

    /// Every node directory with a record naming its workspace: as a state that `delete` can
    /// stop and remove, with the ownership it was created under.
    static func owned(in nodes: URL) -> [OwnedResource] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: nodes.path)) ?? []
        return names.sorted().compactMap { name in
            let directory = nodes.appendingPathComponent(name)
            guard let record = loadRecord(in: directory), let workspace = record.workspace, let text = record.address,
                let address = ResourceAddress(parsing: text)
            else { return nil }
            let state = ResourceState(
                address: address, provider: "local", region: "local", id: "pid-\(record.pid)",
                attributes: ["pid": .int(Int(record.pid)), "log_path": .string(directory.appendingPathComponent("node.log").path)])
            return OwnedResource(state: state, ownership: Ownership(stack: workspace, lineage: record.owner ?? "", owner: record.person, expires: record.expires))
        }
    }

    /// What refresh reports about a node, as its `status` attribute.
    enum Health: Equatable {
        case running
        /// The workload finished with status 0: the node did its work and stays until destroyed.
        case exited
        /// The workload exited with a non-zero status.
        case failed(Int32)
        /// The node's leader is gone without a recorded exit status, or its files are.
        case lost(String)

        var status: String {
            switch self {
            case .running: return "running"
            case .exited: return "exited(0)"
            case .failed(let code): return "failed(\(code))"
            case .lost: return "lost"
            }
        }
    }

    /// The file in a node's directory that says its spot capacity was reclaimed (its text: when).
    /// A cloud stops a preempted spot machine after a notice; on Local, writing this file and
    /// sending the node's leader SIGTERM does the same, so preemption can be rehearsed.
    static let preemptionNotice = "preempted"

    /// Seconds a stopped node gets between SIGTERM and SIGKILL (default 10).
    static let graceVariable = "STRATUM_LOCAL_STOP_GRACE"

    static var stopGrace: Duration {
        let seconds = ProcessInfo.processInfo.environment[graceVariable].flatMap(Double.init) ?? 10
        return .milliseconds(Int(max(0, seconds) * 1000))
    }

    static func slug(_ address: ResourceAddress) -> String {
        String(address.description.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    /// Each node instance gets its own directory, named after its address and create token, so
    /// a replacement never touches its predecessor's files.
    static func directory(for address: ResourceAddress, token: String, in nodes: URL) -> URL {
        nodes.appendingPathComponent(slug(address) + "-" + token.prefix(8))
    }

    /// Whether `name` is the name of an instance directory (or cgroup) of `address`.
    static func isInstance(_ name: String, of address: ResourceAddress) -> Bool {
        let prefix = slug(address) + "-"
        return name.hasPrefix(prefix) && name.count == prefix.count + 8
    }

    /// The directory of a node already in state: where its log lives.
    static func directory(of state: ResourceState) -> URL? {
        state.attributes["log_path"]?.stringValue.map { URL(fileURLWithPath: $0).deletingLastPathComponent() }
    }

    static func recordFile(_ directory: URL) -> URL { directory.appendingPathComponent("node.json") }
    static func exitFile(_ directory: URL) -> URL { directory.appendingPathComponent("exit-status") }

    /// The node record in `directory`, or nil if there is none or it cannot be read.
    static func loadRecord(in directory: URL) -> NodeRecord? {
        try? JSONDecoder().decode(NodeRecord.self, from: Data(contentsOf: recordFile(directory)))
    }

    static func saveRecord(_ record: NodeRecord, in directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(record).write(to: recordFile(directory), options: .atomic)
        try "\(record.pid)\n".write(to: directory.appendingPathComponent("pid"), atomically: true, encoding: .utf8)
    }

    /// The workload's exit status, once the supervisor has written it.
    static func exitStatus(in directory: URL) -> Int32? {
        (try? String(contentsOf: exitFile(directory), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The process tree of the instance in `directory`, as far as its record (or, without one,
    /// the state's pid and the cgroup named after the directory) tells.
    static func tree(_ directory: URL, record: NodeRecord?, recordedPid: Int32?) -> NodeTree {
        let nodes = directory.deletingLastPathComponent()
        var cgroup = record?.cgroup
        if cgroup == nil, let derived = NodeCgroups.path(forNodes: nodes, instance: directory.lastPathComponent), NodeCgroups.exists(derived) {
            cgroup = derived
        }
        return NodeTree(directory: directory, leader: record?.pid ?? recordedPid, cgroup: cgroup)
    }

    static func recordedPid(_ state: ResourceState) -> Int32? {
        state.attributes["pid"]?.intValue.map { Int32(truncatingIfNeeded: $0) }
    }

    // MARK: read

    /// The live state of each node: one pass over the process table for all of them. A node
    /// is gone (nil) only when neither its directory nor any of its processes remain; a node
    /// whose workload failed, whose leader was killed or whose files were removed is reported
    /// with a `failure`, so the plan replaces it (and the delete stops what is left of it).
    /// The file in a node's directory where its workload writes the port of its metrics.
    static let metricsPortFile = "metrics-port"

    static func liveness(of resources: [ResourceState]) -> [ResourceState?] {
        let table = ProcessTable.scan()
        return resources.map { observe($0, table: table) }
    }

    static func observe(_ state: ResourceState, table: ProcessTable) -> ResourceState? {
        guard let directory = directory(of: state) else { return nil }
        let record = loadRecord(in: directory)
        let pid = recordedPid(state)
        let tree = tree(directory, record: record, recordedPid: pid)
        let members = tree.members(in: table)
        let health: Health
        let still = "while \(members.count) of its processes still run"
        if let record, record.pid == pid, table.isRunning(pid: record.pid, startTicks: record.startTicks) {
            health = .running
        } else if !FileManager.default.fileExists(atPath: directory.path) {
            guard !members.isEmpty else { return nil }
            health = .lost("its directory \(directory.path) was removed \(still)")
        } else if record == nil || record?.pid != pid {
            health = .lost("its record \(recordFile(directory).path) is missing or does not match state" + (members.isEmpty ? "" : " \(still)"))
        } else if let code = exitStatus(in: directory) {
            health = code == 0 ? .exited : .failed(code)
        } else if !members.isEmpty {
            health = .lost("its leader process \(pid ?? 0) was killed outside Stratum \(still)")
        } else {
            health = .lost("its processes were stopped outside Stratum before its workload recorded an exit status")
        }
        var fresh = state
        // A spot node the "cloud" took back (see `preemptionNotice`): replaced, whatever its
        // workload did when it was stopped.
        if let notice = try? String(contentsOf: directory.appendingPathComponent(preemptionNotice), encoding: .utf8) {
            let when = notice.trimmingCharacters(in: .whitespacesAndNewlines)
            fresh.attributes["status"] = .string("preempted")
            fresh.attributes[ResourceState.failureAttribute] = .string("it was preempted: its spot capacity was reclaimed\(when.isEmpty ? "" : " at \(when)")")
            return fresh
        }
        if let record { fresh.attributes["labels"] = .map(record.labels) }
        // A node on a real network: its namespace, veth and bridge must hold, and its link is
        // reported as the qdiscs hold it, so a profile changed outside Stratum is drift.
        if health == .running, let network = record?.network {
            let expected = (try? LinkProfile(value: state.attributes["link"])) ?? nil
            let found = LocalNetworking.observe(network, expected: expected.map(LiveLink.effective))
            if let failure = found.failure {
                fresh.attributes["status"] = .string("lost")
                fresh.attributes[ResourceState.failureAttribute] = .string(failure)
                return fresh
            }
            fresh.attributes["link"] = LocalNetworking.reportedLink(live: found.link, recorded: state.attributes["link"])
        }
        // Where the workload serves its metrics, when it says (the trainer's metrics.port_file).
        if let text = try? String(contentsOf: directory.appendingPathComponent(metricsPortFile), encoding: .utf8),
            let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), (1...65535).contains(port)
        {
            fresh.attributes["metrics_port"] = .int(port)
        }
        apply(health, to: &fresh, log: directory.appendingPathComponent("node.log").path)
        return fresh
    }

    static func apply(_ health: Health, to state: inout ResourceState, log: String) {
        state.attributes["status"] = .string(health.status)
        switch health {
        case .running, .exited:
            state.attributes[ResourceState.failureAttribute] = nil
        case .failed(let code):
            let signal = code > 128 ? " (killed by signal \(code - 128))" : ""
            state.attributes[ResourceState.failureAttribute] = .string("its workload exited with status \(code)\(signal); see \(log)")
        case .lost(let why):
            state.attributes[ResourceState.failureAttribute] = .string(why)
        }
    }

    // MARK: create

    /// The leader: runs the workload (`"$@"`) as its child and records its exit status.
    static let supervisorScript = #"f=$1; shift; "$@"; s=$?; echo "$s" > "$f"; exit "$s""#

    static func start(_ resource: ResolvedResource, token: String, nodesDirectory: URL, networking: LocalNetworking) async throws -> ResourceState {
        let address = resource.address
        let directory = directory(for: address, token: token, in: nodesDirectory)
        let fm = FileManager.default
        let owner = resource.ownership.lineage

        // A retried create with the same token adopts the process it already started.
        if let existing = loadRecord(in: directory), existing.token == token,
            ProcessTable.scan().isRunning(pid: existing.pid, startTicks: existing.startTicks)
        {
            return state(for: resource, record: existing, directory: directory)
        }
        let mode = try networking.mode(of: resource)
        // Only one instance of an address runs: what an earlier one of this state left is stopped.
        await supersede(address, keeping: directory, owner: owner, nodes: nodesDirectory)

        guard case .list(let argvValues)? = resource.inputs["command"], !argvValues.isEmpty else {
            throw ProviderError(.permanent, "command must be a non-empty list of strings", address: address)
        }
        let argv = argvValues.map { $0.stringValue ?? $0.description }
        var environment: [String: String] = [:]
        // Only a minimal, credential-free environment reaches the workload.
        for key in ["PATH", "HOME", "LANG", "TMPDIR", "USER"] {
            if let value = ProcessInfo.processInfo.environment[key] { environment[key] = value }
        }
        environment["PATH"] = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        // The stack's env under the node contract every provider gives its nodes.
        let contract = NodeContract(node: resource, cloud: "local", zone: resource.region)
        environment.merge(contract.environment(over: NodeContract.stackEnvironment(of: resource))) { $1 }
        environment["STRATUM_NODE_ADDRESS"] = address.description
        environment[NodeMarker.directory] = directory.path
        environment[NodeMarker.owner] = owner
        try checkProgram(argv[0], path: environment["PATH"] ?? "", address: address)

        do {
            try makeDirectory(directory, owner: owner)
        } catch {
            throw ProviderError(.transient, "cannot create \(directory.path): \(error.localizedDescription)", address: address)
        }
        // On a real network the node gets its namespace (or what an interrupted try made of
        // it) before it starts, and learns its own and rank 0's addresses there.
        var network: NodeNetwork?
        var hostNote: String?
        switch mode {
        case .host(let note):
            hostNote = note
        case .namespaced(let record, let block, let link):
            do {
                network = try networking.attach(resource, directory: directory, record: record, block: block, link: link)
            } catch {
                LocalNetworking.detach(directory: directory)
                try? fm.removeItem(at: directory)
                throw error
            }
        }
        if let network {
            environment[NodeContract.nodeIPName] = network.address
            environment[NodeContract.coordinatorName] = network.coordinator
        } else {
            // On the host network the node's address is the host's loopback, where its peers reach it.
            environment[NodeContract.nodeIPName] = "127.0.0.1"
        }
        let logPath = directory.appendingPathComponent("node.log").path
        let supervisor = ["/bin/sh", "-c", supervisorScript, "stratum-node", exitFile(directory).path] + argv
        var cgroup = NodeCgroups.path(forNodes: nodesDirectory, instance: directory.lastPathComponent)
        if let path = cgroup, !NodeCgroups.create(path) { cgroup = nil }
        let netns = network.map { LocalNetworking.namespaceFile($0.namespace) }
        let pid: Int32
        do {
            do {
                pid = try spawn(
                    supervisor, environment: environment, logPath: logPath, workingDirectory: directory.path, cgroup: cgroup, netns: netns, address: address)
            } catch let failure as SpawnFailure where failure.step == Int32(STRATUM_SPAWN_CGROUP.rawValue) {
                // The hierarchy let us create the cgroup but not move into it: run as a process group.
                cgroup.map(NodeCgroups.remove)
                cgroup = nil
                pid = try spawn(
                    supervisor, environment: environment, logPath: logPath, workingDirectory: directory.path, cgroup: nil, netns: netns, address: address)
            }
        } catch {
            cgroup.map(NodeCgroups.remove)
            if network != nil { LocalNetworking.detach(directory: directory) }
            try? fm.removeItem(at: directory)
            throw (error as? SpawnFailure)?.providerError ?? error
        }
        // Our own child: alive, or a zombie until reaped (by this or a concurrent create's scan).
        let stat = ProcessStat.read(pid)
        let exited = !(stat?.isLive ?? false)
        let record = NodeRecord(
            pid: pid, startTicks: stat?.startTicks ?? 0, token: token, labels: resource.inputs["labels"]?.mapValue ?? [:], startedAt: Date(),
            owner: owner, cgroup: cgroup, workspace: resource.ownership.stack, address: resource.address.description, person: resource.ownership.owner,
            expires: resource.ownership.expires, network: network, hostNote: hostNote)
        do {
            try saveRecord(record, in: directory)
        } catch {
            await remove(NodeTree(directory: directory, leader: pid, cgroup: cgroup))
            throw ProviderError(.transient, "cannot record node \(address): \(error.localizedDescription)", address: address)
        }
        guard exited else { return state(for: resource, record: record, directory: directory) }
        if let code = exitStatus(in: directory), code != 0 {
            // Failed at once (a typo in the command): say why now. Recovery adopts the node,
            // so its log stays until the next apply replaces it.
            let tail = (try? String(contentsOfFile: logPath, encoding: .utf8))?.split(separator: "\n").suffix(3).joined(separator: "\n") ?? ""
            throw ProviderError(.permanent, "the workload exited with status \(code) as soon as it started\(tail.isEmpty ? "" : ":\n\(tail)")", address: address)
        }
        let created = state(for: resource, record: record, directory: directory)
        return observe(created, table: .scan()) ?? created
    }

    /// Fails early, with the create's own error, on a program that cannot be found.
    static func checkProgram(_ program: String, path: String, address: ResourceAddress) throws {
        if program.contains("/") {
            guard !program.hasPrefix("/") || FileManager.default.isExecutableFile(atPath: program) else {
                throw ProviderError(.permanent, "cannot start '\(program)': no executable file there", address: address)
            }
            return
        }
        let found = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(program)") }
        guard found else {
            throw ProviderError(.permanent, "cannot start '\(program)': not found on PATH (\(path))", address: address)
        }
    }

    /// The file naming the owner of a node directory whose record is not written yet.
    static func ownerFile(_ directory: URL) -> URL { directory.appendingPathComponent("owner") }

    /// Makes a node's directory with its owner already in it: made under a hidden name and
    /// renamed into place, so a concurrent create of the same address in another state (which
    /// removes unowned instances, see `supersede`) never sees it without one.
    static func makeDirectory(_ directory: URL, owner: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.path) {
            try Data(owner.utf8).write(to: ownerFile(directory), options: .atomic)
            return
        }
        let staging = directory.deletingLastPathComponent().appendingPathComponent(".\(directory.lastPathComponent)-\(getpid())")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        try Data(owner.utf8).write(to: ownerFile(staging))
        do {
            try fm.moveItem(at: staging, to: directory)
        } catch {
            try? fm.removeItem(at: staging)
            guard fm.fileExists(atPath: directory.path) else { throw error }
            try Data(owner.utf8).write(to: ownerFile(directory), options: .atomic)
        }
    }

    /// Stops and removes what other instances of `address` created by the same state left:
    /// directories of nodes that vanished, and trees whose record was edited or removed. Others'
    /// nodes (another state's, found by their record, owner file or owner marker) are never touched.
    static func supersede(_ address: ResourceAddress, keeping keep: URL, owner: String, nodes: URL) async {
        let table = ProcessTable.scan()
        var names = Set(((try? FileManager.default.contentsOfDirectory(atPath: nodes.path)) ?? []).filter { isInstance($0, of: address) })
        names.formUnion(NodeCgroups.instances(forNodes: nodes).filter { isInstance($0, of: address) })
        for entry in table.entries.values {
            guard let path = entry.nodeDirectory else { continue }
            let url = URL(fileURLWithPath: path)
            if url.deletingLastPathComponent().standardizedFileURL == nodes.standardizedFileURL, isInstance(url.lastPathComponent, of: address) {
                names.insert(url.lastPathComponent)
            }
        }
        names.remove(keep.lastPathComponent)
        for name in names.sorted() {
            let directory = nodes.appendingPathComponent(name)
            let record = loadRecord(in: directory)
            let tree = tree(directory, record: record, recordedPid: nil)
            let members = tree.members(in: table)
            let marked = (try? String(contentsOf: ownerFile(directory), encoding: .utf8)).flatMap { $0.isEmpty ? nil : $0 }
            let recordedOwner = record?.owner ?? marked ?? members.lazy.compactMap { table.entries[$0]?.owner }.first
            if members.isEmpty ? (recordedOwner == nil || recordedOwner == owner) : recordedOwner == owner {
                await remove(tree)
            }
        }
    }

    /// Stops the tree (2 seconds between SIGTERM and SIGKILL) and removes its directory, cgroup
    /// and network namespace.
    static func remove(_ tree: NodeTree) async {
        await tree.terminate(grace: .seconds(2))
        tree.cgroup.map(NodeCgroups.remove)
        LocalNetworking.detach(directory: tree.directory)
        try? FileManager.default.removeItem(at: tree.directory)
    }

    // MARK: recovery

    /// The node an interrupted create started: found by its record, or, when the process was
    /// spawned but the record never written, as the session leader among the processes that
    /// carry its directory in their environment. What cannot be adopted is stopped and removed.
    static func recover(_ resource: ResolvedResource, token: String, nodesDirectory: URL, networking: LocalNetworking) async -> ResourceState? {
        let directory = directory(for: resource.address, token: token, in: nodesDirectory)
        let table = ProcessTable.scan()
        if let record = loadRecord(in: directory), record.token == token {
            return observe(state(for: resource, record: record, directory: directory), table: table)
        }
        let tree = tree(directory, record: nil, recordedPid: nil)
        let members = tree.members(in: table)
        if FileManager.default.fileExists(atPath: directory.path),
            let leader = members.compactMap({ table.entries[$0] }).first(where: { $0.stat.sid == $0.pid && $0.nodeDirectory == directory.path })
        {
            let record = NodeRecord(
                pid: leader.pid, startTicks: leader.stat.startTicks, token: token, labels: resource.inputs["labels"]?.mapValue ?? [:],
                startedAt: Date(), owner: resource.ownership.lineage, cgroup: tree.cgroup, workspace: resource.ownership.stack,
                address: resource.address.description, person: resource.ownership.owner, expires: resource.ownership.expires,
                network: networking.existing(resource, directory: directory), hostNote: nil)
            if (try? saveRecord(record, in: directory)) != nil {
                return state(for: resource, record: record, directory: directory)
            }
        }
        await remove(NodeTree(directory: directory, leader: nil, cgroup: tree.cgroup))
        return nil
    }

    static func state(for resource: ResolvedResource, record: NodeRecord, directory: URL) -> ResourceState {
        var attributes = resource.inputs
        attributes["id"] = .string("pid-\(record.pid)")
        attributes["pid"] = .int(Int(record.pid))
        attributes["log_path"] = .string(directory.appendingPathComponent("node.log").path)
        attributes["started_at"] = .string(ISO8601DateFormatter().string(from: record.startedAt))
        attributes["status"] = .string(Health.running.status)
        attributes["isolation"] = .string(record.cgroup.map { "cgroup \($0)" } ?? "process-group \(record.pid)")
        if let network = record.network {
            attributes["private_ip"] = .string(network.address)
            attributes["netns"] = .string(network.namespace)
            attributes["network_mode"] = .string(network.mode)
        } else {
            attributes["network_mode"] = .string("host" + (record.hostNote.map { "; \($0)" } ?? ""))
        }
        return ResourceState(address: resource.address, provider: "local", region: resource.region, id: "pid-\(record.pid)", attributes: attributes)
    }

    static func updateLabels(_ state: ResourceState) throws {
        guard let directory = directory(of: state) else {
            throw ProviderError(.notFound, "node \(state.address) has no recorded directory", address: state.address)
        }
        let file = recordFile(directory)
        do {
            var record = try JSONDecoder().decode(NodeRecord.self, from: Data(contentsOf: file))
            record.labels = state.attributes["labels"]?.mapValue ?? [:]
            try JSONEncoder().encode(record).write(to: file, options: .atomic)
        } catch {
            throw ProviderError(.notFound, "node record \(file.path) is unreadable: \(error.localizedDescription)", address: state.address)
        }
    }

    // MARK: machine loss

    /// Stops the node as the loss of its machine would: every process of its tree killed at
    /// once, its files left as they are. The next refresh reports it lost (no exit status was
    /// recorded), so a plan or reconcile replaces it.
    static func lose(_ state: ResourceState) async throws {
        guard let directory = directory(of: state) else {
            throw ProviderError(.notFound, "node \(state.address) has no recorded directory", address: state.address)
        }
        let tree = tree(directory, record: loadRecord(in: directory), recordedPid: recordedPid(state))
        guard !tree.members(in: .scan()).isEmpty else {
            throw ProviderError(.notFound, "node \(state.address) has no running process to stop", address: state.address)
        }
        guard await tree.killAtOnce() else {
            throw ProviderError(.transient, "processes of \(state.address) survived SIGKILL", address: state.address)
        }
    }

    // MARK: delete

    /// Stops every process of the node (by cgroup, process group and marker, so also after its
    /// leader or its files are gone), then removes its directory and cgroup.
    static func stop(_ state: ResourceState) async throws {
        guard let directory = directory(of: state) else { return }
        let record = loadRecord(in: directory)
        let tree = tree(directory, record: record, recordedPid: recordedPid(state))
        if !(await tree.terminate(grace: stopGrace)) {
            throw ProviderError(.transient, "processes of \(state.address) survived SIGKILL; they are retried on the next run", address: state.address)
        }
        tree.cgroup.map(NodeCgroups.remove)
        if let failure = LocalNetworking.detach(directory: directory) {
            throw ProviderError(.transient, "cannot remove the network namespace of \(state.address): \(failure)", address: state.address)
        }
        if FileManager.default.fileExists(atPath: directory.path) {
            do {
                try FileManager.default.removeItem(at: directory)
            } catch {
                throw ProviderError(.transient, "cannot remove \(directory.path): \(error.localizedDescription)", address: state.address)
            }
        }
    }

    // MARK: processes

    struct SpawnFailure: Error {
        var step: Int32
        var errno: Int32
        var program: String
        var address: ResourceAddress

        /// Running out of processes or memory is capacity, so apply stops launching more creates.
        var providerError: ProviderError {
            let reason = String(cString: strerror(errno))
            switch (step, errno) {
            case (Int32(STRATUM_SPAWN_FORK.rawValue), EAGAIN), (_, ENOMEM), (_, ENFILE), (_, EMFILE):
                return ProviderError(
                    .capacity,
                    "the machine cannot start another process (\(reason)): it is out of process slots or memory; run fewer local nodes or raise the limit (ulimit -u, the pids cgroup)",
                    // The machine is the whole of the local provider: no other zone to try.
                    address: address, scope: .cloud)
            case (Int32(STRATUM_SPAWN_NETNS.rawValue), _):
                return ProviderError(.permanent, "cannot start '\(program)' in the node's network namespace: \(reason)", address: address)
            default:
                return ProviderError(.permanent, "cannot start '\(program)': \(reason)", address: address)
            }
        }
    }

    /// Starts `argv[0]` (an absolute path) as a new session leader, inside `cgroup` and the
    /// network namespace file `netns` if given, with stdin from /dev/null and stdout/stderr
    /// appended to `logPath`.
    static func spawn(
        _ argv: [String], environment: [String: String], logPath: String, workingDirectory: String, cgroup: String?, netns: String? = nil,
        address: ResourceAddress
    ) throws -> Int32 {
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        var step: Int32 = 0
        let procs = cgroup.map { $0 + "/cgroup.procs" }
        let status = cArgs.withUnsafeBufferPointer { args in
            cEnv.withUnsafeBufferPointer { env in
                stratum_spawn_node(argv[0], args.baseAddress, env.baseAddress, logPath, workingDirectory, procs, netns, &pid, &step)
            }
        }
        guard status == 0 else { throw SpawnFailure(step: step, errno: status, program: argv[0], address: address) }
        SpawnedLeaders.shared.insert(pid)
        return pid
    }
}

/// The node leaders this process started: the only zombies a scan reaps, so that it never takes
/// the exit status of a child that other code waits for (a `Foundation.Process` in the same
/// program would otherwise never see its child exit).
final class SpawnedLeaders: @unchecked Sendable {
    static let shared = SpawnedLeaders()
    private let lock = NSLock()
    private var pids: Set<Int32> = []

    func insert(_ pid: Int32) { lock.withLock { _ = pids.insert(pid) } }

    /// Collects the exit status of `pid` if it is one of ours.
    func reap(_ pid: Int32) {
        lock.withLock {
            guard pids.contains(pid) else { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { pids.remove(pid) }
        }
    }
}
