import Foundation
import StratumCloud
import StratumCore

extension ProviderFactory {
    /// Google Cloud, with Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud's ADC file, the metadata server), the project from `GOOGLE_CLOUD_PROJECT` or the
    /// credentials, and the endpoint overrides of `GCPEndpoints.fromEnvironment` for emulators.
    public static let gcp = ProviderFactory(wiring: .gcp) { _ in GCPProvider.fromEnvironment() }
}

extension GCPProvider {
    /// The GCP provider of a `stratum` binary. Its kinds' schemas and checks are there at once;
    /// the credentials and the project are resolved (`GCPClient.standard`, which may ask the
    /// metadata server) at the first call that reaches GCP, once, so commands that never reach
    /// it never look for credentials, and missing ones fail that call with an auth error.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, transport: any HTTPTransport = AsyncHTTPTransport()
    ) -> any Provider {
        DeferredGCPProvider(environment: environment, transport: transport)
    }
}

/// `GCPProvider` with its client made on first use.
struct DeferredGCPProvider: Provider {
    let name = "gcp"
    let kinds: [String: any ResourceKind]
    /// The provider the schemas and checks come from, with a client that never calls GCP; the
    /// error instead when even that could not be made.
    let offline: Result<GCPProvider, any Error>

    init(environment: [String: String], transport: any HTTPTransport) {
        let source = GCPProviderSource(environment: environment, transport: transport)
        offline = Result { GCPProvider(client: try Self.offlineClient(environment: environment, transport: transport)) }
        kinds = ((try? offline.get())?.kinds ?? [:]).mapValues { DeferredGCPKind(offline: $0, source: source) }
    }

    func validate(stack resources: [DesiredResource]) -> [Diagnostic] {
        switch offline {
        case .success(let provider): return provider.validate(stack: resources)
        case .failure(let error): return [Diagnostic(message: "the GCP provider could not be set up: \(error)")]
        }
    }

    /// A client for everything that needs no call: its project is the one the environment or a
    /// key file names without asking a server, and asking it for a token fails.
    static func offlineClient(environment: [String: String], transport: any HTTPTransport) throws -> GCPClient {
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

/// Makes the real provider once: credentials, project and client from the environment.
actor GCPProviderSource {
    let environment: [String: String]
    let transport: any HTTPTransport
    private var pending: Task<GCPProvider, any Error>?

    init(environment: [String: String], transport: any HTTPTransport) {
        self.environment = environment
        self.transport = transport
    }

    func provider() async throws -> GCPProvider {
        let task = pending ?? Task { [environment, transport] in
            GCPProvider(client: try await GCPClient.standard(environment: environment, transport: transport))
        }
        pending = task
        do {
            return try await task.value
        } catch {
            // Credentials that were missing may be there on the next try.
            pending = nil
            throw error
        }
    }
}

/// One kind of `DeferredGCPProvider`: schema and checks from the offline kind, calls by the
/// real provider's kind.
struct DeferredGCPKind: ResourceKind {
    let offline: any ResourceKind
    let source: GCPProviderSource

    var type: String { offline.type }
    var schema: ResourceSchema { offline.schema }

    func batchKey(_ state: ResourceState) -> String { offline.batchKey(state) }
    func validate(_ resource: DesiredResource) -> [Diagnostic] { offline.validate(resource) }
    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview { offline.review(prior, desired: desired) }

    func live(_ address: ResourceAddress? = nil) async throws -> any ResourceKind {
        try await source.provider().kind(type, address: address)
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        try await live().read(resources)
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        try await live(resource.address).create(resource, context: context)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await live(prior.address).update(prior, to: desired)
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await live(state.address).delete(state, context: context)
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await live(operation.address).recover(operation)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        try await live(address).importResource(region: region, id: id, address: address)
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
