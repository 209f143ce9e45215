import Foundation
import StratumCore

/// Stratum's own resources, kept in state only: `stratum_placement.<cluster>` records where a
/// GPU cluster landed, so the decision stays the same across plans until the stack, a failover
/// or `--replace-placement` changes it. Every run registers this provider.
public struct StratumBuiltinProvider: Provider {
    public static let providerName = "stratum"
    public let name = StratumBuiltinProvider.providerName
    public let kinds: [String: any ResourceKind] = [PlacementKind.typeName: PlacementKind()]

    public init() {}
}

/// A cluster's placement decision (see `PlacementDecision.attributes`). Nothing in any cloud:
/// creating, updating and deleting it only changes state.
struct PlacementKind: ResourceKind {
    static let typeName = "stratum_placement"
    let type = Self.typeName

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "request": .input(), "cloud": .input(), "region": .input(), "zone": .input(), "instance_type": .input(),
        "machines": .input(), "gpus_per_machine": .input(), "spot": .input(), "hourly": .input(), "reason": .input(),
        "runners_up": .input(), "alias": .input(), "id": .computed,
    ])

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] { resources }

    /// A whole-dollar price comes back from state as an integer: compare it as the number it is.
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        var prior = prior
        if case .int(let dollars)? = prior.attributes["hourly"] { prior.attributes["hourly"] = .double(Double(dollars)) }
        return PlanReview(prior: prior)
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        var attributes = resource.inputs
        attributes["id"] = .string("placement/\(resource.address.name)")
        return ResourceState(address: resource.address, provider: StratumBuiltinProvider.providerName, region: resource.region, id: "placement/\(resource.address.name)", attributes: attributes)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        state.attributes = desired.inputs
        state.attributes["id"] = .string(prior.id)
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {}

    /// An interrupted create left nothing anywhere: the next apply records the decision again.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? { nil }
}
