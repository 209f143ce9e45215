import Foundation
import StratumCore
import Testing

@Suite struct AddressTests {
    @Test(arguments: ["local_bucket.data", "local_node.workers[3]", "aws_instance.gpu-node_1"])
    func roundTrips(_ text: String) throws {
        let address = try #require(ResourceAddress(parsing: text))
        #expect(address.description == text)
    }

    @Test(arguments: ["nodot", ".name", "type.", "type.na me", "type.name[-1]", "type.name[x]"])
    func rejectsMalformed(_ text: String) {
        #expect(ResourceAddress(parsing: text) == nil)
    }
}

@Suite struct ValueCodingTests {
    @Test func unknownsAndReferencesSurviveJSON() throws {
        let ref = AttributeReference(address: ResourceAddress(type: "t", name: "n", index: 2), attribute: "id")
        let value: Value = ["a": 1, "b": [true, "x", .unknown], "c": .reference(ref), "d": 1.5, "e": nil]
        let data = try JSONEncoder().encode(value)
        #expect(try JSONDecoder().decode(Value.self, from: data) == value)
        #expect(value.containsUnknown)
        #expect(value.references == [ref])
    }
}

@Suite struct GraphTests {
    func address(_ name: String) -> ResourceAddress { ResourceAddress(type: "t", name: name) }

    @Test func topologicalOrderPutsDependenciesFirst() throws {
        let graph = ResourceGraph(edges: [address("c"): [address("b")], address("b"): [address("a")], address("a"): []])
        #expect(graph.topologicalOrder() == [address("a"), address("b"), address("c")])
        #expect(graph.findCycle() == nil)
        #expect(graph.dependentClosure(of: [address("a")]) == [address("a"), address("b"), address("c")])
        #expect(graph.closure(of: [address("b")]) == [address("a"), address("b")])
    }

    @Test func longChainsDoNotOverflow() {
        var edges: [ResourceAddress: [ResourceAddress]] = [address("n0"): []]
        for i in 1..<50_000 { edges[address("n\(i)")] = [address("n\(i - 1)")] }
        let graph = ResourceGraph(edges: edges)
        #expect(graph.findCycle() == nil)
        #expect(graph.topologicalOrder()?.count == 50_000)
    }

    @Test func cycleComesBackAsAPath() throws {
        let graph = ResourceGraph(edges: [address("a"): [address("b")], address("b"): [address("c")], address("c"): [address("a")], address("d"): []])
        let cycle = try #require(graph.findCycle())
        #expect(cycle.first == cycle.last)
        #expect(Set(cycle) == [address("a"), address("b"), address("c")])
        #expect(graph.topologicalOrder() == nil)
    }
}
