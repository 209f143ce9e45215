import Foundation
import StratumCore

/// Prices a plan's machines from the offer catalog: each resource's kind says what it is
/// billed as (`ResourceKind.billing`), the catalog says what that costs an hour.
public struct PlanCosting: Sendable {
    public var providers: ProviderRegistry
    public var catalog: OfferCatalog

    public init(providers: ProviderRegistry, catalog: OfferCatalog) {
        self.providers = providers
        self.catalog = catalog
    }

    /// The cost of `plan`'s machines before and after, under `budgets`. `state` is what the
    /// stack holds (as refreshed): machines the plan leaves out (`--target`, `--exclude`) cost
    /// the same before and after, so the totals are the whole stack's.
    public func cost(of plan: Plan, budgets: [BudgetCap] = [], state: [ResourceAddress: ResourceState] = [:]) -> PlanCost {
        var resources: [ResourceCost] = []
        var before = 0.0
        var after = 0.0
        var unpriced: [ResourceAddress] = []
        let planned = Set(plan.changes.map(\.address))
        for (address, resource) in state where !planned.contains(address) {
            let hourly = usage(resource.attributes, of: address, on: resource.provider, in: resource.region)?.hourly ?? 0
            before += hourly
            after += hourly
        }
        for change in plan.changes {
            let old = change.before.flatMap { usage($0, of: change.address, on: change.provider, in: change.prior?.region ?? change.region) }
            let new = change.after.flatMap { usage($0, of: change.address, on: change.provider, in: change.region) }
            guard old != nil || new != nil else { continue }
            resources.append(ResourceCost(address: change.address, action: change.action, before: old, after: new))
            before += old?.hourly ?? 0
            after += new?.hourly ?? 0
            if let new, new.hourly == nil { unpriced.append(change.address) }
        }
        return PlanCost(
            resources: resources, hourlyBefore: before, hourlyAfter: after, unpriced: unpriced, budgets: budgets.sorted { $0.hourly < $1.hourly })
    }

    /// What the resource at `address` with `attributes` costs an hour, by its kind's billing;
    /// nil when it is not a machine.
    func usage(_ attributes: [String: Value], of address: ResourceAddress, on provider: String, in region: String) -> PricedUsage? {
        providers.kind(provider: provider, type: address.type)?.billing(attributes, region: region).map { price($0, cloud: provider) }
    }

    /// What `billing` on `cloud` costs an hour, or why the catalog cannot say.
    public func price(_ billing: Billing, cloud: String) -> PricedUsage {
        switch billing {
        case .free:
            return PricedUsage(hourly: 0, what: "free")
        case .machines(let type, let region, let spot, let count):
            let capacity = spot ? "spot" : "on-demand"
            let many = count == 1 ? "" : "\(count) × "
            guard let offer = catalog.offer(cloud: cloud, instanceType: type, region: region) else {
                return PricedUsage(hourly: nil, what: "\(type) in \(region) is not in the \(cloud) offer catalog")
            }
            guard let unit = offer.hourly(spot: spot) else {
                return PricedUsage(hourly: nil, what: "the \(cloud) catalog has no \(capacity) price for \(type) in \(region)")
            }
            return PricedUsage(hourly: unit * Double(count), what: "\(many)\(offer.instanceType) \(capacity) in \(region)")
        }
    }
}

/// A plan refused by a budget: its cost, the cap and who set it.
public struct BudgetExceeded: Error, CustomStringConvertible, Sendable {
    public var description: String
}

extension PlanCost {
    /// Refuses a plan over the lowest cap that raises the stack's cost (a plan that lowers or
    /// keeps the cost of a stack already over its cap is let through, so the stack can be
    /// brought back under it), and one whose machines are not all priced while a cap is set.
    /// Returns warnings to show for plans let through over a cap.
    public func checkBudgets(isDestroy: Bool) throws -> [String] {
        guard let cap = budgets.first, !isDestroy else { return [] }
        if !unpriced.isEmpty {
            let names = unpriced.prefix(3).map(\.description).joined(separator: ", ") + (unpriced.count > 3 ? " and \(unpriced.count - 3) more" : "")
            let why = unpriced.first.flatMap { cost(of: $0)?.after?.what } ?? "no price"
            throw BudgetExceeded(description: """
                the plan cannot be checked against the budget of \(Money.hourly(cap.hourly)) set by \(cap.setBy): \
                \(names) \(unpriced.count == 1 ? "has" : "have") no price (\(why)). Refresh prices with `stratum catalog update`, \
                or choose a machine type the catalog prices (`stratum catalog`)
                """)
        }
        guard hourlyAfter > cap.hourly + 0.000_05 else { return [] }
        if hourlyAfter <= hourlyBefore + 0.000_05 {
            return ["the stack costs \(Money.hourly(hourlyAfter)) after this plan, over the budget of \(Money.hourly(cap.hourly)) set by \(cap.setBy); the plan is let through because it does not raise the cost"]
        }
        throw BudgetExceeded(description: """
            the plan would make the stack cost \(Money.hourly(hourlyAfter)) (now \(Money.hourly(hourlyBefore)), \(Money.delta(delta))), \
            over the budget of \(Money.hourly(cap.hourly)) set by \(cap.setBy); nothing was changed. Lower the node count or \
            choose cheaper machines (`stratum catalog`), or raise the budget
            """)
    }
}
