import Foundation
import StratumCore

/// A node is a detached local process with its own directory under `nodes/`, named after the
/// create's token (see `LocalProcesses`). Nodes die with their workload: nothing to import.
/// A node that carries a link on a Local network runs in a network namespace of its own
/// (see `LocalNetworking`).
struct LocalNodeKind: ResourceKind {
    static let typeName = "local_node"
    let type = Self.typeName
    let paths: LocalPaths
    let networking: LocalNetworking

    /// A local process costs nothing by the hour.
    func billing(_ attributes: [String: Value], region: String) -> Billing? { .free }

    // Nodes are replaced destroy-before-create: a worker's successor resumes from the
    // checkpoint the old one writes when it is stopped, and never runs beside it.
    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "pool": .input(forceNew: true, required: true),
        "index": .input(forceNew: true, required: true),
        // The pool's size and checkpoint location reach the node's environment.
        "count": .input(forceNew: true),
        "checkpoint_url": .input(forceNew: true),
        "image": .input(forceNew: true),
        "command": .input(forceNew: true, required: true),
        "env": .input(forceNew: true),
        "labels": .input(),
        // The node's link conditions (LinkProfile.value); applied live, so a change is an update.
        "link": .input(),
        "gpus": .input(forceNew: true),
        "gpu_class": .input(forceNew: true),
        "instance_type": .input(forceNew: true),
        // Where a placement put the node; the local machine has one zone and no spot market.
        "zone": .input(forceNew: true),
        "spot": .input(forceNew: true),
        "cpus": .input(forceNew: true),
        "memory_gib": .input(forceNew: true),
        "network_id": .input(forceNew: true),
        "coordinator": .input(forceNew: true),
        "id": .computed, "pid": .computed, "log_path": .computed, "started_at": .computed,
        // running, exited(0), failed(<status>) or lost; `failure` says why a node needs replacing.
        "status": .computed, "isolation": .computed, ResourceState.failureAttribute: .computed,
        // The port of the workload's /metrics, from the node's `metrics-port` file: on
        // 127.0.0.1, or on `private_ip` for a node in a network namespace.
        "metrics_port": .computed,
        // A namespaced node's address on its network and its namespace; `network_mode` says
        // where the node's traffic goes (and, on the host, why a link is not applied).
        "private_ip": .computed, "netns": .computed, "network_mode": .computed,
    ])

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        var review = NodeContract.review(prior, desired: desired)
        if review.replacement == nil { review.replacement = namespaceMove(prior, desired: desired) }
        return review
    }

    /// A link is applied live, but a node moves into or out of a network namespace only by
    /// being replaced: when a node on the host gets a link it can hold in a namespace, or a
    /// namespaced node loses its link.
    func namespaceMove(_ prior: ResourceState, desired: [String: Value]) -> String? {
        let namespaced = prior.attributes["netns"]?.stringValue != nil
        let link = (try? LocalNetworking.link(of: desired, address: prior.address)) ?? nil
        if namespaced, link == nil {
            return "its link was removed: a node without a link runs on the host network, outside its network namespace"
        }
        if !namespaced, link != nil, prior.attributes["pid"] != nil, case .success = networking.support,
            networking.networkRecord(id: desired["network_id"]) != nil
        {
            return "it carries a link, which a node holds in a network namespace of its own on its network, but runs on the host network"
        }
        return nil
    }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let gpus = resource.inputs["gpus"]?.intValue, gpus > 0 {
            problems.append(Diagnostic(address: resource.address, message: "the local provider runs CPU processes and cannot provide \(gpus) GPU(s); place this pool on a cloud or set gpus to 0", location: resource.location))
        }
        if case .list(let argv)? = resource.inputs["command"], let program = argv.first?.stringValue, program.hasPrefix("/"),
            !FileManager.default.isExecutableFile(atPath: program)
        {
            problems.append(Diagnostic(address: resource.address, message: "command '\(program)' is not an executable file", location: resource.location))
        }
        if let link = resource.inputs["link"], !link.containsUnknown {
            do {
                _ = try LinkProfile(value: link)
            } catch {
                problems.append(Diagnostic(address: resource.address, message: "\(error)", location: resource.location))
            }
        }
        return problems
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        LocalProcesses.liveness(of: resources)
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await LocalProcesses.start(resource, token: context.token, nodesDirectory: paths.nodes, networking: networking)
    }

    /// Labels are recorded; a changed link is applied live in the node's namespace (no
    /// replacement, the same processes).
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior.updated(to: desired)
        state.attributes["link"] = desired.inputs["link"]
        try LocalProcesses.updateLabels(state)
        let before = (try? LocalNetworking.link(of: prior.attributes, address: prior.address)) ?? nil
        let after = try LocalNetworking.link(of: desired.inputs, address: desired.address)
        if let directory = LocalProcesses.directory(of: prior), let network = LocalProcesses.loadRecord(in: directory)?.network,
            !LiveLink.matches(before.map(LiveLink.effective), after.map(LiveLink.effective))
        {
            try networking.apply(after, to: network, address: desired.address)
        }
        return state
    }

    func owned() async throws -> [OwnedResource]? { LocalProcesses.owned(in: paths.nodes) }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await LocalProcesses.stop(state)
    }

    /// The node directory named after the create's token is what the create left.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        await LocalProcesses.recover(operation.resolved, token: operation.token, nodesDirectory: paths.nodes, networking: networking)
    }
}
