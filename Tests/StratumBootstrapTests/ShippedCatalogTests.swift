import Foundation
import StratumCore
import Testing
import Yams

@testable import StratumAWS
@testable import StratumAzure
@testable import StratumGCP

/// The offer catalogs the clouds ship: they parse, and every machine type a lowering can choose
/// or a bundled stack names is in them, with the GPUs the lowering believes it has.
@Suite("Shipped offer catalogs")
struct ShippedCatalogTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// (cloud, catalog, machine types the lowering may choose with the GPUs it expects).
    static func clouds() throws -> [(String, OfferCatalog, [(type: String, gpu: String?, count: Int)])] {
        let aws = AWSInstanceCatalog.gpuTypes.flatMap { gpu, types in types.map { (type: $0.value, gpu: Optional(gpu), count: $0.key) } }
            + ["m7i.large", "m7i.xlarge", "m7i.4xlarge"].map { (type: $0, gpu: String?.none, count: 0) }
        let gcp = GCPMachineCatalog.acceleratorOptimized.flatMap { gpu, types in types.map { (type: $0.value, gpu: Optional(gpu), count: $0.key) } }
            + GCPMachineCatalog.singleL4.map { (type: $0.type, gpu: Optional("L4"), count: 1) }
            + GCPMachineCatalog.cpuTypes.map { (type: $0.type, gpu: String?.none, count: 0) }
        // The A100 v4 NC sizes are listed under both A100 classes and carry the 80 GB part.
        let azure = AzureMachineCatalog.gpuSizes.flatMap { gpu, sizes in
            sizes.map { (type: $0.value, gpu: Optional(AzureMachineCatalog.gpus(ofSize: $0.value)?.gpuClass ?? gpu), count: $0.key) }
        }
            + AzureMachineCatalog.singleT4.map { (type: $0.size, gpu: Optional("T4"), count: 1) }
            + AzureMachineCatalog.cpuSizes.map { (type: $0.size, gpu: String?.none, count: 0) }
        return [("aws", try ShippedCatalog.aws.load(), aws), ("gcp", try ShippedCatalog.gcp.load(), gcp), ("azure", try ShippedCatalog.azure.load(), azure)]
    }

    @Test("each cloud's catalog parses, and every row names its cloud, a source and a date")
    func parses() throws {
        for (cloud, catalog, _) in try Self.clouds() {
            #expect(catalog.offers.count >= 20, "\(cloud)")
            #expect(catalog.origins == [cloud: "Providers/\(["aws": "AWS", "gcp": "GCP", "azure": "Azure"][cloud]!)/Catalog/offers.csv"])
            #expect(catalog.offers.allSatisfy { $0.cloud == cloud && $0.source.hasPrefix("https://") && $0.asOf.count == 10 })
            #expect(catalog.offers.contains { $0.onDemandHourly != nil }, "\(cloud) has no prices")
        }
    }

    @Test("every machine type a lowering can choose is in its cloud's catalog, with the GPUs the lowering expects")
    func loweringTypesAreListed() throws {
        for (cloud, catalog, types) in try Self.clouds() {
            for expected in types {
                let rows = catalog.offers.filter { $0.instanceType == expected.type }
                #expect(!rows.isEmpty, "\(cloud) \(expected.type) is not in the catalog")
                for row in rows {
                    #expect(row.gpuCount == expected.count, "\(cloud) \(expected.type) in \(row.region): \(row.gpuCount) GPUs, the lowering expects \(expected.count)")
                    // Azure's NC H100 v5 sizes carry the H100 NVL part (94 GB), which the size
                    // table files under H100; the catalog names the part exactly.
                    let model = row.gpu.map(normalisedGPU).map { $0 == "H100NVL" ? "H100" : $0 }
                    #expect(model == expected.gpu.map(normalisedGPU), "\(cloud) \(expected.type): \(row.gpu ?? "no GPU") vs \(expected.gpu ?? "no GPU")")
                }
            }
        }
    }

    @Test("the machine type of every bundled stack's environment is priced in its region")
    func bundledStacksArePriced() throws {
        let catalogs = Dictionary(uniqueKeysWithValues: try Self.clouds().map { ($0.0, $0.1) })
        let stacks = Self.repository.appendingPathComponent("Stacks")
        var checked = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: stacks.path).sorted() where file.hasSuffix(".yaml") {
            let config = try #require(try Yams.load(yaml: String(contentsOf: stacks.appendingPathComponent(file), encoding: .utf8)) as? [String: Any])
            let cloud: String
            let type: String
            if let value = config["instance_type"] as? String { cloud = "aws"; type = value }
            else if let value = config["machine_type"] as? String { cloud = "gcp"; type = value }
            else if let value = config["size"] as? String { cloud = "azure"; type = value }
            else { continue }
            let region = try #require((config["region"] ?? config["location"]) as? String)
            let spot = config["spot"] as? Bool ?? false
            let offer = catalogs[cloud]?.offer(cloud: cloud, instanceType: type, region: region)
            #expect(offer?.hourly(spot: spot) != nil, "\(file): \(type) \(spot ? "spot" : "on-demand") in \(region) has no price in the \(cloud) catalog")
            checked += 1
        }
        #expect(checked == 6)
    }
}
