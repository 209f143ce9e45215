import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumEngine
import StratumTesting
import Testing
@testable import StratumGCP

/// A `Secret` in a GCP node's env reaches the node through Secret Manager, read with the
/// node's own service account: never in the instance's metadata, readable by that account
/// alone, deleted with the node.
@Suite("GCP: node secrets through Secret Manager", .serialized, .timeLimit(.minutes(3)))
struct GCPNodeSecretTests {
    static let secret = "hf_stratum-'gcp' secret $HOME 0b9d2c"
    static let account = "stratum-node-1a2b3c4d@\(GCPFakeWorld.project).iam.gserviceaccount.com"
    static let nodeToken = "ya29.node-token"

    static func stack(serviceAccount: String?) throws -> EvaluatedStack {
        let placement = Placement.gcp(project: nil, region: GCPFakeWorld.region, zones: ["us-central1-a"])
        var content = StackContent()
        let network = Network("net", cidr: "10.0.0.0/16", on: placement)
        network.declare(into: &content)
        GCP.InstanceGroup(
            "worker", count: 1,
            GCP.InstanceSpec(
                machineType: "g2-standard-8", zones: ["us-central1-a"], subnetwork: GCPLowering.subnetwork(of: network), serviceAccount: serviceAccount,
                command: ["train"], env: ["HF_TOKEN": Secret(Self.secret), "MODE": "train"]),
            region: GCPFakeWorld.region
        ).declare(into: &content)
        return try StackEvaluator.evaluate(content, name: "secrets", environment: "dev")
    }

    /// Without a service account of its own, a node with a secret is a validation error naming
    /// the key and how to fix it, and the value is in no message.
    @Test func aSecretWithoutAServiceAccountIsAValidationErrorNamingTheKey() throws {
        let world = try GCPNodeSecretWorld.schemaOnly()
        let error = try #require(throws: ValidationError.self) { try Planner(providers: ProviderRegistry([world])).validate(try Self.stack(serviceAccount: nil)) }
        let messages = error.diagnostics.map(\.description)
        #expect(messages.count == 1, "\(messages)")
        #expect(messages.first?.contains("gcp_instance.worker[0]") == true && messages.first?.contains("env.HF_TOKEN holds a Secret") == true, "\(messages)")
        #expect(messages.first?.contains("GCP.ServiceAccount") == true, "\(messages)")
        #expect(!error.description.contains(Self.secret))
        // With one, the same stack is valid.
        try Planner(providers: ProviderRegistry([world])).validate(try Self.stack(serviceAccount: Self.account))
    }

    /// Apply puts the value in a secret whose one accessor is the node's account; the
    /// instance's metadata names the secret and never holds the value; the node's own
    /// secrets.sh, run against the fakes with the account's token, writes the exact value into
    /// a root-only file, while another identity's token is refused; destroy deletes the secret.
    @Test func aSecretReachesTheNodeThroughSecretManager() async throws {
        let world = try await GCPNodeSecretWorld.make()
        defer { Task { await world.shutdown() } }
        let run = GCPEngineRun(provider: world.compute.provider, stack: "secrets", environment: "dev")
        let result = try await run.apply(try await run.plan(try Self.stack(serviceAccount: Self.account)))
        #expect(result.ok, "\(result.failed.map { "\($0.step.address): \($0.error)" })")

        let ids = await world.secrets.secretIDs()
        #expect(ids.count == 1 && ids.first?.hasPrefix("stratum-gcp_instance-worker-0--") == true && ids.first?.hasSuffix("-HF_TOKEN") == true, "\(ids)")
        let id = try #require(ids.first)
        #expect(await world.secrets.value(of: id) == Data(Self.secret.utf8))
        #expect(await world.secrets.accessors(of: id) == ["serviceAccount:\(Self.account)"])

        let path = try #require(await world.compute.fake.paths(of: "instances").first)
        let instance = try #require(await world.compute.fake.resource(path)?.mapValue)
        let text = try #require(instance["metadata"]?.mapValue?["items"]?.listValue?.first?.mapValue?["value"]?.stringValue)
        #expect(!text.contains(Self.secret) && !text.contains("hf_stratum"))
        let setup = try NodeSetupDocument(text)
        #expect(setup.environment["MODE"] == "train" && setup.environment["HF_TOKEN"] == nil)
        #expect(setup.files["/etc/stratum/secrets.list"] == "HF_TOKEN projects/\(GCPFakeWorld.project)/secrets/\(id)\n")
        let snapshot = await run.store.read(workspace: run.workspace)
        let recorded = try #require(snapshot.resources[ResourceAddress(type: "gcp_instance", name: "worker", index: 0)])
        #expect(recorded.attributes["env"]?.mapValue?["HF_TOKEN"]?.containsSensitive == true, "state keeps the value marked secret")

        // The node reads it as its account.
        await world.secrets.grant(token: Self.nodeToken, to: "serviceAccount:\(Self.account)")
        let read = try await setup.readSecrets(environment: world.nodeEnvironment(token: Self.nodeToken))
        #expect(read.status == 0, "\(read.output)")
        #expect(read.secretsEnv.map { $0.contains("HF_TOKEN=") && !$0.contains("\n\n") } == true, "\(read.secretsEnv ?? "none")")
        #expect(read.permissions == 0o600)
        let sourced = try #require(read.secretsEnv)
        #expect(try GCPNodeSecretWorld.shellValue(of: "HF_TOKEN", in: sourced) == Self.secret)
        #expect(!read.output.contains(Self.secret))
        // Another identity is refused, and the node's setup fails rather than run without it.
        await world.secrets.grant(token: "ya29.other", to: "serviceAccount:other@\(GCPFakeWorld.project).iam.gserviceaccount.com")
        let refused = try await setup.readSecrets(environment: world.nodeEnvironment(token: "ya29.other"))
        #expect(refused.status != 0 && refused.secretsEnv == nil, "\(refused.output)")

        #expect(try await run.apply(try await run.destroyPlan()).ok)
        #expect(await world.secrets.secretIDs().isEmpty)
        #expect(await world.compute.problems().isEmpty)
        let violations = await world.secrets.violations
        #expect(violations.isEmpty, "\(violations)")
    }

    /// A create that fails for good (every zone refused) leaves no secret behind.
    @Test func aCreateThatFailsLeavesNoSecret() async throws {
        let world = try await GCPNodeSecretWorld.make()
        defer { Task { await world.shutdown() } }
        await world.compute.fake.set(zonesWithoutCapacity: ["us-central1-a"], code: "ZONE_RESOURCE_POOL_EXHAUSTED")
        let run = GCPEngineRun(provider: world.compute.provider, stack: "secrets", environment: "dev")
        let result = try await run.apply(try await run.plan(try Self.stack(serviceAccount: Self.account)))
        #expect(result.failed.map(\.step.address.description) == ["gcp_instance.worker[0]"])
        #expect(await world.secrets.calls["secretmanager.projects.secrets.create", default: 0] >= 1, "the secret was never put")
        #expect(await world.secrets.secretIDs().isEmpty)
    }
}

/// The Compute fake with a Secret Manager fake and a metadata server that hands the node's
/// token out, as a GCE machine's would.
struct GCPNodeSecretWorld {
    let compute: GCPFakeWorld
    let secrets: GCPSecretManagerFake
    let servers: [LoopbackHTTPServer]
    /// The token the metadata server hands out: the machine's account's.
    let machineToken: LockedValue<String>

    /// A provider that only checks stacks (no server behind it).
    static func schemaOnly() throws -> GCPProvider {
        let tokens = BearerTokenCache(clock: .system) { BearerToken(value: "unused", lifetime: .seconds(3600)) }
        let client = try GCPClient(
            configuration: .init(), credentials: GCPCredentials(source: .metadataServer, project: GCPFakeWorld.project, tokens: tokens), transport: AsyncHTTPTransport())
        return GCPProvider(client: client)
    }

    static func make() async throws -> GCPNodeSecretWorld {
        let secrets = try GCPSecretManagerFake(project: GCPFakeWorld.project)
        let secretServer = try await secrets.serve()
        let machineToken = LockedValue("")
        let metadata = try await LoopbackHTTPServer.start { request in
            guard request.header("Metadata-Flavor") == "Google", pathOf(request) == "/computeMetadata/v1/instance/service-accounts/default/token" else {
                return ProxyResponse(status: 404)
            }
            return jsonResponse(200, ["access_token": .string(machineToken.get()), "expires_in": 3599, "token_type": "Bearer"])
        }
        var compute = try await GCPFakeWorld.make(pace: .afterPolls(0))
        var configuration = compute.provider.client.configuration
        configuration.endpoints.secretManager = secretServer.url
        let client = try GCPClient(
            configuration: configuration, credentials: compute.provider.client.credentials, project: compute.provider.client.project,
            transport: compute.provider.client.transport, clock: compute.provider.client.clock)
        compute = GCPFakeWorld(fake: compute.fake, server: compute.server, provider: GCPProvider(client: client))
        return GCPNodeSecretWorld(compute: compute, secrets: secrets, servers: [secretServer, metadata], machineToken: machineToken)
    }

    /// Where the node's scripts find the metadata server (handing out `token` from now on) and Secret Manager.
    func nodeEnvironment(token: String) -> [String: String] {
        machineToken.update { $0 = token }
        let metadata = servers[1].url
        return [
            "GCE_METADATA_HOST": "\(metadata.host ?? "127.0.0.1"):\(metadata.port ?? 80)",
            "STRATUM_SECRETMANAGER_ENDPOINT": servers[0].url.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")),
        ]
    }

    func shutdown() async {
        for server in servers { await server.shutdown() }
        await compute.server.shutdown()
    }

    /// The value `name` has after `/bin/sh` sources `text`.
    static func shellValue(of name: String, in text: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "set -a; eval \"$1\"; printf '%s' \"$\(name)\"", "sh", text]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}
