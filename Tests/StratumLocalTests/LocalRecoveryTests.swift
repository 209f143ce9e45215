import Foundation
import StratumCore
import StratumLocal
import StratumTesting
import Testing

/// The journal row of an interrupted Local create, as the executor writes it.
func operation(_ address: ResourceAddress, token: String, inputs: [String: Value]) -> PendingOperation {
    PendingOperation(address: address, action: .create, provider: "local", region: "local", token: token, startedAt: Date(), ownership: .unowned, inputs: inputs)
}

@Suite("Local provider recovery")
struct LocalRecoveryTests {
    @Test func anInterruptedNodeCreateIsFoundByItsTokenEvenWithoutItsRecord() async throws {
        let root = try TestSupport.temporaryDirectory("local-recover")
        let provider = LocalProvider(root: root)
        let address = ResourceAddress(type: "local_node", name: "w", index: 0)
        let inputs: [String: Value] = ["command": ["/bin/sleep", "60"], "image": "none"]
        let created = try await provider.create(ResolvedResource(address: address, region: "local", inputs: inputs, dependencies: []), token: "tok-node-1")
        defer { Task { try? await provider.delete(created) } }
        let pid = try #require(created.attributes["pid"]?.intValue)

        // With its record: found.
        let found = try #require(try await provider.recover(operation(address, token: "tok-node-1", inputs: inputs)))
        #expect(found.attributes["pid"]?.intValue == pid)
        // Another token: nothing of that create exists.
        #expect(try await provider.recover(operation(address, token: "tok-other", inputs: inputs)) == nil)

        // Killed between spawn and writing the record: the process carries its directory in
        // its environment, and recovery finds it there.
        let directory = try #require(created.attributes["log_path"]?.stringValue.map { URL(fileURLWithPath: $0).deletingLastPathComponent() })
        try FileManager.default.removeItem(at: directory.appendingPathComponent("node.json"))
        let rescued = try #require(try await provider.recover(operation(address, token: "tok-node-1", inputs: inputs)))
        #expect(rescued.attributes["pid"]?.intValue == pid)
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("node.json").path))
        try await provider.delete(rescued)
        #expect(kill(Int32(pid), 0) != 0)
    }

    @Test func bucketsAndNetworksAreFoundByTheirRecordToken() async throws {
        let root = try TestSupport.temporaryDirectory("local-recover-b")
        let provider = LocalProvider(root: root)
        let bucket = ResourceAddress(type: "local_bucket", name: "data")
        let inputs: [String: Value] = ["name": "data"]
        let made = try await provider.create(ResolvedResource(address: bucket, region: "local", inputs: inputs, dependencies: []), token: "tok-b")
        #expect(try await provider.recover(operation(bucket, token: "tok-b", inputs: inputs))?.id == made.id)
        #expect(try await provider.recover(operation(bucket, token: "tok-x", inputs: inputs)) == nil)
        let network = ResourceAddress(type: "local_network", name: "net")
        let netInputs: [String: Value] = ["cidr": "10.0.0.0/16"]
        let net = try await provider.create(ResolvedResource(address: network, region: "local", inputs: netInputs, dependencies: []), token: "tok-n")
        #expect(try await provider.recover(operation(network, token: "tok-n", inputs: netInputs))?.id == net.id)
        #expect(try await provider.recover(operation(network, token: "tok-y", inputs: netInputs)) == nil)
    }
}

@Suite("Local provider import")
struct LocalImportTests {
    @Test func anExistingBucketDirectoryIsImportedByName() async throws {
        let root = try TestSupport.temporaryDirectory("local-import")
        let provider = LocalProvider(root: root)
        let directory = root.appendingPathComponent("buckets/datasets")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let address = ResourceAddress(type: "local_bucket", name: "datasets")
        let state = try #require(try await provider.importResource(type: "local_bucket", region: "local", id: "datasets", address: address))
        #expect(state.attributes["path"]?.stringValue == directory.path)
        // Once imported, refresh sees it.
        #expect(try await provider.read(type: "local_bucket", resources: [state]).first??.id == "datasets")
        #expect(try await provider.importResource(type: "local_bucket", region: "local", id: "missing", address: address) == nil)
        await #expect(throws: ProviderError.self) {
            try await provider.importResource(type: "local_node", region: "local", id: "pid-1", address: ResourceAddress(type: "local_node", name: "n", index: 0))
        }
    }
}
