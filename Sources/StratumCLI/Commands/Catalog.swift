import ArgumentParser
import Foundation
import StratumCore
import StratumEngine

struct Catalog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the GPU offers of the clouds this binary carries, cheapest first.",
        discussion: """
            Each cloud ships an offer catalog: machine types with their GPUs, vCPUs, memory, \
            interconnect, regions and zones, and on-demand and spot prices, each row with its \
            source and date. `stratum catalog update` reads fresh prices from the clouds' public \
            pricing endpoints and writes them beside the state file; later commands use those.

            Examples:
              stratum catalog --gpu H100 --count 16            # 16 H100s on any cloud, by total price
              stratum catalog --gpu H100 --count 16 --spot --cloud aws,gcp
              stratum catalog --gpu A100-80GB --region us-east-1,eastus --json
              stratum catalog --all                            # every offer, CPU types too
              stratum catalog update --cloud azure             # fresh Azure prices
              stratum catalog --blocked                        # offers skipped after a stockout (GPU clusters)
            """,
        subcommands: [CatalogList.self, CatalogUpdateCommand.self],
        defaultSubcommand: CatalogList.self
    )
}

struct CatalogList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List offers (the default): with --gpu and --count, the feasible ones by total hourly price.")

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("GPU model: H100, H200, A100, A100-80GB, L4, A10G, T4, ...", valueName: "MODEL"))
    var gpu: String?

    @Option(name: .long, help: ArgumentHelp("GPUs in the whole cluster; an offer fits when its GPUs per machine divide this.", valueName: "N"))
    var count: Int?

    @Option(name: .long, help: ArgumentHelp("Only these clouds, comma-separated (aws,gcp,azure).", valueName: "LIST"))
    var cloud: String?

    @Option(name: .long, help: ArgumentHelp("Only these regions, comma-separated.", valueName: "LIST"))
    var region: String?

    @Flag(name: .long, help: "Price spot (preemptible) capacity instead of on-demand.")
    var spot = false

    @Option(name: .long, help: ArgumentHelp("any, nvlink (NVLink/NVSwitch inside a machine), rdma (EFA/InfiniBand/RoCE between machines) or nvlink+rdma.", valueName: "CLASS"))
    var interconnect: String = "any"

    @Option(name: .long, help: ArgumentHelp("Leave out offers whose total exceeds this many US dollars an hour.", valueName: "USD"))
    var maxPrice: Double?

    @Flag(name: .long, help: "List CPU-only machine types too.")
    var all = false

    @Flag(name: .long, help: "With --count: also list the offers of the GPU that do not fit, and why.")
    var excluded = false

    @Flag(name: .long, help: "List the offers that recently failed for lack of capacity or quota, which placement skips until the time shown.")
    var blocked = false

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1 (got \(count))") }
        if count != nil, gpu == nil { throw ValidationError("--count needs --gpu: the number of GPUs of which model?") }
        if InterconnectRequirement(rawValue: interconnect) == nil {
            throw ValidationError("--interconnect must be one of \(InterconnectRequirement.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(interconnect)')")
        }
        if let maxPrice, !(maxPrice > 0) { throw ValidationError("--max-price must be a positive number of dollars an hour") }
    }

    func run() async throws {
        let console = Console(color: global.color)
        try await reportingErrors(console) {
            if blocked {
                try await listBlocked(console)
                return
            }
            let catalog = try CatalogFiles.load(directory: CatalogFiles.directory(global))
            let clouds = CatalogFiles.names(cloud)
            let regions = CatalogFiles.names(region)
            let requirement = InterconnectRequirement(rawValue: interconnect) ?? .any
            let unknownClouds = clouds.filter { !catalog.origins.keys.contains($0) }
            if !unknownClouds.isEmpty {
                throw CLIError("no offer catalog for \(unknownClouds.joined(separator: ", ")); this binary carries catalogs for \(catalog.origins.keys.sorted().joined(separator: ", "))")
            }
            if let gpu, let count {
                let query = OfferQuery(
                    gpu: gpu, count: count, clouds: clouds, regions: regions, spot: spot, maxHourlyPrice: maxPrice, interconnect: requirement)
                let ranking = catalog.rank(query)
                if global.json {
                    try printJSON(RankingJSON(query: QueryJSON(query), ranking: ranking, prices: CatalogFiles.provenance(catalog)))
                    return
                }
                show(ranking, query: query, catalog: catalog, console: console)
            } else {
                let model = gpu.map(normalisedGPU)
                let offers = catalog.offers.filter { offer in
                    (all || offer.gpu != nil)
                        && (model == nil || model == offer.gpu.map(normalisedGPU))
                        && (clouds.isEmpty || clouds.contains(offer.cloud))
                        && (regions.isEmpty || regions.contains(offer.region))
                        && requirement.admits(offer)
                        && (maxPrice.map { cap in offer.hourly(spot: spot).map { $0 <= cap } ?? false } ?? true)
                }.sorted { ($0.hourly(spot: spot) ?? .infinity, $0.key) < ($1.hourly(spot: spot) ?? .infinity, $1.key) }
                if global.json {
                    try printJSON(OffersJSON(offers: offers, prices: CatalogFiles.provenance(catalog)))
                    return
                }
                if offers.isEmpty {
                    console.output(gpu.map { "No \($0) offers in the catalog\(clouds.isEmpty ? "" : " of \(clouds.joined(separator: ", "))")." } ?? "No offers match.")
                } else {
                    console.output(Self.offerTable(offers, spot: spot))
                }
                console.output(Self.provenanceLines(catalog, now: Date()))
            }
        }
    }

    /// The remembered stockouts in the state store, soonest to expire first.
    func listBlocked(_ console: Console) async throws {
        let context = RunContext(global)
        var offers: [BlockedOffer] = []
        if global.backendURL != nil || FileManager.default.fileExists(atPath: global.statePath) {
            offers = try await Stockouts(store: try await context.openStore(readOnly: true)).active(at: Date()).sorted { ($0.until, $0.offer) < ($1.until, $1.offer) }
        }
        if global.json {
            struct Entry: Encodable { var offer: String; var cloud: String; var instanceType: String; var region: String; var zone: String?; var reason: String; var until: Date }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.dateEncodingStrategy = .iso8601
            let entries = offers.map { Entry(offer: $0.offer.description, cloud: $0.offer.cloud, instanceType: $0.offer.instanceType, region: $0.offer.region, zone: $0.offer.zone, reason: $0.reason, until: $0.until) }
            console.output(String(decoding: try encoder.encode(entries), as: UTF8.self))
            return
        }
        guard !offers.isEmpty else {
            console.output("No offers are blocked: no capacity or quota failure in the last \(Int(Stockouts.defaultLifetime.components.seconds / 60)) minutes (or the time given with --stockout-minutes).")
            return
        }
        var rows = [["OFFER", "WHERE", "SKIPPED UNTIL", "WHY"]]
        for offer in offers {
            rows.append([
                "\(offer.offer.cloud) \(offer.offer.instanceType)", offer.offer.zone ?? "\(offer.offer.region) (all zones)", ClusterPlacer.time(offer.until),
                offer.reason,
            ])
        }
        console.output(textTable(rows))
    }

    func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        Console(color: false).output(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    func show(_ ranking: OfferRanking, query: OfferQuery, catalog: OfferCatalog, console: Console) {
        let capacity = query.spot ? "spot" : "on-demand"
        if ranking.candidates.isEmpty {
            console.output("No offer fits \(query.count) × \(query.gpu) on \(capacity) capacity\(query.clouds.isEmpty ? "" : " on \(query.clouds.joined(separator: ", "))").")
        } else {
            console.output("\(ranking.candidates.count) offer(s) fit \(query.count) × \(query.gpu) on \(capacity) capacity, cheapest first:\n")
            var rows = [["#", "CLOUD", "REGION", "TYPE", "MACHINES", "PER MACHINE", "TOTAL", "LINK", "FABRIC", "ZONES", "AS OF"]]
            for (rank, candidate) in ranking.candidates.enumerated() {
                let offer = candidate.offer
                rows.append([
                    String(rank + 1), offer.cloud, offer.region, offer.instanceType, "\(candidate.machines) × \(offer.gpuCount) GPU",
                    offer.hourly(spot: query.spot).map(Money.hourly) ?? "-", Money.hourly(candidate.hourly), offer.gpuLink?.rawValue ?? "-",
                    offer.fabric.rawValue + (offer.fabricGbps.map { " \(Self.number($0))G" } ?? ""), offer.zones.isEmpty ? "-" : offer.zones.joined(separator: " "),
                    offer.asOf,
                ])
            }
            console.output(textTable(rows))
        }
        if !ranking.excluded.isEmpty {
            if excluded {
                console.output("\nLeft out (\(ranking.excluded.count)):")
                for exclusion in ranking.excluded { console.output("  \(exclusion.offer): \(exclusion.reason)") }
            } else {
                console.output("\n\(ranking.excluded.count) other \(query.gpu) offer(s) left out; --excluded lists them with the reason.")
            }
        }
        console.output(Self.provenanceLines(catalog, now: Date()))
    }

    static func offerTable(_ offers: [Offer], spot: Bool) -> String {
        var rows = [["CLOUD", "TYPE", "GPU", "GPU MEM", "VCPU", "RAM GIB", "LINK", "FABRIC", "REGION", "ON-DEMAND", "SPOT", "AS OF"]]
        for offer in offers {
            rows.append([
                offer.cloud, offer.instanceType, offer.gpu.map { "\(offer.gpuCount) × \($0)" } ?? "-", offer.gpuMemoryGiB.map { "\(number($0)) GiB" } ?? "-",
                String(offer.vcpus), number(offer.memoryGiB), offer.gpuLink?.rawValue ?? "-", offer.fabric.rawValue, offer.region,
                offer.onDemandHourly.map(Money.hourly) ?? "-", offer.spotHourly.map(Money.hourly) ?? "-", offer.asOf,
            ])
        }
        return textTable(rows)
    }

    /// Where each cloud's prices come from and how old they are.
    static func provenanceLines(_ catalog: OfferCatalog, now: Date) -> String {
        var lines = ["\nPrices (USD an hour, machines only):"]
        for entry in CatalogFiles.provenance(catalog, now: now) {
            let age = entry.newestAgeDays.map { " — newest \($0) day\($0 == 1 ? "" : "s") old" } ?? ""
            let span = entry.oldest.map { oldest in oldest == entry.newest ? "as of \(oldest)" : "as of \(oldest) to \(entry.newest ?? oldest)" } ?? "no prices"
            lines.append("  \(entry.cloud): \(entry.offers) offers, \(span)\(age), from \(entry.file)")
        }
        lines.append("`stratum catalog update` refreshes them from the clouds' public pricing endpoints.")
        return lines.joined(separator: "\n")
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value)
    }


    struct QueryJSON: Encodable {
        var gpu: String
        var count: Int
        var clouds: [String]
        var regions: [String]
        var spot: Bool
        var maxHourlyPrice: Double?
        var interconnect: String

        init(_ query: OfferQuery) {
            gpu = query.gpu
            count = query.count
            clouds = query.clouds
            regions = query.regions
            spot = query.spot
            maxHourlyPrice = query.maxHourlyPrice
            interconnect = query.interconnect.rawValue
        }
    }

    struct RankingJSON: Encodable {
        var query: QueryJSON
        var ranking: OfferRanking
        var prices: [CatalogFiles.Provenance]
    }

    struct OffersJSON: Encodable {
        var offers: [Offer]
        var prices: [CatalogFiles.Provenance]
    }
}

/// The offer catalogs a run prices with: each carried cloud's shipped catalog, or the file
/// `stratum catalog update` wrote for it beside the state file.
enum CatalogFiles {
    /// `catalog/` beside the state file.
    static func directory(_ options: GlobalOptions) -> URL { options.workDirectory.appendingPathComponent("catalog") }

    static func file(cloud: String, in directory: URL) -> URL { directory.appendingPathComponent("\(cloud).csv") }

    /// Every carried cloud's catalog, merged; an updated file replaces its cloud's shipped one.
    static func load(directory: URL, factories: [ProviderFactory] = CLIEnvironment.current.providers) throws -> OfferCatalog {
        var catalog = OfferCatalog.empty
        for shipped in factories.compactMap(\.catalog) {
            catalog = catalog.merging(try load(shipped, directory: directory))
        }
        return catalog
    }

    /// One cloud's catalog: the updated file if there is one, else the shipped catalog.
    static func load(_ shipped: ShippedCatalog, directory: URL) throws -> OfferCatalog {
        let updated = file(cloud: shipped.cloud, in: directory)
        guard FileManager.default.fileExists(atPath: updated.path) else { return try shipped.load() }
        guard let text = try? String(contentsOf: updated, encoding: .utf8) else { throw CLIError("cannot read the updated catalog \(updated.path)") }
        do {
            return try OfferCatalog(csv: text, cloud: shipped.cloud, file: updated.path)
        } catch {
            throw CLIError("the updated catalog is damaged: \(error). Delete it to use the shipped prices, or run `stratum catalog update --cloud \(shipped.cloud)` again")
        }
    }

    /// The names in a comma-separated option (`--cloud aws,gcp`).
    static func names(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Where a cloud's prices come from and how old they are.
    struct Provenance: Encodable {
        var cloud: String
        var file: String
        var offers: Int
        var oldest: String?
        var newest: String?
        var newestAgeDays: Int?
    }

    static func provenance(_ catalog: OfferCatalog, now: Date = Date()) -> [Provenance] {
        catalog.origins.keys.sorted().map { cloud in
            let dates = catalog.priceDates(cloud: cloud)
            return Provenance(
                cloud: cloud, file: catalog.origins[cloud] ?? "-", offers: catalog.offers.filter { $0.cloud == cloud }.count, oldest: dates?.oldest,
                newest: dates?.newest, newestAgeDays: dates.flatMap { OfferCatalog.age(of: $0.newest, now: now) })
        }
    }
}

