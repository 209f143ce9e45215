import Foundation

/// How a machine's GPUs talk to each other inside it.
public enum GPULink: String, Sendable, Codable, CaseIterable, Comparable {
    case pcie, nvlink, nvswitch

    var rank: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: GPULink, b: GPULink) -> Bool { a.rank < b.rank }
}

/// The network between machines: plain Ethernet, or an RDMA fabric a gang's collectives use.
public enum Fabric: String, Sendable, Codable, CaseIterable {
    case ethernet, efa, infiniband, roce
    case gpudirectTCPX = "gpudirect-tcpx"

    /// Whether GPUs reach other machines' memory without the host CPU in the path.
    public var isRDMA: Bool { self != .ethernet }
}

/// What a cluster asks of the interconnect: nothing, NVLink or NVSwitch inside each machine,
/// an RDMA fabric between machines, or both.
public enum InterconnectRequirement: String, Sendable, Codable, CaseIterable {
    /// Any offer.
    case any
    /// NVLink or NVSwitch between a machine's GPUs.
    case nvlink
    /// An RDMA fabric between machines (EFA, InfiniBand, RoCE, GPUDirect-TCPX).
    case rdma
    /// Both: NVLink/NVSwitch inside, RDMA between.
    case nvlinkAndRDMA = "nvlink+rdma"

    public func admits(_ offer: Offer) -> Bool {
        let linked = (offer.gpuLink ?? .pcie) >= .nvlink
        let rdma = offer.fabric.isRDMA
        switch self {
        case .any: return true
        case .nvlink: return linked
        case .rdma: return rdma
        case .nvlinkAndRDMA: return linked && rdma
        }
    }
}

/// One machine type of one cloud in one region, with its hourly prices: a row of a provider's
/// offer catalog (`Providers/<Cloud>/Catalog/offers.csv`).
public struct Offer: Sendable, Hashable, Codable {
    /// The provider's name (`aws`, `gcp`, `azure`).
    public var cloud: String
    /// The cloud's own name for the machine type (`p5.48xlarge`).
    public var instanceType: String
    /// GPU model in Stratum's spelling (`H100`, `A100-80GB`); nil for CPU-only types.
    public var gpu: String?
    public var gpuCount: Int
    /// Memory of each GPU, GiB.
    public var gpuMemoryGiB: Double?
    public var vcpus: Int
    public var memoryGiB: Double
    public var gpuLink: GPULink?
    public var fabric: Fabric
    /// The machine's network bandwidth, Gbit/s.
    public var fabricGbps: Double?
    public var region: String
    /// Zones of the region that offer the type, as placements name them; empty when unknown.
    public var zones: [String]
    /// USD an hour, on-demand, whole machine; nil when no price is known.
    public var onDemandHourly: Double?
    /// USD an hour on spot (preemptible) capacity; nil when unknown or no spot market.
    public var spotHourly: Double?
    /// Where the row's figures were read.
    public var source: String
    /// The date the source gives for its prices (YYYY-MM-DD).
    public var asOf: String

    public init(
        cloud: String, instanceType: String, gpu: String? = nil, gpuCount: Int = 0, gpuMemoryGiB: Double? = nil, vcpus: Int, memoryGiB: Double,
        gpuLink: GPULink? = nil, fabric: Fabric = .ethernet, fabricGbps: Double? = nil, region: String, zones: [String] = [],
        onDemandHourly: Double?, spotHourly: Double? = nil, source: String, asOf: String
    ) {
        self.cloud = cloud
        self.instanceType = instanceType
        self.gpu = gpu
        self.gpuCount = gpuCount
        self.gpuMemoryGiB = gpuMemoryGiB
        self.vcpus = vcpus
        self.memoryGiB = memoryGiB
        self.gpuLink = gpuLink
        self.fabric = fabric
        self.fabricGbps = fabricGbps
        self.region = region
        self.zones = zones
        self.onDemandHourly = onDemandHourly
        self.spotHourly = spotHourly
        self.source = source
        self.asOf = asOf
    }

    /// The hourly price on spot or on-demand capacity; nil when the catalog has none.
    public func hourly(spot: Bool) -> Double? { spot ? spotHourly : onDemandHourly }

    /// `aws p5.48xlarge us-east-1`: what names the offer in messages and in state.
    public var key: OfferKey { OfferKey(cloud: cloud, instanceType: instanceType, region: region) }
}

/// An offer's identity: cloud, machine type and region (and, for a zonal decision, the zone).
public struct OfferKey: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    public var cloud: String
    public var instanceType: String
    public var region: String
    public var zone: String?

    public init(cloud: String, instanceType: String, region: String, zone: String? = nil) {
        self.cloud = cloud
        self.instanceType = instanceType
        self.region = region
        self.zone = zone
    }

    public var description: String { "\(cloud) \(instanceType) \(zone ?? region)" }

    public static func < (a: OfferKey, b: OfferKey) -> Bool { a.description < b.description }
}

/// A catalog file that cannot be read: which file, which line and why.
public struct CatalogError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}

/// The offers of one or more clouds: parsed from the providers' catalog files, merged, and
/// queried for what a GPU cluster can land on.
public struct OfferCatalog: Sendable, Hashable {
    public private(set) var offers: [Offer]
    /// Where each cloud's offers came from (the shipped file, or the file `stratum catalog
    /// update` wrote), by cloud.
    public var origins: [String: String]

    public init(offers: [Offer] = [], origins: [String: String] = [:]) {
        self.offers = offers
        self.origins = origins
    }

    public static let empty = OfferCatalog()

    /// The columns of a catalog file, in order.
    public static let columns = [
        "instance_type", "gpu", "gpu_count", "gpu_memory_gib", "vcpus", "memory_gib", "gpu_link", "fabric", "fabric_gbps", "region", "zones",
        "on_demand_hourly", "spot_hourly", "source", "as_of",
    ]

    /// Parses a catalog file of `cloud`. Comment lines start with `#`; the first other line is
    /// the header. Every problem is reported with its line, all at once.
    public init(csv text: String, cloud: String, file: String) throws {
        var offers: [Offer] = []
        var problems: [String] = []
        var header: [String]?
        var seen: [OfferKey: Int] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard header != nil else {
                guard fields == Self.columns else {
                    throw CatalogError(file: file, line: number + 1, message: "the header must be: \(Self.columns.joined(separator: ","))")
                }
                header = fields
                continue
            }
            do {
                let offer = try Self.offer(fields, cloud: cloud)
                if let first = seen[offer.key] {
                    problems.append("line \(number + 1): \(offer.instanceType) in \(offer.region) is listed twice (first on line \(first))")
                } else {
                    seen[offer.key] = number + 1
                    offers.append(offer)
                }
            } catch let error as CatalogError {
                problems.append("line \(number + 1): \(error.message)")
            }
        }
        guard header != nil else { throw CatalogError(file: file, message: "no header line; a catalog starts with: \(Self.columns.joined(separator: ","))") }
        if !problems.isEmpty { throw CatalogError(file: file, message: problems.joined(separator: "; ")) }
        self.offers = offers
        self.origins = [cloud: file]
    }

    static func offer(_ fields: [String], cloud: String) throws -> Offer {
        guard fields.count == columns.count else {
            throw CatalogError(file: "", message: "expected \(columns.count) fields, found \(fields.count) (fields may not contain commas)")
        }
        let value = Dictionary(uniqueKeysWithValues: zip(columns, fields))
        func text(_ key: String) throws -> String {
            guard let field = value[key], !field.isEmpty else { throw CatalogError(file: "", message: "\(key) is empty") }
            return field
        }
        func number(_ key: String) throws -> Double? {
            guard let field = value[key], !field.isEmpty else { return nil }
            guard let parsed = Double(field), parsed.isFinite, parsed >= 0 else { throw CatalogError(file: "", message: "\(key) '\(field)' is not a non-negative number") }
            return parsed
        }
        func integer(_ key: String) throws -> Int {
            let field = try text(key)
            guard let parsed = Int(field), parsed >= 0 else { throw CatalogError(file: "", message: "\(key) '\(field)' is not a whole number") }
            return parsed
        }
        let gpu = value["gpu"].flatMap { $0.isEmpty ? nil : $0 }
        let gpuCount = try integer("gpu_count")
        if (gpu == nil) != (gpuCount == 0) {
            throw CatalogError(file: "", message: gpu == nil ? "gpu_count is \(gpuCount) but gpu is empty" : "gpu is \(gpu!) but gpu_count is 0")
        }
        let link: GPULink?
        if let field = value["gpu_link"], !field.isEmpty {
            guard let parsed = GPULink(rawValue: field) else {
                throw CatalogError(file: "", message: "gpu_link '\(field)' is not one of \(GPULink.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            link = parsed
        } else {
            link = nil
        }
        let fabricField = try text("fabric")
        guard let fabric = Fabric(rawValue: fabricField) else {
            throw CatalogError(file: "", message: "fabric '\(fabricField)' is not one of \(Fabric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let asOf = try text("as_of")
        guard Self.date(asOf) != nil else { throw CatalogError(file: "", message: "as_of '\(asOf)' is not a date (YYYY-MM-DD)") }
        let source = try text("source")
        guard source.hasPrefix("https://") || source.hasPrefix("http://") else {
            throw CatalogError(file: "", message: "source '\(source)' is not a URL")
        }
        guard let memory = try number("memory_gib") else { throw CatalogError(file: "", message: "memory_gib is empty") }
        return Offer(
            cloud: cloud, instanceType: try text("instance_type"), gpu: gpu, gpuCount: gpuCount, gpuMemoryGiB: try number("gpu_memory_gib"),
            vcpus: try integer("vcpus"), memoryGiB: memory, gpuLink: link, fabric: fabric, fabricGbps: try number("fabric_gbps"),
            region: try text("region"), zones: (value["zones"] ?? "").split(separator: " ").map(String.init),
            onDemandHourly: try number("on_demand_hourly"), spotHourly: try number("spot_hourly"), source: source, asOf: asOf)
    }

    /// The catalog as a file in the shipped format, with `comment` lines on top.
    public func csv(comment: [String] = []) -> String {
        func show(_ number: Double?) -> String {
            guard let number else { return "" }
            return number == number.rounded() && abs(number) < 1e15 ? String(Int(number)) : String(number)
        }
        var out = comment.map { "# \($0)\n" }.joined()
        out += Self.columns.joined(separator: ",") + "\n"
        for offer in offers {
            let fields = [
                offer.instanceType, offer.gpu ?? "", String(offer.gpuCount), show(offer.gpuMemoryGiB), String(offer.vcpus), show(offer.memoryGiB),
                offer.gpuLink?.rawValue ?? "", offer.fabric.rawValue, show(offer.fabricGbps), offer.region, offer.zones.joined(separator: " "),
                show(offer.onDemandHourly), show(offer.spotHourly), offer.source, offer.asOf,
            ]
            out += fields.joined(separator: ",") + "\n"
        }
        return out
    }

    /// `a` followed by those offers of `b` whose clouds `a` does not have: each cloud's offers
    /// come whole from one file.
    public func merging(_ other: OfferCatalog) -> OfferCatalog {
        let clouds = Set(offers.map(\.cloud)).union(origins.keys)
        var merged = self
        merged.offers += other.offers.filter { !clouds.contains($0.cloud) }
        for (cloud, origin) in other.origins where !clouds.contains(cloud) { merged.origins[cloud] = origin }
        return merged
    }

    /// This catalog with `cloud`'s offers replaced by `replacement`'s.
    public func replacing(cloud: String, with replacement: OfferCatalog) -> OfferCatalog {
        var result = OfferCatalog(offers: offers.filter { $0.cloud != cloud } + replacement.offers.filter { $0.cloud == cloud }, origins: origins)
        result.origins[cloud] = replacement.origins[cloud]
        return result
    }

    /// The clouds that have offers, sorted.
    public var clouds: [String] { Set(offers.map(\.cloud)).sorted() }

    /// The offer for a machine type in a region, if the catalog lists it.
    public func offer(cloud: String, instanceType: String, region: String) -> Offer? {
        offers.first { $0.cloud == cloud && $0.instanceType.caseInsensitiveCompare(instanceType) == .orderedSame && $0.region == region }
    }

    /// The oldest and newest `as_of` of `cloud`'s priced offers.
    public func priceDates(cloud: String) -> (oldest: String, newest: String)? {
        let dates = offers.filter { $0.cloud == cloud && ($0.onDemandHourly != nil || $0.spotHourly != nil) }.map(\.asOf).sorted()
        guard let first = dates.first, let last = dates.last else { return nil }
        return (first, last)
    }

    static func date(_ text: String) -> Date? {
        guard text.count == 10, let date = dayFormatter().date(from: text) else { return nil }
        return date
    }

    /// A day as a catalog writes it (`YYYY-MM-DD`, UTC).
    public static func day(_ date: Date) -> String { dayFormatter().string(from: date) }

    static func dayFormatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter
    }

    /// Whole days from `asOf` to `now`.
    public static func age(of asOf: String, now: Date) -> Int? {
        guard let date = date(asOf) else { return nil }
        return Int(now.timeIntervalSince(date) / 86_400)
    }
}

/// `H100`, `h100`, `A100 80GB`, `a100-80gb` → `H100`, `A10080GB`: GPU models compared
/// without case or punctuation.
public func normalisedGPU(_ model: String) -> String {
    String(model.uppercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber) })
}
