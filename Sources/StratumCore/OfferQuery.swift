import Foundation

/// What a GPU cluster asks of the catalog: a GPU model and a total count, where, on which
/// capacity, at what price and over which interconnect.
public struct OfferQuery: Sendable, Hashable {
    /// GPU model (`H100`); compared without case or punctuation.
    public var gpu: String
    /// GPUs in the whole cluster; an offer fits when its GPUs per machine divide this.
    public var count: Int
    /// Clouds to consider; empty: every cloud of the catalog.
    public var clouds: [String]
    /// Regions to consider; empty: every region.
    public var regions: [String]
    public var spot: Bool
    /// The most the whole cluster may cost an hour.
    public var maxHourlyPrice: Double?
    public var interconnect: InterconnectRequirement

    public init(
        gpu: String, count: Int, clouds: [String] = [], regions: [String] = [], spot: Bool = false, maxHourlyPrice: Double? = nil,
        interconnect: InterconnectRequirement = .any
    ) {
        self.gpu = gpu
        self.count = count
        self.clouds = clouds
        self.regions = regions
        self.spot = spot
        self.maxHourlyPrice = maxHourlyPrice
        self.interconnect = interconnect
    }
}

/// An offer that fits a query: how many machines it takes, and what they cost together.
public struct Candidate: Sendable, Hashable, Codable {
    public var offer: Offer
    public var machines: Int
    public var spot: Bool
    /// USD an hour for all `machines`.
    public var hourly: Double

    public init(offer: Offer, machines: Int, spot: Bool, hourly: Double) {
        self.offer = offer
        self.machines = machines
        self.spot = spot
        self.hourly = hourly
    }
}

/// An offer of the right GPU that a query left out, and why.
public struct Exclusion: Sendable, Hashable, Codable {
    public var offer: OfferKey
    public var reason: String

    public init(offer: OfferKey, reason: String) {
        self.offer = offer
        self.reason = reason
    }
}

/// The offers that fit, cheapest first, and the ones of the right GPU that do not, with reasons.
public struct OfferRanking: Sendable, Hashable, Codable {
    public var candidates: [Candidate]
    public var excluded: [Exclusion]

    public init(candidates: [Candidate], excluded: [Exclusion]) {
        self.candidates = candidates
        self.excluded = excluded
    }
}

extension OfferCatalog {
    /// Ranks the offers for `query`: feasible ones by total hourly price (then cloud, region and
    /// type, so equal prices rank the same every time), and every offer of the GPU model that
    /// does not fit with the reason. `blocked` names offers to skip (remembered stockouts) with
    /// the reason to show.
    public func rank(_ query: OfferQuery, blocked: [OfferKey: String] = [:]) -> OfferRanking {
        let wanted = normalisedGPU(query.gpu)
        var candidates: [Candidate] = []
        var excluded: [Exclusion] = []
        for offer in offers where offer.gpu.map(normalisedGPU) == wanted {
            func exclude(_ reason: String) { excluded.append(Exclusion(offer: offer.key, reason: reason)) }
            if !query.clouds.isEmpty, !query.clouds.contains(offer.cloud) { exclude("cloud \(offer.cloud) not among \(query.clouds.joined(separator: ", "))"); continue }
            if !query.regions.isEmpty, !query.regions.contains(offer.region) { exclude("region not among \(query.regions.joined(separator: ", "))"); continue }
            guard offer.gpuCount > 0, query.count % offer.gpuCount == 0 else {
                exclude("\(offer.gpuCount) GPUs per machine do not divide \(query.count)")
                continue
            }
            guard query.interconnect.admits(offer) else {
                exclude("interconnect \(offer.gpuLink?.rawValue ?? "unknown") + \(offer.fabric.rawValue) does not meet \(query.interconnect.rawValue)")
                continue
            }
            if let reason = blocked[offer.key] { exclude(reason); continue }
            guard let unit = offer.hourly(spot: query.spot) else {
                exclude(query.spot ? "no spot price in the catalog" : "no on-demand price in the catalog")
                continue
            }
            let machines = query.count / offer.gpuCount
            let hourly = unit * Double(machines)
            if let cap = query.maxHourlyPrice, hourly > cap {
                exclude("\(Money.hourly(hourly)) is over the cap of \(Money.hourly(cap))")
                continue
            }
            candidates.append(Candidate(offer: offer, machines: machines, spot: query.spot, hourly: hourly))
        }
        candidates.sort { ($0.hourly, $0.offer.key) < ($1.hourly, $1.offer.key) }
        excluded.sort { $0.offer < $1.offer }
        return OfferRanking(candidates: candidates, excluded: excluded)
    }
}

/// Money as Stratum prints it.
public enum Money {
    /// `$55.04/h`; amounts under a cent keep four decimals.
    public static func hourly(_ amount: Double) -> String { "\(dollars(amount))/h" }

    public static func dollars(_ amount: Double) -> String {
        let sign = amount < 0 ? "-" : ""
        let magnitude = abs(amount)
        let digits = magnitude > 0 && magnitude < 0.01 ? 4 : 2
        return "\(sign)$\(String(format: "%.\(digits)f", magnitude))"
    }

    /// `+$12.00/h`, `-$3.50/h`, `$0.00/h`.
    public static func delta(_ amount: Double) -> String {
        abs(amount) < 0.000_05 ? "$0.00/h" : (amount > 0 ? "+" : "") + hourly(amount)
    }
}
