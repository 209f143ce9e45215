import Foundation
import Stratum
import Testing

struct LoopStack: Stack {
    static let name = "loops"
    struct Config: StackConfiguration {
        var workers = 3
        var withNetwork = true
        var tag = "a"
    }

    func body(config: Config) -> StackContent {
        let network: Network? = config.withNetwork ? Network("net", cidr: "10.1.0.0/16") : nil
        network
        let bucket = Bucket("data")
        bucket
        if config.withNetwork {
            Bucket("only-with-network")
        } else {
            Bucket("only-without-network")
        }
        for shard in 0..<2 {
            Bucket("shard-\(shard)").dependsOn(bucket)
        }
        NodePool("workers", count: config.workers, command: ["/bin/true"], env: ["DATA": bucket.path, "TAG": config.tag], network: network)
        Output("data", bucket.url)
    }
}

@Suite("DSL lowering and validation")
struct DSLTests {
    func evaluate(_ config: LoopStack.Config = .init()) throws -> EvaluatedStack {
        try StackEvaluator.evaluate(LoopStack().body(config: config), name: "loops", environment: "test")
    }

    @Test func loopsConditionalsAndOptionalsLower() throws {
        let stack = try evaluate()
        let addresses = Set(stack.resources.map(\.address.description))
        #expect(addresses.contains("local_network.net"))
        #expect(addresses.contains("local_bucket.only-with-network"))
        #expect(!addresses.contains("local_bucket.only-without-network"))
        #expect(addresses.contains("local_bucket.shard-0") && addresses.contains("local_bucket.shard-1"))
        #expect((0..<3).allSatisfy { addresses.contains("local_node.workers[\($0)]") })
        #expect(stack.resources.count == 1 + 1 + 1 + 2 + 3)

        var config = LoopStack.Config()
        config.withNetwork = false
        config.workers = 0
        let other = try evaluate(config)
        let otherAddresses = Set(other.resources.map(\.address.description))
        #expect(!otherAddresses.contains("local_network.net"))
        #expect(otherAddresses.contains("local_bucket.only-without-network"))
        #expect(!otherAddresses.contains { $0.hasPrefix("local_node") })
    }

    @Test func referencesAndDependsOnBecomeEdges() throws {
        let stack = try evaluate()
        let node = try #require(ResourceAddress(parsing: "local_node.workers[1]"))
        let bucket = try #require(ResourceAddress(parsing: "local_bucket.data"))
        let network = try #require(ResourceAddress(parsing: "local_network.net"))
        #expect(Set(stack.graph.edges[node] ?? []) == [bucket, network])
        let shard = try #require(ResourceAddress(parsing: "local_bucket.shard-0"))
        #expect(stack.graph.edges[shard] == [bucket])
        let order = try #require(stack.graph.topologicalOrder())
        #expect(try #require(order.firstIndex(of: bucket)) < #require(order.firstIndex(of: node)))
        let resource = try #require(stack.resourcesByAddress[node])
        #expect(resource.inputs["env"]?.mapValue?["DATA"] == .reference(AttributeReference(address: bucket, attribute: "path")))
        #expect(stack.outputs["data"] == .reference(AttributeReference(address: bucket, attribute: "url")))
    }

    @Test func cycleIsReportedWithItsPath() throws {
        var content = StackContent()
        let a = CustomResource("fake_thing", "a", provider: "fake", inputs: ["value": "x"])
        let b = CustomResource("fake_thing", "b", provider: "fake", inputs: ["parent": a["id"]])
        a.dependsOn(b).declare(into: &content)
        b.declare(into: &content)
        let error = try #require(throws: ValidationError.self) { try StackEvaluator.evaluate(content, name: "c", environment: "t") }
        let message = error.description
        #expect(message.contains("dependency cycle"))
        #expect(message.contains("fake_thing.a -> fake_thing.b -> fake_thing.a") || message.contains("fake_thing.b -> fake_thing.a -> fake_thing.b"))
    }

    @Test func danglingReferenceNamesBothEnds() throws {
        var content = StackContent()
        let ghost = Bucket("ghost")
        NodePool("p", count: 1, command: ["/bin/true"], env: ["X": ghost.path]).declare(into: &content)
        let error = try #require(throws: ValidationError.self) { try StackEvaluator.evaluate(content, name: "d", environment: "t") }
        #expect(error.description.contains("local_node.p[0]"))
        #expect(error.description.contains("local_bucket.ghost"))
        #expect(error.description.contains("DSLTests.swift"))
    }

    @Test func duplicatesBadCIDRAndNegativeCountAreAllReported() throws {
        var content = StackContent()
        Bucket("same").declare(into: &content)
        Bucket("same").declare(into: &content)
        Network("n", cidr: "10.0.0.1/16").declare(into: &content)
        Network("m", cidr: "300.0.0.0/8").declare(into: &content)
        NodePool("neg", count: -1, command: ["/bin/true"]).declare(into: &content)
        let error = try #require(throws: ValidationError.self) { try StackEvaluator.evaluate(content, name: "v", environment: "t") }
        #expect(error.diagnostics.count == 4)
        #expect(error.description.contains("local_bucket.same: declared more than once"))
        #expect(error.description.contains("local_network.n: invalid CIDR '10.0.0.1/16': host bits"))
        #expect(error.description.contains("local_network.m: invalid CIDR"))
        #expect(error.description.contains("local_node.neg: count must not be negative"))
    }

    @Test(arguments: ["10.0.0.0/8", "0.0.0.0/0", "192.168.1.1/32", "172.16.0.0/12"])
    func validCIDRs(_ cidr: String) {
        #expect(CIDR.problem(in: cidr) == nil)
    }

    @Test(arguments: ["10.0.0.0", "10.0.0/8", "10.0.0.0/33", "a.b.c.d/8", "10.0.0.0/-1", "1.2.3.4/8"])
    func invalidCIDRs(_ cidr: String) {
        #expect(CIDR.problem(in: cidr) != nil)
    }
}

@Suite("Stack configuration from YAML")
struct ConfigTests {
    @Test func theConventionalPathIsStacksStackDotEnvironment() {
        #expect(StackConfigLoader.conventionalPath(stack: "training", environment: "prod") == "Stacks/training.prod.yaml")
        let url = StackConfigLoader.defaultPath(stack: "training", environment: "dev", root: URL(fileURLWithPath: "/srv/infra"))
        #expect(url.path == "/srv/infra/Stacks/training.dev.yaml")
    }

    @Test func fileOverridesDefaultsAndKeepsTheRest() throws {
        let config = try StackConfigLoader.decode(LoopStack.Config.self, yaml: "workers: 7\nwith_network: false\n", file: "x.yaml")
        #expect(config.workers == 7)
        #expect(config.withNetwork == false)
        #expect(config.tag == "a")
    }

    @Test func unknownKeyIsAnErrorNamingIt() throws {
        let error = try #require(throws: StackConfigLoader.ConfigError.self) {
            try StackConfigLoader.decode(LoopStack.Config.self, yaml: "workerz: 7\n", file: "bad.yaml")
        }
        #expect(error.description.contains("unknown config key 'workerz'"))
        #expect(error.description.contains("bad.yaml"))
        #expect(error.description.contains("workers"))
    }

    @Test func wrongTypeNamesTheKey() throws {
        let error = try #require(throws: StackConfigLoader.ConfigError.self) {
            try StackConfigLoader.decode(LoopStack.Config.self, yaml: "workers: lots\n", file: "bad.yaml")
        }
        #expect(error.description.contains("'workers'"))
        #expect(error.description.contains("integer"))
    }

    @Test func stackEntryReadsTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("loops.prod.yaml")
        try "workers: 5\n".write(to: file, atomically: true, encoding: .utf8)
        let stack = try StackEntry(LoopStack.self).evaluate("prod", file)
        #expect(stack.resources.filter { $0.address.type == "local_node" }.count == 5)
        #expect(stack.environment == "prod")
    }
}
