import Foundation
import StratumCore
import StratumEngine
import Testing

@Suite("Plan output")
struct PlanJSONTests {
    @Test func jsonHasTerraformsShape() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 1 }))
        let plan = try await world.plan(try world.stack { $0.count = 2; $0.size = 3 })
        let data = try PlanJSON(plan: plan, version: "test").encoded()
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["format_version"] as? String == "1.2")
        let changes = try #require(object["resource_changes"] as? [[String: Any]])
        func change(_ address: String) throws -> [String: Any] {
            try #require(changes.first { $0["address"] as? String == address })
        }
        let created = try change("fake_thing.child[1]")
        #expect(created["type"] as? String == "fake_thing")
        #expect(created["name"] as? String == "child")
        #expect(created["index"] as? Int == 1)
        let createdChange = try #require(created["change"] as? [String: Any])
        #expect(createdChange["actions"] as? [String] == ["create"])
        #expect(createdChange["before"] is NSNull || createdChange["before"] == nil)
        let after = try #require(createdChange["after"] as? [String: Any])
        #expect(after["value"] as? String == "v1")
        #expect(after["id"] == nil)
        let unknown = try #require(createdChange["after_unknown"] as? [String: Any])
        #expect(unknown["id"] as? Bool == true)
        #expect(unknown["parent"] as? Bool == true)

        let replaced = try #require(try change("fake_thing.root")["change"] as? [String: Any])
        #expect(replaced["actions"] as? [String] == ["delete", "create"])
        #expect((replaced["before"] as? [String: Any])?["size"] as? Int == 1)
        #expect(replaced["replace_paths"] as? [[String]] == [["size"]])
    }

    @Test func humanOutputHasMarkersAndSummary() async throws {
        let world = try World()
        try await world.apply(try await world.plan(try world.stack { $0.count = 2 }))
        let plan = try await world.plan(try world.stack { $0.count = 1; $0.value = "v2"; $0.size = 5 })
        let text = PlanRenderer.render(plan)
        #expect(text.contains("-/+ fake_thing.root"))
        #expect(text.contains("~ size = 1 -> 5 # forces replacement"))
        #expect(text.contains("  ~ fake_thing.child[0]"))
        #expect(text.contains("  - fake_thing.child[1]"))
        #expect(text.contains("~ value = \"v1\" -> \"v2\""))
        #expect(text.contains("Plan: 1 to add, 1 to change, 2 to destroy."))
    }
}
