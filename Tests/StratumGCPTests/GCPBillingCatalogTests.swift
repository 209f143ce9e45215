import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

/// `stratum catalog update` for GCP against a loopback Cloud Billing Catalog checked against
/// the cloudbilling v1 discovery document.
@Suite(.timeLimit(.minutes(2))) struct GCPBillingCatalogTests {
    typealias SKU = GCPBillingCatalogFake.SKU
    static let central = ["us-central1", "us-east1"]

    /// A2 and G2 parts in us-central1 (A2's on-demand parts at the prices that make the shipped
    /// a2-highgpu-1g figure), two disagreeing N2 core SKUs, and SKUs that must not count.
    static let skus: [SKU] = [
        SKU("A2 Instance Core running in Americas", group: "CPU", regions: central, price: 0.031611),
        SKU("A2 Instance Ram running in Americas", group: "RAM", regions: central, unit: "GiBy.h", price: 0.004237),
        SKU("Nvidia Tesla A100 GPU running in Americas", group: "GPU", regions: central, price: 2.933908),
        SKU("Spot Preemptible A2 Instance Core running in Americas", group: "CPU", usageType: "Preemptible", regions: central, price: 0.01),
        SKU("Spot Preemptible A2 Instance Ram running in Americas", group: "RAM", usageType: "Preemptible", regions: central, unit: "GiBy.h", price: 0.001),
        SKU("Nvidia Tesla A100 GPU attached to Spot Preemptible VMs running in Americas", group: "GPU", usageType: "Preemptible", regions: central, price: 1),
        SKU("Nvidia A100 80GB GPU running in Americas", group: "GPU", regions: central, price: 3.92808),
        SKU("Commitment v1: A2 Cpu in Americas for 1 Year", group: "CPU", usageType: "Commit1Yr", regions: central, price: 0.019915),
        SKU("Reserved A2 Instance Core running in Americas", group: "CPU", regions: central, price: 0.5),
        SKU("A2 Instance Core running in EMEA", group: "CPU", regions: ["europe-west4"], price: 0.0348),
        SKU("G2 Instance Core running in Americas", group: "CPU", regions: central, price: 0.03),
        SKU("G2 Instance Ram running in Americas", group: "RAM", regions: central, unit: "GiBy.h", price: 0.004),
        SKU("Nvidia L4 GPU running in Americas", group: "GPU", regions: central, price: 0.6),
        SKU("N2 Instance Core running in Americas", group: "CPU", regions: central, price: 0.031611),
        SKU("N2 Instance Core running in Americas", group: "CPU", regions: ["us-central1"], price: 0.0345),
        SKU("N2 Instance Ram running in Americas", group: "RAM", regions: central, unit: "GiBy.h", price: 0.004237),
        SKU("N2 Custom Instance Core running in Americas", group: "CPU", regions: central, price: 0.033),
    ]

    @Test("SKUs build whole-machine prices for the families Stratum knows; the rest keep theirs, with the reason")
    func buildsMachinePrices() async throws {
        let fake = try await GCPBillingCatalogFake.start(Self.skus)
        defer { Task { await fake.server.shutdown() } }
        let shipped = try ShippedCatalog.gcp.load()
        let source = GCPBillingCatalog(endpoint: fake.endpoint, transport: AsyncHTTPTransport(), authorization: .apiKey(fake.apiKey), timeout: .seconds(60))
        let sheet = try await source.prices(for: shipped)
        let update = shipped.updated(cloud: "gcp", with: sheet, asOf: "2026-12-01")
        func offer(_ type: String, _ region: String = "us-central1") throws -> Offer {
            try #require(update.catalog.offer(cloud: "gcp", instanceType: type, region: region))
        }

        // GPU + vCPUs + GiB: the shipped on-demand figure again; spot from the Preemptible SKUs.
        let a2 = try offer("a2-highgpu-1g")
        #expect(abs((a2.onDemandHourly ?? 0) - 3.673385) < 1e-9)
        #expect(abs((a2.spotHourly ?? 0) - (12 * 0.01 + 85 * 0.001 + 1)) < 1e-9)
        #expect(a2.source == source.skusURL.absoluteString && a2.asOf == "2026-12-01")
        let a2x8 = try offer("a2-highgpu-8g")
        #expect(abs((a2x8.onDemandHourly ?? 0) - (96 * 0.031611 + 680 * 0.004237 + 8 * 2.933908)) < 1e-9)
        // G2 has no Preemptible SKUs here: on-demand refreshed, spot kept.
        let g2 = try offer("g2-standard-4")
        let shippedG2 = try #require(shipped.offer(cloud: "gcp", instanceType: "g2-standard-4", region: "us-central1"))
        #expect(abs((g2.onDemandHourly ?? 0) - (4 * 0.03 + 16 * 0.004 + 0.6)) < 1e-9 && g2.spotHourly == shippedG2.spotHourly)
        #expect(update.refreshed.contains(g2.key) && update.refreshed.contains(a2.key))

        // Not built: two N2 core prices disagree; A3 bundles local SSD; E2 has no SKUs here;
        // europe-west4 lacks A2's RAM and GPU.
        #expect(update.notFound[try offer("n2-standard-48").key]?.contains("2 OnDemand CPU SKUs of N2 in us-central1 with different prices") == true)
        #expect(update.notFound[try offer("a3-highgpu-8g").key]?.contains("bundles local SSD") == true)
        #expect(update.notFound[try offer("a2-ultragpu-1g").key]?.contains("bundles local SSD") == true)
        #expect(update.notFound[try offer("e2-standard-4").key]?.contains("no OnDemand CPU SKU of E2 in us-central1") == true)
        let untouched = shipped.offers.filter { update.notFound[$0.key] != nil }
        for old in untouched { #expect(try offer(old.instanceType, old.region) == old) }
        #expect(update.catalog.offers.map(\.key) == shipped.offers.map(\.key))

        // Every page was read, the key never went into a URL, and the fake saw nothing the API would refuse.
        #expect(fake.requests.get().count == (Self.skus.count + 2) / 3)
        #expect(!fake.requests.get().contains { $0.contains(fake.apiKey) })
        #expect(fake.violations.get().isEmpty, "\(fake.violations.get())")
        // The answer check bites: a field the schema lacks and a wrongly typed one are caught.
        let wrongAnswer = Data(#"{"skus": [{"skuId": 1, "colour": "red"}]}"#.utf8)
        let caught = try DiscoveryValidator.named("cloudbilling.v1").validateResponse(wrongAnswer, of: "cloudbilling.services.skus.list")
        #expect(Set(caught.map(\.kind)) == [.wrongType, .unknownField], "\(caught)")
    }

    @Test("a bearer token from Google credentials is accepted; a call without key or token is refused and named")
    func authorization() async throws {
        let fake = try await GCPBillingCatalogFake.start(Self.skus)
        defer { Task { await fake.server.shutdown() } }
        let shipped = OfferCatalog(offers: try ShippedCatalog.gcp.load().offers.filter { $0.instanceType == "a2-highgpu-1g" })
        let tokens = BearerTokenCache { BearerToken(value: fake.token, lifetime: .seconds(3600)) }
        let sheet = try await GCPBillingCatalog(endpoint: fake.endpoint, transport: AsyncHTTPTransport(), authorization: .bearer(tokens)).prices(for: shipped)
        #expect(sheet.quotes.count == shipped.offers.filter { Self.central.contains($0.region) }.count)

        let wrong = GCPBillingCatalog(endpoint: fake.endpoint, transport: AsyncHTTPTransport(), authorization: .apiKey("AIzaWrongKey123"))
        do {
            _ = try await wrong.prices(for: shipped)
            Issue.record("a wrong key was accepted")
        } catch let error as ProviderError {
            #expect(error.kind == .auth && error.message.contains("HTTP 403") && !error.message.contains("AIzaWrongKey123"), "\(error)")
        }
        #expect(fake.refused.get() == 1)
    }

    @Test("the environment names the endpoint and the key; with neither key nor credentials the update fails, saying what it needs")
    func fromEnvironment() async throws {
        let fake = try await GCPBillingCatalogFake.start(Self.skus)
        defer { Task { await fake.server.shutdown() } }
        let shipped = try ShippedCatalog.gcp.load()
        let date = Date(timeIntervalSince1970: 1_796_112_000)
        let options = CatalogUpdateOptions(
            environment: ["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING": fake.endpoint.absoluteString + "/", "STRATUM_GCP_API_KEY": fake.apiKey],
            date: date, timeout: .seconds(60))
        let update = try #require(try await ShippedCatalog.gcp.update(shipped, options: options))
        #expect(update.catalog.offer(cloud: "gcp", instanceType: "a2-highgpu-1g", region: "us-central1")?.asOf == OfferCatalog.day(date))

        let bare = CatalogUpdateOptions(
            environment: ["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING": fake.endpoint.absoluteString, "HOME": "/nonexistent", "NO_GCE_CHECK": "true"],
            date: date, timeout: .seconds(60))
        do {
            _ = try await ShippedCatalog.gcp.update(shipped, options: bare)
            Issue.record("an update without key or credentials went through")
        } catch let error as ProviderError {
            #expect(error.kind == .auth && error.message.contains("STRATUM_GCP_API_KEY"), "\(error)")
        }
    }
}
