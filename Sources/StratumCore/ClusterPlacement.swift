import Foundation

/// Where a GPU cluster may land: a cloud's region, with the zones it may use in order of
/// preference (empty: the zones the catalog lists for the offer).
public struct ClusterSite: Sendable, Hashable, Codable {
    public var cloud: String
    public var region: String
    public var zones: [String]

    public init(cloud: String, region: String, zones: [String] = []) {
        self.cloud = cloud
        self.region = region
        self.zones = zones
    }
}

/// What a `GPUCluster` asks for, as placement sees it.
public struct ClusterRequest: Sendable, Hashable, Codable {
    public var name: String
    public var gpu: String
    /// GPUs in the whole cluster.
    public var count: Int
    /// The sites it may land on, in order of preference where prices tie.
    public var sites: [ClusterSite]
    public var spot: Bool
    public var maxHourlyPrice: Double?
    public var interconnect: InterconnectRequirement

    public init(
        name: String, gpu: String, count: Int, sites: [ClusterSite], spot: Bool = false, maxHourlyPrice: Double? = nil,
        interconnect: InterconnectRequirement = .any
    ) {
        self.name = name
        self.gpu = gpu
        self.count = count
        self.sites = sites
        self.spot = spot
        self.maxHourlyPrice = maxHourlyPrice
        self.interconnect = interconnect
    }

    /// Changes when the request does; a recorded decision for another request is made again.
    public var fingerprint: String {
        let sites = sites.map { "\($0.cloud):\($0.region)[\($0.zones.joined(separator: " "))]" }.joined(separator: ",")
        let cap = maxHourlyPrice.map { String($0) } ?? "-"
        return "\(normalisedGPU(gpu))x\(count) \(spot ? "spot" : "on-demand") max=\(cap) \(interconnect.rawValue) on \(sites)"
    }

    /// `16 × H100 on-demand, at most $200.00/h`.
    public var summary: String {
        "\(count) × \(gpu) \(spot ? "spot" : "on-demand")" + (maxHourlyPrice.map { ", at most \(Money.hourly($0))" } ?? "")
    }
}

/// One place a cluster can land whole: an offer in one zone (nil: the cloud picks the zone),
/// with what the whole cluster costs there.
public struct Landing: Sendable, Hashable, Codable, CustomStringConvertible {
    public var cloud: String
    public var region: String
    public var zone: String?
    public var instanceType: String
    public var machines: Int
    public var gpusPerMachine: Int
    public var spot: Bool
    /// USD an hour for the whole cluster.
    public var hourly: Double

    public init(cloud: String, region: String, zone: String?, instanceType: String, machines: Int, gpusPerMachine: Int, spot: Bool, hourly: Double) {
        self.cloud = cloud
        self.region = region
        self.zone = zone
        self.instanceType = instanceType
        self.machines = machines
        self.gpusPerMachine = gpusPerMachine
        self.spot = spot
        self.hourly = hourly
    }

    /// The offer in its zone: what a stockout blocks.
    public var key: OfferKey { OfferKey(cloud: cloud, instanceType: instanceType, region: region, zone: zone) }

    /// `aws p5.48xlarge us-east-1a`.
    public var description: String { key.description }

    /// `aws p5.48xlarge us-east-1a: 2 × 8 GPUs, $110.08/h`.
    public var summary: String { "\(self): \(machines) × \(gpusPerMachine) GPU\(gpusPerMachine == 1 ? "" : "s"), \(Money.hourly(hourly))\(spot ? " spot" : "")" }
}

/// The landing chosen for a cluster, how, and what came next: what a plan shows and state
/// records (`stratum_placement.<cluster>`).
public struct PlacementDecision: Sendable, Hashable, Codable {
    public var request: String
    public var landing: Landing
    /// The next landings of other offers, cheapest first (at most two), as summaries.
    public var runnersUp: [String]
    /// Why this landing: `cheapest of 7 feasible landings`, or a failover.
    public var reason: String
    /// The name the cluster's network and nodes carry when not the cluster's own: a race's
    /// winning copy (`train-race2`) keeps its name.
    public var alias: String?

    public init(request: String, landing: Landing, runnersUp: [String], reason: String, alias: String? = nil) {
        self.alias = alias
        self.request = request
        self.landing = landing
        self.runnersUp = runnersUp
        self.reason = reason
    }

    /// The decision as the attributes of its `stratum_placement` resource.
    public var attributes: [String: Value] {
        var attributes: [String: Value] = [
            "request": .string(request), "cloud": .string(landing.cloud), "region": .string(landing.region),
            "instance_type": .string(landing.instanceType), "machines": .int(landing.machines), "gpus_per_machine": .int(landing.gpusPerMachine),
            "spot": .bool(landing.spot), "hourly": .double(landing.hourly), "reason": .string(reason),
            "runners_up": .list(runnersUp.map(Value.string)),
        ]
        if let zone = landing.zone { attributes["zone"] = .string(zone) }
        if let alias { attributes["alias"] = .string(alias) }
        return attributes
    }

    /// A decision recorded in state, or nil when the attributes are not one.
    public init?(attributes: [String: Value]) {
        guard let request = attributes["request"]?.stringValue, let cloud = attributes["cloud"]?.stringValue,
            let region = attributes["region"]?.stringValue, let type = attributes["instance_type"]?.stringValue,
            let machines = attributes["machines"]?.intValue, let perMachine = attributes["gpus_per_machine"]?.intValue
        else { return nil }
        let hourly: Double
        switch attributes["hourly"] {
        case .double(let value)?: hourly = value
        case .int(let value)?: hourly = Double(value)
        default: return nil
        }
        self.request = request
        self.landing = Landing(
            cloud: cloud, region: region, zone: attributes["zone"]?.stringValue, instanceType: type, machines: machines, gpusPerMachine: perMachine,
            spot: attributes["spot"]?.boolValue ?? false, hourly: hourly)
        self.runnersUp = attributes["runners_up"]?.listValue?.compactMap(\.stringValue) ?? []
        self.reason = attributes["reason"]?.stringValue ?? ""
        self.alias = attributes["alias"]?.stringValue
    }
}

/// An offer that may not be used until a time, and why (a remembered stockout).
public struct BlockedOffer: Sendable, Hashable, Codable {
    /// The offer in a zone (capacity), or in its region with no zone (quota: every zone).
    public var offer: OfferKey
    /// Spot or on-demand capacity (they run out separately); nil: both.
    public var spot: Bool?
    public var reason: String
    public var until: Date

    public init(offer: OfferKey, spot: Bool? = nil, reason: String, until: Date) {
        self.offer = offer
        self.spot = spot
        self.reason = reason
        self.until = until
    }

    /// Whether this blocks `landing`: the same offer on the same capacity, in the same zone or
    /// anywhere in the region.
    public func blocks(_ landing: Landing) -> Bool {
        offer.cloud == landing.cloud && offer.instanceType.caseInsensitiveCompare(landing.instanceType) == .orderedSame && offer.region == landing.region
            && (offer.zone == nil || offer.zone == landing.zone) && (spot == nil || spot == landing.spot)
    }
}

/// The landings of a request, cheapest first, and every offer of the GPU left out, with why.
public struct LandingRanking: Sendable, Hashable, Codable {
    public var landings: [Landing]
    public var excluded: [Exclusion]
}

/// Chooses where GPU clusters land: the cheapest feasible landing from the merged catalog,
/// skipping blocked offers; a decision recorded for the same request is kept.
public struct ClusterPlacer: Sendable {
    public var catalog: OfferCatalog
    public var blocked: [BlockedOffer]
    public var now: Date

    public init(catalog: OfferCatalog, blocked: [BlockedOffer] = [], now: Date) {
        self.catalog = catalog
        self.blocked = blocked.filter { $0.until > now }
        self.now = now
    }

    /// Every landing of `request`: each feasible offer on one of its sites, in each zone it may
    /// use, cheapest first (ties: the sites' and zones' order of preference).
    public func rank(_ request: ClusterRequest) -> LandingRanking {
        let query = OfferQuery(
            gpu: request.gpu, count: request.count, clouds: Array(Set(request.sites.map(\.cloud))), regions: [], spot: request.spot,
            maxHourlyPrice: request.maxHourlyPrice, interconnect: request.interconnect)
        let ranking = catalog.rank(query)
        var landings: [(landing: Landing, order: Int)] = []
        var excluded = ranking.excluded.filter { exclusion in
            request.sites.contains { $0.cloud == exclusion.offer.cloud && $0.region == exclusion.offer.region }
        }
        for candidate in ranking.candidates {
            let offer = candidate.offer
            guard let siteIndex = request.sites.firstIndex(where: { $0.cloud == offer.cloud && $0.region == offer.region }) else { continue }
            let site = request.sites[siteIndex]
            let zones: [String?]
            if !site.zones.isEmpty {
                let offered = offer.zones.isEmpty ? site.zones : site.zones.filter(offer.zones.contains)
                if offered.isEmpty {
                    excluded.append(Exclusion(offer: offer.key, reason: "not offered in \(site.zones.joined(separator: ", ")) (only \(offer.zones.joined(separator: ", ")))"))
                    continue
                }
                zones = offered
            } else {
                zones = offer.zones.isEmpty ? [nil] : offer.zones
            }
            for (zoneIndex, zone) in zones.enumerated() {
                let landing = Landing(
                    cloud: offer.cloud, region: offer.region, zone: zone, instanceType: offer.instanceType, machines: candidate.machines,
                    gpusPerMachine: offer.gpuCount, spot: request.spot, hourly: candidate.hourly)
                if let block = blocked.first(where: { $0.blocks(landing) }) {
                    excluded.append(Exclusion(offer: landing.key, reason: "\(block.reason); skipped until \(Self.time(block.until))"))
                    continue
                }
                landings.append((landing, siteIndex * 1000 + zoneIndex))
            }
        }
        landings.sort { ($0.landing.hourly, $0.order, $0.landing.instanceType) < ($1.landing.hourly, $1.order, $1.landing.instanceType) }
        excluded.sort { $0.offer < $1.offer }
        return LandingRanking(landings: landings.map(\.landing), excluded: excluded)
    }

    /// The decision for `request`: the recorded one while it is for the same request and not
    /// blocked (unless `replace`), else the cheapest landing. Nil when nothing fits.
    ///
    /// A cluster that has landed (`landed`: its nodes are in state) keeps its decision even when
    /// a stockout blocks the offer now: the stockout was met by a new create, and moving a
    /// running cluster is a failover's or the user's call, not a side effect of a plan.
    public func decide(
        _ request: ClusterRequest, recorded: PlacementDecision?, replace: Bool = false, landed: Bool = false
    ) -> (decision: PlacementDecision?, ranking: LandingRanking, kept: Bool) {
        let ranking = rank(request)
        if !replace, let recorded, recorded.request == request.fingerprint, landed || !blocked.contains(where: { $0.blocks(recorded.landing) }) {
            return (recorded, ranking, true)
        }
        guard let first = ranking.landings.first else { return (nil, ranking, false) }
        let reason = "cheapest of \(ranking.landings.count) feasible landing\(ranking.landings.count == 1 ? "" : "s")"
        // The same landing as recorded keeps the name its nodes carry (a race's winner).
        let alias = recorded.flatMap { $0.landing.key == first.key ? $0.alias : nil }
        return (
            PlacementDecision(
                request: request.fingerprint, landing: first, runnersUp: Self.runnersUp(after: first, in: ranking.landings).map(\.summary), reason: reason,
                alias: alias), ranking, false
        )
    }

    /// The next landing to try after `failed` did not land: the same offer in another zone, then
    /// another offer in the region, then the same cloud in another region, then another cloud,
    /// cheapest first within each.
    public func next(after failed: Landing, in ranking: LandingRanking) -> Landing? {
        func distance(_ landing: Landing) -> Int {
            guard landing.cloud == failed.cloud else { return 3 }
            guard landing.region == failed.region else { return 2 }
            return landing.instanceType.caseInsensitiveCompare(failed.instanceType) == .orderedSame ? 0 : 1
        }
        // The ranking is cheapest first, so the first of the nearest kind is the cheapest of it.
        return ranking.landings.filter { $0.key != failed.key }.min { distance($0) < distance($1) }
    }

    /// What a capacity or quota error at `landing` blocks, as far as its scope reaches: the
    /// offer in that zone (capacity), in the whole region (quota), or every landing of the cloud
    /// (the cloud is out). Each blocked until `until`.
    public func blocks(for error: ProviderError, at landing: Landing, request: ClusterRequest, until: Date) -> [BlockedOffer] {
        let why = error.kind == .quota ? "quota used up" : "no capacity"
        let reason = "\(why) (\(error.message))"
        let scope = error.scope ?? (error.kind == .quota ? .region(landing.region) : .zone(landing.zone))
        let capacity = error.kind == .quota ? nil : Optional(landing.spot)
        let regionWide = OfferKey(cloud: landing.cloud, instanceType: landing.instanceType, region: landing.region)
        switch scope {
        case .zone:
            // A landing without a zone is the whole region's offer: block that (its key).
            return [BlockedOffer(offer: landing.key, spot: capacity, reason: reason, until: until)]
        case .region:
            return [BlockedOffer(offer: regionWide, spot: capacity, reason: reason, until: until)]
        case .cloud:
            var seen: Set<OfferKey> = [regionWide]
            return [BlockedOffer(offer: regionWide, spot: capacity, reason: reason, until: until)]
                + rank(request).landings.filter { $0.cloud == landing.cloud }.compactMap { other in
                    let key = OfferKey(cloud: other.cloud, instanceType: other.instanceType, region: other.region)
                    return seen.insert(key).inserted ? BlockedOffer(offer: key, spot: capacity, reason: reason, until: until) : nil
                }
        }
    }

    /// At most two landings after `chosen`, each a different offer from it and each other.
    public static func runnersUp(after chosen: Landing, in landings: [Landing]) -> [Landing] {
        var seen: Set<String> = ["\(chosen.cloud) \(chosen.instanceType) \(chosen.region)"]
        var result: [Landing] = []
        for landing in landings where result.count < 2 {
            if seen.insert("\(landing.cloud) \(landing.instanceType) \(landing.region)").inserted { result.append(landing) }
        }
        return result
    }

    /// `2026-11-29 10:30 UTC`.
    public static func time(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return formatter.string(from: date)
    }
}

/// What placement decided for one cluster and why, as a plan shows it.
public struct PlacementReport: Sendable, Hashable, Codable {
    public var cluster: String
    /// `16 × H100 on-demand, at most $200.00/h`.
    public var request: String
    public var decision: PlacementDecision
    /// Whether the decision was kept from state (else it was made now).
    public var kept: Bool
    /// How many landings fit.
    public var feasible: Int
    /// Offers of the GPU left out, with why.
    public var excluded: [Exclusion]
    /// Landings raced against the decision (`apply --race`), as copies `<cluster>-race2`, ...
    public var racers: [Landing] = []
    /// Every feasible landing, cheapest first (not shown; what a race picks from).
    public var ranked: [Landing] = []
    /// Whether the cluster's nodes are in state already (a race never starts for it then).
    public var landed = false

    enum CodingKeys: String, CodingKey { case cluster, request, decision, kept, feasible, excluded, racers }

    public init(cluster: String, request: String, decision: PlacementDecision, kept: Bool, feasible: Int, excluded: [Exclusion]) {
        self.cluster = cluster
        self.request = request
        self.decision = decision
        self.kept = kept
        self.feasible = feasible
        self.excluded = excluded
    }
}

/// A cluster that fits nowhere: the request and why each offer of its GPU was left out.
public struct NoPlacement: Error, CustomStringConvertible, Sendable {
    public var cluster: String
    public var request: String
    public var excluded: [Exclusion]

    public init(cluster: String, request: String, excluded: [Exclusion]) {
        self.cluster = cluster
        self.request = request
        self.excluded = excluded
    }

    public var description: String {
        var text = "GPU cluster '\(cluster)' (\(request)) fits no offer of its clouds"
        if excluded.isEmpty {
            text += ": the catalogs list no such GPU there (see `stratum catalog`)"
        } else {
            text += ":\n" + excluded.prefix(20).map { "  \($0.offer): \($0.reason)" }.joined(separator: "\n")
            if excluded.count > 20 { text += "\n  ... and \(excluded.count - 20) more" }
        }
        return text
    }
}
