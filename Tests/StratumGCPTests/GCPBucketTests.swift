import Foundation
import Stratum
import StratumCloud
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing
@testable import StratumGCP

/// The GCP provider against the loopback Cloud Storage fake, which checks every request
/// against Google's storage v1 discovery document.
struct GCSFakeWorld {
    static let project = "stratum-test"
    static let region = "us-central1"

    let fake: GCSBucketFake
    let server: LoopbackHTTPServer
    let provider: GCPProvider

    static func make(credentials: GCPCredentials? = nil) async throws -> GCSFakeWorld {
        let fake = try GCSBucketFake(project: project)
        let server = try await fake.serve()
        let clock = VirtualClock().clock
        let tokens = BearerTokenCache(clock: clock) { BearerToken(value: "ya29.fake-token", lifetime: .seconds(3600)) }
        let configuration = GCPClient.Configuration(endpoints: GCPEndpoints(storage: server.url.appendingPathComponent("storage/v1")))
        let client = try GCPClient(
            configuration: configuration, credentials: credentials ?? GCPCredentials(source: .metadataServer, project: project, tokens: tokens),
            project: project, transport: AsyncHTTPTransport(), clock: clock)
        return GCSFakeWorld(fake: fake, server: server, provider: GCPProvider(client: client))
    }

    /// Runs `body` on a fresh world and expects the fake saw no request Storage would refuse.
    static func run(credentials: GCPCredentials? = nil, _ body: (GCSFakeWorld) async throws -> Void) async throws {
        let world = try await make(credentials: credentials)
        do {
            try await body(world)
        } catch {
            await world.server.shutdown()
            throw error
        }
        let violations = await world.fake.violations
        await world.server.shutdown()
        #expect(violations.isEmpty, "\(violations)")
    }

    static func bucket(_ name: String, _ inputs: [String: Value] = [:], ownership: Ownership = Ownership(stack: "demo/dev", lineage: "lineage-1")) -> ResolvedResource {
        ResolvedResource(
            address: ResourceAddress(type: "gcp_bucket", name: name), region: region, inputs: inputs.merging(["name": .string(name)]) { $1 }, dependencies: [],
            ownership: ownership)
    }

    func create(_ name: String, _ inputs: [String: Value] = [:], token: String = UUID().uuidString.lowercased()) async throws -> ResourceState {
        try await provider.create(Self.bucket(name, inputs), token: token)
    }

    /// The live bucket's fields.
    func live(_ name: String) async throws -> [String: Value] {
        try #require(await fake.bucket(name)?.mapValue)
    }
}

@Suite("ProviderContractTests: GCP buckets on the Storage fake", .timeLimit(.minutes(3)))
struct GCPBucketContractTests {
    @Test func bucketContract() async throws {
        try await GCSFakeWorld.run { world in
            let suffix = UUID().uuidString.lowercased().prefix(8)
            try await ProviderContractTests(.init(
                provider: world.provider, type: "gcp_bucket", region: GCSFakeWorld.region,
                inputs: { ["name": .string("stratum-\($0)-\(suffix)"), "versioning": true, "labels": ["team": "ml"]] })
            ).all()
            #expect(await world.fake.bucketNames().isEmpty, "the contract checks left buckets behind")
        }
    }
}

@Suite("GCP buckets on the Storage fake", .timeLimit(.minutes(3)))
struct GCPBucketTests {
    /// What a create sends: the name, the resource's region as the location (upper-cased, as
    /// Storage answers it), versioning, uniform access by default, and the stack's labels beside
    /// Stratum's ownership labels with the create's token.
    @Test func createSetsLabelsVersioningAndLocation() async throws {
        try await GCSFakeWorld.run { world in
            let token = UUID().uuidString.lowercased()
            let state = try await world.create("ckpt-one", ["versioning": true, "labels": ["team": "ml", "cost-center": "42"]], token: token)
            let live = try await world.live("ckpt-one")
            #expect(live["location"] == "US-CENTRAL1")
            #expect(live["versioning"]?.mapValue?["enabled"] == .bool(true))
            #expect(live["iamConfiguration"]?.mapValue?["uniformBucketLevelAccess"]?.mapValue?["enabled"] == .bool(true))
            let labels = try #require(live["labels"]?.mapValue)
            #expect(labels["team"] == "ml" && labels["cost-center"] == "42")
            #expect(labels[GCPLabels.token] == .string(token))
            #expect(labels[GCPLabels.lineage] == "lineage-1")
            #expect(labels[GCPLabels.stack]?.stringValue?.hasPrefix("demo-dev-") == true, "the stack's '/' is not a label character")
            #expect(state.id == "ckpt-one")
            #expect(state.attributes["url"] == "gs://ckpt-one")
            #expect(state.attributes["location"] == "US-CENTRAL1")
            #expect(state.attributes["self_link"]?.stringValue?.hasSuffix("/b/ckpt-one") == true)
            #expect(await world.fake.calls == ["storage.buckets.insert": 1])

            // A location the stack names is sent upper-cased; an explicit class and uniform access off go as given.
            _ = try await world.create("ckpt-two", ["location": "eu", "storage_class": "nearline", "uniform_access": false])
            let second = try await world.live("ckpt-two")
            #expect(second["location"] == "EU" && second["storageClass"] == "NEARLINE")
            #expect(second["iamConfiguration"]?.mapValue?["uniformBucketLevelAccess"]?.mapValue?["enabled"] == .bool(false))
        }
    }

    /// Refresh of an unchanged bucket reads back the recorded state, and reads a project's
    /// buckets with one list (paginated), never a get per bucket.
    @Test func refreshReadsEveryBucketOfAProjectWithOneListAndFindsNoChange() async throws {
        try await GCSFakeWorld.run { world in
            var made: [ResourceState] = []
            for index in 0..<5 { made.append(try await world.create("data-\(index)", ["versioning": .bool(index.isMultiple(of: 2)), "labels": ["n": .string("\(index)")]])) }
            await world.fake.set(maxPageSize: 2)
            let before = await world.fake.calls
            let live = try await world.provider.read(type: "gcp_bucket", resources: made)
            #expect(live == made.map { Optional($0) })
            let after = await world.fake.calls
            #expect(after["storage.buckets.list", default: 0] - before["storage.buckets.list", default: 0] == 3, "5 buckets at 2 a page")
            #expect(after["storage.buckets.get"] == nil)
        }
    }

    /// Versioning and labels change in place with one PATCH; removed labels go, Stratum's stay.
    @Test func versioningAndLabelsChangeInPlace() async throws {
        try await GCSFakeWorld.run { world in
            let token = UUID().uuidString.lowercased()
            let prior = try await world.create("logs", ["versioning": true, "labels": ["team": "ml", "tier": "hot"]], token: token)
            let kind = try #require(world.provider.kinds["gcp_bucket"])
            #expect(kind.schema.attributes["versioning"]?.forceNew == false && kind.schema.attributes["labels"]?.forceNew == false)

            let updated = try await world.provider.update(prior, to: GCSFakeWorld.bucket("logs", ["versioning": false, "labels": ["team": "infra", "owner": "ops"]]))
            #expect(await world.fake.calls["storage.buckets.patch"] == 1)
            let live = try await world.live("logs")
            #expect(live["versioning"]?.mapValue?["enabled"] == .bool(false))
            let labels = try #require(live["labels"]?.mapValue)
            #expect(labels["team"] == "infra" && labels["owner"] == "ops" && labels["tier"] == nil, "\(labels)")
            #expect(labels[GCPLabels.token] == .string(token), "the ownership labels stay")
            #expect(updated.attributes["versioning"] == .bool(false))
            #expect(updated.attributes["labels"] == ["team": "infra", "owner": "ops"])

            // The same inputs again change nothing and call nothing.
            _ = try await world.provider.update(updated, to: GCSFakeWorld.bucket("logs", ["versioning": false, "labels": ["team": "infra", "owner": "ops"]]))
            #expect(await world.fake.calls["storage.buckets.patch"] == 1)
            let refreshed = try await world.provider.read(type: "gcp_bucket", resources: [updated])
            #expect(refreshed == [updated])
        }
    }

    /// A bucket with a `project` input is made, listed and batched in that project.
    @Test func theProjectInputPlacesTheBucketInThatProject() async throws {
        try await GCSFakeWorld.run { world in
            await world.fake.allow(project: "data-project")
            let elsewhere = try await world.create("elsewhere-bucket", ["project": "data-project"])
            let here = try await world.create("here-bucket")
            #expect(await world.fake.bucketNames(in: "data-project") == ["elsewhere-bucket"])
            #expect(await world.fake.bucketNames() == ["here-bucket"])
            let kind = try #require(world.provider.kinds["gcp_bucket"])
            #expect(kind.batchKey(elsewhere) == "projects/data-project" && kind.batchKey(here) == "projects/\(GCSFakeWorld.project)")
            #expect(kind.schema.attributes["project"]?.forceNew == true)
            let live = try await world.provider.read(type: "gcp_bucket", resources: [elsewhere])
            #expect(live == [elsewhere])
            try await world.provider.delete(elsewhere)
            #expect(await world.fake.bucketNames(in: "data-project").isEmpty)
        }
    }

    @Test func aBucketDeletedOutOfBandReadsAsGone() async throws {
        try await GCSFakeWorld.run { world in
            let kept = try await world.create("kept-bucket")
            let gone = try await world.create("gone-bucket")
            await world.fake.deleteOutOfBand("gone-bucket")
            let live = try await world.provider.read(type: "gcp_bucket", resources: [kept, gone])
            #expect(live.count == 2 && live[0]?.id == "kept-bucket" && live[1] == nil)
        }
    }

    /// A bucket that holds objects is not deleted unless `force_destroy` is set; with it, every
    /// object generation (noncurrent versions too) goes first.
    @Test func destroyOfANonEmptyBucketNeedsForceDestroy() async throws {
        try await GCSFakeWorld.run { world in
            let plain = try await world.create("plain-bucket")
            await world.fake.putObject("model/step-100.bin", in: "plain-bucket")
            let refused = await #expect(throws: ProviderError.self) { try await world.provider.delete(plain) }
            #expect(refused?.kind == .permanent)
            #expect(refused?.message.contains("plain-bucket") == true && refused?.message.contains("force_destroy") == true)
            #expect(await world.fake.bucketNames() == ["plain-bucket"])
            #expect(await world.fake.storedObjects(in: "plain-bucket").count == 1)

            let forced = try await world.create("forced-bucket", ["versioning": true, "force_destroy": true])
            for name in ["a", "dir/b", "dir/b", "c d"] { await world.fake.putObject(name, in: "forced-bucket") }
            #expect(await world.fake.storedObjects(in: "forced-bucket").count == 4, "a noncurrent version of dir/b is kept")
            try await world.provider.delete(forced)
            #expect(await world.fake.bucketNames() == ["plain-bucket"])
            #expect(await world.fake.calls["storage.objects.delete"] == 4)
        }
    }

    /// A name someone else holds fails for good, naming the bucket; so does a bucket of this
    /// project that another create made.
    @Test func aNameTakenBySomeoneElseIsAPermanentErrorNamingTheBucket() async throws {
        try await GCSFakeWorld.run { world in
            await world.fake.takeName("taken-name")
            let taken = await #expect(throws: ProviderError.self) { try await world.create("taken-name") }
            #expect(taken?.kind == .permanent)
            #expect(taken?.message.contains("'taken-name'") == true && taken?.message.contains("taken") == true)

            _ = try await world.create("ours-already")
            let stranger = await #expect(throws: ProviderError.self) { try await world.create("ours-already") }
            #expect(stranger?.kind == .permanent)
            #expect(stranger?.message.contains("'ours-already' already exists") == true)
            #expect(await world.fake.bucketNames() == ["ours-already"])
        }
    }

    /// A create whose answer was lost fails as retryable; the retry meets 409, finds its own
    /// token on the bucket and adopts it; recovery by the token finds it too.
    @Test func aCreateWhoseAnswerWasLostIsAdoptedByItsRetry() async throws {
        try await GCSFakeWorld.run { world in
            await world.fake.inject(.lostResponse, into: "storage.buckets.insert")
            let token = UUID().uuidString.lowercased()
            let failure = await #expect(throws: ProviderError.self) { try await world.create("lost-bucket", token: token) }
            #expect(failure?.isRetryable == true)
            let retried = try await world.create("lost-bucket", token: token)
            #expect(retried.id == "lost-bucket" && retried.attributes["url"] == "gs://lost-bucket")
            let recovered = try await world.provider.recover(PendingOperation(creating: GCSFakeWorld.bucket("lost-bucket"), provider: "gcp", token: token))
            #expect(recovered?.id == "lost-bucket")
            #expect(await world.fake.calls["storage.buckets.insert"] == 2)
            #expect(await world.fake.bucketNames() == ["lost-bucket"])
        }
    }

    @Test func aThrottledCreateIsRetryableAndSentOnce() async throws {
        try await GCSFakeWorld.run { world in
            await world.fake.inject(.throttled, into: "storage.buckets.insert")
            let failure = await #expect(throws: ProviderError.self) { try await world.create("busy-bucket") }
            #expect(failure?.kind == .throttled)
            #expect(await world.fake.calls["storage.buckets.insert"] == 1)
        }
    }

    @Test func namesLabelsAndClassesAreCheckedBeforeAnyCall() async throws {
        try await GCSFakeWorld.run { world in
            let kind = try #require(world.provider.kinds["gcp_bucket"])
            func problems(_ inputs: [String: Value]) -> [String] {
                kind.validate(DesiredResource(address: ResourceAddress(type: "gcp_bucket", name: "b"), provider: "gcp", region: GCSFakeWorld.region, inputs: inputs))
                    .map(\.message)
            }
            #expect(problems(["name": "good-name_1.example"]).isEmpty)
            for bad in ["ab", "Upper", "-dash", "trailing-", "has space", "192.168.1.1", "goog-data", "my-google-bucket", String(repeating: "a", count: 64)] {
                #expect(problems(["name": .string(bad)]).count == 1, "\(bad)")
            }
            #expect(problems(["name": "fine", "labels": ["Team": "ml"]]).count == 1)
            #expect(problems(["name": "fine", "labels": ["team": "Not OK"]]).count == 1)
            #expect(problems(["name": "fine", "labels": ["stratum-token": "x"]]).count == 1)
            #expect(problems(["name": "fine", "storage_class": "FROZEN"]).count == 1)
            #expect(problems(["name": "fine", "storage_class": "coldline"]).isEmpty)
            // Labels are plain text to anyone who may list the buckets: a secret is refused there.
            let leak = DesiredResource(
                address: ResourceAddress(type: "gcp_bucket", name: "b"), provider: "gcp", region: GCSFakeWorld.region,
                inputs: ["name": "fine", "labels": ["token": .sensitive("hunter2")]])
            #expect(world.provider.validateAgainstSchema(leak).map(\.message).contains { $0.contains("labels.token") })
            #expect(await world.fake.calls.isEmpty)
        }
    }

    /// Label values Stratum writes always fit the label rules, and differ when the text does.
    @Test func ownershipLabelValuesFitTheLabelRules() {
        let texts = ["demo/dev", "Demo/Dev", "journal-token-7", "0F3A9B2C-1111-2222-3333-444455556666", String(repeating: "x", count: 100), "", "gcp_bucket.ckpt[0]"]
        let values = texts.map(GCPLabels.value)
        #expect(values.allSatisfy(GCPLabels.isValidValue), "\(values)")
        #expect(Set(values).count == texts.count)
        #expect(GCPLabels.value("journal-token-7") == "journal-token-7")
        #expect(values == texts.map(GCPLabels.value), "the same text gives the same value")
    }
}

@Suite("GCP client: the Storage API and the quota project", .timeLimit(.minutes(3)))
struct GCPStorageClientTests {
    @Test func storageEndpointComesFromTheEnvironment() {
        #expect(GCPEndpoints.fromEnvironment([:]).storage.absoluteString == "https://storage.googleapis.com/storage/v1")
        #expect(GCPEndpoints.fromEnvironment(["STORAGE_EMULATOR_HOST": "127.0.0.1:9023"]).storage.absoluteString == "http://127.0.0.1:9023/storage/v1")
        #expect(GCPEndpoints.fromEnvironment(["STORAGE_EMULATOR_HOST": "https://gcs.internal:4443/"]).storage.absoluteString == "https://gcs.internal:4443/storage/v1")
        let both = GCPEndpoints.fromEnvironment([
            "STORAGE_EMULATOR_HOST": "127.0.0.1:9023", "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": "http://127.0.0.1:8111/storage/v1/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": "http://127.0.0.1:8222/compute/v1/",
        ])
        #expect(both.storage.absoluteString == "http://127.0.0.1:8111/storage/v1", "gcloud's override wins, without its trailing slash")
        #expect(both.compute.absoluteString == "http://127.0.0.1:8222/compute/v1")
    }

    /// An `authorized_user` ADC file with `quota_project_id` makes every call carry
    /// `x-goog-user-project`; a service-account key sends none.
    @Test func anAuthorizedUserWithAQuotaProjectSendsTheUserProjectHeader() async throws {
        let tokenServer = try await LoopbackHTTPServer.start { _ in
            ProxyResponse(status: 200, headers: [("Content-Type", "application/json")], body: Data(#"{"access_token":"ya29.user","expires_in":3600}"#.utf8))
        }
        defer { Task { await tokenServer.shutdown() } }
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let file = try scratch.write(
            "adc.json",
            ["type": "authorized_user", "client_id": "c.apps", "client_secret": "s", "refresh_token": "r", "quota_project_id": "billing-project"])
        let fetcher = GCPTokenFetcher(endpoints: GCPEndpoints(token: tokenServer.url.appendingPathComponent("token")), transport: AsyncHTTPTransport())
        let user = try await GCPCredentials.resolve(
            environment: ["GOOGLE_APPLICATION_CREDENTIALS": file, "GOOGLE_CLOUD_PROJECT": GCSFakeWorld.project], fetcher: fetcher)
        #expect(user.quotaProject == "billing-project")
        try await GCSFakeWorld.run(credentials: user) { world in
            _ = try await world.create("billed-bucket")
            let headers = await world.fake.requestHeaders
            #expect(headers.count == 1)
            #expect(headers.allSatisfy { request in request.contains { $0.0.lowercased() == "x-goog-user-project" && $0.1 == "billing-project" } })
        }
        try await GCSFakeWorld.run { world in
            _ = try await world.create("plain-bucket")
            #expect(await world.fake.requestHeaders.allSatisfy { request in !request.contains { $0.0.lowercased() == "x-goog-user-project" } })
        }
    }
}

/// A bucket driven through the real Planner, Refresher and Executor against the Storage fake.
@Suite("GCP buckets through the engine on the Storage fake", .timeLimit(.minutes(3)))
struct GCPBucketLifecycleTests {
    static func stack(versioning: Bool, labels: Value) throws -> EvaluatedStack {
        var content = StackContent()
        CustomResource(
            "gcp_bucket", "checkpoints", provider: "gcp", region: GCSFakeWorld.region,
            inputs: ["name": "ckpt-lifecycle", "location": "us-central1", "versioning": Value.bool(versioning), "labels": labels, "force_destroy": Value.bool(true)]
        ).declare(into: &content)
        return try StackEvaluator.evaluate(content, name: "gcp-bucket", environment: "test")
    }

    @Test func planApplyRefreshUpdateInPlaceDriftDestroy() async throws {
        try await GCSFakeWorld.run { world in
            let run = GCPEngineRun(provider: world.provider, stack: "gcp-bucket", environment: "test")
            func plan(_ stack: EvaluatedStack) async throws -> Plan { try await run.plan(stack) }
            func apply(_ plan: Plan) async throws -> ApplyResult { try await run.apply(plan) }
            let stack = try Self.stack(versioning: true, labels: ["team": "ml", "generation": 3])
            try Planner(providers: run.registry).validate(stack)
            let first = try await plan(stack)
            #expect(first.changes.map(\.action) == [.create])
            #expect(try await apply(first).ok)
            #expect(await world.fake.bucketNames() == ["ckpt-lifecycle"])

            // The location the stack wrote in lower case is the one Storage answers upper-cased, and
            // the label written as a number is the text Storage keeps: no change.
            let second = try await plan(stack)
            #expect(!second.hasChanges, "\(second.actionable.map { "\($0.address) \($0.action) \($0.changedAttributes)" })")

            // Versioning and labels are updated in place, not replaced.
            let changed = try Self.stack(versioning: false, labels: ["team": "research"])
            let update = try await plan(changed)
            #expect(update.actionable.map(\.action) == [.update])
            #expect(try await apply(update).ok)
            #expect(await world.fake.calls["storage.buckets.patch"] == 1)
            #expect(await world.fake.calls["storage.buckets.insert"] == 1)
            #expect(try await world.live("ckpt-lifecycle")["labels"]?.mapValue?["team"] == "research")
            #expect(!(try await plan(changed)).hasChanges)

            // Deleted behind Stratum's back: planned and made again.
            await world.fake.deleteOutOfBand("ckpt-lifecycle")
            let drift = try await plan(changed)
            #expect(drift.actionable.map(\.action) == [.create])
            #expect(try await apply(drift).ok)

            // Destroy empties the bucket (force_destroy) and deletes it.
            await world.fake.putObject("step-1.bin", in: "ckpt-lifecycle")
            let destroyed = try await apply(try await run.destroyPlan())
            #expect(destroyed.ok, "\(destroyed.failed.map { "\($0.step.address): \($0.error)" })")
            #expect(await world.fake.bucketNames().isEmpty)
        }
    }
}
