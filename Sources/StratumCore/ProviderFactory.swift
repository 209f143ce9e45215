import Foundation

/// Makes a provider for a run, given where the run keeps its files. A `stratum` binary carries
/// the providers its `main` lists; each cloud's library product defines its own factory.
public struct ProviderFactory: Sendable {
    public var make: @Sendable (_ workDirectory: URL) -> any Provider
    /// How a new stack package links this provider (`stratum init --cloud`); nil for providers
    /// that need no wiring of their own (Local comes with the Stratum product) and test fakes.
    public var wiring: PackageWiring?
    /// The provider's cloud name and the offers its build ships with (machine types, GPUs,
    /// regions, hourly prices); nil for a provider without machines to price.
    public var catalog: ShippedCatalog?

    public init(wiring: PackageWiring? = nil, catalog: ShippedCatalog? = nil, _ make: @escaping @Sendable (_ workDirectory: URL) -> any Provider) {
        self.make = make
        self.wiring = wiring
        self.catalog = catalog
    }
}

/// A cloud's offer catalog as a binary carries it: parsed when first asked for, so commands
/// that price nothing never read it.
public struct ShippedCatalog: Sendable {
    /// Reads fresh prices for the offers of a catalog from the cloud's public pricing
    /// endpoints. Throws when an endpoint cannot be reached or answers with an error.
    public typealias PriceSource = @Sendable (_ current: OfferCatalog, _ options: CatalogUpdateOptions) async throws -> PriceSheet

    /// The provider's name (`aws`).
    public var cloud: String
    public var load: @Sendable () throws -> OfferCatalog
    /// Where `stratum catalog update` reads the cloud's prices; nil: the catalog is not updated.
    public var prices: PriceSource?

    public init(cloud: String, prices: PriceSource? = nil, load: @escaping @Sendable () throws -> OfferCatalog) {
        self.cloud = cloud
        self.prices = prices
        self.load = load
    }

    /// A catalog from CSV text, e.g. a file embedded at build time.
    public init(cloud: String, csv: String, file: String, prices: PriceSource? = nil) {
        self.init(cloud: cloud, prices: prices) { try OfferCatalog(csv: csv, cloud: cloud, file: file) }
    }

    /// `current` (this cloud's shipped or updated catalog) with the prices its source gives
    /// today; nil when the cloud has no price source.
    public func update(_ current: OfferCatalog, options: CatalogUpdateOptions) async throws -> CatalogUpdate? {
        guard let prices else { return nil }
        let sheet = try await prices(current, options)
        return current.updated(cloud: cloud, with: sheet, asOf: options.asOf)
    }
}

/// What a stack package needs in order to use a cloud that comes as its own library product:
/// read by `stratum init --cloud NAME` to write the package's manifest, `main` and an example.
public struct PackageWiring: Sendable {
    /// The name given to `--cloud`, which is also the provider's name.
    public var cloud: String
    /// The library product, which is also the module to import.
    public var product: String
    /// The factory as it is written in `StratumCLI.main(providers:)`, e.g. `.name`.
    public var factory: String
    /// Files of an example stack, by path relative to the package's executable sources
    /// (`Sources/<package>/`), or to the package root for paths starting with `Stacks/`.
    public var files: [String: String]
    /// The example stacks' type names, listed in `main`.
    public var stackTypes: [String]
    /// The example stacks' names, for the commands `stratum init` suggests.
    public var stackNames: [String]

    public init(cloud: String, product: String, factory: String, files: [String: String], stackTypes: [String], stackNames: [String]) {
        self.cloud = cloud
        self.product = product
        self.factory = factory
        self.files = files
        self.stackTypes = stackTypes
        self.stackNames = stackNames
    }
}
