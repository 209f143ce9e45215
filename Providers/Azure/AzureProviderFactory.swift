import Foundation
import StratumCloud
import StratumCore

extension ProviderFactory {
    /// Microsoft Azure, with the credentials `AzureCredentials.resolve` finds (a service
    /// principal's secret or certificate, else the machine's managed identity), the
    /// subscription from `AZURE_SUBSCRIPTION_ID` (or each resource's `subscription`), and the
    /// endpoint overrides of `AzureEndpoints.fromEnvironment`.
    public static let azure = ProviderFactory(wiring: .azure, catalog: .azure) { _ in AzureProvider.fromEnvironment() }
}

extension AzureProvider {
    /// The Azure provider of a `stratum` binary. Its kinds' schemas and checks are there at
    /// once; the credentials are resolved (`AzureClient.standard`) at the first call that
    /// reaches Azure, once, so commands that never reach it (a plan with nothing in state)
    /// never look for credentials, and missing ones fail that call.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, transport: any HTTPTransport = AsyncHTTPTransport()
    ) -> any Provider {
        DeferredProvider(
            name: "azure", cloud: "Azure", offline: { AzureProvider(client: try offlineClient(environment: environment, transport: transport)) },
            live: { AzureProvider(client: try AzureClient.standard(environment: environment, transport: transport)) })
    }

    /// A client for everything that needs no call: its subscription is `AZURE_SUBSCRIPTION_ID`
    /// (a placeholder without it), and asking it for a token fails.
    static func offlineClient(environment: [String: String], transport: any HTTPTransport) throws -> AzureClient {
        let subscription = environment["AZURE_SUBSCRIPTION_ID"].flatMap { $0.isEmpty ? nil : $0 } ?? "00000000-0000-0000-0000-000000000000"
        let tokens = BearerTokenCache { throw ProviderError(.auth, "Azure credentials are resolved at the first call to Azure, not here") }
        let credentials = AzureCredentials(source: .managedIdentity(clientId: nil), subscription: subscription, tokens: tokens)
        return try AzureClient(
            configuration: .init(endpoints: AzureEndpoints.fromEnvironment(environment)), credentials: credentials, subscription: subscription,
            transport: transport)
    }
}

extension ShippedCatalog {
    /// The Azure offers this build ships with (Providers/Azure/Catalog/offers.csv); `stratum
    /// catalog update` refreshes them from the Retail Prices API (`AzureRetailPrices`).
    public static let azure = ShippedCatalog(cloud: "azure", csv: StratumShippedCatalog.csv, file: StratumShippedCatalog.path) { current, options in
        var source = AzureRetailPrices.fromEnvironment(options.environment, transport: AsyncHTTPTransport())
        source.timeout = options.timeout
        return try await source.prices(for: current, progress: options.progress)
    }
}

extension PackageWiring {
    /// A stack package on Azure: the StratumAzure product, `.azure` in `main`, and an example
    /// stack (a virtual network, a storage container and one small CPU VM).
    public static let azure = PackageWiring(
        cloud: "azure", product: "StratumAzure", factory: ".azure",
        files: [
            "ExampleAzureStack.swift": """
                import Stratum
                import StratumAzure

                /// A network, a blob container and a small pool of CPU VMs on Azure.
                struct ExampleAzureStack: Stack {
                    static let name = "example-azure"
                    static let summary = "A virtual network, a blob container and CPU VMs on Azure"

                    /// Read from Stacks/example-azure.<env>.yaml; keys are the property names in snake_case.
                    struct Config: StackConfiguration {
                        /// The subscription; empty: AZURE_SUBSCRIPTION_ID.
                        var subscription = ""
                        var location = "eastus"
                        /// Availability zones in order of preference: a VM that meets an allocation failure in one is made in the next.
                        var zones = ["1", "2"]
                        var workers = 1
                        /// The storage account is named from this; its names are global: pick one unique to you.
                        var bucketName = "example-azure-data"
                    }

                    func body(config: Config) -> StackContent {
                        let placement = Placement.azure(
                            subscription: config.subscription.isEmpty ? nil : config.subscription, location: config.location, zones: config.zones)
                        let network = Network("example", cidr: "10.60.0.0/16", on: placement)
                        let bucket = Bucket(config.bucketName, on: placement)
                        network
                        bucket
                        NodePool(
                            "worker", count: config.workers, machine: MachineRequest(cpus: 2, memoryGiB: 8),
                            image: "ubuntu:24.04", command: ["/bin/sh", "-c", "echo \\"node $STRATUM_NODE_INDEX up\\""],
                            env: ["DATA": bucket.url], network: network, on: placement)
                        Output("bucket_url", bucket.url)
                    }
                }

                """,
            "Stacks/example-azure.dev.yaml": """
                # Configuration of the 'example-azure' stack in the 'dev' environment.
                subscription: ""
                location: eastus
                zones: ["1", "2"]
                workers: 1
                bucket_name: example-azure-data-dev

                """,
        ],
        stackTypes: ["ExampleAzureStack"], stackNames: ["example-azure"])
}
