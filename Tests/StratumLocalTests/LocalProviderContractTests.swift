import Foundation
import StratumCore
import StratumLocal
import StratumTesting
import Testing

/// The provider contract on Local: buckets (every check) and networks (every check but
/// import by id, which for a network goes by its name in the stack).
@Suite("ProviderContractTests: Local", .timeLimit(.minutes(3)))
struct LocalProviderContractTests {
    static func bucket() throws -> ProviderContractTests {
        let provider = LocalProvider(root: try TestSupport.temporaryDirectory("local-contract"))
        return ProviderContractTests(.init(provider: provider, type: "local_bucket", region: "local", inputs: { ["name": .string("b-\($0)"), "versioning": false] }))
    }

    static func network() throws -> ProviderContractTests {
        let provider = LocalProvider(root: try TestSupport.temporaryDirectory("local-contract"))
        return ProviderContractTests(.init(provider: provider, type: "local_network", region: "local", inputs: { _ in ["cidr": "10.0.0.0/16"] }))
    }

    @Test func bucketIdempotentCreateByToken() async throws { try await Self.bucket().idempotentCreateByToken() }
    @Test func bucketLostResponseIsRecovered() async throws { try await Self.bucket().lostResponseIsRecovered() }
    @Test func bucketBatchedReadWithMissingMembers() async throws { try await Self.bucket().batchedReadWithMissingMembers() }
    @Test func bucketDeleteOfWhatIsGone() async throws { try await Self.bucket().deleteOfWhatIsGone() }
    @Test func bucketImportByID() async throws { try await Self.bucket().importByID() }

    @Test func networkIdempotentCreateByToken() async throws { try await Self.network().idempotentCreateByToken() }
    @Test func networkLostResponseIsRecovered() async throws { try await Self.network().lostResponseIsRecovered() }
    @Test func networkBatchedReadWithMissingMembers() async throws { try await Self.network().batchedReadWithMissingMembers() }
    @Test func networkDeleteOfWhatIsGone() async throws { try await Self.network().deleteOfWhatIsGone() }
}
