import Foundation
import StratumCloud
import StratumCore

/// AWS's public Price List bulk API (no authentication) for on-demand prices, and EC2's
/// DescribeSpotPriceHistory (signed, so only with credentials) for spot prices.
///
/// On-demand: `{endpoint}/offers/v1.0/aws/AmazonEC2/current/region_index.json` names each
/// region's current offer file (`regions.<code>.currentVersionUrl`); Stratum reads the CSV form
/// of that file (the same path ending in `.csv`), streamed, since a region's file runs to
/// gigabytes. A machine's price is the row with TermType `OnDemand`, Operating System `Linux`,
/// Tenancy `Shared`, Pre Installed S/W `NA`, CapacityStatus `Used`, in USD per `Hrs`; an
/// offer with two different such prices is ambiguous and left as it was.
///
/// Spot: the price in effect now in each availability zone of the region (Local Zones left
/// out), for `Linux/UNIX`; the lowest zone's price is the offer's.
public struct AWSPriceList: Sendable {
    public static let defaultEndpoint = URL(string: "https://pricing.us-east-1.amazonaws.com")!
    static let regionIndexPath = "/offers/v1.0/aws/AmazonEC2/current/region_index.json"

    public var endpoint: URL
    public var transport: any HTTPTransport
    /// Signs DescribeSpotPriceHistory; nil: spot prices are not read.
    public var ec2: AWSClient?
    /// How long to wait for the region index.
    public var timeout: Duration
    /// How long one region's offer file may take to arrive.
    public var fileTimeout: Duration

    public init(
        endpoint: URL = Self.defaultEndpoint, transport: any HTTPTransport, ec2: AWSClient?, timeout: Duration = .seconds(60),
        fileTimeout: Duration = .seconds(3600)
    ) {
        self.endpoint = endpoint
        self.transport = transport
        self.ec2 = ec2
        self.timeout = timeout
        self.fileTimeout = fileTimeout
    }

    /// The endpoint from `STRATUM_AWS_PRICE_LIST_ENDPOINT` when set (a loopback fake in tests);
    /// EC2 through the standard credential chain and `AWS_ENDPOINT_URL(_EC2)`, when the chain
    /// finds credentials.
    public static func fromEnvironment(_ environment: [String: String], transport: any HTTPTransport) async -> AWSPriceList {
        let override = environment["STRATUM_AWS_PRICE_LIST_ENDPOINT"].flatMap { $0.isEmpty ? nil : URL(string: $0) }
        let chain = AWSCredentialChain.standard(environment: environment, transport: transport)
        let ec2 = (try? await chain.credentials()) == nil
            ? nil : AWSClient(configuration: .fromEnvironment(environment), credentials: chain, transport: transport)
        return AWSPriceList(endpoint: override ?? defaultEndpoint, transport: transport, ec2: ec2)
    }

    /// The prices of `catalog`'s AWS offers.
    public func prices(for catalog: OfferCatalog, date: Date, progress: @Sendable (String) -> Void = { _ in }) async throws -> PriceSheet {
        let offers = catalog.offers.filter { $0.cloud == "aws" }
        let indexURL = endpoint.appendingPathComponent(String(Self.regionIndexPath.dropFirst()))
        var sheet = PriceSheet(sources: [indexURL.absoluteString])
        let index = try await PricingEndpoint.json(indexURL, transport: transport, timeout: timeout)
        if ec2 == nil {
            sheet.notes.append("spot prices kept as they were: DescribeSpotPriceHistory needs AWS credentials, and none were found")
        }
        for region in Set(offers.map(\.region)).sorted() {
            let types = Set(offers.filter { $0.region == region }.map(\.instanceType))
            let keys = types.map { OfferKey(cloud: "aws", instanceType: $0, region: region) }
            guard let path = index["regions"]?[region]?["currentVersionUrl"]?.string, let file = Self.csvURL(endpoint, path) else {
                for key in keys { sheet.reasons[key] = "region \(region) is not in the price list's region index" }
                continue
            }
            progress("aws: \(region): reading \(file.absoluteString)")
            let onDemand = try await onDemandPrices(file: file, types: types)
            var spot: [String: Double] = [:]
            if let ec2 { spot = try await spotPrices(ec2, region: region, types: types.sorted(), date: date) }
            progress("aws: \(region): \(onDemand.count) of \(types.count) types on demand, \(spot.count) on spot")
            sheet.sources.append(file.absoluteString)
            for key in keys {
                let prices = onDemand[key.instanceType] ?? []
                if prices.count > 1 {
                    sheet.reasons[key] = "the price list has more than one Linux on-demand price for it (\(prices.sorted().map { String($0) }.joined(separator: ", ")))"
                    continue
                }
                sheet.quotes[key] = PriceQuote(onDemand: prices.first, spot: spot[key.instanceType], source: file.absoluteString)
            }
        }
        return sheet
    }

    /// A region's offer file in CSV: `currentVersionUrl` (a path on the endpoint) ending in `.csv`.
    static func csvURL(_ endpoint: URL, _ path: String) -> URL? {
        guard path.hasSuffix(".json") else { return nil }
        return URL(string: String(path.dropLast(".json".count)) + ".csv", relativeTo: endpoint)?.absoluteURL
    }

    /// The distinct Linux on-demand prices of `types` in one region's offer file.
    func onDemandPrices(file: URL, types: Set<String>) async throws -> [String: Set<Double>] {
        var reader = OfferFileReader(types: types)
        var lines = LineSplitter()
        let response = try await transport.stream(HTTPRequestData(method: "GET", url: file), timeout: fileTimeout) { chunk in
            for line in lines.lines(in: chunk) { reader.read(line) }
        }
        try PricingEndpoint.check(response, url: file)
        if let last = lines.rest() { reader.read(last) }
        guard reader.sawHeader else { throw ProviderError(.transient, "\(file.absoluteString) has no header row (SKU,OfferTermCode,…)") }
        return reader.prices
    }

    /// The lowest current spot price of each of `types` over the region's zones.
    func spotPrices(_ ec2: AWSClient, region: String, types: [String], date: Date) async throws -> [String: Double] {
        let now = ISO8601DateFormatter().string(from: date)
        var parameters: [(String, String)] = [("ProductDescription.1", "Linux/UNIX"), ("StartTime", now), ("EndTime", now), ("MaxResults", "1000")]
        for (index, type) in types.enumerated() { parameters.append(("InstanceType.\(index + 1)", type)) }
        // The latest price of each (type, zone): the one in effect at `now`.
        var latest: [String: (time: String, price: Double)] = [:]
        var token: String?
        repeat {
            let page = try await ec2.ec2("DescribeSpotPriceHistory", parameters + (token.map { [("NextToken", $0)] } ?? []), region: region, idempotent: true)
            for item in page.items("spotPriceHistorySet") {
                guard let type = item.string("instanceType"), let zone = item.string("availabilityZone"), Self.isRegionalZone(zone, of: region),
                    item.string("productDescription") == "Linux/UNIX", let price = item.string("spotPrice").flatMap(Double.init), price > 0
                else { continue }
                let time = item.string("timestamp") ?? ""
                let key = "\(type) \(zone)"
                if latest[key].map({ $0.time < time }) ?? true { latest[key] = (time, price) }
            }
            token = page.string("nextToken").flatMap { $0.isEmpty ? nil : $0 }
        } while token != nil
        var lowest: [String: Double] = [:]
        for (key, entry) in latest {
            let type = String(key.prefix { $0 != " " })
            lowest[type] = min(lowest[type] ?? .infinity, entry.price)
        }
        return lowest
    }

    /// `us-east-1a`, not a Local Zone (`us-east-1-atl-2a`) or Wavelength Zone.
    static func isRegionalZone(_ zone: String, of region: String) -> Bool {
        zone.count == region.count + 1 && zone.hasPrefix(region) && zone.last?.isLetter == true
    }
}

/// Reads the rows of an EC2 offer file in CSV (a few lines of metadata, the header, then one
/// quoted row per price) and keeps the Linux on-demand prices of some instance types.
struct OfferFileReader {
    let types: Set<String>
    private(set) var prices: [String: Set<Double>] = [:]
    private(set) var sawHeader = false
    private var column: [String: Int] = [:]

    init(types: Set<String>) {
        self.types = types
    }

    static let required = ["TermType", "PricePerUnit", "Unit", "Currency", "Instance Type", "Tenancy", "Operating System", "Pre Installed S/W", "CapacityStatus"]

    mutating func read(_ line: String) {
        guard sawHeader else {
            let fields = Self.fields(line)
            if fields.first == "SKU", Self.required.allSatisfy(fields.contains) {
                column = Dictionary(fields.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
                sawHeader = true
            }
            return
        }
        // Most rows are other terms and systems: skip them before splitting.
        guard line.contains("\"OnDemand\""), line.contains("\"Linux\"") else { return }
        let fields = Self.fields(line)
        func value(_ name: String) -> String? { column[name].flatMap { $0 < fields.count ? fields[$0] : nil } }
        guard let type = value("Instance Type"), types.contains(type), value("TermType") == "OnDemand", value("Operating System") == "Linux",
            value("Tenancy") == "Shared", ["NA", ""].contains(value("Pre Installed S/W") ?? "-"), value("CapacityStatus") == "Used",
            value("Unit") == "Hrs", value("Currency") == "USD", value("Location Type").map({ $0 == "AWS Region" }) ?? true,
            let price = value("PricePerUnit").flatMap(Double.init), price > 0
        else { return }
        prices[type, default: []].insert(price)
    }

    /// The fields of one CSV line: quoted (`"a","b ""c"""`) or bare.
    static func fields(_ line: String) -> [String] {
        var fields: [String] = []
        var field = ""
        var quoted = false
        // Just left a quoted stretch: a quote now is an escaped quote ("").
        var closed = false
        for character in line {
            if quoted {
                if character == "\"" {
                    quoted = false
                    closed = true
                } else {
                    field.append(character)
                }
            } else if character == "\"" {
                if closed { field.append("\"") }
                quoted = true
                closed = false
            } else {
                closed = false
                if character == "," {
                    fields.append(field)
                    field = ""
                } else if character != "\r" {
                    field.append(character)
                }
            }
        }
        fields.append(field)
        return fields
    }
}

/// Cuts a byte stream into lines, whatever chunk boundaries it arrives with.
struct LineSplitter {
    private var pending = Data()

    /// The complete lines in what has arrived so far, with `chunk`.
    mutating func lines(in chunk: Data) -> [String] {
        pending.append(chunk)
        var lines: [String] = []
        var start = pending.startIndex
        while let newline = pending[start...].firstIndex(of: 0x0A) {
            lines.append(String(decoding: pending[start..<newline], as: UTF8.self))
            start = pending.index(after: newline)
        }
        pending = Data(pending[start...])
        return lines
    }

    /// The last line, if the stream did not end with a newline.
    mutating func rest() -> String? {
        defer { pending = Data() }
        return pending.isEmpty ? nil : String(decoding: pending, as: UTF8.self)
    }
}
