import Foundation
import StratumCore

/// A loopback Cloud Billing Catalog API serving `cloudbilling.services.skus.list` for Compute
/// Engine. Every request is checked against the cloudbilling v1 discovery document shipped in
/// google-api-python-client, and every answer against its `ListSkusResponse` schema; what is
/// wrong is recorded in `violations`. Calls need the API key (`X-Goog-Api-Key`) or the bearer
/// token the fake was given (403 otherwise, in Google's error shape). Pages hold at most
/// `pageSize` SKUs, however many the caller asks for, linked by `nextPageToken`.
public struct GCPBillingCatalogFake: Sendable {
    /// One SKU: a part of a machine (a vCPU, a GiB of memory, a GPU) at a price per hour.
    public struct SKU: Sendable {
        public var description: String
        public var resourceGroup: String
        public var usageType: String
        public var regions: [String]
        public var usageUnit: String
        public var price: Double

        public init(_ description: String, group: String, usageType: String = "OnDemand", regions: [String], unit: String = "h", price: Double) {
            self.description = description
            self.resourceGroup = group
            self.usageType = usageType
            self.regions = regions
            self.usageUnit = unit
            self.price = price
        }

        func json(index: Int) -> [String: Any] {
            let id = String(format: "F%03X-%04X-%04X", index % 4096, (index * 7919) % 65536, (index * 104_729) % 65536)
            let units = price.rounded(.down)
            let nanos = Int(((price - units) * 1e9).rounded())
            return [
                "name": "services/6F81-5844-456A/skus/\(id)", "skuId": id, "description": description,
                "category": ["serviceDisplayName": "Compute Engine", "resourceFamily": "Compute", "resourceGroup": resourceGroup, "usageType": usageType],
                "serviceRegions": regions, "serviceProviderName": "Google", "geoTaxonomy": ["type": regions.count > 1 ? "MULTI_REGIONAL" : "REGIONAL", "regions": regions],
                "pricingInfo": [
                    [
                        "summary": "", "effectiveTime": "2026-11-28T00:00:00Z", "currencyConversionRate": 1,
                        "pricingExpression": [
                            "usageUnit": usageUnit, "usageUnitDescription": usageUnit == "h" ? "hour" : "gibibyte hour", "baseUnit": usageUnit == "h" ? "s" : "By.s",
                            "baseUnitDescription": usageUnit == "h" ? "second" : "byte second", "baseUnitConversionFactor": usageUnit == "h" ? 3600 : 3_865_470_566_400.0,
                            "displayQuantity": 1,
                            "tieredRates": [["startUsageAmount": 0, "unitPrice": ["currencyCode": "USD", "units": String(Int(units)), "nanos": nanos]]],
                        ],
                    ]
                ],
            ]
        }
    }

    public let server: LoopbackHTTPServer
    public let apiKey: String
    public let token: String
    /// Requests answered (path and query).
    public let requests: LockedValue<[String]>
    /// Requests refused for want of a key or token.
    public let refused: LockedValue<Int>
    /// What was wrong with requests and answers, by the discovery document.
    public let violations: LockedValue<[String]>

    /// The API root, as `CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING` takes it.
    public var endpoint: URL { server.url }

    public static func start(_ skus: [SKU], pageSize: Int = 3) async throws -> GCPBillingCatalogFake {
        let validator = try DiscoveryValidator.named("cloudbilling.v1")
        let requests = LockedValue<[String]>([]), refused = LockedValue(0), violations = LockedValue<[String]>([])
        let apiKey = "AIzaFake\(UInt32.random(in: 0...UInt32.max))", token = "ya29.billing-\(UInt32.random(in: 0...UInt32.max))"
        let items = skus.enumerated().map { $0.element.json(index: $0.offset) }
        let pages = stride(from: 0, to: max(items.count, 1), by: pageSize).map { start in
            (try? JSONSerialization.data(withJSONObject: Array(items[start..<min(start + pageSize, items.count)]), options: [.sortedKeys])) ?? Data()
        }
        let server = try await LoopbackHTTPServer.start { request in
            requests.update { $0.append(request.uri) }
            let outcome = validator.validate(method: request.method, uri: request.uri, body: request.body)
            violations.update { $0 += outcome.violations.map { "\(request.method) \(request.uri): \($0)" } }
            guard let match = outcome.match, match.methodID == "cloudbilling.services.skus.list" else {
                return error(404, "NOT_FOUND", "The requested URL \(request.uri) was not found on this server.")
            }
            guard request.header("X-Goog-Api-Key") == apiKey || request.header("Authorization") == "Bearer \(token)" else {
                refused.update { $0 += 1 }
                return error(403, "PERMISSION_DENIED", "The request is missing a valid API key.")
            }
            guard match.pathParameters["servicesId"] == "6F81-5844-456A" else { return error(404, "NOT_FOUND", "Service not found.") }
            let index = match.query["pageToken"]?.first.flatMap { Int($0.dropFirst("page-".count)) } ?? 0
            guard index < pages.count else { return error(400, "INVALID_ARGUMENT", "Invalid page token.") }
            let skus = (try? JSONSerialization.jsonObject(with: pages[index])) ?? []
            let body = (try? JSONSerialization.data(
                withJSONObject: ["skus": skus, "nextPageToken": index + 1 < pages.count ? "page-\(index + 1)" : ""], options: [.sortedKeys])) ?? Data()
            violations.update { $0 += validator.validateResponse(body, of: match.methodID).map { "answer to \(request.uri): \($0)" } }
            return ProxyResponse(status: 200, headers: [("Content-Type", "application/json; charset=UTF-8")], body: body)
        }
        return GCPBillingCatalogFake(server: server, apiKey: apiKey, token: token, requests: requests, refused: refused, violations: violations)
    }

    static func error(_ code: Int, _ status: String, _ message: String) -> ProxyResponse {
        let object: [String: Any] = ["error": ["code": code, "message": message, "status": status]]
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return ProxyResponse(status: code, headers: [("Content-Type", "application/json; charset=UTF-8")], body: body)
    }
}
