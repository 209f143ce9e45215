import Foundation
import StratumCore
import Testing

@Suite("Offer catalog: applying fresh prices")
struct CatalogUpdateTests {
    static func key(_ type: String, _ region: String = "us-east-1") -> OfferKey { OfferKey(cloud: "aws", instanceType: type, region: region) }

    @Test("quoted prices replace the old ones, a price the quote lacks stays, and nothing is added or guessed")
    func appliesQuotes() throws {
        let shipped = try OfferCatalogTests.catalog(OfferCatalogTests.awsRows).merging(OfferCatalogTests.catalog(OfferCatalogTests.gcpRows, cloud: "gcp"))
        let sheet = PriceSheet(
            quotes: [
                Self.key("p5.48xlarge"): PriceQuote(onDemand: 50, spot: nil, source: "https://prices.example/ec2"),
                Self.key("m7i.large"): PriceQuote(onDemand: 0.1008, spot: nil, source: "https://prices.example/ec2"),
                Self.key("g6.12xlarge"): PriceQuote(onDemand: nil, spot: nil, source: "https://prices.example/ec2"),
                Self.key("p9.huge"): PriceQuote(onDemand: 1, spot: 1, source: "https://prices.example/ec2"),
            ],
            reasons: [Self.key("p5.4xlarge"): "two prices"], notes: ["spot kept"], sources: ["https://prices.example/ec2"])
        let update = shipped.updated(cloud: "aws", with: sheet, asOf: "2026-12-01")

        let p5 = try #require(update.catalog.offer(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1"))
        #expect(p5.onDemandHourly == 50 && p5.spotHourly == 30.1 && p5.asOf == "2026-12-01" && p5.source == "https://prices.example/ec2")
        #expect(update.refreshed == [Self.key("p5.48xlarge")])
        #expect(update.unchanged == [Self.key("m7i.large")])
        #expect(update.notFound[Self.key("p5.4xlarge")] == "two prices")
        #expect(update.notFound[Self.key("g6.12xlarge")] == "not listed at the source", "a quote without prices is no price")
        #expect(update.notFound[Self.key("p5.48xlarge", "us-west-2")] == "not listed at the source")
        // Only the cloud's own rows, the same ones; the rest untouched.
        #expect(update.catalog.offers.map(\.key) == shipped.offers.filter { $0.cloud == "aws" }.map(\.key))
        #expect(update.catalog.offer(cloud: "aws", instanceType: "g6.12xlarge", region: "us-east-1") == shipped.offer(cloud: "aws", instanceType: "g6.12xlarge", region: "us-east-1"))
        #expect(update.notes == ["spot kept"] && update.sources == ["https://prices.example/ec2"])
        // What it writes reads back as the same catalog.
        let reread = try OfferCatalog(csv: update.catalog.csv(comment: ["updated"]), cloud: "aws", file: "aws.csv")
        #expect(reread.offers == update.catalog.offers)
    }

    @Test("a catalog day is the UTC date")
    func day() {
        #expect(OfferCatalog.day(Date(timeIntervalSince1970: 1_796_169_599)) == "2026-12-01")
        #expect(OfferCatalog.day(Date(timeIntervalSince1970: 1_796_169_600)) == "2026-12-02")
    }
}
