import Foundation
import StratumCloud
import StratumCore

/// A loopback Azure Retail Prices API (`GET /api/retail/prices?$filter=…`). Azure publishes no
/// SDK or schema for this API, so the fake follows its documentation: the answer is
/// `{"BillingCurrency", "CustomerEntityId", "CustomerEntityType", "Items": [...],
/// "NextPageLink", "Count"}`, items carry the documented fields (`armSkuName`,
/// `armRegionName`, `retailPrice`, `unitPrice`, `skuName`, `meterName`, `productName`, `type`,
/// `unitOfMeasure`, …), `$filter` is OData (`field eq 'value'` joined by `and`/`or`, with
/// parentheses) over the documented filter fields (`priceType` filters `type`), and pages of
/// `pageSize` items link to the next with `$skip`. A filter the fake cannot read is answered
/// 400 and recorded in `violations`.
public struct AzureRetailPricesFake: Sendable {
    /// One price of the API.
    public struct Item: Sendable {
        public var fields: [String: String]
        public var retailPrice: Double

        /// A VM size's price: `Standard_NC24ads_A100_v4` in `eastus`; Linux unless `windows`;
        /// pay-as-you-go unless `spot` (skuName `… Spot`), `lowPriority` (`… Low Priority`) or
        /// `reservation` (type `Reservation`, a one-year term).
        public static func vm(
            _ size: String, region: String, price: Double, spot: Bool = false, lowPriority: Bool = false, windows: Bool = false, reservation: Bool = false
        ) -> Item {
            let name = size.replacingOccurrences(of: "Standard_", with: "").replacingOccurrences(of: "_", with: " ")
            let series = name.split(separator: " ").dropFirst().joined()
            let suffix = spot ? " Spot" : lowPriority ? " Low Priority" : ""
            var fields = [
                "currencyCode": "USD", "armRegionName": region, "location": region, "effectiveStartDate": "2026-11-01T00:00:00Z",
                "meterId": UUID().uuidString.lowercased(), "meterName": name + suffix, "productId": "DZH318Z0\(abs(size.hashValue) % 10000)",
                "skuId": "DZH318Z0BQ4L/\(abs(name.hashValue) % 1000)", "productName": "Virtual Machines \(series) Series" + (windows ? " Windows" : ""),
                "skuName": name + suffix, "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
                "unitOfMeasure": "1 Hour", "type": reservation ? "Reservation" : "Consumption", "armSkuName": size,
            ]
            if reservation { fields["reservationTerm"] = "1 Year" }
            return Item(fields: fields, retailPrice: price)
        }

        var json: [String: Any] {
            var object: [String: Any] = fields
            object["retailPrice"] = retailPrice
            object["unitPrice"] = retailPrice
            object["tierMinimumUnits"] = 0.0
            object["isPrimaryMeterRegion"] = true
            return object
        }
    }

    /// The fields `$filter` may name, as documented; `priceType` filters the items' `type`.
    public static let filterFields: Set<String> = [
        "armRegionName", "location", "meterId", "meterName", "productId", "skuId", "productName", "skuName", "serviceName", "serviceId", "serviceFamily",
        "priceType", "armSkuName",
    ]

    public let server: LoopbackHTTPServer
    /// Requests answered, by page.
    public let requests: LockedValue<[String]>
    /// What was wrong with requests (unreadable filters, unknown fields).
    public let violations: LockedValue<[String]>

    public var endpoint: URL { server.url.appendingPathComponent("api/retail/prices") }

    public static func start(items: [Item], pageSize: Int = 100) async throws -> AzureRetailPricesFake {
        let requests = LockedValue<[String]>([]), violations = LockedValue<[String]>([])
        let server = try await LoopbackHTTPServer.start { request in
            requests.update { $0.append(request.uri) }
            let (path, query) = Self.split(request.uri)
            guard request.method == "GET", path == "/api/retail/prices" else { return ProxyResponse(status: 404) }
            var predicate: ODataFilter?
            if let filter = query["$filter"] {
                do {
                    predicate = try ODataFilter(filter, fields: filterFields)
                } catch {
                    violations.update { $0.append("\(filter): \(error)") }
                    return Self.json(400, ["Error": ["Code": "InvalidFilter", "Message": "\(error)"]])
                }
            }
            let matching = items.filter { item in
                predicate?.matches { field in field == "priceType" ? item.fields["type"] : item.fields[field] } ?? true
            }
            let skip = query["$skip"].flatMap(Int.init) ?? 0
            let page = Array(matching.dropFirst(skip).prefix(pageSize))
            var next: Any = NSNull()
            if skip + pageSize < matching.count {
                let host = request.header("Host") ?? "127.0.0.1"
                let filter = query["$filter"].map { "$filter=\(PricingEndpoint.queryValue($0))&" } ?? ""
                next = "http://\(host)/api/retail/prices?\(filter)$skip=\(skip + pageSize)"
            }
            return Self.json(
                200,
                [
                    "BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail", "Items": page.map(\.json),
                    "NextPageLink": next, "Count": page.count,
                ])
        }
        return AzureRetailPricesFake(server: server, requests: requests, violations: violations)
    }

    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1)
        var query: [String: String] = [:]
        for pair in parts.count > 1 ? parts[1].split(separator: "&") : [] {
            let kv = pair.split(separator: "=", maxSplits: 1)
            let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
            query[key] = kv.count > 1 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[1])) : ""
        }
        return (String(parts.first ?? ""), query)
    }

    static func json(_ status: Int, _ object: [String: Any]) -> ProxyResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return ProxyResponse(status: status, headers: [("Content-Type", "application/json; charset=utf-8")], body: data)
    }
}

/// The part of OData `$filter` the Retail Prices API documents: `field eq 'value'` comparisons
/// joined by `and` and `or` (and binding tighter), with parentheses.
struct ODataFilter {
    indirect enum Node {
        case equals(String, String)
        case and(Node, Node)
        case or(Node, Node)
    }

    struct SyntaxError: Error, CustomStringConvertible {
        var description: String
    }

    let root: Node

    init(_ text: String, fields: Set<String>) throws {
        var parser = Parser(tokens: try Self.tokens(text), fields: fields)
        root = try parser.expression()
        guard parser.position == parser.tokens.count else { throw SyntaxError(description: "unexpected '\(parser.tokens[parser.position])'") }
    }

    func matches(_ value: (String) -> String?) -> Bool { Self.evaluate(root, value) }

    static func evaluate(_ node: Node, _ value: (String) -> String?) -> Bool {
        switch node {
        case .equals(let field, let literal): return value(field) == literal
        case .and(let a, let b): return evaluate(a, value) && evaluate(b, value)
        case .or(let a, let b): return evaluate(a, value) || evaluate(b, value)
        }
    }

    /// Words, parentheses and quoted literals (a literal keeps its quotes; `''` is a quote).
    static func tokens(_ text: String) throws -> [String] {
        var tokens: [String] = []
        var characters = Array(text)[...]
        while let first = characters.first {
            if first == " " {
                characters.removeFirst()
            } else if first == "(" || first == ")" {
                tokens.append(String(first))
                characters.removeFirst()
            } else if first == "'" {
                characters.removeFirst()
                var literal = ""
                while true {
                    guard let next = characters.popFirst() else { throw SyntaxError(description: "unterminated string in \(text)") }
                    if next == "'" {
                        if characters.first == "'" {
                            literal.append("'")
                            characters.removeFirst()
                        } else {
                            break
                        }
                    } else {
                        literal.append(next)
                    }
                }
                tokens.append("'" + literal)
            } else {
                let word = characters.prefix { $0 != " " && $0 != "(" && $0 != ")" && $0 != "'" }
                tokens.append(String(word))
                characters.removeFirst(word.count)
            }
        }
        return tokens
    }

    struct Parser {
        let tokens: [String]
        let fields: Set<String>
        var position = 0

        mutating func expression() throws -> Node {
            var node = try conjunction()
            while peek == "or" {
                position += 1
                node = .or(node, try conjunction())
            }
            return node
        }

        mutating func conjunction() throws -> Node {
            var node = try comparison()
            while peek == "and" {
                position += 1
                node = .and(node, try comparison())
            }
            return node
        }

        mutating func comparison() throws -> Node {
            guard let token = next() else { throw SyntaxError(description: "the filter ends too early") }
            if token == "(" {
                let inner = try expression()
                guard next() == ")" else { throw SyntaxError(description: "a '(' is not closed") }
                return inner
            }
            guard fields.contains(token) else { throw SyntaxError(description: "'\(token)' is not a field the API filters on") }
            guard next() == "eq" else { throw SyntaxError(description: "expected 'eq' after \(token)") }
            guard let literal = next(), literal.hasPrefix("'") else { throw SyntaxError(description: "expected a quoted value after \(token) eq") }
            return .equals(token, String(literal.dropFirst()))
        }

        var peek: String? { position < tokens.count ? tokens[position] : nil }

        mutating func next() -> String? {
            defer { position += 1 }
            return peek
        }
    }
}
