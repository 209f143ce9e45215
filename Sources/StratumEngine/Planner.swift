import Foundation

import StratumCore
import StratumState

/// Which resources a plan may touch: `--target` (with what they need) and `--exclude`
/// (with what needs them). An address without an index selects every node of a group.
public struct PlanScope: Sendable {
    public var targets: [ResourceAddress]
    public var excludes: [ResourceAddress]

    public init(targets: [ResourceAddress] = [], excludes: [ResourceAddress] = []) {
        self.targets = targets
        self.excludes = excludes
    }

    public var isEmpty: Bool { targets.isEmpty && excludes.isEmpty }

    static func matches(_ address: ResourceAddress, _ pattern: ResourceAddress) -> Bool {
        pattern.index == nil ? address.group == pattern : address == pattern
    }

    /// The `--target` and `--exclude` patterns that match none of `addresses`: most likely typos.
    public func unmatched(in addresses: Set<ResourceAddress>) -> (targets: [ResourceAddress], excludes: [ResourceAddress]) {
        func misses(_ patterns: [ResourceAddress]) -> [ResourceAddress] {
            patterns.filter { pattern in !addresses.contains { Self.matches($0, pattern) } }
        }
        return (misses(targets), misses(excludes))
    }

    /// The part of `addresses` this scope selects: the targets grown by `widen` (what a target
    /// brings along), minus the excludes grown by `protect` (what an exclusion keeps).
    func select(
        from addresses: Set<ResourceAddress>, widen: (Set<ResourceAddress>) -> Set<ResourceAddress>,
        protect: (Set<ResourceAddress>) -> Set<ResourceAddress>
    ) -> Set<ResourceAddress> {
        func matching(_ patterns: [ResourceAddress]) -> Set<ResourceAddress> {
            addresses.filter { address in patterns.contains { Self.matches(address, $0) } }
        }
        var selected = targets.isEmpty ? addresses : widen(matching(targets)).intersection(addresses)
        if !excludes.isEmpty { selected.subtract(protect(matching(excludes))) }
        return selected
    }
}

/// Computes a plan: validates the stack against provider schemas, then diffs desired
/// resources against refreshed state. Makes no changes anywhere.
public struct Planner: Sendable {
    public var providers: ProviderRegistry

    public init(providers: ProviderRegistry) {
        self.providers = providers
    }

    /// Schema and provider checks for every resource; throws all problems at once.
    public func validate(_ stack: EvaluatedStack) throws {
        var problems: [Diagnostic] = []
        for resource in stack.resources {
            guard let provider = providers[resource.provider] else {
                problems.append(Diagnostic(address: resource.address, message: "unknown provider '\(resource.provider)'", location: resource.location))
                continue
            }
            problems += provider.validateAgainstSchema(resource)
            problems += provider.validate(resource)
        }
        let byProvider = Dictionary(grouping: stack.resources, by: \.provider)
        for (name, resources) in byProvider.sorted(by: { $0.key < $1.key }) {
            problems += providers[name]?.validate(stack: resources) ?? []
        }
        if !problems.isEmpty { throw ValidationError(problems) }
    }

    /// Diffs `stack` against `snapshot` as refreshed (`refreshed` nil: plan from recorded state).
    public func plan(
        stack: EvaluatedStack, snapshot: StateSnapshot, refreshed: RefreshResult?, scope: PlanScope = PlanScope(), now: Date
    ) throws -> Plan {
        let live: [ResourceAddress: ResourceState] = refreshed?.existing ?? snapshot.resources
        let desired = stack.resourcesByAddress
        guard let order = stack.graph.topologicalOrder() else {
            throw ValidationError([Diagnostic(message: "the stack has a dependency cycle")])
        }

        var changes: [ResourceAddress: ResourceChange] = [:]
        for address in order {
            guard let resource = desired[address] else { continue }
            let schema = providers.schema(provider: resource.provider, type: address.type)
            let inputs = resource.inputs.mapValues { value in
                value.resolvingReferences { ref in Self.plannedValue(of: ref, changes: changes, live: live) }
            }
            // The kind's plan hook normalises what the cloud reports and may force a replacement.
            var prior = live[address]
            var replacement: String?
            if let current = prior, let kind = providers.kind(provider: resource.provider, type: address.type) {
                let review = kind.review(current, desired: inputs)
                prior = review.prior
                replacement = review.replacement
            }
            var change = diff(resource: resource, resolvedInputs: inputs, prior: prior, schema: schema)
            if let replacement, change.action == .noop || change.action == .update {
                change = forcedReplacement(change, schema: schema, resolvedInputs: inputs, reason: replacement)
            }
            if change.action == .create, snapshot.resources[address] != nil {
                change.reason = "it no longer exists (deleted outside Stratum)"
            }
            changes[address] = change
        }

        var vanished: [ResourceAddress] = []
        for (address, recorded) in snapshot.resources where desired[address] == nil {
            guard let current = live[address] else {
                vanished.append(address)
                continue
            }
            changes[address] = Self.deletion(of: current, recorded: recorded)
        }

        let scoped = restrict(changes, to: scope, stack: stack, live: live)
        return Plan(
            stack: stack.name, environment: stack.environment, lineage: snapshot.lineage, serial: snapshot.serial, createdAt: now,
            changes: scoped.sorted { $0.address < $1.address }, vanished: vanished.sorted(), outputs: stack.outputs)
    }

    /// A plan that deletes every resource in state.
    public func destroyPlan(stackName: String, environment: String, snapshot: StateSnapshot, refreshed: RefreshResult?, scope: PlanScope = PlanScope(), now: Date) -> Plan {
        let live = refreshed?.existing ?? snapshot.resources
        var changes: [ResourceAddress: ResourceChange] = [:]
        var vanished: [ResourceAddress] = []
        for (address, recorded) in snapshot.resources {
            if let current = live[address] {
                changes[address] = Self.deletion(of: current, recorded: recorded)
            } else {
                vanished.append(address)
            }
        }
        let edges = Dictionary(uniqueKeysWithValues: snapshot.resources.map { ($0.key, $0.value.dependencies) })
        let graph = ResourceGraph(edges: edges)
        // Destroying a target also destroys what depends on it; keeping a resource keeps what it needs.
        let selected = scope.select(from: Set(changes.keys), widen: graph.dependentClosure, protect: graph.closure)
        return Plan(
            stack: stackName, environment: environment, lineage: snapshot.lineage, serial: snapshot.serial, createdAt: now,
            changes: changes.values.filter { selected.contains($0.address) }.sorted { $0.address < $1.address },
            vanished: scope.isEmpty ? vanished.sorted() : [], outputs: [:], isDestroy: true)
    }

    static func deletion(of current: ResourceState, recorded: ResourceState) -> ResourceChange {
        var prior = current
        prior.dependencies = recorded.dependencies
        return ResourceChange(
            address: current.address, provider: current.provider, region: current.region, action: .delete,
            before: current.attributes, after: nil, dependencies: recorded.dependencies, prior: prior)
    }

    /// What a reference will resolve to once the referenced resource's change is applied.
    static func plannedValue(of ref: AttributeReference, changes: [ResourceAddress: ResourceChange], live: [ResourceAddress: ResourceState]) -> Value {
        if let change = changes[ref.address] {
            return change.after?[ref.attribute] ?? .unknown
        }
        return live[ref.address]?.attributes[ref.attribute] ?? .unknown
    }

    func diff(resource: DesiredResource, resolvedInputs: [String: Value], prior: ResourceState?, schema: ResourceSchema?) -> ResourceChange {
        let computed = schema?.computed ?? []
        guard let prior else {
            var after = resolvedInputs
            for name in computed where after[name] == nil { after[name] = .unknown }
            return ResourceChange(
                address: resource.address, provider: resource.provider, region: resource.region, action: .create,
                before: nil, after: after, inputs: resource.inputs, dependencies: resource.dependencies)
        }

        var after = prior.attributes
        var changed: [String] = []
        var forcing: [String] = []
        let inputNames = Set(schema?.inputs ?? []).union(resolvedInputs.keys)
        for name in inputNames.sorted() {
            let attribute = schema?.attributes[name]
            let desiredValue = resolvedInputs[name]
            if desiredValue == nil, attribute?.role == .optionalComputed { continue }
            let wanted = desiredValue ?? .null
            let current = prior.attributes[name] ?? .null
            guard wanted.containsUnknown || wanted != current else { continue }
            changed.append(name)
            after[name] = wanted
            if attribute?.forceNew == true { forcing.append(name) }
        }

        var action: ChangeAction = changed.isEmpty ? .noop : (forcing.isEmpty ? .update : .replace)
        // A resource its provider reports failed is replaced even when nothing else changed.
        let reason = prior.failure
        if reason != nil { action = .replace }
        if action == .replace {
            for name in computed where resolvedInputs[name] == nil { after[name] = .unknown }
        }
        return ResourceChange(
            address: resource.address, provider: resource.provider, region: resource.region, action: action,
            createBeforeDestroy: action == .replace && (schema?.createBeforeDestroy ?? false),
            before: prior.attributes, after: after, inputs: resource.inputs, replacedBy: forcing,
            dependencies: resource.dependencies, prior: prior, reason: reason)
    }

    /// `change` turned into a replacement its kind asked for.
    func forcedReplacement(_ change: ResourceChange, schema: ResourceSchema?, resolvedInputs: [String: Value], reason: String) -> ResourceChange {
        var change = change
        change.action = .replace
        change.reason = change.reason ?? reason
        change.createBeforeDestroy = schema?.createBeforeDestroy ?? false
        if var after = change.after {
            for name in schema?.computed ?? [] where resolvedInputs[name] == nil { after[name] = .unknown }
            change.after = after
        }
        return change
    }

    func restrict(_ changes: [ResourceAddress: ResourceChange], to scope: PlanScope, stack: EvaluatedStack, live: [ResourceAddress: ResourceState]) -> [ResourceChange] {
        guard !scope.isEmpty else { return Array(changes.values) }
        var edges = stack.graph.edges
        for (address, state) in live where edges[address] == nil { edges[address] = state.dependencies }
        let graph = ResourceGraph(edges: edges)
        // Creating a target needs what it depends on; leaving a resource alone leaves what needs it.
        let selected = scope.select(from: Set(changes.keys), widen: graph.closure, protect: graph.dependentClosure)
        return changes.values.filter { selected.contains($0.address) }
    }
}
