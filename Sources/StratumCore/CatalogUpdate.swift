import Foundation

/// What `stratum catalog update` hands a cloud's price source.
public struct CatalogUpdateOptions: Sendable {
    /// The process environment: endpoint overrides and credentials.
    public var environment: [String: String]
    /// When the prices are read; refreshed offers get its day (UTC) as their `as_of`.
    public var date: Date
    /// How long to wait for each answer of a pricing endpoint (a large file's download is
    /// allowed longer). An endpoint that cannot be reached fails after this.
    public var timeout: Duration
    /// Reports a line of progress to the user.
    public var progress: @Sendable (String) -> Void

    public init(environment: [String: String], date: Date, timeout: Duration = .seconds(60), progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.environment = environment
        self.date = date
        self.timeout = timeout
        self.progress = progress
    }

    /// `date` as a catalog writes it (`YYYY-MM-DD`, UTC).
    public var asOf: String { OfferCatalog.day(date) }
}

/// The prices a pricing endpoint gives for one offer: whole machine, USD an hour. A nil price
/// is one the endpoint does not give, never a price of zero.
public struct PriceQuote: Sendable, Hashable {
    public var onDemand: Double?
    public var spot: Double?
    /// The endpoint the prices were read from.
    public var source: String

    public init(onDemand: Double?, spot: Double?, source: String) {
        self.onDemand = onDemand
        self.spot = spot
        self.source = source
    }
}

/// What a cloud's pricing endpoints said about the offers of a catalog.
public struct PriceSheet: Sendable {
    /// Prices by offer; an offer without a quote is one the endpoints do not price.
    public var quotes: [OfferKey: PriceQuote]
    /// Why an offer has no quote, where the source knows more than "not listed".
    public var reasons: [OfferKey: String]
    /// What the user should know about the whole update (e.g. spot prices kept as they were).
    public var notes: [String]
    /// The endpoints read, for the updated file's header.
    public var sources: [String]

    public init(quotes: [OfferKey: PriceQuote] = [:], reasons: [OfferKey: String] = [:], notes: [String] = [], sources: [String] = []) {
        self.quotes = quotes
        self.reasons = reasons
        self.notes = notes
        self.sources = sources
    }
}

/// A cloud's catalog after an update, and what changed.
public struct CatalogUpdate: Sendable {
    /// The cloud's offers: the same rows, with fresh prices where the source has them.
    public var catalog: OfferCatalog
    /// Offers whose price changed.
    public var refreshed: [OfferKey]
    /// Offers the source priced as they already were (their date moves to the update's).
    public var unchanged: [OfferKey]
    /// Offers the source does not price, with the reason; they keep their price and date.
    public var notFound: [OfferKey: String]
    public var notes: [String]
    public var sources: [String]
}

extension OfferCatalog {
    /// `cloud`'s offers with the prices of `sheet`: an offer the sheet quotes takes the quoted
    /// prices (a price the quote lacks stays as it was), the quote's source and `asOf`; every
    /// other offer keeps its price, source and date. No row is added or removed.
    public func updated(cloud: String, with sheet: PriceSheet, asOf: String) -> CatalogUpdate {
        var refreshed: [OfferKey] = [], unchanged: [OfferKey] = [], notFound: [OfferKey: String] = [:]
        let offers = offers.filter { $0.cloud == cloud }.map { offer -> Offer in
            guard let quote = sheet.quotes[offer.key], quote.onDemand != nil || quote.spot != nil else {
                notFound[offer.key] = sheet.reasons[offer.key] ?? "not listed at the source"
                return offer
            }
            var fresh = offer
            fresh.onDemandHourly = quote.onDemand ?? offer.onDemandHourly
            fresh.spotHourly = quote.spot ?? offer.spotHourly
            fresh.source = quote.source
            fresh.asOf = asOf
            let same = Self.samePrice(fresh.onDemandHourly, offer.onDemandHourly) && Self.samePrice(fresh.spotHourly, offer.spotHourly)
            if same { unchanged.append(offer.key) } else { refreshed.append(offer.key) }
            return fresh
        }
        var catalog = OfferCatalog(offers: offers, origins: origins.filter { $0.key == cloud })
        if catalog.origins[cloud] == nil { catalog.origins[cloud] = cloud }
        return CatalogUpdate(catalog: catalog, refreshed: refreshed, unchanged: unchanged, notFound: notFound, notes: sheet.notes, sources: sheet.sources)
    }

    static func samePrice(_ a: Double?, _ b: Double?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (x?, y?): return abs(x - y) < 1e-9
        default: return false
        }
    }
}
