import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAWS

/// `stratum catalog update` for AWS against a loopback Price List bulk API and EC2 spot price history.
@Suite(.timeLimit(.minutes(2))) struct AWSPriceListTests {
    static let date = ISO8601DateFormatter().date(from: "2026-12-01T09:30:00Z") ?? Date()

    static func priceList() async throws -> AWSPriceListFake {
        let p5 = AWSPriceListFake.Row("p5.48xlarge", region: "us-east-1", price: 50)
        return try await AWSPriceListFake.start(
            regions: ["us-east-1", "us-west-2"],
            rows: [
                p5, p5.with(\.operatingSystem, "Windows").with(\.price, 60), p5.with(\.tenancy, "Dedicated").with(\.price, 70),
                p5.with(\.capacityStatus, "UnusedCapacityReservation").with(\.price, 1), p5.with(\.preInstalledSoftware, "SQL Std").with(\.price, 80),
                p5.with(\.termType, "Reserved").with(\.price, 30), p5.with(\.locationType, "AWS Local Zone").with(\.price, 65),
                AWSPriceListFake.Row("p4d.24xlarge", region: "us-east-1", price: 21.957642),
                AWSPriceListFake.Row("p5.48xlarge", region: "us-west-2", price: 55.04),
            ])
    }

    @Test("the price list and spot history refresh exactly the offers they price; other systems, tenancies and terms are ignored")
    func refreshesWhatTheSourcePrices() async throws {
        let list = try await Self.priceList()
        let spot = try await EC2SpotPriceFake.start([
            .init("p5.48xlarge", zone: "us-east-1a", price: 15, timestamp: "2026-11-30T08:00:00Z"),
            .init("p5.48xlarge", zone: "us-east-1a", price: 14, timestamp: "2026-12-01T08:00:00Z"),
            .init("p5.48xlarge", zone: "us-east-1b", price: 16), .init("p5.48xlarge", zone: "us-east-1-atl-2a", price: 1),
            .init("p5.48xlarge", zone: "us-east-1c", price: 0.5, productDescription: "Windows"), .init("p4d.24xlarge", zone: "us-east-1d", price: 6.5323),
        ])
        defer { Task { await list.server.shutdown(); await spot.server.shutdown() } }
        let ec2 = AWSClient(
            configuration: .init(endpointOverride: spot.endpoint), credentials: StaticCredentials(AWSCredentials(accessKeyId: "AKIATEST", secretAccessKey: "test-secret")),
            transport: AsyncHTTPTransport())
        let shipped = try ShippedCatalog.aws.load()
        let source = AWSPriceList(endpoint: list.endpoint, transport: AsyncHTTPTransport(), ec2: ec2, timeout: .seconds(60), fileTimeout: .seconds(60))
        let sheet = try await source.prices(for: shipped, date: Self.date)
        let update = shipped.updated(cloud: "aws", with: sheet, asOf: "2026-12-01")

        let file = list.endpoint.absoluteString + "/offers/v1.0/aws/AmazonEC2/20261128000000/us-east-1/index.csv"
        let p5 = try #require(update.catalog.offer(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1"))
        #expect(p5.onDemandHourly == 50 && p5.spotHourly == 14, "the latest price in each zone, the lowest zone")
        #expect(p5.source == file && p5.asOf == "2026-12-01")
        #expect(update.refreshed == [p5.key])
        // Priced as shipped: on-demand and spot (p4d), on-demand only (p5 in us-west-2, whose spot stays).
        #expect(Set(update.unchanged) == [OfferKey(cloud: "aws", instanceType: "p4d.24xlarge", region: "us-east-1"), OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-west-2")])
        #expect(update.catalog.offer(cloud: "aws", instanceType: "p5.48xlarge", region: "us-west-2")?.spotHourly == 9.3722)
        #expect(update.catalog.offers.map(\.key) == shipped.offers.map(\.key))
        let untouched = shipped.offers.filter { !update.refreshed.contains($0.key) && !update.unchanged.contains($0.key) }
        #expect(update.notFound.count == untouched.count)
        for offer in untouched { #expect(update.catalog.offer(cloud: "aws", instanceType: offer.instanceType, region: offer.region) == offer) }
        #expect(update.notFound[OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "eu-north-1")] == "region eu-north-1 is not in the price list's region index")

        // Spot history: Linux/UNIX, the region's types, the price in effect now, paged by NextToken.
        let calls = spot.calls.get()
        #expect(calls.allSatisfy { $0["ProductDescription.1"] == "Linux/UNIX" && $0["StartTime"] == "2026-12-01T09:30:00Z" })
        #expect(calls.contains { $0["NextToken"] == "2" })
        #expect(sheet.notes.isEmpty)
    }

    @Test("without AWS credentials on-demand prices are refreshed and spot prices kept, and the update says so")
    func noCredentialsKeepsSpot() async throws {
        let list = try await Self.priceList()
        defer { Task { await list.server.shutdown() } }
        let environment = [
            "STRATUM_AWS_PRICE_LIST_ENDPOINT": list.endpoint.absoluteString, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
        ]
        let shipped = try ShippedCatalog.aws.load()
        let update = try #require(try await ShippedCatalog.aws.update(shipped, options: CatalogUpdateOptions(environment: environment, date: Self.date, timeout: .seconds(60))))
        let p5 = try #require(update.catalog.offer(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1"))
        #expect(p5.onDemandHourly == 50 && p5.spotHourly == 16.9508)
        #expect(update.notes == ["spot prices kept as they were: DescribeSpotPriceHistory needs AWS credentials, and none were found"])
    }

    @Test("an offer file's quoted fields and lines split across pieces are read whole")
    func offerFileParsing() {
        #expect(OfferFileReader.fields(#""a","b, c","d ""e""",,"""# + "\r") == ["a", "b, c", "d \"e\"", "", ""])
        var splitter = LineSplitter()
        #expect(splitter.lines(in: Data("one\ntw".utf8)) == ["one"])
        #expect(splitter.lines(in: Data("o\nthr".utf8)) == ["two"])
        #expect(splitter.rest() == "thr")
    }
}
