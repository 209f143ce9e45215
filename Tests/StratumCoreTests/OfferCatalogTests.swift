import Foundation
import StratumCore
import Testing

@Suite("Offer catalog: files and ranking")
struct OfferCatalogTests {
    static let header = OfferCatalog.columns.joined(separator: ",")

    static func catalog(_ rows: [String], cloud: String = "aws") throws -> OfferCatalog {
        try OfferCatalog(csv: "# test\n\(header)\n" + rows.joined(separator: "\n") + "\n", cloud: cloud, file: "test.csv")
    }

    static let awsRows = [
        "p5.48xlarge,H100,8,80,192,2048,nvswitch,efa,3200,us-east-1,us-east-1a us-east-1b,55.04,30.1,https://a.example/p,2026-11-09",
        "p5.48xlarge,H100,8,80,192,2048,nvswitch,efa,3200,us-west-2,,60,,https://a.example/p,2026-11-09",
        "p5.4xlarge,H100,1,80,16,256,pcie,ethernet,,us-east-1,,6.9,,https://a.example/p,2026-11-09",
        "g6.12xlarge,L4,4,22.35,48,192,pcie,ethernet,40,us-east-1,,4.6,1.9,https://a.example/g,2026-11-09",
        "m7i.large,,0,,2,8,,ethernet,,us-east-1,,0.1008,,https://a.example/m,2026-11-09",
    ]
    static let gcpRows = [
        "a3-highgpu-8g,H100,8,80,208,1872,nvswitch,gpudirect-tcpx,1000,us-central1,us-central1-a,88.25,40,https://g.example/a3,2026-10-01",
        "a3-megagpu-8g,H100,8,80,208,1872,nvswitch,gpudirect-tcpx,1800,us-central1,us-central1-a,,,https://g.example/a3,2026-10-01",
    ]

    @Test("a file parses into offers with every column")
    func parses() throws {
        let catalog = try Self.catalog(Self.awsRows)
        #expect(catalog.offers.count == 5)
        let p5 = try #require(catalog.offer(cloud: "aws", instanceType: "P5.48XLARGE", region: "us-east-1"))
        #expect(p5.gpu == "H100" && p5.gpuCount == 8 && p5.gpuMemoryGiB == 80 && p5.vcpus == 192 && p5.memoryGiB == 2048)
        #expect(p5.gpuLink == .nvswitch && p5.fabric == .efa && p5.fabricGbps == 3200)
        #expect(p5.zones == ["us-east-1a", "us-east-1b"])
        #expect(p5.onDemandHourly == 55.04 && p5.spotHourly == 30.1)
        #expect(p5.source == "https://a.example/p" && p5.asOf == "2026-11-09")
        let cpu = try #require(catalog.offer(cloud: "aws", instanceType: "m7i.large", region: "us-east-1"))
        #expect(cpu.gpu == nil && cpu.gpuCount == 0 && cpu.gpuLink == nil && cpu.spotHourly == nil)
        #expect(catalog.offer(cloud: "gcp", instanceType: "p5.48xlarge", region: "us-east-1") == nil)
        #expect(catalog.origins == ["aws": "test.csv"])
    }

    @Test("writing a catalog and reading it back gives the same offers")
    func roundTrip() throws {
        let catalog = try Self.catalog(Self.awsRows)
        let again = try OfferCatalog(csv: catalog.csv(comment: ["written back"]), cloud: "aws", file: "again.csv")
        #expect(again.offers == catalog.offers)
    }

    @Test("every bad row is reported with its line, all at once")
    func badRows() throws {
        let rows = [
            Self.awsRows[0],
            "p5.48xlarge,H100,8,80,192,2048,nvswitch,efa,3200,us-east-1,,55,,https://a.example/p,2026-11-09",  // duplicate
            "x1,H100,8,80,192,2048,nvswitch,warp,,us-east-1,,1,,https://a.example,2026-11-09",  // fabric
            "x2,,8,,4,16,,ethernet,,us-east-1,,1,,https://a.example,2026-11-09",  // gpu_count without gpu
            "x3,,0,,4,16,,ethernet,,us-east-1,,1,,not a url,2026-11-09",  // source
            "x4,,0,,4,16,,ethernet,,us-east-1,,-1,,https://a.example,2026-11-09",  // negative price
            "x5,,0,,4,16,,ethernet,,us-east-1,,1,,https://a.example,09/11/2026",  // date
            "x6,,0,,4,16,,ethernet,us-east-1,,1,,https://a.example,2026-11-09",  // a field short
        ]
        let error = try #require(throws: CatalogError.self) { try Self.catalog(rows) }
        let text = error.description
        #expect(text.contains("line 4: p5.48xlarge in us-east-1 is listed twice (first on line 3)"))
        #expect(text.contains("line 5: fabric 'warp' is not one of"))
        #expect(text.contains("line 6: gpu_count is 8 but gpu is empty"))
        #expect(text.contains("line 7: source 'not a url' is not a URL"))
        #expect(text.contains("line 8: on_demand_hourly '-1' is not a non-negative number"))
        #expect(text.contains("line 9: as_of '09/11/2026' is not a date"))
        #expect(text.contains("line 10: expected 15 fields, found 14"))

        let noHeader = try #require(throws: CatalogError.self) { try OfferCatalog(csv: "# only comments\n", cloud: "aws", file: "x.csv") }
        #expect(noHeader.description.contains("no header line"))
        let wrongHeader = try #require(throws: CatalogError.self) { try OfferCatalog(csv: "type,price\n", cloud: "aws", file: "x.csv") }
        #expect(wrongHeader.description.hasPrefix("x.csv:1: the header must be"))
    }

    @Test("ranking: offers whose GPUs divide the count, cheapest total first, the rest with reasons")
    func ranking() throws {
        let catalog = try Self.catalog(Self.awsRows).merging(try Self.catalog(Self.gcpRows, cloud: "gcp"))
        let ranking = catalog.rank(OfferQuery(gpu: "h100", count: 16))
        #expect(ranking.candidates.map(\.offer.key.description) == [
            "aws p5.48xlarge us-east-1", "aws p5.4xlarge us-east-1", "aws p5.48xlarge us-west-2", "gcp a3-highgpu-8g us-central1",
        ])
        #expect(ranking.candidates.map(\.machines) == [2, 16, 2, 2])
        #expect(abs(ranking.candidates[0].hourly - 110.08) < 1e-9)
        #expect(ranking.excluded.map(\.reason) == ["no on-demand price in the catalog"])

        // 12 GPUs: only the one-GPU type divides it.
        let twelve = catalog.rank(OfferQuery(gpu: "H100", count: 12))
        #expect(twelve.candidates.map(\.offer.instanceType) == ["p5.4xlarge"])
        #expect(twelve.excluded.filter { $0.reason == "8 GPUs per machine do not divide 12" }.count == 4)
    }

    @Test("ranking filters: spot, clouds, regions, interconnect, price cap and blocked offers")
    func filters() throws {
        let catalog = try Self.catalog(Self.awsRows).merging(try Self.catalog(Self.gcpRows, cloud: "gcp"))
        let spot = catalog.rank(OfferQuery(gpu: "H100", count: 16, spot: true))
        #expect(spot.candidates.map(\.offer.key.description) == ["aws p5.48xlarge us-east-1", "gcp a3-highgpu-8g us-central1"])
        #expect(spot.candidates.map(\.hourly) == [60.2, 80])
        #expect(spot.excluded.contains { $0.offer.description == "aws p5.4xlarge us-east-1" && $0.reason == "no spot price in the catalog" })

        let gcpOnly = catalog.rank(OfferQuery(gpu: "H100", count: 16, clouds: ["gcp"]))
        #expect(gcpOnly.candidates.map(\.offer.cloud) == ["gcp"])
        #expect(gcpOnly.excluded.contains { $0.reason == "cloud aws not among gcp" })

        let west = catalog.rank(OfferQuery(gpu: "H100", count: 8, regions: ["us-west-2"]))
        #expect(west.candidates.map(\.offer.region) == ["us-west-2"])

        let rdma = catalog.rank(OfferQuery(gpu: "H100", count: 16, interconnect: .nvlinkAndRDMA))
        #expect(!rdma.candidates.contains { $0.offer.instanceType == "p5.4xlarge" })
        #expect(rdma.excluded.contains { $0.reason == "interconnect pcie + ethernet does not meet nvlink+rdma" })

        let capped = catalog.rank(OfferQuery(gpu: "H100", count: 16, maxHourlyPrice: 115))
        #expect(capped.candidates.count == 2)
        #expect(capped.excluded.contains { $0.reason == "$120.00/h is over the cap of $115.00/h" })

        let stockout = OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1")
        let blocked = catalog.rank(OfferQuery(gpu: "H100", count: 16, interconnect: .rdma), blocked: [stockout: "stocked out until 10:30"])
        #expect(blocked.candidates.first?.offer.key == OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-west-2"))
        #expect(blocked.excluded.contains { $0.offer == stockout && $0.reason == "stocked out until 10:30" })
    }

    @Test("equal prices rank the same way every time")
    func stableTies() throws {
        let rows = ["b1,T4,1,16,4,16,pcie,ethernet,,r2,,1,,https://x.example,2026-01-01", "a1,T4,1,16,4,16,pcie,ethernet,,r1,,1,,https://x.example,2026-01-01"]
        let forward = try Self.catalog(rows).rank(OfferQuery(gpu: "T4", count: 4))
        let backward = try Self.catalog(rows.reversed()).rank(OfferQuery(gpu: "T4", count: 4))
        #expect(forward.candidates.map(\.offer.instanceType) == ["a1", "b1"])
        #expect(backward.candidates == forward.candidates)
    }

    @Test("merging keeps each cloud whole from one file; replacing swaps one cloud")
    func merging() throws {
        let aws = try Self.catalog(Self.awsRows)
        let other = try Self.catalog([Self.awsRows[0]])
        let gcp = try Self.catalog(Self.gcpRows, cloud: "gcp")
        let merged = aws.merging(gcp).merging(other)
        #expect(merged.offers.filter { $0.cloud == "aws" }.count == 5)
        #expect(merged.clouds == ["aws", "gcp"])
        let replaced = merged.replacing(cloud: "aws", with: OfferCatalog(offers: other.offers, origins: ["aws": "updated.csv"]))
        #expect(replaced.offers.filter { $0.cloud == "aws" }.count == 1)
        #expect(replaced.origins["aws"] == "updated.csv")
        #expect(replaced.offers.filter { $0.cloud == "gcp" }.count == 2)
        #expect(merged.priceDates(cloud: "gcp")! == ("2026-10-01", "2026-10-01"))
        // 2026-11-29T12:00:00Z is 20 whole days after 2026-11-09.
        #expect(OfferCatalog.age(of: "2026-11-09", now: Date(timeIntervalSince1970: 1_795_953_600)) == 20)
        #expect(OfferCatalog.age(of: "yesterday", now: Date()) == nil)
    }

    @Test("money is printed in dollars an hour")
    func money() {
        #expect(Money.hourly(55.04) == "$55.04/h")
        #expect(Money.hourly(0.0042) == "$0.0042/h")
        #expect(Money.delta(12) == "+$12.00/h")
        #expect(Money.delta(-3.5) == "-$3.50/h")
        #expect(Money.delta(0) == "$0.00/h")
    }
}
