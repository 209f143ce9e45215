import Foundation
import StratumCloud
import StratumCore

/// Azure's public Retail Prices API (`GET https://prices.azure.com/api/retail/prices`, no
/// authentication): the pay-as-you-go and Spot prices of Linux VM sizes, per region.
///
/// One request per region and batch of sizes, filtered in OData
/// (`serviceName eq 'Virtual Machines' and armRegionName eq '…' and priceType eq 'Consumption'
/// and (armSkuName eq '…' or …)`), following `NextPageLink` to the last page. Of the items, a
/// VM's Linux price is a `Consumption` meter in USD per `1 Hour` whose product is not Windows
/// (`productName` without the word `Windows` or `Win`); Spot meters have a `skuName` ending in
/// ` Spot`; ` Low Priority` meters (the retired low-priority VMs) are left out. An offer with
/// two different prices of one kind is ambiguous and left as it was.
public struct AzureRetailPrices: Sendable {
    public static let defaultEndpoint = URL(string: "https://prices.azure.com/api/retail/prices")!

    public var endpoint: URL
    public var transport: any HTTPTransport
    public var timeout: Duration
    /// Sizes named in one request's filter, so its URL stays short.
    public var sizesPerRequest: Int
    /// Pages read for one request at most (a guard against a `NextPageLink` that loops).
    public var maxPages: Int

    public init(
        endpoint: URL = Self.defaultEndpoint, transport: any HTTPTransport, timeout: Duration = .seconds(60), sizesPerRequest: Int = 10, maxPages: Int = 200
    ) {
        self.endpoint = endpoint
        self.transport = transport
        self.timeout = timeout
        self.sizesPerRequest = max(1, sizesPerRequest)
        self.maxPages = maxPages
    }

    /// The endpoint from `STRATUM_AZURE_RETAIL_PRICES_ENDPOINT` when set (a loopback fake in tests).
    public static func fromEnvironment(_ environment: [String: String], transport: any HTTPTransport) -> AzureRetailPrices {
        let override = environment["STRATUM_AZURE_RETAIL_PRICES_ENDPOINT"].flatMap { $0.isEmpty ? nil : URL(string: $0) }
        return AzureRetailPrices(endpoint: override ?? defaultEndpoint, transport: transport)
    }

    /// The prices of `catalog`'s Azure offers.
    public func prices(for catalog: OfferCatalog, progress: @Sendable (String) -> Void = { _ in }) async throws -> PriceSheet {
        let offers = catalog.offers.filter { $0.cloud == "azure" }
        var sheet = PriceSheet(sources: [endpoint.absoluteString])
        for region in Set(offers.map(\.region)).sorted() {
            let sizes = Set(offers.filter { $0.region == region }.map(\.instanceType)).sorted()
            var meters: [String: Meters] = [:]
            for start in stride(from: 0, to: sizes.count, by: sizesPerRequest) {
                let batch = Array(sizes[start..<min(start + sizesPerRequest, sizes.count)])
                let items = try await items(filter: Self.filter(region: region, sizes: batch))
                for item in items { Self.collect(item, region: region, sizes: Set(batch), into: &meters) }
            }
            progress("azure: \(region): \(meters.count) of \(sizes.count) sizes priced")
            for size in sizes {
                let key = OfferKey(cloud: "azure", instanceType: size, region: region)
                guard let found = meters[size] else { continue }
                if found.onDemand.count > 1 || found.spot.count > 1 {
                    sheet.reasons[key] = "the source lists more than one Linux price for it (\(found.describe))"
                    continue
                }
                sheet.quotes[key] = PriceQuote(onDemand: found.onDemand.first, spot: found.spot.first, source: endpoint.absoluteString)
            }
        }
        return sheet
    }

    /// The distinct Linux prices found for one size in one region.
    struct Meters {
        var onDemand: Set<Double> = []
        var spot: Set<Double> = []

        var describe: String {
            "on-demand \(onDemand.sorted().map { String($0) }.joined(separator: ", ")); spot \(spot.sorted().map { String($0) }.joined(separator: ", "))"
        }
    }

    /// The OData filter for `sizes` in `region`.
    static func filter(region: String, sizes: [String]) -> String {
        let names = sizes.map { "armSkuName eq '\($0.replacingOccurrences(of: "'", with: "''"))'" }.joined(separator: " or ")
        return "serviceName eq 'Virtual Machines' and armRegionName eq '\(region)' and priceType eq 'Consumption' and (\(names))"
    }

    /// Every item of every page of one filtered query.
    func items(filter: String) async throws -> [CloudJSON] {
        guard var components = URLComponents(url: endpoint, resolvingAgainstBaseURL: false) else { return [] }
        components.percentEncodedQuery = "$filter=" + PricingEndpoint.queryValue(filter)
        var next = components.url
        var items: [CloudJSON] = []
        var pages = 0
        while let url = next {
            pages += 1
            guard pages <= maxPages else { throw ProviderError(.transient, "\(endpoint.absoluteString) kept answering with another page (\(maxPages) read)") }
            let page = try await PricingEndpoint.json(url, transport: transport, timeout: timeout)
            items += page["Items"]?.array ?? []
            next = page["NextPageLink"]?.string.flatMap { $0.isEmpty ? nil : URL(string: $0) }
        }
        return items
    }

    /// Adds `item`'s price to `meters` if it is a Linux pay-as-you-go or Spot price of one of `sizes`.
    static func collect(_ item: CloudJSON, region: String, sizes: Set<String>, into meters: inout [String: Meters]) {
        guard let size = item["armSkuName"]?.string, sizes.contains(size), item["armRegionName"]?.string == region,
            item["serviceName"]?.string == "Virtual Machines", item["type"]?.string == "Consumption",
            (item["currencyCode"]?.string ?? "USD") == "USD", item["unitOfMeasure"]?.string == "1 Hour",
            let price = item["retailPrice"]?.number ?? item["unitPrice"]?.number, price > 0
        else { return }
        let product = item["productName"]?.string ?? ""
        let words = Set(product.split(separator: " ").map(String.init))
        guard words.isDisjoint(with: ["Windows", "Win"]), !product.contains("Cloud Services") else { return }
        let skuName = item["skuName"]?.string ?? ""
        let meterName = item["meterName"]?.string ?? ""
        guard !skuName.hasSuffix(" Low Priority"), !meterName.hasSuffix(" Low Priority") else { return }
        if skuName.hasSuffix(" Spot") || meterName.hasSuffix(" Spot") {
            meters[size, default: Meters()].spot.insert(price)
        } else {
            meters[size, default: Meters()].onDemand.insert(price)
        }
    }
}
