import StratumCloud
import StratumCore

/// One EC2 resource type: how to create, describe and delete it. Refresh and recovery are
/// shared (`EC2Describe`): one tag-filtered, paginated Describe per type and region.
protocol EC2ResourceKind: Sendable {
    var type: String { get }
    /// e.g. `DescribeVpcs`.
    var describeAction: String { get }
    /// Element holding the `<item>` list in the Describe answer, e.g. `vpcSet`.
    var itemsPath: String { get }
    /// Element with the id inside one item, e.g. `vpcId`.
    var idField: String { get }
    /// Filter name selecting by id, for resources recorded without ownership (imports).
    var idFilter: String { get }
    /// Whether the Describe call pages with MaxResults/NextToken.
    var paginates: Bool { get }
    var schema: ResourceSchema { get }

    func create(_ resource: ResolvedResource, token: String, tags: [String: String], ec2: EC2API) async throws -> ResourceState
    /// `prior` brought up to date from a Describe item; nil when the item means "gone".
    func refreshed(_ prior: ResourceState, from item: XMLTree) -> ResourceState?
    /// State for a resource found by recovery or import, from its Describe item.
    func adopted(_ item: XMLTree, address: ResourceAddress, region: String, inputs: [String: Value]) -> ResourceState
    func update(_ prior: ResourceState, to desired: ResolvedResource, ec2: EC2API) async throws -> ResourceState
    func delete(_ state: ResourceState, ec2: EC2API) async throws
    /// Checks of the type's inputs beyond the schema.
    func validate(_ resource: DesiredResource) -> [Diagnostic]
    /// The plan hook (see `ResourceKind.review`).
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview
}

extension EC2ResourceKind {
    var paginates: Bool { true }

    func validate(_ resource: DesiredResource) -> [Diagnostic] { [] }

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview { PlanReview(prior: prior) }

    func update(_ prior: ResourceState, to desired: ResolvedResource, ec2: EC2API) async throws -> ResourceState {
        try await ec2.updateTags(prior, desired: desired)
    }

    /// The live item as state: what recovery and import adopt.
    func adopted(_ item: XMLTree, address: ResourceAddress, region: String, inputs: [String: Value]) -> ResourceState {
        let id = item.string(idField) ?? ""
        var attributes = inputs
        attributes["id"] = .string(id)
        let tags = OwnershipTags.parse(item)
        attributes["stratum_lineage"] = .string(tags[OwnershipTags.lineage] ?? "")
        let prior = ResourceState(address: address, provider: "aws", region: region, id: id, attributes: attributes)
        return refreshed(prior, from: item) ?? prior
    }
}

/// EC2 calls in one region with the resource they are for.
struct EC2API: Sendable {
    let client: AWSClient
    let region: String
    let address: ResourceAddress?

    func call(_ action: String, _ parameters: EC2Parameters = EC2Parameters(), idempotent: Bool) async throws -> XMLTree {
        try await client.ec2(action, parameters.pairs, region: region, idempotent: idempotent, address: address)
    }

    /// Runs a delete, treating "already gone" as done.
    func deleteIgnoringMissing(_ action: String, _ parameters: EC2Parameters) async throws {
        do {
            _ = try await call(action, parameters, idempotent: true)
        } catch let error as ProviderError where error.kind == .notFound {
            return
        } catch let error as ProviderError where error.message.contains("DependencyViolation") {
            // Right after its instances terminate, AWS still holds their network interfaces in
            // a subnet or security group for a while: worth retrying.
            throw ProviderError(.transient, error.message, address: error.address)
        }
    }

    /// Makes the resource's user tags match `desired` (ownership tags stay).
    func updateTags(_ prior: ResourceState, desired: ResolvedResource) async throws -> ResourceState {
        let old = OwnershipTags.userTags(prior.attributes["tags"])
        let new = OwnershipTags.userTags(desired.inputs["tags"])
        let removed = old.keys.filter { new[$0] == nil }
        if !removed.isEmpty {
            var p = EC2Parameters()
            p.add(list: "ResourceId", [prior.id])
            for (i, key) in removed.sorted().enumerated() { p.add("Tag.\(i + 1).Key", key) }
            _ = try await call("DeleteTags", p, idempotent: true)
        }
        let changed = new.filter { old[$0.key] != $0.value }
        if !changed.isEmpty {
            var p = EC2Parameters()
            p.add(list: "ResourceId", [prior.id])
            p.add(tags: changed)
            _ = try await call("CreateTags", p, idempotent: true)
        }
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        return state
    }
}

/// Shared Describe logic: batched refresh, recovery by tags, lookup by id.
struct EC2Describe {
    let kind: any EC2ResourceKind
    let ec2: EC2API
    /// Items per page; 1,000 is the most DescribeInstances returns at once.
    var pageSize = 1000

    /// Every item matching `filters`, following NextToken.
    func items(filters: [(String, [String])]) async throws -> [XMLTree] {
        var found: [XMLTree] = []
        var next: String?
        repeat {
            var p = EC2Parameters()
            p.add(filters: filters)
            if kind.paginates { p.add("MaxResults", String(pageSize)) }
            p.add("NextToken", next)
            let page = try await ec2.call(kind.describeAction, p, idempotent: true)
            if kind.type == InstanceKind.typeName {
                for reservation in page.items("reservationSet") { found += reservation.items("instancesSet") }
            } else {
                found += page.items(kind.itemsPath)
            }
            next = page.string("nextToken").flatMap { $0.isEmpty ? nil : $0 }
        } while next != nil
        return found
    }

    /// One call per lineage present (normally one), plus id-filtered calls for resources
    /// recorded without one; answers in input order.
    func refresh(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        var byId: [String: XMLTree] = [:]
        let lineages = Set(resources.compactMap { $0.attributes["stratum_lineage"]?.stringValue }.filter { !$0.isEmpty })
        for lineage in lineages.sorted() {
            for item in try await items(filters: [("tag:\(OwnershipTags.lineage)", [lineage])]) {
                if let id = item.string(kind.idField) { byId[id] = item }
            }
        }
        let unowned = resources.filter { ($0.attributes["stratum_lineage"]?.stringValue ?? "").isEmpty }.map(\.id)
        // AWS caps values per filter at 200.
        for start in stride(from: 0, to: unowned.count, by: 200) {
            let chunk = Array(unowned[start..<min(start + 200, unowned.count)])
            for item in try await items(filters: [(kind.idFilter, chunk)]) {
                if let id = item.string(kind.idField) { byId[id] = item }
            }
        }
        return resources.map { prior in byId[prior.id].flatMap { kind.refreshed(prior, from: $0) } }
    }

    /// What an interrupted create left: the resource tagged with this address and lineage
    /// whose token tag is the operation's token.
    func find(token: String, address: ResourceAddress, lineage: String) async throws -> XMLTree? {
        // By the token tag: an address such as `aws_subnet.cluster[0]` is no safe filter value
        // (emulators read `[0]` as a wildcard class); the address is checked here instead.
        var filters: [(String, [String])] = [("tag:\(OwnershipTags.token)", [token])]
        if !lineage.isEmpty { filters.append(("tag:\(OwnershipTags.lineage)", [lineage])) }
        let candidates = try await items(filters: filters)
        return candidates.first { OwnershipTags.parse($0)[OwnershipTags.address] == address.description && isLive($0) }
    }

    /// The instance launched with `token` (or, after zone failover, one of its derived
    /// tokens), by DescribeInstances' `client-token` filter.
    func findInstance(clientToken token: String, subnets: Int) async throws -> XMLTree? {
        let tokens = [token] + (1..<max(subnets, 1)).map { "\(token)-\($0)" }
        return try await items(filters: [("client-token", tokens)]).first { isLive($0) }
    }

    func find(id: String) async throws -> XMLTree? {
        try await items(filters: [(kind.idFilter, [id])]).first { isLive($0) }
    }

    func isLive(_ item: XMLTree) -> Bool {
        let state = item.string("instanceState/name") ?? item.string("state") ?? ""
        return !["terminated", "shutting-down", "deleted", "deleting"].contains(state)
    }
}
