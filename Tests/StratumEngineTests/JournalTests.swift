import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing

/// Records what the journal held at the moment of each create call.
enum JournalSpy {
    final class SeenTokens: @unchecked Sendable {
        private let lock = NSLock()
        private var pairs: [(given: String, journaled: [String])] = []
        func add(_ given: String, _ journaled: [String]) { lock.withLock { pairs.append((given, journaled)) } }
        var all: [(given: String, journaled: [String])] { lock.withLock { pairs } }
    }

    static func provider(inner: FakeCloudProvider, store: any StateStore, workspace: String, seen: SeenTokens) -> InterceptingProvider {
        InterceptingProvider(wrapping: inner) { resource, context, kind in
            let pending = try await store.pendingOperations(workspace: workspace)
            seen.add(context.token, pending.filter { $0.address == resource.address }.map(\.token))
            return try await kind.create(resource, context: context)
        }
    }
}

@Suite("Operation journal and recovery")
struct JournalTests {
    @Test func everyCreateIsJournaledWithItsTokenBeforeTheCallAndSettledAfter() async throws {
        let world = try World()
        let seen = JournalSpy.SeenTokens()
        let spy = JournalSpy.provider(inner: world.provider, store: world.store, workspace: world.workspace, seen: seen)
        let stack = try world.stack { $0.count = 3 }
        let snapshot = try await world.store.read(workspace: world.workspace)
        let plan = try Planner(providers: ProviderRegistry([spy])).plan(stack: stack, snapshot: snapshot, refreshed: nil, scope: PlanScope(), now: Date())
        let result = try await Executor(providers: ProviderRegistry([spy]), store: world.store, workspace: world.workspace, retry: .none).apply(plan)
        #expect(result.ok)
        #expect(seen.all.count == 4)
        for (given, journaled) in seen.all { #expect(journaled == [given]) }
        #expect(try await world.store.pendingOperations(workspace: world.workspace).isEmpty)
        let history = try await world.store.history(workspace: world.workspace)
        #expect(history.count == 5)  // 4 creates + outputs
    }

    @Test func aLostResponseIsSettledAtOnceByAskingTheProvider() async throws {
        let world = try World(options: .init(loseResponseOn: "fake_thing.child[1]"))
        let stack = try world.stack { $0.count = 2 }
        let result = try await world.apply(try await world.plan(stack))
        #expect(result.failed.map(\.0.address.description) == ["fake_thing.child[1]"])
        // The create took effect; the executor asked the provider by token and adopted it.
        let state = try await world.store.read(workspace: world.workspace)
        let inventory = try world.provider.inventory()
        #expect(state.resources.count == 3)
        #expect(Set(state.resources.values.map(\.id)) == Set(inventory.keys))
        #expect(try await world.store.pendingOperations(workspace: world.workspace).isEmpty)
        // And the next plan has nothing to do.
        #expect(try await world.plan(stack).hasChanges == false)
    }

    @Test func recoveryAdoptsConfirmsGoneAndRereads() async throws {
        let world = try World()
        let stack = try world.stack { $0.count = 1 }
        try await world.apply(try await world.plan(stack))
        let before = try await world.store.read(workspace: world.workspace)
        let child = try #require(before.resources[ResourceAddress(type: "fake_thing", name: "child", index: 0)])
        let ownership = Ownership(stack: world.workspace, lineage: before.lineage)

        // 1. A create that took effect in the cloud but never reached state.
        let orphanAddress = ResourceAddress(type: "fake_thing", name: "extra")
        let made = try await world.provider.create(ResolvedResource(address: orphanAddress, region: "default", inputs: ["value": "x"], dependencies: []), token: "tok-made")
        let createMade = PendingOperation(address: orphanAddress, action: .create, provider: "fake", region: "default", token: "tok-made", startedAt: Date(), ownership: ownership, inputs: ["value": "x"])
        // 2. A create that never happened.
        let createLost = PendingOperation(address: ResourceAddress(type: "fake_thing", name: "never"), action: .create, provider: "fake", region: "default", token: "tok-never", startedAt: Date(), ownership: ownership)
        // 3. A delete that took effect before the crash.
        try await world.provider.delete(child)
        let deleteDone = PendingOperation(address: child.address, action: .delete, provider: "fake", region: "default", token: "tok-del", startedAt: Date(), ownership: ownership, prior: child)
        for operation in [createMade, createLost, deleteDone] { try await world.store.beginOperation(workspace: world.workspace, operation) }
        #expect(try await world.store.pendingOperations(workspace: world.workspace).count == 3)

        let outcomes = try await Recovery(providers: world.registry, store: world.store, workspace: world.workspace).run()
        #expect(outcomes == [.adopted(orphanAddress, id: made.id), .confirmedGone(createLost.address), .confirmedGone(child.address)])
        let after = try await world.store.read(workspace: world.workspace)
        #expect(after.resources[orphanAddress]?.id == made.id)
        #expect(after.resources[child.address] == nil)
        #expect(try await world.store.pendingOperations(workspace: world.workspace).isEmpty)
        #expect(try await world.store.history(workspace: world.workspace).last?.changes.first?.action.hasPrefix("recover") == true)
    }

    @Test func recoveredCreateBeforeDestroyKeepsTheOldCopyTracked() async throws {
        let world = try World(options: .init(createBeforeDestroy: true))
        let stack = try world.stack { $0.count = 0 }
        try await world.apply(try await world.plan(stack))
        let snapshot = try await world.store.read(workspace: world.workspace)
        let root = try #require(snapshot.resources[ResourceAddress(type: "fake_thing", name: "root")])
        // The new copy was made, then the process died before committing it.
        _ = try await world.provider.create(ResolvedResource(address: root.address, region: "default", inputs: ["size": 2, "value": "v1"], dependencies: []), token: "tok-cbd")
        try await world.store.beginOperation(workspace: world.workspace, PendingOperation(
            address: root.address, action: .create, provider: "fake", region: "default", token: "tok-cbd", startedAt: Date(),
            ownership: Ownership(stack: world.workspace, lineage: snapshot.lineage), prior: root, inputs: ["size": 2, "value": "v1"]))
        _ = try await Recovery(providers: world.registry, store: world.store, workspace: world.workspace).run()
        let after = try await world.store.read(workspace: world.workspace)
        #expect(after.resources[ResourceAddress(type: "fake_thing", name: "root-deposed")]?.id == root.id)
        #expect(after.resources[root.address]?.id != root.id)
        // The next apply deletes the deposed copy: nothing leaks.
        try await world.apply(try await world.plan(try world.stack { $0.count = 0; $0.size = 2 }))
        #expect(try world.provider.inventory().count == 1)
        #expect(try await world.store.read(workspace: world.workspace).resources.count == 1)
    }
}

@Suite("Secrets")
struct SecretTests {
    static let secret = "s3cr3t-token-\(UUID().uuidString.prefix(8))"

    @Test func secretsAreSealedInTheStateFileAndHiddenInPlans() async throws {
        let dir = try TestSupport.temporaryDirectory("secrets")
        let key = StateKey(.file(dir.appendingPathComponent("state.key").path))
        let path = dir.appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path, sealer: key)
        let provider = FakeCloudProvider(root: dir.appendingPathComponent("cloud"))
        let registry = ProviderRegistry([provider])
        let stack = try StackEvaluator.evaluate(FakeFanStack().body(config: { var c = FakeFanStack.Config(); c.count = 1; c.token = Secret(Self.secret); return c }()), name: "fake-fan", environment: "test")
        let workspace = "fake-fan/test"

        let plan = try Planner(providers: registry).plan(stack: stack, snapshot: try await store.read(workspace: workspace), refreshed: nil, scope: PlanScope(), now: Date())
        let rendered = PlanRenderer.render(plan, color: false)
        #expect(rendered.contains("(sensitive)"))
        #expect(!rendered.contains(Self.secret))
        let json = String(decoding: try PlanJSON(plan: plan, version: "test").encoded(), as: UTF8.self)
        #expect(!json.contains(Self.secret))
        #expect(json.contains("\"after_sensitive\":{\"token\":true}"))

        let result = try await Executor(providers: registry, store: store, workspace: workspace, retry: .none).apply(plan)
        #expect(result.ok)
        // The provider got the plain value (it is the cloud's to know)...
        #expect(try provider.inventory().values.contains { $0.attributes["token"] == .string(Self.secret) })
        // ...state holds it sealed, and reads it back as sensitive.
        let state = try await store.read(workspace: workspace)
        #expect(state.resources[ResourceAddress(type: "fake_thing", name: "root")]?.attributes["token"] == .sensitive(.string(Self.secret)))
        #expect(state.outputs["root_token"] == .sensitive(.string(Self.secret)))
        for file in [path, path + "-wal"] {
            let bytes = (FileManager.default.contents(atPath: file) ?? Data())
            #expect(bytes.range(of: Data(Self.secret.utf8)) == nil, "\(file) holds the secret in plain text")
        }
        // The key file was created 0600 on first use.
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("state.key").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // A refresh and plan see no change: the sealed value compares equal.
        let refreshed = try await Refresher(providers: registry).refresh(state.resources)
        let again = try Planner(providers: registry).plan(stack: stack, snapshot: state, refreshed: refreshed, scope: PlanScope(), now: Date())
        #expect(!again.hasChanges)

        // With another key the secrets cannot be read, and the error says so.
        let other = try SQLiteStateStore(path: path, sealer: StateKey(.material("another key")))
        await #expect { try await other.read(workspace: workspace) } throws: { error in
            "\(error)".contains("cannot decrypt")
        }
    }

    @Test func aSensitiveValueRefusesToEncodeWithoutAKey() throws {
        #expect(throws: EncodingError.self) { try JSONEncoder().encode(Value.sensitive("x")) }
        let sealed = try StateCodec(sealer: StateKey(.material("k"))).encode(Value.map(["a": .sensitive("plain")]))
        #expect(!String(decoding: sealed, as: UTF8.self).contains("plain"))
        #expect(try StateCodec(sealer: StateKey(.material("k"))).decode(Value.self, from: sealed) == .map(["a": .sensitive("plain")]))
    }
}
