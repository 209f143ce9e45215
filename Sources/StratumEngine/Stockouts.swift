import Foundation
import StratumCore
import StratumState

/// Offers that failed for lack of capacity or quota, remembered with an expiry so later runs
/// (of any stack in the same state) skip them until then. Kept as `stratum_stockout.<offer>`
/// records in the state workspace `_stratum/stockouts`.
public struct Stockouts: Sendable {
    public static let workspace = "_stratum/stockouts"
    public static let type = "stratum_stockout"
    /// How long a stockout is remembered unless configured otherwise.
    public static let defaultLifetime: Duration = .seconds(30 * 60)

    public let store: any StateStore

    public init(store: any StateStore) {
        self.store = store
    }

    /// The offers blocked at `now` (expired ones are left out).
    public func active(at now: Date) async throws -> [BlockedOffer] {
        guard try await store.workspaces().contains(Self.workspace) else { return [] }
        return try await store.read(workspace: Self.workspace).resources.values.compactMap(Self.blocked).filter { $0.until > now }
            .sorted { $0.offer < $1.offer }
    }

    /// Remembers `blocked` (replacing an earlier record of the same offer) and forgets expired ones.
    public func record(_ blocked: [BlockedOffer], at now: Date) async throws {
        let recorded = try await store.workspaces().contains(Self.workspace) ? Array(try await store.read(workspace: Self.workspace).resources.values) : []
        let expired = recorded.filter { Self.blocked($0).map { $0.until <= now } ?? true }.map(\.address)
        let upserts = blocked.map(Self.state)
        guard !upserts.isEmpty || !expired.isEmpty else { return }
        let changes = blocked.map { HistoryChange(address: Self.address(of: $0).description, action: "stockout: \($0.reason) (until \(ISODates.string($0.until)))") }
            + expired.map { HistoryChange(address: $0.description, action: "expired") }
        _ = try await store.commit(workspace: Self.workspace, StateMutation(upserts: upserts, removals: expired, changes: changes), at: now)
    }

    static func address(of blocked: BlockedOffer) -> ResourceAddress {
        let offer = blocked.offer
        let capacity = blocked.spot.map { $0 ? "spot" : "on-demand" } ?? "any"
        let raw = [offer.cloud, offer.instanceType, offer.region, offer.zone ?? "all", capacity].joined(separator: "_")
        let name = String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" })
        return ResourceAddress(type: type, name: name)
    }

    static func state(_ blocked: BlockedOffer) -> ResourceState {
        var attributes: [String: Value] = [
            "cloud": .string(blocked.offer.cloud), "instance_type": .string(blocked.offer.instanceType), "region": .string(blocked.offer.region),
            "reason": .string(blocked.reason), "until": .string(ISODates.string(blocked.until)),
        ]
        if let zone = blocked.offer.zone { attributes["zone"] = .string(zone) }
        if let spot = blocked.spot { attributes["spot"] = .bool(spot) }
        let address = address(of: blocked)
        return ResourceState(address: address, provider: StratumBuiltinProvider.providerName, region: blocked.offer.region, id: address.name, attributes: attributes)
    }

    static func blocked(_ state: ResourceState) -> BlockedOffer? {
        let a = state.attributes
        guard let cloud = a["cloud"]?.stringValue, let type = a["instance_type"]?.stringValue, let region = a["region"]?.stringValue,
            let reason = a["reason"]?.stringValue, let until = a["until"]?.stringValue.flatMap(ISODates.date)
        else { return nil }
        return BlockedOffer(
            offer: OfferKey(cloud: cloud, instanceType: type, region: region, zone: a["zone"]?.stringValue), spot: a["spot"]?.boolValue, reason: reason, until: until)
    }
}
