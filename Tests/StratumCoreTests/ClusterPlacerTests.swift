import Foundation
import StratumCore
import Testing

@Suite("Cluster placement: landings, decisions, failover order")
struct ClusterPlacerTests {
    static let header = OfferCatalog.columns.joined(separator: ",")
    static let now = Date(timeIntervalSince1970: 1_795_953_600)

    static func catalog() throws -> OfferCatalog {
        let a = try OfferCatalog(csv: """
            \(header)
            p5.48xlarge,H100,8,80,192,2048,nvswitch,efa,3200,us-east-1,,55,20,https://a.example/p,2026-11-09
            p5.48xlarge,H100,8,80,192,2048,nvswitch,efa,3200,us-west-2,us-west-2a us-west-2b,60,,https://a.example/p,2026-11-09
            """, cloud: "aws", file: "aws.csv")
        let g = try OfferCatalog(csv: """
            \(header)
            a3-highgpu-8g,H100,8,80,208,1872,nvswitch,gpudirect-tcpx,1000,us-central1,us-central1-a us-central1-b us-central1-c,55,30,https://g.example/a3,2026-10-01
            """, cloud: "gcp", file: "gcp.csv")
        return a.merging(g)
    }

    static let request = ClusterRequest(
        name: "train", gpu: "H100", count: 16,
        sites: [
            ClusterSite(cloud: "aws", region: "us-east-1", zones: ["us-east-1a", "us-east-1b"]), ClusterSite(cloud: "aws", region: "us-west-2"),
            ClusterSite(cloud: "gcp", region: "us-central1", zones: ["us-central1-b", "us-central1-a"]),
        ])

    @Test("landings are each offer in each zone it may use, cheapest first, ties in the sites' and zones' order")
    func landings() throws {
        let ranking = ClusterPlacer(catalog: try Self.catalog(), now: Self.now).rank(Self.request)
        #expect(ranking.landings.map(\.description) == [
            "aws p5.48xlarge us-east-1a", "aws p5.48xlarge us-east-1b", "gcp a3-highgpu-8g us-central1-b", "gcp a3-highgpu-8g us-central1-a",
            "aws p5.48xlarge us-west-2a", "aws p5.48xlarge us-west-2b",
        ])
        #expect(ranking.landings.allSatisfy { $0.machines == 2 && $0.gpusPerMachine == 8 })
        #expect(ranking.landings.first?.hourly == 110)

        // A site's zones the catalog does not offer the type in are left out, with why.
        var narrow = Self.request
        narrow.sites = [ClusterSite(cloud: "gcp", region: "us-central1", zones: ["us-central1-f"])]
        let none = ClusterPlacer(catalog: try Self.catalog(), now: Self.now).rank(narrow)
        #expect(none.landings.isEmpty)
        #expect(none.excluded.first?.reason == "not offered in us-central1-f (only us-central1-a, us-central1-b, us-central1-c)")
    }

    @Test("a recorded decision is kept for the same request, and made again when the request changes or on --replace-placement")
    func stableDecision() throws {
        let placer = ClusterPlacer(catalog: try Self.catalog(), now: Self.now)
        let first = try #require(placer.decide(Self.request, recorded: nil).decision)
        #expect(first.landing.description == "aws p5.48xlarge us-east-1a")
        #expect(first.reason == "cheapest of 6 feasible landings")
        #expect(first.runnersUp == ["gcp a3-highgpu-8g us-central1-b: 2 × 8 GPUs, $110.00/h", "aws p5.48xlarge us-west-2a: 2 × 8 GPUs, $120.00/h"])

        // Recorded elsewhere (a failover moved it to us-west-2): kept while the request is the same.
        var moved = first
        moved.landing = placer.rank(Self.request).landings[4]
        let recorded = try #require(PlacementDecision(attributes: moved.attributes))
        #expect(recorded == moved)
        let kept = placer.decide(Self.request, recorded: recorded)
        #expect(kept.kept && kept.decision?.landing.description == "aws p5.48xlarge us-west-2a")

        #expect(placer.decide(Self.request, recorded: recorded, replace: true).decision?.landing.description == "aws p5.48xlarge us-east-1a")
        var bigger = Self.request
        bigger.count = 24
        let remade = placer.decide(bigger, recorded: recorded)
        #expect(!remade.kept && remade.decision?.landing.machines == 3)
    }

    @Test("blocked offers are skipped until they expire: a zone for capacity, the whole region for quota")
    func blocked() throws {
        let catalog = try Self.catalog()
        let zone = BlockedOffer(offer: OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1", zone: "us-east-1a"), reason: "no capacity", until: Self.now + 600)
        let placer = ClusterPlacer(catalog: catalog, blocked: [zone], now: Self.now)
        #expect(placer.rank(Self.request).landings.first?.description == "aws p5.48xlarge us-east-1b")
        #expect(placer.rank(Self.request).excluded.contains { $0.reason == "no capacity; skipped until 2026-11-29 12:10 UTC" })

        let region = BlockedOffer(offer: OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1"), reason: "quota", until: Self.now + 600)
        #expect(ClusterPlacer(catalog: catalog, blocked: [region], now: Self.now).rank(Self.request).landings.first?.description == "gcp a3-highgpu-8g us-central1-b")

        // Expired: not blocking any more.
        let expired = ClusterPlacer(catalog: catalog, blocked: [zone], now: Self.now + 601)
        #expect(expired.rank(Self.request).landings.first?.description == "aws p5.48xlarge us-east-1a")

        // A recorded decision on a blocked offer is not kept.
        let recorded = try #require(ClusterPlacer(catalog: catalog, now: Self.now).decide(Self.request, recorded: nil).decision)
        #expect(!placer.decide(Self.request, recorded: recorded).kept)
    }

    @Test("failover order: the same offer's next zone, then the same cloud's next region, then another cloud")
    func failoverOrder() throws {
        var placer = ClusterPlacer(catalog: try Self.catalog(), now: Self.now)
        var ranking = placer.rank(Self.request)
        let first = ranking.landings[0]
        // Zone first, though GCP costs the same.
        let second = try #require(placer.next(after: first, in: ranking))
        #expect(second.description == "aws p5.48xlarge us-east-1b")

        // us-east-1 out of quota: the same cloud's other region before GCP, although GCP is cheaper.
        placer.blocked = [BlockedOffer(offer: OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-east-1"), reason: "quota", until: Self.now + 60)]
        ranking = placer.rank(Self.request)
        #expect(placer.next(after: second, in: ranking)?.description == "aws p5.48xlarge us-west-2a")

        // The whole of AWS out: GCP.
        placer.blocked += ["us-west-2a", "us-west-2b"].map { BlockedOffer(offer: OfferKey(cloud: "aws", instanceType: "p5.48xlarge", region: "us-west-2", zone: $0), reason: "capacity", until: Self.now + 60) }
        ranking = placer.rank(Self.request)
        #expect(placer.next(after: ranking.landings[0], in: ranking)?.cloud == "gcp")
        #expect(ranking.landings.allSatisfy { $0.cloud == "gcp" })
    }

    @Test("a cap on the hourly price leaves out what costs more, and nothing fitting is an error that lists why")
    func capAndNothing() throws {
        var capped = Self.request
        capped.maxHourlyPrice = 115
        let ranking = ClusterPlacer(catalog: try Self.catalog(), now: Self.now).rank(capped)
        #expect(!ranking.landings.contains { $0.region == "us-west-2" })
        var impossible = Self.request
        impossible.count = 12
        let result = ClusterPlacer(catalog: try Self.catalog(), now: Self.now).decide(impossible, recorded: nil)
        #expect(result.decision == nil)
        let error = NoPlacement(cluster: "train", request: impossible.summary, excluded: result.ranking.excluded)
        #expect(error.description.contains("GPU cluster 'train' (12 × H100 on-demand) fits no offer of its clouds"))
        #expect(error.description.contains("8 GPUs per machine do not divide 12"))
    }

    @Test("a running cluster keeps its decision when a stockout met elsewhere blocks its offer; a remade decision on the same landing keeps its name")
    func landedAndAlias() throws {
        let catalog = try Self.catalog()
        let first = try #require(ClusterPlacer(catalog: catalog, now: Self.now).decide(Self.request, recorded: nil).decision)
        let block = BlockedOffer(offer: first.landing.key, spot: false, reason: "no capacity", until: Self.now + 600)
        let placer = ClusterPlacer(catalog: catalog, blocked: [block], now: Self.now)
        #expect(placer.decide(Self.request, recorded: first, landed: true).kept)
        #expect(!placer.decide(Self.request, recorded: first, landed: false).kept)

        var won = first
        won.alias = "train-race3"
        let remade = ClusterPlacer(catalog: catalog, now: Self.now).decide(Self.request, recorded: won, replace: true)
        #expect(!remade.kept && remade.decision?.alias == "train-race3")
        var elsewhere = won
        elsewhere.landing = ClusterPlacer(catalog: catalog, now: Self.now).rank(Self.request).landings[4]
        #expect(ClusterPlacer(catalog: catalog, now: Self.now).decide(Self.request, recorded: elsewhere, replace: true).decision?.alias == nil)
    }

    @Test("what a failure blocks: spot and on-demand apart, a zone-less landing's whole region, a cloud's every offer")
    func blocksByScope() throws {
        let placer = ClusterPlacer(catalog: try Self.catalog(), now: Self.now)
        let ranking = placer.rank(Self.request)
        let zoneless = try #require(ranking.landings.first { $0.zone == nil } ?? ranking.landings.first)
        let capacity = ProviderError(.capacity, "InsufficientInstanceCapacity", scope: .zone("2"))
        var spotRequest = Self.request
        spotRequest.spot = true
        let spotLanding = try #require(placer.rank(spotRequest).landings.first)
        let spotBlock = placer.blocks(for: capacity, at: spotLanding, request: spotRequest, until: Self.now + 60)
        #expect(spotBlock.count == 1 && spotBlock[0].spot == true && spotBlock[0].offer == spotLanding.key)
        // A spot stockout does not block on-demand capacity.
        #expect(ClusterPlacer(catalog: try Self.catalog(), blocked: spotBlock, now: Self.now).rank(Self.request).landings.first == ranking.landings.first)

        // A landing without a zone is blocked as a whole, whatever zone the error named.
        var landing = zoneless
        landing.zone = nil
        let block = placer.blocks(for: capacity, at: landing, request: Self.request, until: Self.now + 60)
        #expect(block.first?.offer.zone == nil && block.first?.blocks(landing) == true)

        let down = placer.blocks(for: ProviderError(.capacity, "down", scope: .cloud), at: ranking.landings[0], request: Self.request, until: Self.now + 60)
        #expect(Set(down.map(\.offer.description)) == ["aws p5.48xlarge us-east-1", "aws p5.48xlarge us-west-2"])
        let quota = placer.blocks(for: ProviderError(.quota, "quota", scope: .region("us-east-1")), at: ranking.landings[0], request: Self.request, until: Self.now + 60)
        #expect(quota.count == 1 && quota[0].offer.zone == nil && quota[0].spot == nil)
    }

    @Test("failover never returns the landing that failed, even when its price has moved since it was recorded")
    func nextComparesByKey() throws {
        let placer = ClusterPlacer(catalog: try Self.catalog(), now: Self.now)
        let ranking = placer.rank(Self.request)
        var recorded = ranking.landings[0]
        recorded.hourly = 99
        #expect(placer.next(after: recorded, in: ranking)?.key != recorded.key)
    }
}
