import Foundation
import StratumCore
import StratumPostgres
import StratumState
import StratumTesting
import Testing

/// The PostgreSQL server the tests use, if any: `STRATUM_TEST_POSTGRES_URL` (CI always sets it).
enum PostgresTestServer {
    static let url: String? = ProcessInfo.processInfo.environment["STRATUM_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let skipReason: Comment =
        "STRATUM_TEST_POSTGRES_URL is not set, so the PostgreSQL backend was not tested (the StateStore contract ran on memory and sqlite only). Start a server and set it, e.g. postgres://stratum:secret@127.0.0.1:5432/stratum_test"

    /// The server URL with a fresh schema, so tests running in parallel never share tables.
    static func isolatedURL(_ base: String) -> String {
        let schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        return base + (base.contains("?") ? "&" : "?") + "schema=\(schema)"
    }
}

/// The backends every StateStore must behave the same on.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, sqlite, postgres
    var testDescription: String { rawValue }

    /// The backends the contract runs on here: PostgreSQL when a server is configured (when it
    /// is not, the "PostgreSQL backend" suite reports the skip and why).
    static var contract: [Backend] { PostgresTestServer.url == nil ? [.memory, .sqlite] : allCases }
    /// Backends that keep state at rest (in memory nothing is encoded or sealed).
    static var persistent: [Backend] { contract.filter { $0 != .memory } }

    /// Runs `body` with a fresh store of this backend, removing its storage afterwards.
    /// `clock` is the caller's clock for PostgreSQL leases: inject the same time the test's
    /// `LockInfo`s are built from.
    func withStore(
        sealer: (any ValueSealer)? = nil, clock: @escaping @Sendable () -> Date = { Date() },
        _ body: (StoreUnderTest) async throws -> Void
    ) async throws {
        let teardown = Teardown()
        let subject: StoreUnderTest
        switch self {
        case .memory:
            let store = InMemoryStateStore()
            subject = StoreUnderTest(
                store: store, storedBytes: { nil },
                reopen: { _, _ in store })
        case .sqlite:
            let path = try TestSupport.temporaryDirectory("state").appendingPathComponent("nested/state.db").path
            subject = StoreUnderTest(
                store: try SQLiteStateStore(path: path, sealer: sealer),
                storedBytes: {
                    var bytes = Data()
                    for file in [path, path + "-wal"] { bytes.append((try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data()) }
                    return bytes
                },
                reopen: { sealer, _ in try SQLiteStateStore(path: path, sealer: sealer) })
        case .postgres:
            let base = try #require(PostgresTestServer.url, PostgresTestServer.skipReason)
            let url = PostgresTestServer.isolatedURL(base)
            let store = try await PostgresStateStore.connect(url: url, sealer: sealer, clock: clock)
            await teardown.add { try? await store.dropSchemaForTesting() }
            subject = StoreUnderTest(
                store: store,
                storedBytes: { try await store.storedBytesForTesting().reduce(into: Data()) { $0.append($1) } },
                reopen: { sealer, clock in
                    let other = try await PostgresStateStore.connect(url: url, sealer: sealer, clock: clock)
                    await teardown.add { await other.close() }
                    return other
                })
        }
        do {
            try await body(subject)
        } catch {
            await teardown.run()
            throw error
        }
        await teardown.run()
    }
}

/// One backend's store in one test, with what the test needs to look beneath it.
struct StoreUnderTest: Sendable {
    var store: any StateStore
    /// Every byte the backend keeps at rest (the database and WAL files, or the raw column
    /// values); nil in memory.
    var storedBytes: @Sendable () async throws -> Data?
    /// The same storage opened again, as another process or team member would: with its own
    /// key and (for PostgreSQL) its own clock.
    var reopen: @Sendable ((any ValueSealer)?, @escaping @Sendable () -> Date) async throws -> any StateStore

    func reopen(sealer: (any ValueSealer)?, clock: @escaping @Sendable () -> Date = { Date() }) async throws -> any StateStore {
        try await reopen(sealer, clock)
    }
}

/// Cleanup steps run after a test, in reverse order, whether it passed or not.
actor Teardown {
    private var steps: [@Sendable () async -> Void] = []
    func add(_ step: @escaping @Sendable () async -> Void) { steps.append(step) }
    func run() async {
        for step in steps.reversed() { await step() }
        steps = []
    }
}

/// A fixed instant the tests build their times from (no test reads the wall clock for logic).
let testEpoch = Date(timeIntervalSince1970: 1_800_000_000)

func sampleResource(_ name: String, index: Int? = nil, value: Value = "v") -> ResourceState {
    ResourceState(
        address: ResourceAddress(type: "fake_thing", name: name, index: index), provider: "fake", region: "r1", id: "id-\(name)-\(index ?? -1)",
        attributes: ["value": value, "nested": ["list": [1, 2], "flag": true]], dependencies: [ResourceAddress(type: "fake_thing", name: "root")])
}

func sampleLock(_ id: String, at time: Date, lease: TimeInterval = 60, pid: Int32 = 1, host: String = "h") -> LockInfo {
    LockInfo(id: id, holder: "\(id)@\(host)", operation: "apply", pid: pid, host: host, acquiredAt: time, expiresAt: time.addingTimeInterval(lease))
}

func sampleOperation(_ name: String, startedAt: Date, action: PendingOperation.Action = .create, inputs: [String: Value] = ["size": 3]) -> PendingOperation {
    PendingOperation(
        id: "op-\(name)", address: ResourceAddress(type: "fake_thing", name: name), action: action, provider: "fake", region: "r1",
        token: "token-\(name)", startedAt: startedAt, ownership: Ownership(stack: "s/dev", lineage: "l-1"),
        prior: action == .create ? nil : sampleResource(name), inputs: inputs, dependencies: [ResourceAddress(type: "fake_thing", name: "root")])
}
