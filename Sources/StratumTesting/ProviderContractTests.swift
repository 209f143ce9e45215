import Foundation
import StratumCore

/// The contract every provider's resource kinds must meet. Each check runs against one kind of
/// one provider (a `Subject`) and throws `ContractViolation` where the kind breaks the
/// contract; a test target runs every check for each provider it has (fake, Local, AWS on
/// moto, …). The LRO check runs on `LongRunningProvider`, a test kind whose creates wait on a
/// cloud operation.
public struct ProviderContractTests: Sendable {
    /// One kind of one provider, and how to make resources of it.
    public struct Subject: Sendable, CustomStringConvertible {
        public var provider: any Provider
        public var type: String
        public var region: String
        public var ownership: Ownership
        /// Inputs for a new resource, unique per `name` (bucket names are global).
        public var inputs: @Sendable (_ name: String) -> [String: Value]
        /// The id `importResource` finds a created resource by (default: its id).
        public var importID: @Sendable (ResourceState) -> String

        public init(
            provider: any Provider, type: String, region: String, ownership: Ownership = Ownership(stack: "contract/test", lineage: UUID().uuidString.lowercased()),
            inputs: @escaping @Sendable (_ name: String) -> [String: Value], importID: @escaping @Sendable (ResourceState) -> String = { $0.id }
        ) {
            self.provider = provider
            self.type = type
            self.region = region
            self.ownership = ownership
            self.inputs = inputs
            self.importID = importID
        }

        public var description: String { "\(provider.name) \(type)" }

        func resource(_ name: String) -> ResolvedResource {
            ResolvedResource(
                address: ResourceAddress(type: type, name: name), region: region, inputs: inputs(name), dependencies: [], ownership: ownership)
        }
    }

    public struct ContractViolation: Error, CustomStringConvertible {
        public var description: String

        public init(_ description: String) {
            self.description = description
        }
    }

    public let subject: Subject

    public init(_ subject: Subject) {
        self.subject = subject
    }

    var provider: any Provider { subject.provider }

    func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw ContractViolation("\(subject): \(message())") }
    }

    func token() -> String { UUID().uuidString.lowercased() }

    /// Deletes what a check made, whatever the check's outcome.
    func cleaningUp<T>(_ made: [ResourceState], _ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            for state in made { try? await provider.delete(state) }
            return result
        } catch {
            for state in made { try? await provider.delete(state) }
            throw error
        }
    }

    /// A create repeated with the same token makes one resource, and answers with it.
    public func idempotentCreateByToken(name: String = "idem") async throws {
        let resource = subject.resource(name)
        let token = token()
        let first = try await provider.create(resource, token: token)
        try await cleaningUp([first]) {
            let again = try await provider.create(resource, token: token)
            try require(again.id == first.id, "a second create with the same token made \(again.id) beside \(first.id)")
            let live = try await provider.read(type: subject.type, resources: [first])
            try require(live.count == 1 && live[0]?.id == first.id, "the created resource does not read back")
        }
    }

    /// A create whose answer never arrived is found by recovery from its token (and only from
    /// its token: another token finds nothing).
    public func lostResponseIsRecovered(name: String = "lost") async throws {
        let resource = subject.resource(name)
        let token = token()
        // The call took effect; its answer is dropped, as a reset connection would.
        let made = try await provider.create(resource, token: token)
        try await cleaningUp([made]) {
            let recovered = try await provider.recover(PendingOperation(creating: resource, provider: provider.name, token: token))
            try require(recovered?.id == made.id, "recovery by token found \(recovered?.id ?? "nothing"), expected \(made.id)")
            let stranger = try await provider.recover(PendingOperation(creating: resource, provider: provider.name, token: self.token()))
            try require(stranger == nil, "recovery with a token never sent adopted \(stranger?.id ?? "")")
        }
    }

    /// One read answers for every member of a batch, in order, nil for those that are gone.
    public func batchedReadWithMissingMembers() async throws {
        let kept = try await provider.create(subject.resource("batch-a"), token: token())
        let gone = try await provider.create(subject.resource("batch-b"), token: token())
        let other = try await provider.create(subject.resource("batch-c"), token: token())
        try await cleaningUp([kept, other]) {
            try await provider.delete(gone)
            let batch = [kept, gone, other]
            let keys = Set(batch.compactMap { provider.kinds[subject.type]?.batchKey($0) })
            try require(keys.count == 1, "resources of one region fall into \(keys.count) batches")
            let live = try await provider.read(type: subject.type, resources: batch)
            try require(live.count == 3, "a read of 3 answered \(live.count)")
            try require(live[0]?.id == kept.id, "the first member reads back as \(live[0]?.id ?? "gone")")
            try require(live[1] == nil, "a deleted member reads back as \(live[1]?.id ?? "")")
            try require(live[2]?.id == other.id, "the third member reads back as \(live[2]?.id ?? "gone")")
        }
    }

    /// Deleting what is already gone succeeds.
    public func deleteOfWhatIsGone(name: String = "gone") async throws {
        let made = try await provider.create(subject.resource(name), token: token())
        try await provider.delete(made)
        try await provider.delete(made)
        let live = try await provider.read(type: subject.type, resources: [made])
        try require(live == [nil], "a deleted resource still reads back")
    }

    /// An existing resource is adopted by its id, with the id state records; an unknown id
    /// finds nothing.
    public func importByID(name: String = "imported") async throws {
        let made = try await provider.create(subject.resource(name), token: token())
        try await cleaningUp([made]) {
            let address = ResourceAddress(type: subject.type, name: "\(name)-adopted")
            let imported = try await provider.importResource(type: subject.type, region: subject.region, id: subject.importID(made), address: address)
            try require(imported?.id == made.id, "import found \(imported?.id ?? "nothing"), expected \(made.id)")
            try require(imported?.address == address, "import recorded the resource at \(imported?.address.description ?? "-")")
            let missing = try await provider.importResource(type: subject.type, region: subject.region, id: "stratum-missing-\(token().prefix(8))", address: address)
            try require(missing == nil, "import of an id that does not exist found \(missing?.id ?? "")")
        }
    }

    /// Every check above, in turn.
    public func all() async throws {
        try await idempotentCreateByToken()
        try await lostResponseIsRecovered()
        try await batchedReadWithMissingMembers()
        try await deleteOfWhatIsGone()
        try await importByID()
    }
}
