import Foundation
import StratumCore

/// A loopback AWS Price List bulk API for EC2: the region index
/// (`/offers/v1.0/aws/AmazonEC2/current/region_index.json`) and each region's offer file in CSV.
/// The bulk files have no machine-readable schema, so the fake follows AWS's documented layout:
/// the index's `regions.<code>.currentVersionUrl` is a path to the region's `index.json`, whose
/// CSV form ends in `.csv`; the CSV starts with five lines of metadata (`"FormatVersion"`,
/// `"Disclaimer"`, `"Publication Date"`, `"Version"`, `"OfferCode"`), then a header row of
/// quoted column names and one quoted row per price dimension, product attributes included.
public struct AWSPriceListFake: Sendable {
    /// One price row of an offer file.
    public struct Row: Sendable {
        public var instanceType: String
        public var region: String
        public var price: Double
        public var termType = "OnDemand"
        public var operatingSystem = "Linux"
        public var tenancy = "Shared"
        public var preInstalledSoftware = "NA"
        public var capacityStatus = "Used"
        public var locationType = "AWS Region"

        public init(_ instanceType: String, region: String, price: Double) {
            self.instanceType = instanceType
            self.region = region
            self.price = price
        }

        /// The row with one attribute changed, e.g. `.with(\.operatingSystem, "Windows")`.
        public func with<T>(_ path: WritableKeyPath<Row, T>, _ value: T) -> Row {
            var row = self
            row[keyPath: path] = value
            return row
        }
    }

    static let version = "20261128000000"
    static let columns = [
        "SKU", "OfferTermCode", "RateCode", "TermType", "PriceDescription", "EffectiveDate", "StartingRange", "EndingRange", "Unit", "PricePerUnit",
        "Currency", "RelatedTo", "LeaseContractLength", "PurchaseOption", "OfferingClass", "Product Family", "serviceCode", "Location", "Location Type",
        "Instance Type", "Current Generation", "Instance Family", "vCPU", "Physical Processor", "Memory", "Tenancy", "Operating System", "License Model",
        "usageType", "operation", "CapacityStatus", "Pre Installed S/W", "Processor Features", "Region Code", "serviceName",
    ]

    public let server: LoopbackHTTPServer
    /// Paths requested, in order.
    public let requests: LockedValue<[String]>

    /// The bulk API's root, as `STRATUM_AWS_PRICE_LIST_ENDPOINT` takes it.
    public var endpoint: URL { server.url }

    /// Serves `rows` for `regions` (the index lists only these), each region's file padded with
    /// `padding` rows of other instance types so it arrives in many pieces.
    public static func start(regions: [String], rows: [Row], padding: Int = 2000) async throws -> AWSPriceListFake {
        let requests = LockedValue<[String]>([])
        var files: [String: Data] = [:]
        for region in regions {
            let mine = rows.filter { $0.region == region }
            let filler = (0..<padding).map { Row("m9.pad\($0)xlarge", region: region, price: 0.1 + Double($0) / 1000) }
            files["/offers/v1.0/aws/AmazonEC2/\(version)/\(region)/index.csv"] = Data(csv(mine + filler).utf8)
        }
        let index = Self.index(regions)
        let served = files
        let server = try await LoopbackHTTPServer.start { request in
            let path = String(request.uri.prefix { $0 != "?" })
            requests.update { $0.append(path) }
            guard request.method == "GET" else { return ProxyResponse(status: 405) }
            if path == "/offers/v1.0/aws/AmazonEC2/current/region_index.json" {
                return ProxyResponse(status: 200, headers: [("Content-Type", "application/json")], body: index)
            }
            guard let file = served[path] else { return ProxyResponse(status: 403, xml: "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>") }
            return ProxyResponse(status: 200, headers: [("Content-Type", "text/csv")], body: file)
        }
        return AWSPriceListFake(server: server, requests: requests)
    }

    static func index(_ regions: [String]) -> Data {
        var entries: [String: Any] = [:]
        for region in regions {
            entries[region] = ["regionCode": region, "currentVersionUrl": "/offers/v1.0/aws/AmazonEC2/\(version)/\(region)/index.json"]
        }
        let object: [String: Any] = [
            "formatVersion": "v1.0", "disclaimer": "This pricing list is for informational purposes only.", "publicationDate": "2026-11-28T00:00:00Z",
            "regions": entries,
        ]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    }

    static func csv(_ rows: [Row]) -> String {
        func quoted(_ fields: [String]) -> String { fields.map { "\"\($0.replacingOccurrences(of: "\"", with: "\"\""))\"" }.joined(separator: ",") }
        var lines = [
            quoted(["FormatVersion", "v1.0"]), quoted(["Disclaimer", "This pricing list is for informational purposes only."]),
            quoted(["Publication Date", "2026-11-28T00:00:00Z"]), quoted(["Version", version]), quoted(["OfferCode", "AmazonEC2"]), quoted(columns),
        ]
        for (index, row) in rows.enumerated() {
            let sku = String(format: "FAKESKU%08d", index)
            let value: [String: String] = [
                "SKU": sku, "OfferTermCode": "JRTCKXETXF", "RateCode": "\(sku).JRTCKXETXF.6YS6EN2CT7", "TermType": row.termType,
                "PriceDescription": "$\(row.price) per \(row.termType) \(row.operatingSystem) \(row.instanceType) Instance Hour",
                "EffectiveDate": "2026-11-01", "StartingRange": "0", "EndingRange": "Inf", "Unit": "Hrs", "PricePerUnit": String(row.price),
                "Currency": "USD", "Product Family": "Compute Instance", "serviceCode": "AmazonEC2", "Location": "US East (N. Virginia)",
                "Location Type": row.locationType, "Instance Type": row.instanceType, "Current Generation": "Yes",
                "Instance Family": "GPU instance", "vCPU": "96", "Physical Processor": "Intel Xeon", "Memory": "1152 GiB", "Tenancy": row.tenancy,
                "Operating System": row.operatingSystem, "License Model": "No License required", "usageType": "BoxUsage:\(row.instanceType)",
                "operation": "RunInstances", "CapacityStatus": row.capacityStatus, "Pre Installed S/W": row.preInstalledSoftware,
                "Processor Features": "Intel AVX, Intel AVX2, Intel AVX512, Intel Turbo", "Region Code": row.region, "serviceName": "Amazon Elastic Compute Cloud",
            ]
            lines.append(quoted(columns.map { value[$0] ?? "" }))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A loopback EC2 endpoint answering DescribeSpotPriceHistory (Query API, form-encoded POST,
/// signed): price changes per instance type and zone, filtered by `InstanceType.N` and
/// `ProductDescription.N`, in pages of `pageSize` linked by `NextToken`, in EC2's XML
/// (`spotPriceHistorySet/item` with `instanceType`, `productDescription`, `spotPrice`,
/// `timestamp`, `availabilityZone`). Unsigned calls are refused as EC2 refuses them.
public struct EC2SpotPriceFake: Sendable {
    /// One price change.
    public struct Change: Sendable {
        public var instanceType: String
        public var zone: String
        public var price: Double
        public var timestamp: String
        public var productDescription: String

        public init(_ instanceType: String, zone: String, price: Double, timestamp: String = "2026-11-28T12:00:00Z", productDescription: String = "Linux/UNIX") {
            self.instanceType = instanceType
            self.zone = zone
            self.price = price
            self.timestamp = timestamp
            self.productDescription = productDescription
        }
    }

    public let server: LoopbackHTTPServer
    /// The form fields of each call.
    public let calls: LockedValue<[[String: String]]>

    public var endpoint: URL { server.url }

    public static func start(_ changes: [Change], pageSize: Int = 2) async throws -> EC2SpotPriceFake {
        let calls = LockedValue<[[String: String]]>([])
        let server = try await LoopbackHTTPServer.start { request in
            let form = request.formFields
            calls.update { $0.append(form) }
            guard request.header("Authorization")?.hasPrefix("AWS4-HMAC-SHA256 Credential=") == true else {
                return ProxyResponse(status: 401, xml: error("AuthFailure", "AWS was not able to validate the provided access credentials"))
            }
            guard form["Action"] == "DescribeSpotPriceHistory" else {
                return ProxyResponse(status: 400, xml: error("InvalidAction", "The action \(form["Action"] ?? "") is not valid for this web service."))
            }
            let types = Set(form.filter { $0.key.hasPrefix("InstanceType.") }.values)
            let products = Set(form.filter { $0.key.hasPrefix("ProductDescription.") }.values)
            let matching = changes.filter { (types.isEmpty || types.contains($0.instanceType)) && (products.isEmpty || products.contains($0.productDescription)) }
            let start = form["NextToken"].flatMap(Int.init) ?? 0
            let page = matching.dropFirst(start).prefix(pageSize)
            let next = start + pageSize < matching.count ? "<nextToken>\(start + pageSize)</nextToken>" : "<nextToken/>"
            let items = page.map { change in
                "<item><instanceType>\(change.instanceType)</instanceType><productDescription>\(change.productDescription)</productDescription>"
                    + "<spotPrice>\(change.price)</spotPrice><timestamp>\(change.timestamp)</timestamp><availabilityZone>\(change.zone)</availabilityZone></item>"
            }.joined()
            return ProxyResponse(
                status: 200,
                xml: """
                    <?xml version="1.0" encoding="UTF-8"?>
                    <DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>\(UUID().uuidString.lowercased())</requestId>\
                    <spotPriceHistorySet>\(items)</spotPriceHistorySet>\(next)</DescribeSpotPriceHistoryResponse>
                    """)
        }
        return EC2SpotPriceFake(server: server, calls: calls)
    }

    static func error(_ code: String, _ message: String) -> String {
        "<Response><Errors><Error><Code>\(code)</Code><Message>\(message)</Message></Error></Errors><RequestID>\(UUID().uuidString)</RequestID></Response>"
    }
}
