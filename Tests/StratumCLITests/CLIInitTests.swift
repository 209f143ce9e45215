import Foundation
import StratumCore
import StratumState
import StratumTesting
import Testing

/// `stratum init` through the built binary: which products, providers and example stacks a new
/// package is wired with, and the error a binary gives for a provider it does not carry.
@Suite("stratum init and cloud wiring")
struct CLIInitTests {
    /// This checkout, which the scaffolded packages depend on by path.
    static let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Scaffolded {
        let root: URL
        func read(_ path: String) throws -> String { try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8) }
        func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path) }
    }

    func scaffold(_ name: String, _ extra: [String]) async throws -> (CLI.Result, Scaffolded) {
        let dir = try TestSupport.temporaryDirectory("init")
        let result = try await CLI("stratum", in: dir).run(["init", name, "--stratum-path", Self.checkout.path] + extra)
        return (result, Scaffolded(root: dir.appendingPathComponent(name)))
    }

    @Test(.timeLimit(.minutes(3)))
    func defaultPackageLinksOnlyLocal() async throws {
        let (result, package) = try await scaffold("plain-infra", [])
        #expect(result.status == 0, "\(result.stderr)")
        let manifest = try package.read("Package.swift")
        #expect(manifest.contains(#".product(name: "Stratum", package: "\#(Self.checkout.lastPathComponent)")"#))
        #expect(!manifest.contains("StratumAWS"))
        let main = try package.read("Sources/plain-infra/main.swift")
        #expect(main.contains("import StratumCLI"))
        #expect(main.contains("await StratumCLI.main(stacks: [ExampleStack.self])"))
        #expect(!main.contains("StratumAWS") && !main.contains(".aws"))
        #expect(package.exists("Sources/plain-infra/ExampleStack.swift"))
        #expect(!package.exists("Sources/plain-infra/ExampleAWSStack.swift"))
        #expect(!package.exists("Stacks/example-aws.dev.yaml"))
    }

    @Test(.timeLimit(.minutes(3)))
    func cloudAWSLinksItsProductProviderAndExample() async throws {
        // Repeating a cloud (and naming local, always there) wires it once.
        let (result, package) = try await scaffold("gpu-infra", ["--cloud", "aws,local", "--cloud", "aws"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("'example-aws'"))
        let manifest = try package.read("Package.swift")
        let identity = Self.checkout.lastPathComponent
        #expect(manifest.contains(#"dependencies: [.product(name: "Stratum", package: "\#(identity)"), .product(name: "StratumAWS", package: "\#(identity)")]"#))
        let main = try package.read("Sources/gpu-infra/main.swift")
        #expect(main.contains("import StratumAWS\nimport StratumCLI"))
        #expect(main.contains("await StratumCLI.main(stacks: [ExampleStack.self, ExampleAWSStack.self], providers: [.local, .aws])"))
        let example = try package.read("Sources/gpu-infra/ExampleAWSStack.swift")
        #expect(example.contains("import StratumAWS"))
        #expect(example.contains("static let name = \"example-aws\""))
        #expect(example.contains("Placement.aws(region: config.region, zones: config.zones)"))
        #expect(try package.read("Stacks/example-aws.dev.yaml").contains("bucket_name:"))
        #expect(package.exists("Sources/gpu-infra/ExampleStack.swift"))
    }

    @Test(.timeLimit(.minutes(3)))
    func cloudGCPLinksItsProductProviderAndExample() async throws {
        let (result, package) = try await scaffold("gcp-infra", ["--cloud", "aws,gcp"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("'example-gcp'"))
        let identity = Self.checkout.lastPathComponent
        #expect(try package.read("Package.swift").contains(#".product(name: "StratumGCP", package: "\#(identity)")"#))
        let main = try package.read("Sources/gcp-infra/main.swift")
        #expect(main.contains("import StratumGCP"))
        #expect(main.contains("await StratumCLI.main(stacks: [ExampleStack.self, ExampleAWSStack.self, ExampleGCPStack.self], providers: [.local, .aws, .gcp])"))
        let example = try package.read("Sources/gcp-infra/ExampleGCPStack.swift")
        #expect(example.contains("import StratumGCP") && example.contains("static let name = \"example-gcp\""))
        #expect(example.contains("Placement.gcp(project: config.project.isEmpty ? nil : config.project, region: config.region, zones: config.zones)"))
        #expect(try package.read("Stacks/example-gcp.dev.yaml").contains("bucket_name: example-gcp-data-dev"))
    }

    @Test(.timeLimit(.minutes(3)))
    func cloudAzureLinksItsProductProviderAndExample() async throws {
        let (result, package) = try await scaffold("azure-infra", ["--cloud", "azure"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("'example-azure'"))
        let identity = Self.checkout.lastPathComponent
        #expect(try package.read("Package.swift").contains(#".product(name: "StratumAzure", package: "\#(identity)")"#))
        let main = try package.read("Sources/azure-infra/main.swift")
        #expect(main.contains("import StratumAzure"))
        #expect(main.contains("await StratumCLI.main(stacks: [ExampleStack.self, ExampleAzureStack.self], providers: [.local, .azure])"))
        let example = try package.read("Sources/azure-infra/ExampleAzureStack.swift")
        #expect(example.contains("import StratumAzure") && example.contains("static let name = \"example-azure\""))
        #expect(example.contains("Placement.azure("))
        #expect(try package.read("Stacks/example-azure.dev.yaml").contains("bucket_name: example-azure-data-dev"))
    }

    @Test(.timeLimit(.minutes(3)))
    func unknownCloudIsRefusedBeforeWriting() async throws {
        let (result, package) = try await scaffold("odd-infra", ["--cloud", "nimbus"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot wire the cloud 'nimbus'"))
        #expect(result.stderr.contains("it knows: local, aws, gcp, azure"))
        #expect(!package.exists("Package.swift"))
    }

    @Test(.timeLimit(.minutes(3)))
    func missingProviderSaysHowToWireIt() async throws {
        let dir = try TestSupport.temporaryDirectory("elsewhere")
        let result = try await CLI("stratum-fixture", in: dir).run(["validate", "--stack", "elsewhere"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("uses the provider 'nimbus', which this binary does not carry (it has: fake, fake2, fake3, local, lro)"))
        #expect(result.stderr.contains("depend on that cloud's product and list its provider in StratumCLI.main(providers:)"))
        #expect(result.stderr.contains("stratum init DIR --cloud nimbus"))
        #expect(!result.stderr.contains("unknown provider"))
    }

    @Test(.timeLimit(.minutes(3)))
    func stateOnAMissingProviderSaysHowToWireIt() async throws {
        let dir = try TestSupport.temporaryDirectory("elsewhere-state")
        let stratum = dir.appendingPathComponent(".stratum")
        try FileManager.default.createDirectory(at: stratum, withIntermediateDirectories: true)
        let store = try SQLiteStateStore(path: stratum.appendingPathComponent("state.db").path)
        let address = ResourceAddress(type: "nimbus_bucket", name: "data")
        try await store.commit(
            workspace: "elsewhere/dev",
            StateMutation(
                upserts: [ResourceState(address: address, provider: "nimbus", region: "region-1", id: "data", attributes: [:])],
                changes: [HistoryChange(address: address.description, action: "create")]),
            at: Date())
        let destroy = try await CLI("stratum-fixture", in: dir).run(["destroy", "--stack", "elsewhere", "--auto-approve"])
        #expect(destroy.status != 0)
        #expect(destroy.stderr.contains("the state of stack 'elsewhere' holds resources of the provider 'nimbus', which this binary does not carry"), "\(destroy.stderr)")
        #expect(destroy.stderr.contains("stratum init DIR --cloud nimbus"))
        // Nothing was removed from state.
        #expect(try await store.read(workspace: "elsewhere/dev").resources.keys.contains(address))
    }
}
