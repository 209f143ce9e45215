import Foundation
import StratumCore

/// A node is a detached local process with its own directory under `nodes/`, named after the
/// create's token (see `LocalProcesses`). Nodes die with their workload: nothing to import.
struct LocalNodeKind: ResourceKind {
    static let typeName = "local_node"
    let type = Self.typeName
    let paths: LocalPaths

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
        // The port of the workload's /metrics on 127.0.0.1, from the node's `metrics-port` file.
        "metrics_port": .computed,
    ])

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        NodeContract.review(prior, desired: desired)
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
        return problems
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        LocalProcesses.liveness(of: resources)
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await LocalProcesses.start(resource, token: context.token, nodesDirectory: paths.nodes)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let state = prior.updated(to: desired)
        try LocalProcesses.updateLabels(state)
        return state
    }

    func owned() async throws -> [OwnedResource]? { LocalProcesses.owned(in: paths.nodes) }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await LocalProcesses.stop(state)
    }

    /// The node directory named after the create's token is what the create left.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        await LocalProcesses.recover(operation.resolved, token: operation.token, nodesDirectory: paths.nodes)
    }
}
