import Foundation
import StratumCore
import StratumEngine
import StratumTesting
import Testing

@Suite("Plan cost and budgets")
struct PlanCostTests {
    static let provider = FakeCloudProvider(root: URL(fileURLWithPath: "/nonexistent"))

    static func costing() throws -> PlanCosting {
        PlanCosting(providers: ProviderRegistry([provider]), catalog: try FakeCloudProvider.catalog.load())
    }

    static func machine(_ index: Int, _ type: String, spot: Bool = false) -> [String: Value] {
        ["machine_type": .string(type), "spot": .bool(spot), "value": .string("m\(index)"), "id": .unknown]
    }

    static func change(_ index: Int, _ action: ChangeAction, before: String?, after: String?, spotAfter: Bool = false, region: String = "default") -> ResourceChange {
        ResourceChange(
            address: ResourceAddress(type: "fake_thing", name: "machine", index: index), provider: "fake", region: region, action: action,
            before: before.map { machine(index, $0) }, after: after.map { machine(index, $0, spot: spotAfter) })
    }

    static func plan(_ changes: [ResourceChange], destroy: Bool = false) -> Plan {
        Plan(stack: "fleet", environment: "dev", lineage: "l", serial: 1, createdAt: Date(timeIntervalSince1970: 0), changes: changes, isDestroy: destroy)
    }

    @Test("each machine change is priced, and the stack's hourly cost before and after is summed")
    func prices() throws {
        let plan = Self.plan([
            Self.change(0, .noop, before: "fk.small", after: "fk.small"),
            Self.change(1, .replace, before: "fk.small", after: "fk.large"),
            Self.change(2, .create, before: nil, after: "fk.gpu8", spotAfter: true),
            Self.change(3, .delete, before: "fk.large", after: nil),
            // Not a machine: no machine_type, so not billed.
            ResourceChange(
                address: ResourceAddress(type: "fake_thing", name: "root"), provider: "fake", region: "default", action: .create, before: nil,
                after: ["value": "x"]),
        ])
        let cost = try Self.costing().cost(of: plan)
        #expect(cost.resources.count == 4)
        #expect(abs(cost.hourlyBefore - (0.25 + 0.25 + 2)) < 1e-9)
        #expect(abs(cost.hourlyAfter - (0.25 + 2 + 12.5)) < 1e-9)
        #expect(abs(cost.delta - 12.25) < 1e-9)
        #expect(cost.unpriced.isEmpty)
        let replaced = try #require(cost.cost(of: ResourceAddress(type: "fake_thing", name: "machine", index: 1)))
        #expect(replaced.before?.what == "fk.small on-demand in default" && replaced.after?.what == "fk.large on-demand in default")
        #expect(replaced.delta == 1.75)
        #expect(cost.cost(of: ResourceAddress(type: "fake_thing", name: "machine", index: 2))?.after?.what == "fk.gpu8 spot in default")
        #expect(cost.cost(of: ResourceAddress(type: "fake_thing", name: "root")) == nil)
    }

    @Test("a machine the catalog does not price is named, with why, and left out of the totals")
    func unpriced() throws {
        let plan = Self.plan([
            Self.change(0, .create, before: nil, after: "fk.unknown"),
            Self.change(1, .create, before: nil, after: "fk.large", spotAfter: true),
            Self.change(2, .create, before: nil, after: "fk.gpu8", region: "faraway"),
        ])
        let cost = try Self.costing().cost(of: plan)
        #expect(cost.unpriced.map(\.index) == [0, 1])
        #expect(cost.cost(of: cost.unpriced[0])?.after?.what == "fk.unknown in default is not in the fake offer catalog")
        #expect(cost.cost(of: cost.unpriced[1])?.after?.what == "the fake catalog has no spot price for fk.large in default")
        #expect(cost.hourlyAfter == 44)
    }

    @Test("a budget refuses a plan that raises the cost over it, naming cost and cap")
    func budgetRefuses() throws {
        let cap = BudgetCap(hourly: 10, setBy: "stack 'fleet' (Budget at Fleet.swift:9)")
        let grow = Self.plan([Self.change(0, .noop, before: "fk.large", after: "fk.large"), Self.change(1, .create, before: nil, after: "fk.gpu8")])
        let cost = try Self.costing().cost(of: grow, budgets: [BudgetCap(hourly: 100, setBy: "environment 'dev'"), cap])
        #expect(cost.budgets.first == cap)
        let refusal = try #require(throws: BudgetExceeded.self) { try cost.checkBudgets(isDestroy: false) }
        #expect(refusal.description.contains("the plan would make the stack cost $42.00/h (now $2.00/h, +$40.00/h), over the budget of $10.00/h set by stack 'fleet' (Budget at Fleet.swift:9)"))

        // Within the cap: no warning, no refusal.
        let small = try Self.costing().cost(of: Self.plan([Self.change(0, .create, before: nil, after: "fk.large")]), budgets: [cap])
        #expect(try small.checkBudgets(isDestroy: false).isEmpty)

        // Already over the cap, and the plan lowers the cost: let through with a warning.
        let shrink = Self.plan([Self.change(0, .noop, before: "fk.gpu8", after: "fk.gpu8"), Self.change(1, .delete, before: "fk.large", after: nil)])
        let warnings = try Self.costing().cost(of: shrink, budgets: [cap]).checkBudgets(isDestroy: false)
        #expect(warnings.count == 1 && warnings[0].contains("over the budget of $10.00/h"))

        // Destroying is always allowed.
        #expect(try Self.costing().cost(of: grow, budgets: [cap]).checkBudgets(isDestroy: true).isEmpty)
    }

    @Test("with a budget set, a machine without a price makes the plan uncheckable and it is refused")
    func budgetNeedsPrices() throws {
        let cost = try Self.costing().cost(of: Self.plan([Self.change(0, .create, before: nil, after: "fk.mystery")]), budgets: [BudgetCap(hourly: 1000, setBy: "environment 'dev'")])
        let refusal = try #require(throws: BudgetExceeded.self) { try cost.checkBudgets(isDestroy: false) }
        #expect(refusal.description.contains("fake_thing.machine[0] has no price (fk.mystery in default is not in the fake offer catalog)"))
        // Without a budget the same plan goes ahead, the machine shown as unpriced.
        let free = try Self.costing().cost(of: Self.plan([Self.change(0, .create, before: nil, after: "fk.mystery")]))
        #expect(try free.checkBudgets(isDestroy: false).isEmpty)
    }

    @Test("the rendered plan shows each change's price, the totals and the budget; plan JSON carries them")
    func rendered() throws {
        var plan = Self.plan([Self.change(0, .replace, before: "fk.small", after: "fk.large"), Self.change(1, .create, before: nil, after: "fk.mystery")])
        plan.cost = try Self.costing().cost(of: plan, budgets: [BudgetCap(hourly: 5, setBy: "environment 'dev'")])
        let text = PlanRenderer.render(plan)
        #expect(text.contains("#   $0.25/h (fk.small on-demand in default) -> $2.00/h (fk.large on-demand in default)"))
        #expect(text.contains("#   no price: fk.mystery in default is not in the fake offer catalog"))
        #expect(text.contains("Cost: $0.25/h now, $2.00/h after (+$1.75/h)"))
        #expect(text.contains("1 machine(s) have no price and are left out of the total:\n    fake_thing.machine[1]: fk.mystery in default is not in the fake offer catalog"))
        #expect(text.contains("Budget: $5.00/h set by environment 'dev'; $3.00/h to spare"))

        let json = try JSONSerialization.jsonObject(with: PlanJSON(plan: plan, version: "test").encoded()) as? [String: Any]
        let cost = try #require(json?["cost"] as? [String: Any])
        #expect(cost["currency"] as? String == "USD")
        #expect(cost["hourly_before"] as? Double == 0.25)
        #expect(cost["hourly_after"] as? Double == 2)
        #expect(cost["unpriced"] as? [String] == ["fake_thing.machine[1]"])
        let resources = try #require(cost["resources"] as? [[String: Any]])
        #expect(resources.first?["after"] as? String == "fk.large on-demand in default")
        #expect((cost["budget"] as? [String: Any])?["hourly"] as? Double == 5)

        // A plan decoded from a file made before plans carried costs has none, and renders without.
        var old = plan
        old.cost = nil
        #expect(!PlanRenderer.render(old).contains("Cost:"))
    }

    @Test("machines a scoped plan leaves out count before and after, so a budget sees the whole stack")
    func scopedPlansCountTheRest() throws {
        let running = (0..<2).map { index in
            ResourceState(
                address: ResourceAddress(type: "fake_thing", name: "running", index: index), provider: "fake", region: "default", id: "r" + String(index),
                attributes: ["machine_type": "fk.gpu8", "spot": false])
        }
        let state = Dictionary(uniqueKeysWithValues: running.map { ($0.address, $0) })
        let plan = Self.plan([Self.change(0, .create, before: nil, after: "fk.gpu8")])
        let cost = try Self.costing().cost(of: plan, budgets: [BudgetCap(hourly: 100, setBy: "environment 'dev'")], state: state)
        #expect(cost.hourlyBefore == 80 && cost.hourlyAfter == 120)
        #expect(throws: BudgetExceeded.self) { try cost.checkBudgets(isDestroy: false) }
    }
}
