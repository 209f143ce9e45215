import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

/// `stratum catalog update` for Azure against a loopback Retail Prices API.
@Suite(.timeLimit(.minutes(2))) struct AzureRetailPricesTests {
    static let a100 = "Standard_NC24ads_A100_v4"
    static let d2 = "Standard_D2s_v5"

    @Test("the Retail Prices API refreshes exactly the offers it prices, over several pages, Linux pay-as-you-go and Spot only")
    func refreshesWhatTheSourcePrices() async throws {
        let fake = try await AzureRetailPricesFake.start(
            items: [
                .vm(Self.a100, region: "eastus", price: 3.8), .vm(Self.a100, region: "eastus", price: 0.52, spot: true),
                .vm(Self.a100, region: "eastus", price: 5.1, windows: true), .vm(Self.a100, region: "eastus", price: 0.9, spot: true, windows: true),
                .vm(Self.a100, region: "eastus", price: 0.7, lowPriority: true), .vm(Self.a100, region: "eastus", price: 19_000, reservation: true),
                // Priced as the catalog already has it (on-demand only: its spot stays).
                .vm(Self.d2, region: "eastus", price: 0.096),
                // Not in the catalog: never added.
                .vm("Standard_NC6s_v3", region: "eastus", price: 3.06), .vm(Self.a100, region: "centralindia", price: 4.4),
            ],
            pageSize: 2)
        defer { Task { await fake.server.shutdown() } }
        let shipped = try ShippedCatalog.azure.load()
        let source = AzureRetailPrices(endpoint: fake.endpoint, transport: AsyncHTTPTransport(), timeout: .seconds(60), sizesPerRequest: 4)
        let sheet = try await source.prices(for: shipped)
        let update = shipped.updated(cloud: "azure", with: sheet, asOf: "2026-12-01")

        let a100 = try #require(update.catalog.offer(cloud: "azure", instanceType: Self.a100, region: "eastus"))
        #expect(a100.onDemandHourly == 3.8 && a100.spotHourly == 0.52)
        #expect(a100.source == fake.endpoint.absoluteString && a100.asOf == "2026-12-01")
        #expect(update.refreshed == [OfferKey(cloud: "azure", instanceType: Self.a100, region: "eastus")])
        #expect(update.unchanged == [OfferKey(cloud: "azure", instanceType: Self.d2, region: "eastus")])
        let d2 = try #require(update.catalog.offer(cloud: "azure", instanceType: Self.d2, region: "eastus"))
        #expect(d2.onDemandHourly == 0.096 && d2.spotHourly == 0.01056 && d2.asOf == "2026-12-01")

        // Every other row is as shipped, the same rows in the same order.
        let others = shipped.offers.filter { ![Self.a100, Self.d2].contains($0.instanceType) || $0.region != "eastus" }
        #expect(update.notFound.count == others.count)
        #expect(update.catalog.offers.map(\.key) == shipped.offers.map(\.key))
        for offer in others { #expect(update.catalog.offer(cloud: "azure", instanceType: offer.instanceType, region: offer.region) == offer) }

        // eastus's sizes span several batches, and its A100 batch several pages.
        let eastus = fake.requests.get().filter { $0.contains("eastus%27") }
        #expect(eastus.count > Set(shipped.offers.filter { $0.region == "eastus" }.map(\.instanceType)).count / 4)
        #expect(fake.requests.get().contains { $0.contains("$skip=2") })
        #expect(fake.violations.get().isEmpty)
    }

    @Test("an offer with two different Linux prices at the source is ambiguous and keeps its price")
    func ambiguousPriceIsLeftAlone() async throws {
        let fake = try await AzureRetailPricesFake.start(items: [.vm(Self.a100, region: "eastus", price: 3.8), .vm(Self.a100, region: "eastus", price: 3.9)])
        defer { Task { await fake.server.shutdown() } }
        let shipped = OfferCatalog(offers: try ShippedCatalog.azure.load().offers.filter { $0.instanceType == Self.a100 && $0.region == "eastus" })
        let sheet = try await AzureRetailPrices(endpoint: fake.endpoint, transport: AsyncHTTPTransport(), timeout: .seconds(60)).prices(for: shipped)
        let update = shipped.updated(cloud: "azure", with: sheet, asOf: "2026-12-01")
        let key = OfferKey(cloud: "azure", instanceType: Self.a100, region: "eastus")
        #expect(update.notFound[key]?.contains("more than one Linux price") == true, "\(update.notFound)")
        #expect(update.catalog.offers == shipped.offers)
    }

    @Test("an unreachable endpoint fails the update within the timeout and changes nothing")
    func unreachableEndpoint() async throws {
        let shipped = try ShippedCatalog.azure.load()
        let options = CatalogUpdateOptions(
            environment: ["STRATUM_AZURE_RETAIL_PRICES_ENDPOINT": "http://127.0.0.1:\(freeLoopbackPort())/api/retail/prices"],
            date: Date(timeIntervalSince1970: 1_796_000_000), timeout: .seconds(2))
        await #expect(throws: HTTPConnectionError.self) { _ = try await ShippedCatalog.azure.update(shipped, options: options) }
    }
}
