import Foundation
import StratumCore
import StratumTesting
import Testing

/// `stratum catalog update` run as a process, its pricing endpoints pointed at loopback fakes.
@Suite("stratum catalog update (CLI)", .timeLimit(.minutes(3)))
struct CLICatalogUpdateTests {
    /// An environment that finds no credentials or metadata server of its own.
    static let isolated = [
        "HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        "AWS_CONFIG_FILE": "/nonexistent/config", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "NO_GCE_CHECK": "true",
        "GOOGLE_APPLICATION_CREDENTIALS": "",
    ]

    static func today() -> String { OfferCatalog.day(Date()) }

    @Test("update writes each cloud's file with fresh prices and a header, and `stratum catalog` prices with it")
    func updateThenList() async throws {
        let dir = try TestSupport.temporaryDirectory("catalog-update")
        let azure = try await AzureRetailPricesFake.start(items: [
            .vm("Standard_NC24ads_A100_v4", region: "eastus", price: 3.8), .vm("Standard_NC24ads_A100_v4", region: "eastus", price: 0.52, spot: true),
            .vm("Standard_NC24ads_A100_v4", region: "eastus", price: 9.9, windows: true),
        ])
        let list = try await AWSPriceListFake.start(regions: ["us-east-1"], rows: [.init("p4d.24xlarge", region: "us-east-1", price: 20.5)], padding: 50)
        let spot = try await EC2SpotPriceFake.start([.init("p4d.24xlarge", zone: "us-east-1a", price: 6.25)])
        let billing = try await GCPBillingCatalogFake.start(GCPBillingCatalogTestSKUs.a2)
        defer {
            Task {
                await azure.server.shutdown()
                await list.server.shutdown()
                await spot.server.shutdown()
                await billing.server.shutdown()
            }
        }
        var cli = CLI("stratum", in: dir)
        cli.environment = Self.isolated.merging([
            "STRATUM_AZURE_RETAIL_PRICES_ENDPOINT": azure.endpoint.absoluteString, "STRATUM_AWS_PRICE_LIST_ENDPOINT": list.endpoint.absoluteString,
            "AWS_ENDPOINT_URL_EC2": spot.endpoint.absoluteString, "AWS_ACCESS_KEY_ID": "AKIACATALOGTEST", "AWS_SECRET_ACCESS_KEY": "catalog-test-secret",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING": billing.endpoint.absoluteString, "STRATUM_GCP_API_KEY": billing.apiKey,
        ]) { $1 }
        let before = Self.today()
        let update = try await cli.run(["catalog", "update"])
        let day = Self.today() == before ? before : Self.today()
        #expect(update.status == 0, "\(update.stderr)")
        for cloud in ["aws", "gcp", "azure"] {
            #expect(update.stderr.contains("\(cloud): updating the prices of"), "\(update.stderr)")
            let file = dir.appendingPathComponent(".stratum/catalog/\(cloud).csv")
            #expect(update.stdout.contains("wrote \(file.path)"), "\(update.stdout)")
            let text = try String(contentsOf: file, encoding: .utf8)
            #expect(text.hasPrefix("# Stratum offer catalog for \(cloud), written by `stratum catalog update` on \(day)."))
            let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? Int
            #expect(mode == 0o644)
        }
        #expect(update.stdout.contains("azure: 1 refreshed, 0 unchanged, 47 not at the source"), "\(update.stdout)")
        #expect(update.stdout.contains("aws: 1 refreshed"), "\(update.stdout)")
        #expect(update.stdout.contains("gcp: 5 refreshed"), "\(update.stdout)")
        #expect(update.stdout.contains("not at the source: a2-highgpu-1g europe-west4: no OnDemand CPU SKU of A2 in europe-west4"), "\(update.stdout)")
        // No secret reaches the output.
        for secret in ["catalog-test-secret", billing.apiKey] { #expect(!update.stdout.contains(secret) && !update.stderr.contains(secret)) }

        let table = try await cli.run(["catalog", "--gpu", "A100-80GB", "--cloud", "azure", "--region", "eastus"])
        let row = try #require(table.stdout.split(separator: "\n").first { $0.contains("Standard_NC24ads_A100_v4") })
        #expect(row.contains("$3.80/h") && row.contains("$0.52/h") && row.contains(day), "\(row)")
        #expect(table.stdout.contains("from \(dir.appendingPathComponent(".stratum/catalog/azure.csv").path)"), "\(table.stdout)")
        let p4d = try await cli.run(["catalog", "--gpu", "A100", "--count", "8", "--cloud", "aws", "--region", "us-east-1", "--spot"])
        #expect(p4d.stdout.contains("$6.25/h"), "\(p4d.stdout)")

        // Offline later: the updated file stays as it is, and the command says how old its prices are.
        let written = try Data(contentsOf: dir.appendingPathComponent(".stratum/catalog/azure.csv"))
        let offline = try await cli.run(
            ["catalog", "update", "--cloud", "azure", "--timeout", "2"],
            extraEnvironment: ["STRATUM_AZURE_RETAIL_PRICES_ENDPOINT": "http://127.0.0.1:\(freeLoopbackPort())/api/retail/prices"])
        #expect(offline.status == 1)
        #expect(offline.stderr.contains("azure: kept \(dir.appendingPathComponent(".stratum/catalog/azure.csv").path); prices as of"), "\(offline.stderr)")
        #expect(try Data(contentsOf: dir.appendingPathComponent(".stratum/catalog/azure.csv")) == written)
    }

    /// (The time limit is what catches a run that hangs on an unreachable endpoint.)
    @Test("offline, every cloud keeps its shipped prices, the command says how old they are and exits 1 after trying them all", .timeLimit(.minutes(3)))
    func offlineKeepsShippedData() async throws {
        let dir = try TestSupport.temporaryDirectory("catalog-offline")
        var cli = CLI("stratum", in: dir)
        let closed = "http://127.0.0.1:\(freeLoopbackPort())"
        cli.environment = Self.isolated.merging([
            "STRATUM_AZURE_RETAIL_PRICES_ENDPOINT": "\(closed)/api/retail/prices", "STRATUM_AWS_PRICE_LIST_ENDPOINT": closed,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING": closed, "STRATUM_GCP_API_KEY": "AIzaOfflineKey",
        ]) { $1 }
        let result = try await cli.run(["catalog", "update", "--timeout", "2"])
        #expect(result.status == 1)
        for (cloud, file) in [("aws", "Providers/AWS/Catalog/offers.csv"), ("gcp", "Providers/GCP/Catalog/offers.csv"), ("azure", "Providers/Azure/Catalog/offers.csv")] {
            #expect(result.stderr.contains("\(cloud): cannot reach 127.0.0.1"), "\(result.stderr)")
            #expect(result.stderr.contains("\(cloud): kept \(file); prices as of"), "\(result.stderr)")
        }
        #expect(result.stderr.contains("days old)") || result.stderr.contains("day old)"))
        #expect(result.stderr.contains("Prices of aws, gcp, azure were not updated"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent(".stratum/catalog").path))
        #expect(!result.stderr.contains("AIzaOfflineKey"))

        let unknown = try await cli.run(["catalog", "update", "--cloud", "mars"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no offer catalog for mars"), "\(unknown.stderr)")
    }
}

/// SKUs that price the A2 machines of GCP's catalog in us-central1.
enum GCPBillingCatalogTestSKUs {
    static let a2: [GCPBillingCatalogFake.SKU] = [
        .init("A2 Instance Core running in Americas", group: "CPU", regions: ["us-central1"], price: 0.031611),
        .init("A2 Instance Ram running in Americas", group: "RAM", regions: ["us-central1"], unit: "GiBy.h", price: 0.004237),
        .init("Nvidia Tesla A100 GPU running in Americas", group: "GPU", regions: ["us-central1"], price: 2.5),
    ]
}
