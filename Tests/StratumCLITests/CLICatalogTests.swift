import Foundation
import StratumCore
import StratumTesting
import Testing

@Suite("stratum catalog, plan costs and budgets (CLI)")
struct CLICatalogTests {
    static func write(_ text: String, to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    @Test("plan prints each machine's price and the stack's cost; apply then plan shows the new baseline")
    func planShowsCost() async throws {
        let dir = try TestSupport.temporaryDirectory("plan-cost")
        let cli = CLI("stratum-fixture", in: dir)
        try Self.write("machines: 3\nmachine_type: fk.large\n", to: dir.appendingPathComponent("Stacks/fake-fleet.dev.yaml"))
        let plan = try await cli.run(["plan", "--stack", "fake-fleet"])
        #expect(plan.status == 0, "\(plan.stderr)")
        #expect(plan.stdout.contains("#   $2.00/h (fk.large on-demand in default)"))
        #expect(plan.stdout.contains("Cost: $0.00/h now, $6.00/h after (+$6.00/h)"), "\(plan.stdout)")

        let json = try await cli.run(["plan", "--stack", "fake-fleet", "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let cost = try #require(document?["cost"] as? [String: Any])
        #expect(cost["hourly_after"] as? Double == 6)
        #expect((cost["resources"] as? [Any])?.count == 3)

        let apply = try await cli.run(["apply", "--stack", "fake-fleet", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")
        // One machine more: only the new one is a change; the applied three are the baseline.
        try Self.write("machines: 4\nmachine_type: fk.large\n", to: dir.appendingPathComponent("Stacks/fake-fleet.dev.yaml"))
        let grow = try await cli.run(["plan", "--stack", "fake-fleet"])
        #expect(grow.stdout.contains("Cost: $6.00/h now, $8.00/h after (+$2.00/h)"), "\(grow.stdout)")
    }

    @Test("a budget in the environment's config or the stack refuses a plan over it, and nothing is created")
    func budgetRefusesApply() async throws {
        let dir = try TestSupport.temporaryDirectory("budget")
        let cli = CLI("stratum-fixture", in: dir)
        let cloud = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud"))
        let config = dir.appendingPathComponent("Stacks/fake-fleet.dev.yaml")
        try Self.write("machines: 2\nmachine_type: fk.gpu8\nbudget_per_hour: 50\n", to: config)
        let apply = try await cli.run(["apply", "--stack", "fake-fleet", "--auto-approve"])
        #expect(apply.status == 1)
        #expect(apply.stderr.contains("the plan would make the stack cost $80.00/h (now $0.00/h, +$80.00/h), over the budget of $50.00/h set by environment 'dev' (budget_per_hour in Stacks/fake-fleet.dev.yaml)"), "\(apply.stderr)")
        #expect(try cloud.inventory().isEmpty)

        // The stack's own Budget is lower still: it is the one named.
        try Self.write("machines: 2\nmachine_type: fk.gpu8\nbudget_per_hour: 500\nbudget: 30\n", to: config)
        let stackCap = try await cli.run(["plan", "--stack", "fake-fleet"])
        #expect(stackCap.status == 1)
        #expect(stackCap.stderr.contains("over the budget of $30.00/h set by stack 'fake-fleet' (Budget at StratumTesting/FixtureStacks.swift:"), "\(stackCap.stderr)")

        // Within both caps: applied, and the plan says how much room is left.
        try Self.write("machines: 1\nmachine_type: fk.gpu8\nspot: true\nbudget_per_hour: 50\nbudget: 30\n", to: config)
        let fits = try await cli.run(["apply", "--stack", "fake-fleet", "--auto-approve"])
        #expect(fits.status == 0, "\(fits.stderr)")
        #expect(fits.stdout.contains("Budget: $30.00/h set by stack 'fake-fleet'"))
        #expect(fits.stdout.contains("$17.50/h to spare"))
        #expect(try cloud.inventory().count == 1)

        // A bad budget value is a config error naming the key.
        try Self.write("machines: 1\nbudget_per_hour: lots\n", to: config)
        let bad = try await cli.run(["plan", "--stack", "fake-fleet"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("config key 'budget_per_hour' = lots: expected a positive number of US dollars an hour"), "\(bad.stderr)")

        // Destroy is never refused by a budget.
        try Self.write("machines: 1\nmachine_type: fk.gpu8\nspot: true\nbudget_per_hour: 1\n", to: config)
        let destroy = try await cli.run(["destroy", "--stack", "fake-fleet", "--auto-approve"])
        #expect(destroy.status == 0, "\(destroy.stderr)")
        #expect(try cloud.inventory().isEmpty)
    }

    @Test("catalog ranks offers for a GPU count, explains what it left out, and says where prices come from")
    func catalogRanks() async throws {
        let dir = try TestSupport.temporaryDirectory("catalog")
        let cli = CLI("stratum-fixture", in: dir)
        let table = try await cli.run(["catalog", "--gpu", "h100", "--count", "16", "--excluded"])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        let first = try #require(lines.firstIndex { $0.hasPrefix("1 ") })
        #expect(lines[first].contains("fake") && lines[first].contains("default") && lines[first].contains("$80.00/h"))
        #expect(lines[first + 1].contains("faraway") && lines[first + 1].contains("$88.00/h"))
        #expect(table.stdout.contains("fake: 4 offers, as of 2026-10-01 to 2026-11-01"))
        #expect(table.stdout.contains("from the fake cloud's catalog"))

        let spot = try await cli.run(["catalog", "--gpu", "H100", "--count", "16", "--spot", "--excluded"])
        #expect(spot.stdout.contains("fake fk.gpu8 faraway: no spot price in the catalog"), "\(spot.stdout)")

        let json = try await cli.run(["catalog", "--gpu", "H100", "--count", "8", "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let candidates = try #require((document?["ranking"] as? [String: Any])?["candidates"] as? [[String: Any]])
        #expect(candidates.map { $0["hourly"] as? Double } == [40, 44, 50, 60])
        #expect((candidates.first?["offer"] as? [String: Any])?["on_demand_hourly"] as? Double == 40)

        let none = try await cli.run(["catalog", "--gpu", "H100", "--count", "12"])
        #expect(none.stdout.contains("No offer fits 12 × H100"))
        let badCount = try await cli.run(["catalog", "--count", "8"])
        #expect(badCount.status != 0 && badCount.stderr.contains("--count needs --gpu"))
        let badCloud = try await cli.run(["catalog", "--gpu", "H100", "--cloud", "mars"])
        #expect(badCloud.status == 1 && badCloud.stderr.contains("no offer catalog for mars; this binary carries catalogs for fake"))
    }

    @Test("an updated catalog file beside the state replaces the shipped prices; a damaged one is named")
    func updatedFileWins() async throws {
        let dir = try TestSupport.temporaryDirectory("catalog-updated")
        let cli = CLI("stratum-fixture", in: dir)
        let updated = dir.appendingPathComponent(".stratum/catalog/fake.csv")
        let header = OfferCatalog.columns.joined(separator: ",")
        try Self.write("\(header)\nfk.large,,0,,16,64,,ethernet,,default,,3.5,,https://fake.invalid/new,2026-11-28\n", to: updated)
        let list = try await cli.run(["catalog", "--all"])
        #expect(list.stdout.contains("$3.50/h"))
        #expect(list.stdout.contains("fake: 1 offers, as of 2026-11-28"))
        #expect(list.stdout.contains("from \(updated.path)"))

        try Self.write("machines: 1\nmachine_type: fk.large\n", to: dir.appendingPathComponent("Stacks/fake-fleet.dev.yaml"))
        let plan = try await cli.run(["plan", "--stack", "fake-fleet"])
        #expect(plan.stdout.contains("Cost: $0.00/h now, $3.50/h after"), "\(plan.stdout)")

        try Self.write("\(header)\nfk.large,,0\n", to: updated)
        let damaged = try await cli.run(["plan", "--stack", "fake-fleet"])
        #expect(damaged.status == 1)
        #expect(damaged.stderr.contains("the updated catalog is damaged: \(updated.path): line 2: expected 15 fields, found 3"), "\(damaged.stderr)")
    }
}
