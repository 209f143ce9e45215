import ArgumentParser
import Foundation
import StratumCore

struct CatalogUpdateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Refresh the catalogs' prices from the clouds' public pricing endpoints.",
        discussion: """
            For each cloud, reads today's on-demand and spot prices of the machine types in its \
            catalog and writes the catalog, with those prices, to <state dir>/catalog/<cloud>.csv; \
            every later command prices with that file instead of the shipped one (delete it to go \
            back). Rows keep their shape; a refreshed row names the endpoint it came from and \
            today's date, and a machine the endpoint does not price keeps its old price and date.

            Where prices come from:
              aws    the Price List bulk API (pricing.us-east-1.amazonaws.com, no account needed; \
            a region's offer file is large, so this takes a while); spot from EC2 \
            DescribeSpotPriceHistory when AWS credentials are found, else spot stays as it was
              gcp    the Cloud Billing Catalog API (Compute Engine SKUs), with an API key in \
            STRATUM_GCP_API_KEY or Google credentials; a machine's price is built from its GPU, \
            vCPU and memory SKUs (A2 Ultra and A3, which bundle local SSD, are left as they were)
              azure  the Retail Prices API (prices.azure.com, no account needed)

            A cloud whose endpoint cannot be reached keeps the prices it has; the command says how \
            old they are and exits 1 after trying every cloud.

            Examples:
              stratum catalog update                     # every cloud this binary carries
              stratum catalog update --cloud azure,gcp
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Only these clouds, comma-separated (aws,gcp,azure).", valueName: "LIST"))
    var cloud: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for each answer of a pricing endpoint before taking it as unreachable.", valueName: "SECONDS"))
    var timeout: Double = 60

    func validate() throws {
        if !(timeout > 0) { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func run() async throws {
        let console = Console(color: global.color)
        try await reportingErrors(console) {
            let now = Date()
            let directory = CatalogFiles.directory(global)
            let carried = CLIEnvironment.current.providers.compactMap(\.catalog)
            let wanted = CatalogFiles.names(cloud)
            let unknown = wanted.filter { name in !carried.contains { $0.cloud == name } }
            if !unknown.isEmpty {
                throw CLIError("no offer catalog for \(unknown.joined(separator: ", ")); this binary carries catalogs for \(carried.map(\.cloud).sorted().joined(separator: ", "))")
            }
            var failed: [String] = []
            for shipped in carried where wanted.isEmpty || wanted.contains(shipped.cloud) {
                let current = try CatalogFiles.load(shipped, directory: directory)
                let origin = current.origins[shipped.cloud] ?? shipped.cloud
                let count = current.offers.filter { $0.cloud == shipped.cloud }.count
                console.progress("\(shipped.cloud): updating the prices of \(count) offers from \(origin)")
                let options = CatalogUpdateOptions(
                    environment: ProcessInfo.processInfo.environment, date: now, timeout: .milliseconds(Int(timeout * 1000))) { console.progress($0) }
                do {
                    guard let update = try await shipped.update(current, options: options) else {
                        console.output("\(shipped.cloud): no pricing endpoint; \(Self.age(current, cloud: shipped.cloud, now: now))")
                        continue
                    }
                    try report(update, cloud: shipped.cloud, directory: directory, now: now, console: console)
                } catch {
                    failed.append(shipped.cloud)
                    console.error("\(shipped.cloud): \(describe(error))")
                    console.error("\(shipped.cloud): kept \(origin); \(Self.age(current, cloud: shipped.cloud, now: now))")
                }
            }
            if !failed.isEmpty {
                console.error("Prices of \(failed.joined(separator: ", ")) were not updated; run `stratum catalog update` again when their endpoints can be reached.")
                throw ExitCode.failure
            }
        }
    }

    /// Writes the updated catalog (when the source priced anything) and prints what changed.
    func report(_ update: CatalogUpdate, cloud: String, directory: URL, now: Date, console: Console) throws {
        let priced = update.refreshed.count + update.unchanged.count
        var lines = ["\(cloud): \(update.refreshed.count) refreshed, \(update.unchanged.count) unchanged, \(update.notFound.count) not at the source"]
        if priced > 0 {
            let file = CatalogFiles.file(cloud: cloud, in: directory)
            try CatalogFiles.write(update, cloud: cloud, to: file, date: OfferCatalog.day(now))
            var written = update.catalog
            written.origins[cloud] = file.path
            lines.append("  wrote \(file.path); \(Self.age(written, cloud: cloud, now: now))")
        } else {
            lines.append("  nothing priced, so nothing written")
        }
        let missing = update.notFound.sorted { $0.key < $1.key }
        for (key, reason) in missing.prefix(10) { lines.append("  not at the source: \(key.instanceType) \(key.region): \(reason)") }
        if missing.count > 10 { lines.append("  … and \(missing.count - 10) more not at the source") }
        for note in update.notes { lines.append("  note: \(note)") }
        console.output(lines.joined(separator: "\n"))
    }

    /// `prices as of 2026-11-01 to 2026-11-29 (newest 3 days old)`.
    static func age(_ catalog: OfferCatalog, cloud: String, now: Date) -> String {
        guard let dates = catalog.priceDates(cloud: cloud) else { return "it has no prices" }
        let span = dates.oldest == dates.newest ? "as of \(dates.oldest)" : "as of \(dates.oldest) (oldest) to \(dates.newest)"
        let days = OfferCatalog.age(of: dates.newest, now: now).map { " (newest \($0) day\($0 == 1 ? "" : "s") old)" } ?? ""
        return "prices \(span)\(days)"
    }
}

extension CatalogFiles {
    /// Writes `update`'s catalog to `file` at once (a reader sees the old file or the new one),
    /// with a header naming the endpoints and the date.
    static func write(_ update: CatalogUpdate, cloud: String, to file: URL, date: String) throws {
        var comment = [
            "Stratum offer catalog for \(cloud), written by `stratum catalog update` on \(date).",
            "Prices read from: \(update.sources.joined(separator: " "))",
            "Refreshed rows name their endpoint and \(date); the other rows keep the source and date they had.",
        ]
        comment += update.notes.map { "Note: \($0)" }
        let text = update.catalog.csv(comment: comment)
        do {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: file, options: .atomic)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file.path)
        } catch {
            throw CLIError("cannot write the updated catalog \(file.path): \(error.localizedDescription)")
        }
    }
}
