import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumGCP

/// The GCP provider against the loopback Compute fake, which checks every request against
/// Google's discovery document.
struct GCPFakeWorld {
    static let project = "stratum-test"
    static let region = "us-central1"

    let fake: GCPComputeFake
    let server: LoopbackHTTPServer
    let provider: GCPProvider

    /// `clock` paces operation looks: a virtual one answers at once; the system one (with short
    /// waits) lets a test cancel a create while it waits.
    static func make(pace: GCPComputeFake.OperationPace = .afterPolls(2), clock: StratumClock = VirtualClock().clock) async throws -> GCPFakeWorld {
        let fake = try GCPComputeFake(project: project, pace: pace)
        let server = try await fake.serve()
        let tokens = BearerTokenCache(clock: clock) { BearerToken(value: "ya29.fake-token", lifetime: .seconds(3600)) }
        let credentials = GCPCredentials(source: .metadataServer, project: project, tokens: tokens)
        let poller = OperationPoller(timeout: .seconds(30), backoff: Backoff(base: .milliseconds(5), cap: .milliseconds(20)), clock: clock)
        let configuration = GCPClient.Configuration(endpoints: GCPEndpoints(compute: server.url.appendingPathComponent("compute/v1")), operationPoller: poller)
        let client = try GCPClient(configuration: configuration, credentials: credentials, transport: AsyncHTTPTransport(), clock: clock)
        return GCPFakeWorld(fake: fake, server: server, provider: GCPProvider(client: client))
    }

    /// What the fake saw that Compute would refuse: requests its discovery document rejects,
    /// and mutating calls without a requestId.
    func problems() async -> [String] {
        await fake.violations + fake.mutatingCallsWithoutRequestID.map { "no requestId: \($0)" }
    }

    static func run(_ body: (GCPFakeWorld) async throws -> Void) async throws {
        let world = try await make()
        do {
            try await body(world)
        } catch {
            await world.server.shutdown()
            throw error
        }
        let problems = await world.problems()
        await world.server.shutdown()
        #expect(problems.isEmpty, "\(problems)")
    }

    /// A network for subnetworks and firewalls to live in.
    func network(_ name: String) async throws -> ResourceState {
        try await provider.create(
            ResolvedResource(address: ResourceAddress(type: "gcp_network", name: name), region: Self.region, inputs: ["name": .string(name)], dependencies: []),
            token: UUID().uuidString.lowercased())
    }
}

@Suite("ProviderContractTests: GCP on the Compute fake", .timeLimit(.minutes(3)))
struct GCPProviderContractTests {
    static func network(_ world: GCPFakeWorld) async throws -> ProviderContractTests {
        ProviderContractTests(.init(provider: world.provider, type: "gcp_network", region: GCPFakeWorld.region, inputs: { ["name": .string("net-\($0)")] }))
    }

    static func subnetwork(_ world: GCPFakeWorld) async throws -> ProviderContractTests {
        _ = try await world.network("contract-net")
        return ProviderContractTests(.init(
            provider: world.provider, type: "gcp_subnetwork", region: GCPFakeWorld.region,
            inputs: { ["name": .string("sub-\($0)"), "network": "contract-net", "cidr": "10.20.0.0/20", "private_google_access": true] }))
    }

    static func firewall(_ world: GCPFakeWorld) async throws -> ProviderContractTests {
        _ = try await world.network("contract-net")
        return ProviderContractTests(.init(
            provider: world.provider, type: "gcp_firewall", region: GCPFakeWorld.region,
            inputs: { [
                "name": .string("fw-\($0)"), "network": "contract-net", "source_ranges": ["10.0.0.0/8"], "priority": 1000,
                "allow": [["protocol": "tcp", "ports": ["22", "8000-9000"]], ["protocol": "icmp"]],
            ] }))
    }

    static func run(_ check: (ProviderContractTests) async throws -> Void, on make: (GCPFakeWorld) async throws -> ProviderContractTests) async throws {
        try await GCPFakeWorld.run { world in try await check(make(world)) }
    }

    @Test func networkIdempotentCreateByToken() async throws { try await Self.run({ try await $0.idempotentCreateByToken() }, on: Self.network) }
    @Test func networkLostResponseIsRecovered() async throws { try await Self.run({ try await $0.lostResponseIsRecovered() }, on: Self.network) }
    @Test func networkBatchedReadWithMissingMembers() async throws { try await Self.run({ try await $0.batchedReadWithMissingMembers() }, on: Self.network) }
    @Test func networkDeleteOfWhatIsGone() async throws { try await Self.run({ try await $0.deleteOfWhatIsGone() }, on: Self.network) }
    @Test func networkImportByID() async throws { try await Self.run({ try await $0.importByID() }, on: Self.network) }

    @Test func subnetworkIdempotentCreateByToken() async throws { try await Self.run({ try await $0.idempotentCreateByToken() }, on: Self.subnetwork) }
    @Test func subnetworkLostResponseIsRecovered() async throws { try await Self.run({ try await $0.lostResponseIsRecovered() }, on: Self.subnetwork) }
    @Test func subnetworkBatchedReadWithMissingMembers() async throws { try await Self.run({ try await $0.batchedReadWithMissingMembers() }, on: Self.subnetwork) }
    @Test func subnetworkDeleteOfWhatIsGone() async throws { try await Self.run({ try await $0.deleteOfWhatIsGone() }, on: Self.subnetwork) }
    @Test func subnetworkImportByID() async throws { try await Self.run({ try await $0.importByID() }, on: Self.subnetwork) }

    @Test func firewallContract() async throws { try await Self.run({ try await $0.all() }, on: Self.firewall) }
}

@Suite("GCP networking kinds on the Compute fake", .timeLimit(.minutes(3)))
struct GCPNetworkKindTests {
    /// A create whose wait is cancelled after the operation's handle was recorded is settled by
    /// recovery from that handle: the same operation finishes, and there is one network.
    @Test func aCreateInterruptedWhileWaitingIsRecoveredFromItsHandle() async throws {
        let world = try await GCPFakeWorld.make(pace: .onDemand, clock: .system)
        defer { Task { await world.server.shutdown() } }
        let resource = ResolvedResource(
            address: ResourceAddress(type: "gcp_network", name: "main"), region: GCPFakeWorld.region, inputs: ["name": "main-net"], dependencies: [],
            ownership: Ownership(stack: "demo/dev", lineage: "lineage-1"))
        let token = UUID().uuidString.lowercased()
        let (handles, recorded) = AsyncStream.makeStream(of: String.self)
        let context = OperationContext(token: token) { recorded.yield($0) }
        let create = Task { try await world.provider.create(resource, context: context) }
        var iterator = handles.makeAsyncIterator()
        let handle = try #require(await iterator.next())
        create.cancel()
        await #expect(throws: (any Error).self) { try await create.value }
        #expect(await world.fake.paths(of: "networks").isEmpty, "the network exists before its operation finished")

        // Recovery resumes the recorded operation: it waits (looking at that operation) until
        // the operation finishes, then adopts the network it made.
        var pending = PendingOperation(creating: resource, provider: "gcp", token: token)
        pending.handle = handle
        let looksBefore = await world.fake.calls["compute.globalOperations.get", default: 0]
        let recovery = Task { try await world.provider.recover(pending) }
        let deadline = ContinuousClock.now + .seconds(20)
        while await world.fake.calls["compute.globalOperations.get", default: 0] <= looksBefore, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(await world.fake.finishOperations() == 1)
        let recovered = try #require(try await recovery.value)
        #expect(recovered.id == "projects/\(GCPFakeWorld.project)/global/networks/main-net")
        #expect(await world.fake.paths(of: "networks") == ["projects/\(GCPFakeWorld.project)/global/networks/main-net"])
        #expect(await world.fake.calls["compute.networks.insert"] == 1)
        #expect(GCPOperationReference(handle: handle)?.scope == .global)
        #expect(await world.problems().isEmpty)
    }

    /// Recovery never creates: a recorded handle whose operation failed, or none at all, finds nothing.
    @Test func recoveryOfACreateThatNeverTookEffectFindsNothing() async throws {
        try await GCPFakeWorld.run { world in
            let resource = ResolvedResource(address: ResourceAddress(type: "gcp_network", name: "never"), region: GCPFakeWorld.region, inputs: ["name": "never"], dependencies: [])
            let found = try await world.provider.recover(PendingOperation(creating: resource, provider: "gcp", token: UUID().uuidString.lowercased()))
            #expect(found == nil)
            #expect(await world.fake.calls["compute.networks.insert"] == nil)
            #expect(await world.fake.paths(of: "networks").isEmpty)
        }
    }

    /// What a create sends: a custom-mode network, the requestId derived from the journal token,
    /// and Stratum's ownership in the description; refresh reads networks, subnetworks and
    /// firewalls back with one list call per type.
    @Test func createsACustomModeNetworkAndReadsTheStackBackInOneCallPerType() async throws {
        try await GCPFakeWorld.run { world in
            let network = try await world.network("vpc")
            let live = try #require(await world.fake.resource(network.id))
            #expect(live.mapValue?["autoCreateSubnetworks"] == .bool(false))
            #expect(live.mapValue?["routingConfig"]?.mapValue?["routingMode"] == "REGIONAL")
            #expect(live.mapValue?["description"]?.stringValue?.hasPrefix(GCPOwnership.prefix) == true)

            let subnet = try await world.provider.create(
                ResolvedResource(
                    address: ResourceAddress(type: "gcp_subnetwork", name: "a"), region: GCPFakeWorld.region, inputs: ["network": "vpc", "cidr": "10.1.0.0/20"],
                    dependencies: [],
                    ownership: Ownership(stack: "demo/dev", lineage: "abcdef123456")),
                token: "journal-token-7")
            #expect(subnet.attributes["name"] == "a-abcdef12")
            #expect(subnet.attributes["gateway_address"] == "10.1.0.1")
            let subnetLive = try #require(await world.fake.resource(subnet.id))
            #expect(GCPOwnership.token(in: subnetLive.mapValue?["description"]?.stringValue) == "journal-token-7")

            let before = await world.fake.calls
            let networks = try await world.provider.read(type: "gcp_network", resources: [network])
            let subnets = try await world.provider.read(type: "gcp_subnetwork", resources: [subnet])
            #expect(networks.first??.id == network.id)
            #expect(subnets.first??.attributes["cidr"] == "10.1.0.0/20")
            #expect(subnets.first??.attributes["network"] == "vpc", "a link to the same network keeps the name the stack wrote")
            let after = await world.fake.calls
            #expect(after["compute.networks.list", default: 0] - before["compute.networks.list", default: 0] == 1)
            #expect(after["compute.subnetworks.aggregatedList", default: 0] - before["compute.subnetworks.aggregatedList", default: 0] == 1)

            // A network still used by a subnetwork cannot go; the error says so and nothing is lost.
            await #expect(throws: ProviderError.self) { try await world.provider.delete(network) }
            try await world.provider.delete(subnet)
            try await world.provider.delete(network)
            #expect(await world.fake.paths(of: "networks").isEmpty)
        }
    }

    /// An insert that took effect but whose answer was lost fails as retryable; recovery by the
    /// token (no handle was recorded) adopts the network, and a retry with the same token
    /// replays the first operation instead of making a second network.
    @Test func anInsertWhoseAnswerWasLostIsFoundByItsToken() async throws {
        try await GCPFakeWorld.run { world in
            await world.fake.inject(.lostResponse, into: "compute.networks.insert")
            let resource = ResolvedResource(
                address: ResourceAddress(type: "gcp_network", name: "lost"), region: GCPFakeWorld.region, inputs: ["name": "lost-net"], dependencies: [])
            let token = UUID().uuidString.lowercased()
            let failure = await #expect(throws: ProviderError.self) { try await world.provider.create(resource, token: token) }
            #expect(failure?.isRetryable == true)
            await world.fake.finishOperations()
            let recovered = try #require(try await world.provider.recover(PendingOperation(creating: resource, provider: "gcp", token: token)))
            let retried = try await world.provider.create(resource, token: token)
            #expect(retried.id == recovered.id)
            #expect(await world.fake.paths(of: "networks").count == 1)
            #expect(await world.fake.injected["replayedRequestID"] == 1)
        }
    }

    /// A throttled insert is classified for the engine's retry layer; the client itself sends it once.
    @Test func aThrottledInsertIsRetryableAndSentOnce() async throws {
        try await GCPFakeWorld.run { world in
            await world.fake.inject(.throttled, into: "compute.firewalls.insert")
            _ = try await world.network("vpc")
            let firewall = ResolvedResource(
                address: ResourceAddress(type: "gcp_firewall", name: "ssh"), region: GCPFakeWorld.region,
                inputs: ["network": "vpc", "allow": [["protocol": "tcp", "ports": ["22"]]]],
                dependencies: [])
            let failure = await #expect(throws: ProviderError.self) { try await world.provider.create(firewall, token: UUID().uuidString) }
            #expect(failure?.kind == .throttled)
            #expect(await world.fake.calls["compute.firewalls.insert"] == 1)
        }
    }

    /// An insert refused because the name exists (Compute forgot the requestId) adopts the
    /// resource when its description carries the create's token, and fails otherwise.
    @Test func anExistingResourceIsAdoptedOnlyWithTheCreatesToken() async throws {
        try await GCPFakeWorld.run { world in
            let resource = ResolvedResource(address: ResourceAddress(type: "gcp_network", name: "old"), region: GCPFakeWorld.region, inputs: ["name": "old-net"], dependencies: [])
            let token = UUID().uuidString.lowercased()
            // The earlier attempt, under a requestId Compute no longer remembers.
            let body: GCPJSON = ["name": "old-net", "autoCreateSubnetworks": false, "description": .string(GCPOwnership.description(for: resource, token: token))]
            let earlier = try await world.provider.client.mutate(
                "POST", "projects/\(GCPFakeWorld.project)/global/networks", body: body, requestId: UUID().uuidString, action: "networks.insert")
            try await world.provider.client.wait(for: earlier.reference, action: "networks.insert")

            let adopted = try await world.provider.create(resource, token: token)
            #expect(adopted.id == "projects/\(GCPFakeWorld.project)/global/networks/old-net")
            let stranger = await #expect(throws: ProviderError.self) { try await world.provider.create(resource, token: UUID().uuidString.lowercased()) }
            #expect(stranger?.message.contains("alreadyExists") == true)
            #expect(await world.fake.paths(of: "networks").count == 1)
        }
    }

    @Test func derivedNamesAreComputeNamesAndKeepTheIndex() {
        let name = GCPNames.derived(from: ResourceAddress(type: "gcp_subnetwork", name: "Workers_A", index: 3), lineage: "7F3A-91bc-0000")
        #expect(name == "workers-a-3-7f3a91bc")
        #expect(GCPNames.isValid(name))
        #expect(GCPNames.isValid(GCPNames.derived(from: ResourceAddress(type: "gcp_network", name: "9lives"), lineage: "x")))
    }

    @Test func namesAndInputsAreCheckedBeforeAnyCall() async throws {
        try await GCPFakeWorld.run { world in
            let kind = try #require(world.provider.kinds["gcp_network"])
            let bad = DesiredResource(address: ResourceAddress(type: "gcp_network", name: "x"), provider: "gcp", region: GCPFakeWorld.region, inputs: ["name": "Bad_Name"])
            #expect(kind.validate(bad).count == 1)
            let firewall = ResolvedResource(
                address: ResourceAddress(type: "gcp_firewall", name: "fw"), region: GCPFakeWorld.region,
                inputs: ["network": "vpc", "direction": "SIDEWAYS", "allow": [["protocol": "tcp"]]],
                dependencies: [])
            await #expect(throws: ProviderError.self) { try await world.provider.create(firewall, token: UUID().uuidString) }
            #expect(await world.fake.calls.isEmpty)
        }
    }
}
