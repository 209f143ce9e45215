import Foundation

/// What a resource is billed as, by the hour: machines of one type (priced from the offer
/// catalog), or nothing (a Local node). Networks, buckets and the like are not machines and
/// their kinds return nil: plans price machines only.
public enum Billing: Sendable, Hashable, Codable {
    /// Costs nothing (the local machine).
    case free
    /// `count` machines of `instanceType` in `region`, on spot capacity or on-demand.
    case machines(instanceType: String, region: String, spot: Bool, count: Int)
}

extension ResourceKind {
    public func billing(_ attributes: [String: Value], region: String) -> Billing? { nil }
}

/// The price of one side (before or after) of a resource change.
public struct PricedUsage: Sendable, Hashable, Codable {
    /// USD an hour; nil when the catalog has no price for it.
    public var hourly: Double?
    /// `p5.48xlarge on-demand in us-east-1`, or why there is no price.
    public var what: String

    public init(hourly: Double?, what: String) {
        self.hourly = hourly
        self.what = what
    }
}

/// One resource's hourly cost before and after the plan.
public struct ResourceCost: Sendable, Hashable, Codable {
    public var address: ResourceAddress
    public var action: ChangeAction
    public var before: PricedUsage?
    public var after: PricedUsage?

    public init(address: ResourceAddress, action: ChangeAction, before: PricedUsage?, after: PricedUsage?) {
        self.address = address
        self.action = action
        self.before = before
        self.after = after
    }

    /// After minus before, nil when either side has no price.
    public var delta: Double? {
        let old = before.map(\.hourly) ?? 0
        let new = after.map(\.hourly) ?? 0
        guard let old, let new else { return nil }
        return new - old
    }
}

/// A cap on what a stack may cost an hour, and where it was set.
public struct BudgetCap: Sendable, Hashable, Codable {
    /// USD an hour.
    public var hourly: Double
    /// `stack 'train'` or `environment 'prod' (Stacks/train.prod.yaml)`.
    public var setBy: String

    public init(hourly: Double, setBy: String) {
        self.hourly = hourly
        self.setBy = setBy
    }
}

/// What the machines of a stack cost an hour before and after a plan, from the offer catalog.
public struct PlanCost: Sendable, Hashable, Codable {
    /// Machines (priced or not), one entry per resource.
    public var resources: [ResourceCost]
    /// USD an hour of the priced machines in state before the plan.
    public var hourlyBefore: Double
    /// USD an hour of the priced machines after it.
    public var hourlyAfter: Double
    /// Machines after the plan with no price in the catalog: the totals leave them out.
    public var unpriced: [ResourceAddress]
    /// The caps that apply to the stack, lowest first.
    public var budgets: [BudgetCap]

    public init(resources: [ResourceCost], hourlyBefore: Double, hourlyAfter: Double, unpriced: [ResourceAddress], budgets: [BudgetCap] = []) {
        self.resources = resources
        self.hourlyBefore = hourlyBefore
        self.hourlyAfter = hourlyAfter
        self.unpriced = unpriced
        self.budgets = budgets
    }

    public var delta: Double { hourlyAfter - hourlyBefore }

    /// The price of each resource change, by address.
    public func cost(of address: ResourceAddress) -> ResourceCost? { resources.first { $0.address == address } }
}
