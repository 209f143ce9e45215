import Foundation
import StratumCore
import StratumState

/// An ephemeral environment: a copy of a stack in a workspace of its own (`<stack>/<name>`),
/// made by `stratum up --ttl`, with an owner and an expiry that every cloud resource of it is
/// tagged with, and that `stratum sweep` destroys once expired.
public struct EphemeralEnvironment: Sendable, Equatable {
    public var stack: String
    public var name: String
    public var owner: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(stack: String, name: String, owner: String, createdAt: Date, expiresAt: Date) {
        self.stack = stack
        self.name = name
        self.owner = owner
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    public var workspace: String { "\(stack)/\(name)" }

    public func isExpired(at now: Date) -> Bool { expiresAt <= now }
}

/// The ephemeral environments of a state, kept as `stratum_environment` records in the state
/// workspace `_stratum/environments`.
public struct Environments: Sendable {
    public static let workspace = "_stratum/environments"
    public static let type = "stratum_environment"

    public let store: any StateStore

    public init(store: any StateStore) {
        self.store = store
    }

    public func all() async throws -> [EphemeralEnvironment] {
        guard try await store.workspaces().contains(Self.workspace) else { return [] }
        return try await store.read(workspace: Self.workspace).resources.values.compactMap(Self.environment).sorted { $0.workspace < $1.workspace }
    }

    public func find(stack: String, name: String) async throws -> EphemeralEnvironment? {
        try await all().first { $0.stack == stack && $0.name == name }
    }

    /// Records `environment`, replacing an earlier record of the same workspace.
    public func record(_ environment: EphemeralEnvironment, at now: Date) async throws {
        let state = Self.state(environment)
        let change = HistoryChange(address: state.address.description, action: "up: owner \(environment.owner), expires \(ISODates.string(environment.expiresAt))")
        _ = try await store.commit(workspace: Self.workspace, StateMutation(upserts: [state], changes: [change]), at: now)
    }

    public func remove(_ environment: EphemeralEnvironment, at now: Date) async throws {
        let address = Self.address(stack: environment.stack, name: environment.name)
        _ = try await store.commit(workspace: Self.workspace, StateMutation(removals: [address], changes: [HistoryChange(address: address.description, action: "down")]), at: now)
    }

    static func address(stack: String, name: String) -> ResourceAddress {
        let raw = "\(stack)_\(name)"
        return ResourceAddress(type: type, name: String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" }))
    }

    static func state(_ environment: EphemeralEnvironment) -> ResourceState {
        let address = address(stack: environment.stack, name: environment.name)
        return ResourceState(
            address: address, provider: StratumBuiltinProvider.providerName, region: "global", id: address.name,
            attributes: [
                "stack": .string(environment.stack), "environment": .string(environment.name), "owner": .string(environment.owner),
                "created_at": .string(ISODates.string(environment.createdAt)), "expires_at": .string(ISODates.string(environment.expiresAt)),
            ])
    }

    static func environment(_ state: ResourceState) -> EphemeralEnvironment? {
        let a = state.attributes
        guard let stack = a["stack"]?.stringValue, let name = a["environment"]?.stringValue, let owner = a["owner"]?.stringValue,
            let created = a["created_at"]?.stringValue.flatMap(ISODates.date), let expires = a["expires_at"]?.stringValue.flatMap(ISODates.date)
        else { return nil }
        return EphemeralEnvironment(stack: stack, name: name, owner: owner, createdAt: created, expiresAt: expires)
    }
}
