import Foundation
import StratumCloud
import StratumCore

/// The Cloud Billing Catalog API's public SKUs of Compute Engine
/// (`GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus`), which needs an
/// API key or any Google credentials. GCP prices a machine by its parts, so a whole machine's
/// price is built: GPU SKU × GPUs + vCPU SKU × vCPUs + RAM SKU × GiB of its family, on-demand
/// from `OnDemand` SKUs and spot from `Preemptible` ones, each SKU offered in the region
/// (`serviceRegions`). A part must come from exactly one price: none, or two SKUs that
/// disagree, and the machine is left as it was. Families whose machines bundle local SSD (A2
/// Ultra, A3) are not built: the catalog prices that SSD per GiB-month, and Stratum does not
/// guess how Google turns it into an hourly machine price.
public struct GCPBillingCatalog: Sendable {
    public static let defaultEndpoint = URL(string: "https://cloudbilling.googleapis.com")!
    /// Compute Engine's service id in the Billing Catalog.
    public static let computeEngine = "6F81-5844-456A"

    /// How requests are authorized.
    public enum Authorization: Sendable {
        /// An API key, sent in `X-Goog-Api-Key` (kept out of URLs and logs).
        case apiKey(String)
        /// An OAuth2 access token from Google credentials.
        case bearer(BearerTokenCache)
    }

    public var endpoint: URL
    public var transport: any HTTPTransport
    public var authorization: Authorization
    public var timeout: Duration

    public init(endpoint: URL = Self.defaultEndpoint, transport: any HTTPTransport, authorization: Authorization, timeout: Duration = .seconds(60)) {
        self.endpoint = endpoint
        self.transport = transport
        self.authorization = authorization
        self.timeout = timeout
    }

    /// The endpoint from `CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING` (as gcloud reads it; a
    /// loopback fake in tests); the API key from `STRATUM_GCP_API_KEY`, else Application
    /// Default Credentials (`GCPCredentials.resolve`).
    public static func fromEnvironment(_ environment: [String: String], transport: any HTTPTransport) async throws -> GCPBillingCatalog {
        var endpoint = defaultEndpoint
        if var text = environment["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDBILLING"], !text.isEmpty {
            while text.hasSuffix("/") { text.removeLast() }
            if text.hasSuffix("/v1") { text.removeLast(3) }
            endpoint = URL(string: text) ?? defaultEndpoint
        }
        if let key = environment["STRATUM_GCP_API_KEY"], !key.isEmpty {
            return GCPBillingCatalog(endpoint: endpoint, transport: transport, authorization: .apiKey(key))
        }
        let fetcher = GCPTokenFetcher(endpoints: GCPEndpoints.fromEnvironment(environment), transport: transport)
        do {
            let credentials = try await GCPCredentials.resolve(environment: environment, fetcher: fetcher)
            return GCPBillingCatalog(endpoint: endpoint, transport: transport, authorization: .bearer(credentials.tokens))
        } catch {
            throw ProviderError(.auth, "the Cloud Billing Catalog needs an API key (STRATUM_GCP_API_KEY) or Google credentials: \(error)")
        }
    }

    /// The SKU list's address, which refreshed offers name as their source.
    public var skusURL: URL { endpoint.appendingPathComponent("v1/services/\(Self.computeEngine)/skus") }

    /// The prices of `catalog`'s GCP offers.
    public func prices(for catalog: OfferCatalog, progress: @Sendable (String) -> Void = { _ in }) async throws -> PriceSheet {
        let offers = catalog.offers.filter { $0.cloud == "gcp" }
        var sheet = PriceSheet(sources: [skusURL.absoluteString])
        guard !offers.isEmpty else { return sheet }
        let skus = try await computeSKUs(progress: progress)
        for offer in offers {
            switch Self.price(offer, skus: skus) {
            case .priced(let quote): sheet.quotes[offer.key] = PriceQuote(onDemand: quote.onDemand, spot: quote.spot, source: skusURL.absoluteString)
            case .unpriced(let reason): sheet.reasons[offer.key] = reason
            }
        }
        progress("gcp: \(sheet.quotes.count) of \(offers.count) offers built from \(skus.count) SKUs")
        return sheet
    }

    /// Every page of Compute Engine's SKUs, keeping the per-hour parts of machines.
    func computeSKUs(progress: @Sendable (String) -> Void) async throws -> [ComputeSKU] {
        var skus: [ComputeSKU] = []
        var token: String?
        var pages = 0
        repeat {
            var components = URLComponents(url: skusURL, resolvingAgainstBaseURL: false)
            components?.queryItems = [URLQueryItem(name: "currencyCode", value: "USD"), URLQueryItem(name: "pageSize", value: "5000")]
                + (token.map { [URLQueryItem(name: "pageToken", value: $0)] } ?? [])
            guard let url = components?.url else { break }
            let page = try await PricingEndpoint.json(url, headers: try await headers(), transport: transport, timeout: timeout, secrets: secrets)
            skus += page["skus"]?.array.compactMap(ComputeSKU.init) ?? []
            token = page["nextPageToken"]?.string.flatMap { $0.isEmpty ? nil : $0 }
            pages += 1
            progress("gcp: read \(pages) page(s) of Compute Engine SKUs")
        } while token != nil && pages < 100
        return skus
    }

    var secrets: [String] {
        if case .apiKey(let key) = authorization { return [key] }
        return []
    }

    func headers() async throws -> [(String, String)] {
        switch authorization {
        case .apiKey(let key): return [("X-Goog-Api-Key", key)]
        case .bearer(let tokens): return [("Authorization", try await tokens.authorization())]
        }
    }

    // MARK: building a machine's price

    /// How a machine family's price is made of SKUs.
    struct Family {
        /// The family's name in SKU descriptions: `A2` in `A2 Instance Core running in Americas`.
        var sku: String
        /// The GPU's name in SKU descriptions (` A100 GPU` in `Nvidia Tesla A100 GPU running in …`); nil for CPU machines.
        var gpu: String?
    }

    /// Machine-type prefixes Stratum knows how to build, and those it declines to.
    static let families: [(prefix: String, family: Family?)] = [
        ("a2-highgpu-", Family(sku: "A2", gpu: " A100 GPU")), ("a2-megagpu-", Family(sku: "A2", gpu: " A100 GPU")),
        ("g2-standard-", Family(sku: "G2", gpu: " L4 GPU")), ("e2-standard-", Family(sku: "E2")), ("n2-standard-", Family(sku: "N2")),
        ("a2-ultragpu-", nil), ("a3-", nil),
    ]

    enum Outcome {
        case priced(PriceQuote)
        case unpriced(String)
    }

    static func price(_ offer: Offer, skus: [ComputeSKU]) -> Outcome {
        guard let entry = families.first(where: { offer.instanceType.hasPrefix($0.prefix) }) else {
            return .unpriced("Stratum has no rule to build \(offer.instanceType) from SKUs")
        }
        guard let family = entry.family else {
            return .unpriced("\(offer.instanceType) bundles local SSD, priced per GiB-month, so its hourly price is not built from SKUs")
        }
        var prices: [Bool: Double] = [:]
        var reasons: [String] = []
        for spot in [false, true] {
            switch total(offer, family: family, spot: spot, skus: skus) {
            case .success(let price): prices[spot] = price
            case .failure(let problem): reasons.append(problem.text)
            }
        }
        guard !prices.isEmpty else { return .unpriced(reasons.joined(separator: "; ")) }
        return .priced(PriceQuote(onDemand: prices[false], spot: prices[true], source: ""))
    }

    struct Problem: Error {
        var text: String
    }

    static func total(_ offer: Offer, family: Family, spot: Bool, skus: [ComputeSKU]) -> Result<Double, Problem> {
        let usage = spot ? "Preemptible" : "OnDemand"
        let candidates = skus.filter { $0.usageType == usage && $0.regions.contains(offer.region) && !$0.isSpecialTerm }
        func part(_ group: String, unit: String, _ matches: (String) -> Bool) -> Result<Double, Problem> {
            let prices = Set(candidates.filter { $0.resourceGroup == group && $0.usageUnit == unit && matches($0.description) }.map(\.unitPrice))
            guard prices.count == 1, let price = prices.first else {
                let place = "of \(family.sku) in \(offer.region)"
                return .failure(
                    Problem(text: prices.isEmpty ? "no \(usage) \(group) SKU \(place)" : "\(prices.count) \(usage) \(group) SKUs \(place) with different prices"))
            }
            return .success(price)
        }
        let prefix = spot ? "Spot Preemptible \(family.sku) Instance" : "\(family.sku) Instance"
        do {
            let core = try part("CPU", unit: "h") { $0.hasPrefix("\(prefix) Core") }.get()
            let ram = try part("RAM", unit: "GiBy.h") { $0.hasPrefix("\(prefix) Ram") }.get()
            var total = core * Double(offer.vcpus) + ram * offer.memoryGiB
            if let gpu = family.gpu {
                total += try part("GPU", unit: "h") { $0.contains(gpu) }.get() * Double(offer.gpuCount)
            }
            return .success(total)
        } catch let problem as Problem {
            return .failure(problem)
        } catch {
            return .failure(Problem(text: "\(error)"))
        }
    }
}

/// One Compute Engine SKU, as far as machine prices need it.
struct ComputeSKU: Sendable {
    var description: String
    var resourceGroup: String
    var usageType: String
    var regions: Set<String>
    var usageUnit: String
    /// USD per `usageUnit`, from the first tier.
    var unitPrice: Double

    init?(_ json: CloudJSON) {
        guard let category = json["category"], category["resourceFamily"]?.string == "Compute",
            let usageType = category["usageType"]?.string, ["OnDemand", "Preemptible"].contains(usageType),
            let group = category["resourceGroup"]?.string, ["CPU", "RAM", "GPU"].contains(group),
            let expression = json["pricingInfo"]?.array.first?["pricingExpression"],
            let rate = expression["tieredRates"]?.array.first(where: { ($0["startUsageAmount"]?.number ?? 0) == 0 })?["unitPrice"],
            (rate["currencyCode"]?.string ?? "USD") == "USD"
        else { return nil }
        description = json["description"]?.string ?? ""
        resourceGroup = group
        self.usageType = usageType
        regions = Set(json["serviceRegions"]?.array.compactMap(\.string) ?? [])
        usageUnit = expression["usageUnit"]?.string ?? ""
        // Money: whole units as an int64 string, and nanos.
        unitPrice = (rate["units"]?.number ?? 0) + (rate["nanos"]?.number ?? 0) / 1e9
    }

    /// Commitments, reservations, sole tenancy, custom shapes and other terms that are not a
    /// machine's plain on-demand or spot price.
    var isSpecialTerm: Bool {
        ["Commitment", "Reserved", "Sole Tenancy", "Custom", "Premium", "DWS", "Calendar", "Flex"].contains { description.contains($0) }
    }
}
