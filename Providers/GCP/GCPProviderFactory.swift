import Foundation
import StratumCloud
import StratumCore

extension ProviderFactory {
    /// Google Cloud, with Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud's ADC file, the metadata server), the project from `GOOGLE_CLOUD_PROJECT` or the
    /// credentials, and the endpoint overrides of `GCPEndpoints.fromEnvironment` for emulators.
    public static let gcp = ProviderFactory(wiring: .gcp, catalog: .gcp) { _ in GCPProvider.fromEnvironment() }
}

extension GCPProvider {
    /// The GCP provider of a `stratum` binary. Its kinds' schemas and checks are there at once;
    /// the credentials and the project are resolved (`GCPClient.standard`, which may ask the
    /// metadata server) at the first call that reaches GCP, once, so commands that never reach
    /// it never look for credentials, and missing ones fail that call with an auth error.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, transport: any HTTPTransport = AsyncHTTPTransport()
    ) -> any Provider {
        DeferredProvider(
            name: "gcp", cloud: "GCP", offline: { GCPProvider(client: try GCPOfflineClient.make(environment: environment, transport: transport)) },
            live: { GCPProvider(client: try await GCPClient.standard(environment: environment, transport: transport)) })
    }
}

/// The client for everything that needs no call to GCP.
enum GCPOfflineClient {
    /// A client whose project is the one the environment or a key file names without asking a
    /// server, and asking it for a token fails.
    static func make(environment: [String: String], transport: any HTTPTransport) throws -> GCPClient {
        let keyProject: String? = environment["GOOGLE_APPLICATION_CREDENTIALS"].flatMap { path in
            guard !path.isEmpty, let file = try? GCPCredentialFile.load(path) else { return nil }
            switch file {
            case .serviceAccount(let key): return key.projectId
            case .authorizedUser(let user): return user.quotaProjectId
            }
        }
        let project = environment["GOOGLE_CLOUD_PROJECT"].flatMap { $0.isEmpty ? nil : $0 } ?? keyProject ?? "unresolved-project"
        let tokens = BearerTokenCache { throw ProviderError(.auth, "GCP credentials are resolved at the first call to GCP, not here") }
        let credentials = GCPCredentials(source: .metadataServer, project: project, tokens: tokens)
        return try GCPClient(configuration: .init(endpoints: GCPEndpoints.fromEnvironment(environment)), credentials: credentials, transport: transport)
    }
}

extension ShippedCatalog {
    /// The GCP offers this build ships with (Providers/GCP/Catalog/offers.csv); `stratum
    /// catalog update` refreshes them from the Cloud Billing Catalog (`GCPBillingCatalog`).
    public static let gcp = ShippedCatalog(cloud: "gcp", csv: StratumShippedCatalog.csv, file: StratumShippedCatalog.path) { current, options in
        var source = try await GCPBillingCatalog.fromEnvironment(options.environment, transport: AsyncHTTPTransport())
        source.timeout = options.timeout
        return try await source.prices(for: current, progress: options.progress)
    }
}

extension PackageWiring {
    /// A stack package on GCP: the StratumGCP product, `.gcp` in `main`, and an example stack
    /// (a VPC network, a Cloud Storage bucket and one small CPU instance).
    public static let gcp = PackageWiring(
        cloud: "gcp", product: "StratumGCP", factory: ".gcp",
        files: [
            "ExampleGCPStack.swift": """
                import Stratum
                import StratumGCP

                /// A network, a bucket and a small pool of CPU instances on GCP.
                struct ExampleGCPStack: Stack {
                    static let name = "example-gcp"
                    static let summary = "A VPC network, a Cloud Storage bucket and CPU instances on GCP"

                    /// Read from Stacks/example-gcp.<env>.yaml; keys are the property names in snake_case.
                    struct Config: StackConfiguration {
                        /// The project; empty: GOOGLE_CLOUD_PROJECT or the one the credentials name.
                        var project = ""
                        var region = "us-central1"
                        /// Zones in order of preference: a node that meets a stockout in one is made in the next.
                        var zones = ["us-central1-a", "us-central1-b"]
                        var workers = 1
                        /// Cloud Storage bucket names are global: pick one unique to you.
                        var bucketName = "example-gcp-data"
                    }

                    func body(config: Config) -> StackContent {
                        let placement = Placement.gcp(project: config.project.isEmpty ? nil : config.project, region: config.region, zones: config.zones)
                        let network = Network("example", cidr: "10.50.0.0/16", on: placement)
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
            "Stacks/example-gcp.dev.yaml": """
                # Configuration of the 'example-gcp' stack in the 'dev' environment.
                project: ""
                region: us-central1
                zones: [us-central1-a, us-central1-b]
                workers: 1
                bucket_name: example-gcp-data-dev

                """,
        ],
        stackTypes: ["ExampleGCPStack"], stackNames: ["example-gcp"])
}
