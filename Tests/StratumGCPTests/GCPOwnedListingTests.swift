import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import StratumTrainerArtifact
import Testing
@testable import StratumGCP

/// The Compute, Storage and IAM fakes behind one client, for listing what GCP holds with
/// Stratum's ownership on it (`ResourceKind.owned`).
struct GCPOwnedWorld {
    static let project = "stratum-test"
    static let region = "us-central1"
    static let zone = "us-central1-a"
    static let bucket = "stratum-owned-ckpt"
    static let longBucket = "stratum-owned-long"

    /// An ephemeral environment's ownership: its stack and owner are no label text, so their
    /// labels are hashed.
    static let ephemeral = Ownership(
        stack: "gcp-train/exp-alice", lineage: "5d7c2a9e-0000-4000-8000-00000000e001", owner: "Alice.Smith@example.com",
        expires: Date(timeIntervalSince1970: 1_800_000_000))
    /// A stack whose whole text takes more than one label value, with a lineage that is no label text either.
    static let long = Ownership(stack: "Gcp-Training-Cluster-With-A-Rather-Long-Name/Experiment-Forty-Two", lineage: "Lineage/Upper-Case")

    let compute: GCPComputeFake
    let storage: GCSBucketFake
    let iam: GCPIAMFake
    let servers: [LoopbackHTTPServer]
    let client: GCPClient
    let provider: GCPProvider

    static func make() async throws -> GCPOwnedWorld {
        let compute = try GCPComputeFake(project: project, pace: .afterPolls(1))
        let storage = try GCSBucketFake(project: project)
        let iam = try GCPIAMFake(project: project)
        await storage.link(iam: iam)
        let servers = [try await compute.serve(), try await storage.serve(), try await iam.serve()]
        let clock = VirtualClock().clock
        let tokens = BearerTokenCache(clock: clock) { BearerToken(value: "ya29.fake-token", lifetime: .seconds(3600)) }
        let poller = OperationPoller(timeout: .seconds(30), backoff: Backoff(base: .milliseconds(5), cap: .milliseconds(20)), clock: clock)
        let endpoints = GCPEndpoints(
            compute: servers[0].url.appendingPathComponent("compute/v1"), storage: servers[1].url.appendingPathComponent("storage/v1"), iam: servers[2].url)
        let client = try GCPClient(
            configuration: GCPClient.Configuration(endpoints: endpoints, operationPoller: poller),
            credentials: GCPCredentials(source: .metadataServer, project: project, tokens: tokens), project: project, transport: AsyncHTTPTransport(), clock: clock)
        return GCPOwnedWorld(compute: compute, storage: storage, iam: iam, servers: servers, client: client, provider: GCPProvider(client: client))
    }

    /// Runs `body` on a fresh world and expects no fake saw a request Google would refuse.
    static func run(_ body: (GCPOwnedWorld) async throws -> Void) async throws {
        let world = try await make()
        var failure: (any Error)?
        do { try await body(world) } catch { failure = error }
        let problems = await world.compute.violations + world.compute.mutatingCallsWithoutRequestID.map { "no requestId: \($0)" } + world.storage.violations
            + world.iam.violations
        for server in world.servers { await server.shutdown() }
        if let failure { throw failure }
        #expect(problems.isEmpty, "\(problems)")
    }

    func create(_ type: String, _ name: String, index: Int? = nil, _ inputs: [String: Value], ownership: Ownership = ephemeral) async throws -> ResourceState {
        try await provider.create(
            ResolvedResource(address: ResourceAddress(type: type, name: name, index: index), region: Self.region, inputs: inputs, dependencies: [], ownership: ownership),
            token: UUID().uuidString.lowercased())
    }

    /// Everything Stratum makes on GCP, through the provider; the states it answered.
    func createOwned() async throws -> [ResourceState] {
        var made: [ResourceState] = []
        made.append(try await create("gcp_network", "vpc", [:]))
        made.append(try await create("gcp_network", "other", [:], ownership: Self.long))
        made.append(try await create("gcp_subnetwork", "nodes", index: 0, ["network": .string(made[0].attributes["name"]?.stringValue ?? ""), "cidr": "10.8.0.0/20"]))
        let subnet = made[2].attributes["self_link"] ?? ""
        made.append(try await create("gcp_firewall", "internal", ["network": .string(made[0].id), "allow": [["protocol": "tcp", "ports": ["22"]]]]))
        made.append(try await create("gcp_resource_policy", "compact", ["vm_count": 2]))
        made.append(try await create("gcp_instance", "worker", index: 0, ["machine_type": "e2-standard-4", "zones": [.string(Self.zone)], "subnetwork": subnet]))
        made.append(try await create("gcp_instance_gang", "gang", ["machine_type": "e2-standard-4", "zones": [.string(Self.zone)], "subnetwork": subnet, "count": 2]))
        made.append(try await create("gcp_bucket", "ckpt", ["name": .string(Self.bucket)]))
        made.append(try await create("gcp_bucket", "long", ["name": .string(Self.longBucket)], ownership: Self.long))
        let archive = TrainerArchive.bundled
        made.append(try await create("gcp_storage_object", "trainer", [
            "bucket": .string(Self.bucket), "name": .string(archive.objectKey), "source": .string(BundledArtifact.trainer), "sha256": .string(archive.sha256),
        ]))
        made.append(try await create("gcp_service_account", "node", ["bucket": .string(Self.bucket)]))
        return made
    }

    /// What is made beside Stratum, straight through the APIs: a network, subnetwork and
    /// instance, a bucket and an account without Stratum's ownership; a bucket and an account
    /// with the ownership records older versions wrote (no whole stack and address, no
    /// lineage); an object without Stratum's metadata in a bucket of Stratum's.
    func createOthers() async throws {
        func insert(_ path: String, _ body: GCPJSON, action: String) async throws {
            let operation = try await client.mutate("POST", path, body: body, requestId: UUID().uuidString.lowercased(), action: action)
            if !operation.isDone { _ = try await client.wait(for: operation.reference, action: action) }
        }
        let project = Self.project
        try await insert(
            "projects/\(project)/global/networks", ["name": "team-net", "autoCreateSubnetworks": false, "description": "the team's network"], action: "networks.insert")
        try await insert(
            "projects/\(project)/regions/\(Self.region)/subnetworks",
            ["name": "team-sub", "network": .string("projects/\(project)/global/networks/team-net"), "ipCidrRange": "10.9.0.0/20"], action: "subnetworks.insert")
        try await insert(
            "projects/\(project)/zones/\(Self.zone)/instances",
            [
                "name": "team-vm", "machineType": .string("zones/\(Self.zone)/machineTypes/e2-small"), "labels": ["team": "ml"],
                "networkInterfaces": [["subnetwork": .string("projects/\(project)/regions/\(Self.region)/subnetworks/team-sub")]],
                "disks": [["boot": true, "initializeParams": ["sourceImage": "projects/debian-cloud/global/images/family/debian-12"]]],
            ], action: "instances.insert")
        _ = try await client.storage("POST", "b", query: [("project", project)], body: ["name": "team-data", "labels": ["team": "ml"]], action: "buckets.insert")
        // As buckets were labelled before the whole texts were kept: hashed stack and address only.
        let older = ["stratum-stack": GCPLabels.value("demo/dev"), "stratum-lineage": "lineage-1", "stratum-address": GCPLabels.value("gcp_bucket.old")]
        _ = try await client.storage(
            "POST", "b", query: [("project", project)], body: ["name": "stratum-older", "labels": .object(older.mapValues(GCPJSON.string))], action: "buckets.insert")
        for (id, description) in [
            ("ci-runner", "the CI's runner"), ("stratum-old-node", "Stratum node identity of demo/dev gcp_service_account.old [stratum-token=token-1]"),
        ] {
            _ = try await client.call(
                .iam, "POST", "v1/projects/\(project)/serviceAccounts",
                body: ["accountId": .string(id), "serviceAccount": ["displayName": .string(id), "description": .string(description)]], action: "serviceAccounts.create")
        }
        await storage.putObject("stratum/notes.txt", in: Self.longBucket, data: Data("kept by hand".utf8))
    }

    /// What every kind lists, by type.
    func owned() async throws -> [String: [OwnedResource]] {
        var all: [String: [OwnedResource]] = [:]
        for (type, kind) in provider.kinds { all[type] = try await kind.owned() }
        return all
    }
}

@Suite("GCP: what the project holds with Stratum's ownership (owned)", .timeLimit(.minutes(3)))
struct GCPOwnedListingTests {
    /// One line per listed resource: what sweeping compares and deletes by.
    static func line(_ item: OwnedResource) -> String {
        let ownership = item.ownership
        return "\(item.state.address) \(item.state.id) \(item.state.region) \(ownership.stack) \(ownership.lineage) "
            + "\(ownership.owner ?? "-") \(ownership.expiresTag ?? "-")"
    }

    /// What the kinds should list for what `createOwned` made.
    static func expected(_ made: [ResourceState]) -> Set<String> {
        Set(made.map { state in
            let ownership = state.address.name == "other" || state.address.name == "long" ? GCPOwnedWorld.long : GCPOwnedWorld.ephemeral
            let region: String
            switch state.type {
            case "gcp_network", "gcp_firewall", "gcp_service_account": region = "global"
            default: region = GCPOwnedWorld.region
            }
            return "\(state.address) \(state.id) \(region) \(ownership.stack) \(ownership.lineage) \(ownership.owner ?? "-") \(ownership.expiresTag ?? "-")"
        })
    }

    /// Every kind lists exactly what Stratum made: with its whole address and workspace (their
    /// labels were hashed), its lineage, owner and expiry, its region, and the id state gave
    /// it; nothing made beside Stratum, nor records older versions wrote without a lineage or
    /// whole texts. Gang members are their gang, not instances.
    @Test func everyKindListsExactlyWhatStratumMade() async throws {
        try await GCPOwnedWorld.run { world in
            let made = try await world.createOwned()
            try await world.createOthers()
            let labels = try #require(await world.storage.bucket(GCPOwnedWorld.bucket)?.mapValue?["labels"]?.mapValue)
            #expect(labels[GCPLabels.stack]?.stringValue != GCPOwnedWorld.ephemeral.stack, "the stack's label is hashed")
            #expect(labels[GCPLabels.address]?.stringValue != "gcp_bucket.ckpt", "the address's label is hashed")
            let longLabels = try #require(await world.storage.bucket(GCPOwnedWorld.longBucket)?.mapValue?["labels"]?.mapValue)
            #expect(longLabels[GCPLabels.textKey(GCPLabels.stack, part: 1)] != nil, "the long stack takes two values")

            let owned = try await world.owned()
            #expect(Set(owned.values.joined().map(Self.line)) == Self.expected(made))
            for (type, items) in owned {
                #expect(items.allSatisfy { $0.state.type == type && $0.state.provider == "gcp" }, "\(type)")
            }
            #expect(owned["gcp_instance"]?.count == 1, "gang members are not instances")
            let gang = try #require(owned["gcp_instance_gang"]?.first?.state)
            #expect(gang.attributes["count"] == 2 && gang.attributes["instances"]?.listValue?.count == 2)
            #expect(await world.compute.paths(of: "instances").count == 4, "the worker, two gang members and the team's")
        }
    }

    /// With one item a page, every list is followed to its last page and finds the same.
    @Test func listsFollowEveryPage() async throws {
        try await GCPOwnedWorld.run { world in
            let made = try await world.createOwned()
            try await world.createOthers()
            await world.compute.set(maxPageSize: 1)
            await world.storage.set(maxPageSize: 1)
            await world.iam.set(maxPageSize: 1)
            let (computeBefore, storageBefore, iamBefore) = (await world.compute.calls, await world.storage.calls, await world.iam.calls)
            let owned = try await world.owned()
            #expect(Set(owned.values.joined().map(Self.line)) == Self.expected(made))
            let (compute, storage, iam) = (await world.compute.calls, await world.storage.calls, await world.iam.calls)
            func pages(_ calls: [String: Int], _ before: [String: Int], _ method: String) -> Int { calls[method, default: 0] - before[method, default: 0] }
            // Two networks of Stratum's and the team's: three pages; four instances, listed by both instance kinds.
            #expect(pages(compute, computeBefore, "compute.networks.list") == 3)
            #expect(pages(compute, computeBefore, "compute.instances.aggregatedList") == 2 * 3, "three instances carry Stratum's labels")
            #expect(pages(compute, computeBefore, "compute.subnetworks.aggregatedList") == 2)
            // Four buckets, listed by the bucket and the object kinds.
            #expect(pages(storage, storageBefore, "storage.buckets.list") == 2 * 4)
            #expect(pages(iam, iamBefore, "iam.projects.serviceAccounts.list") == 3)
        }
    }

    /// Each listed state deletes what it names through the provider; afterwards nothing of
    /// Stratum's is listed and what was made beside it is still there. A listed bucket that
    /// still holds an object of someone else's is not emptied: its delete fails and it stays.
    @Test func deletingWhatIsListedRemovesIt() async throws {
        try await GCPOwnedWorld.run { world in
            _ = try await world.createOwned()
            try await world.createOthers()
            let owned = try await world.owned()
            let order = [
                "gcp_storage_object", "gcp_service_account", "gcp_instance", "gcp_instance_gang", "gcp_firewall", "gcp_subnetwork", "gcp_resource_policy",
                "gcp_bucket", "gcp_network",
            ]
            #expect(Set(order) == Set(owned.keys))
            for type in order {
                for item in owned[type] ?? [] {
                    if item.state.id == GCPOwnedWorld.longBucket {
                        await #expect(throws: ProviderError.self) { try await world.provider.delete(item.state) }
                    } else {
                        try await world.provider.delete(item.state)
                    }
                }
            }
            let left = try await world.owned()
            #expect(left.values.joined().map(\.state.id) == [GCPOwnedWorld.longBucket])
            #expect(await world.compute.paths(of: "networks") == ["projects/stratum-test/global/networks/team-net"])
            #expect(await world.compute.paths(of: "subnetworks") == ["projects/stratum-test/regions/us-central1/subnetworks/team-sub"])
            #expect(await world.compute.paths(of: "instances") == ["projects/stratum-test/zones/us-central1-a/instances/team-vm"])
            #expect(await world.compute.paths(of: "firewalls").isEmpty)
            #expect(await world.compute.paths(of: "resourcePolicies").isEmpty)
            #expect(await Set(world.storage.bucketNames()) == [GCPOwnedWorld.longBucket, "stratum-older", "team-data"])
            #expect(await world.storage.storedObjects(in: GCPOwnedWorld.longBucket).map(\.name) == ["stratum/notes.txt"])
            #expect(await world.iam.emails().map { String($0.prefix { $0 != "@" }) } == ["ci-runner", "stratum-old-node"])
        }
    }

    /// The binary's provider (made from the environment, its client made at the first call)
    /// lists what the project holds too; without credentials a kind that lists says why it
    /// cannot (the sweep names GCP with the reason and goes on with the other providers).
    @Test func theProviderFromTheEnvironmentListsToo() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let unconfigured = GCPProvider.fromEnvironment(["NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": scratch.path, "HOME": scratch.path])
        for kind in unconfigured.kinds.values {
            // A kind that cannot list says nil; one that can says why it cannot here, so the
            // sweep names GCP and the reason.
            do {
                #expect(try await kind.owned() == nil, "\(kind.type)")
            } catch {
                #expect("\(error)".contains("no GCP credentials"), "\(kind.type): \(error)")
            }
        }

        let world = try await GCPEnvironmentWorld.make()
        let fakes = try await GCPStackFakes.make(world)
        var failure: (any Error)?
        do {
            let provider = GCPProvider.fromEnvironment(fakes.environment)
            let made = try await provider.create(
                ResolvedResource(
                    address: ResourceAddress(type: "gcp_network", name: "vpc"), region: GCPOwnedWorld.region, inputs: [:], dependencies: [],
                    ownership: GCPOwnedWorld.ephemeral),
                token: UUID().uuidString.lowercased())
            let listed = try #require(try await provider.kinds["gcp_network"]?.owned())
            #expect(listed.map(\.state.id) == [made.id] && listed.first?.ownership == GCPOwnedWorld.ephemeral)
            #expect(try await provider.kinds["gcp_bucket"]?.owned()?.isEmpty == true)
        } catch {
            failure = error
        }
        let problems = await world.problems() + fakes.problems()
        await fakes.shutdown()
        await world.shutdown()
        if let failure { throw failure }
        #expect(problems.isEmpty, "\(problems)")
    }
}

/// The ownership records `owned` reads, and the records older versions wrote.
@Suite("GCP ownership records")
struct GCPOwnershipRecordTests {
    static func resource(_ type: String, _ name: String, ownership: Ownership) -> ResolvedResource {
        ResolvedResource(address: ResourceAddress(type: type, name: name, index: 3), region: "us-central1", inputs: [:], dependencies: [], ownership: ownership)
    }

    /// A bucket's labels keep the stack, address, lineage and owner whole in label characters,
    /// over more than one value when they are long; every value is one GCP accepts.
    @Test func labelsKeepWholeTextsReversibly() throws {
        let ownership = Ownership(stack: "Ünïcode Stack/" + String(repeating: "Long_", count: 20), lineage: "Lineage.1", owner: "bob@example.com", expires: Date(timeIntervalSince1970: 1_700_000_123))
        let resource = Self.resource("gcp_bucket", "data_set", ownership: ownership)
        let labels = GCPLabels.ownership(for: resource, token: "t").merging(GCPLabels.wholeTexts(for: resource)) { $1 }
        #expect(labels.allSatisfy { GCPLabels.isValidKey($0.key) && GCPLabels.isValidValue($0.value) }, "\(labels)")
        #expect(labels[GCPLabels.textKey(GCPLabels.stack, part: 2)] != nil, "\(labels)")
        let json = GCPJSON.object(labels.mapValues(GCPJSON.string))
        let (address, read) = try #require(GCPLabels.owned(in: json))
        #expect(address == resource.address && read == ownership)
        // Values that are label text already are not written twice.
        let plain = Self.resource("gcp_bucket", "b", ownership: Ownership(stack: "s/e", lineage: "plain-lineage", owner: "bob"))
        let texts = GCPLabels.wholeTexts(for: plain)
        #expect(Set(texts.keys) == [GCPLabels.textKey(GCPLabels.stack, part: 0), GCPLabels.textKey(GCPLabels.address, part: 0)])
        #expect(GCPLabels.unescaped(texts[GCPLabels.textKey(GCPLabels.stack, part: 0)] ?? "") == "s/e")
        // Labels as buckets had them before the whole texts were kept name no workspace that could be trusted.
        #expect(GCPLabels.owned(in: .object(GCPLabels.ownership(for: plain, token: "t").mapValues(GCPJSON.string))) == nil)
        #expect(GCPLabels.unescaped("bad_zz") == nil && GCPLabels.unescaped("trailing_2") == nil)
    }

    /// A Compute description keeps the owner and expiry now; one written before them is still read.
    @Test func descriptionsOldAndNew() throws {
        let resource = Self.resource("gcp_network", "vpc", ownership: GCPOwnedWorld.ephemeral)
        let (address, ownership) = try #require(GCPOwnership.owned(in: GCPOwnership.description(for: resource, token: "t")))
        #expect(address == resource.address && ownership == GCPOwnedWorld.ephemeral)
        let older = #"Managed by Stratum {"address":"gcp_network.vpc","lineage":"l-1","stack":"demo/dev","token":"t"}"#
        let (oldAddress, oldOwnership) = try #require(GCPOwnership.owned(in: older))
        #expect(oldAddress.description == "gcp_network.vpc" && oldOwnership == Ownership(stack: "demo/dev", lineage: "l-1"))
        #expect(GCPOwnership.owned(in: "the team's network") == nil)
        #expect(GCPOwnership.owned(in: #"Managed by Stratum {"stack":"demo/dev","token":"t"}"#) == nil)
    }

    /// An account's description is the record within IAM's 256 bytes: without the owner when
    /// need be, else the readable form, which still carries the create's token.
    @Test func accountDescriptionsFitIAM() throws {
        let token = "0f3a9b2c-1111-2222-3333-444455556666"
        let fits = GCPServiceAccountKind.description(for: Self.resource("gcp_service_account", "node", ownership: GCPOwnedWorld.ephemeral), token: token)
        #expect(GCPOwnership.owned(in: fits)?.ownership == GCPOwnedWorld.ephemeral)
        var longOwner = GCPOwnedWorld.ephemeral
        longOwner.owner = String(repeating: "owner", count: 10)
        let ownerless = GCPServiceAccountKind.description(for: Self.resource("gcp_service_account", "node", ownership: longOwner), token: token)
        #expect(ownerless.utf8.count <= 256 && GCPOwnership.owned(in: ownerless)?.ownership.owner == nil)
        #expect(GCPOwnership.owned(in: ownerless)?.ownership.lineage == longOwner.lineage)
        var longStack = GCPOwnedWorld.ephemeral
        longStack.stack = String(repeating: "stack", count: 30) + "/env"
        let readable = GCPServiceAccountKind.description(for: Self.resource("gcp_service_account", "node", ownership: longStack), token: token)
        #expect(readable.utf8.count <= 256 && GCPOwnership.owned(in: readable) == nil)
        for description in [fits, ownerless, readable] {
            #expect(GCPServiceAccountKind.carries(token: token, ["description": .string(description)]), "\(description)")
            #expect(!GCPServiceAccountKind.carries(token: "another", ["description": .string(description)]))
        }
    }
}
