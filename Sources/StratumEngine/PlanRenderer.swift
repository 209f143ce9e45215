import StratumCore

/// Renders a plan for people: `+` create, `~` update, `-/+` replace, `-` destroy, with
/// attribute-level diffs and a closing count line.
public enum PlanRenderer {
    /// How many changes a plan shows in full before it summarizes the rest.
    public static let defaultLimit = 50

    /// The plan as text. With `limit`, a plan of more changes shows only the first `limit` of
    /// them (and of vanished resources), then counts per resource type and action, so a stack
    /// of thousands of resources prints a screenful; nil shows everything.
    public static func render(_ plan: Plan, color: Bool = false, limit: Int? = nil) -> String {
        let paint = Paint(enabled: color)
        var out = (plan.placements ?? []).map { placementLines($0, paint: paint) }.joined()
        if let churn = plan.churn { out += churnLines(churn, stack: plan.stack, environment: plan.environment, paint: paint) }
        let actionable = plan.actionable
        let shownVanished = limit.map { Array(plan.vanished.prefix($0)) } ?? plan.vanished
        for address in shownVanished {
            out += "  # \(address) no longer exists and is not declared: it will be removed from state\n"
        }
        if shownVanished.count < plan.vanished.count {
            out += "  # ... and \(plan.vanished.count - shownVanished.count) more no longer exist and will be removed from state\n"
        }
        if actionable.isEmpty {
            if !plan.vanished.isEmpty { out += "\n" }
            out += plan.isDestroy ? "No resources to destroy.\n" : "No changes. The infrastructure matches the stack.\n"
            if let cost = plan.cost, !cost.resources.isEmpty { out += costLines(cost, paint: paint) }
            return out
        }
        out += "Stratum will perform the following actions:\n\n"
        let shown = limit.map { Array(actionable.prefix($0)) } ?? actionable
        for change in shown {
            out += render(change, paint: paint, cost: plan.cost?.cost(of: change.address))
            out += "\n"
        }
        if shown.count < actionable.count || shownVanished.count < plan.vanished.count {
            out += "  ... \(actionable.count - shown.count) more change(s) not shown; `--full` prints every one (`--json` always has all).\n\n"
            out += summary(of: actionable)
        }
        return out + footer(plan, paint: paint)
    }

    /// A cluster's placement: the landing, how it was chosen, the runners-up and what was left out.
    static func placementLines(_ report: PlacementReport, paint: Paint) -> String {
        let landing = report.decision.landing
        var out = paint.bold("Placement of GPU cluster '\(report.cluster)' (\(report.request)):") + "\n"
        let how = report.kept ? "kept from state (`--replace-placement` chooses again)" : report.decision.reason
        out += "  chosen:    \(landing.summary) — \(how)\n"
        for runnerUp in report.decision.runnersUp { out += "  runner-up: \(runnerUp)\n" }
        if !report.excluded.isEmpty {
            out += "  left out:\n"
            for exclusion in report.excluded.prefix(8) { out += "    \(exclusion.offer): \(exclusion.reason)\n" }
            if report.excluded.count > 8 { out += "    ... and \(report.excluded.count - 8) more (`stratum catalog --gpu ... --excluded`)\n" }
        }
        return out + "\n"
    }

    /// The stack's churn schedule, and the command that runs it.
    static func churnLines(_ churn: ChurnSchedule, stack: String, environment: String, paint: Paint) -> String {
        let env = environment == "dev" ? "" : " --env \(environment)"
        return paint.bold("Churn schedule:") + " \(churn.summary) (`stratum chaos churn --stack \(stack)\(env)` runs it)\n\n"
    }

    /// The stack's hourly cost before and after, what is not priced, and the budget.
    static func costLines(_ cost: PlanCost, paint: Paint) -> String {
        var out = paint.bold("Cost: \(Money.hourly(cost.hourlyBefore)) now, \(Money.hourly(cost.hourlyAfter)) after (\(Money.delta(cost.delta)))")
        out += " — machines only, at the offer catalog's prices.\n"
        if !cost.unpriced.isEmpty {
            out += "  \(cost.unpriced.count) machine(s) have no price and are left out of the total:\n"
            for address in cost.unpriced.prefix(5) {
                out += "    \(address): \(cost.cost(of: address)?.after?.what ?? "no price")\n"
            }
            if cost.unpriced.count > 5 { out += "    ... and \(cost.unpriced.count - 5) more\n" }
        }
        if let cap = cost.budgets.first {
            let room = cap.hourly - cost.hourlyAfter
            out += "  Budget: \(Money.hourly(cap.hourly)) set by \(cap.setBy); \(room >= 0 ? "\(Money.hourly(room)) to spare" : "\(Money.hourly(-room)) over")\n"
        }
        return out
    }

    /// `$55.04/h (p5.48xlarge on-demand in us-east-1)` for a change's price, or the move
    /// from the old price to the new one.
    static func priceNote(_ cost: ResourceCost) -> String {
        func one(_ usage: PricedUsage) -> String { usage.hourly.map { "\(Money.hourly($0)) (\(usage.what))" } ?? "no price: \(usage.what)" }
        switch (cost.before, cost.after) {
        case (nil, let after?): return one(after)
        case (let before?, nil): return "-" + one(before)
        case (let before?, let after?) where before == after: return one(after)
        case (let before?, let after?): return "\(one(before)) -> \(one(after))"
        case (nil, nil): return ""
        }
    }

    /// A plan in brief: placements, changes per type, the count line and the cost (what a
    /// failover prints before it applies its plan).
    public static func brief(_ plan: Plan, color: Bool = false) -> String {
        let paint = Paint(enabled: color)
        var out = (plan.placements ?? []).map { placementLines($0, paint: paint) }.joined()
        out += summary(of: plan.actionable)
        return out + footer(plan, paint: paint)
    }

    /// The count line and the cost.
    static func footer(_ plan: Plan, paint: Paint) -> String {
        let counts = plan.counts
        var out = paint.bold("Plan: \(counts.add) to add, \(counts.change) to change, \(counts.destroy) to destroy.") + "\n"
        if let cost = plan.cost, !cost.resources.isEmpty { out += costLines(cost, paint: paint) }
        return out
    }

    /// Counts of changes per resource type and action, one line per type.
    static func summary(of changes: [ResourceChange]) -> String {
        let actions: [(ChangeAction, String)] = [(.create, "to add"), (.update, "to change"), (.replace, "to replace"), (.delete, "to destroy")]
        var byType: [String: [ChangeAction: Int]] = [:]
        for change in changes { byType[change.address.type, default: [:]][change.action, default: 0] += 1 }
        let width = byType.keys.map(\.count).max() ?? 0
        var out = "Changes by type:\n"
        for (type, counts) in byType.sorted(by: { $0.key < $1.key }) {
            let parts = actions.compactMap { action, words in counts[action].map { "\($0) \(words)" } }
            out += "  \(type.padding(toLength: width, withPad: " ", startingAt: 0))  \(parts.joined(separator: ", "))\n"
        }
        return out + "\n"
    }

    static func render(_ change: ResourceChange, paint: Paint, cost: ResourceCost? = nil) -> String {
        let marker: String
        let headline: String
        switch change.action {
        case .create: marker = paint.green("  +"); headline = "will be created"
        case .update: marker = paint.yellow("  ~"); headline = "will be updated in place"
        case .replace:
            marker = change.createBeforeDestroy ? paint.green("+") + "/" + paint.red("-") : paint.red("-") + "/" + paint.green("+")
            headline = "must be replaced"
        case .delete: marker = paint.red("  -"); headline = "will be destroyed"
        case .noop: marker = "   "; headline = "is unchanged"
        }
        var out = "  # \(change.address) \(headline)"
        if let reason = change.reason { out += " because \(reason)" }
        if let cost, change.action != .noop { out += "\n  #   " + priceNote(cost) }
        out += "\n\(marker) \(change.address) {\n"
        let before = change.before ?? [:]
        let after = change.after ?? [:]
        for name in Set(before.keys).union(after.keys).sorted() {
            let old = before[name]
            let new = after[name]
            let forces = change.replacedBy.contains(name) ? paint.red(" # forces replacement") : ""
            switch change.action {
            case .create:
                if let new { out += "      \(paint.green("+")) \(name) = \(show(new))\n" }
            case .delete:
                if let old { out += "      \(paint.red("-")) \(name) = \(show(old))\n" }
            case .update, .replace, .noop:
                if old == new {
                    continue
                } else if old == nil, let new {
                    out += "      \(paint.green("+")) \(name) = \(show(new))\(forces)\n"
                } else if new == nil, let old {
                    out += "      \(paint.red("-")) \(name) = \(show(old))\(forces)\n"
                } else if case .map(let oldMap)? = old, case .map(let newMap)? = new {
                    // Maps (env, labels, tags) show only the keys that changed.
                    out += "      \(paint.yellow("~")) \(name) = {\(forces)\n"
                    for key in Set(oldMap.keys).union(newMap.keys).sorted() where oldMap[key] != newMap[key] {
                        switch (oldMap[key], newMap[key]) {
                        case (nil, let added?): out += "          \(paint.green("+")) \(key) = \(show(added, indent: "            "))\n"
                        case (let removed?, nil): out += "          \(paint.red("-")) \(key) = \(show(removed, indent: "            "))\n"
                        case (let before?, let after?): out += "          \(paint.yellow("~")) \(key) = \(show(before, indent: "            ")) -> \(show(after, indent: "            "))\n"
                        default: break
                        }
                    }
                    let same = Set(oldMap.keys).intersection(newMap.keys).filter { oldMap[$0] == newMap[$0] }.count
                    if same > 0 { out += "            # (\(same) unchanged key\(same == 1 ? "" : "s") hidden)\n" }
                    out += "        }\n"
                } else if let old, let new {
                    out += "      \(paint.yellow("~")) \(name) = \(show(old)) -> \(show(new))\(forces)\n"
                }
            }
        }
        if change.action == .update || change.action == .replace {
            let unchanged = Set(before.keys).union(after.keys).filter { before[$0] == after[$0] }.count
            if unchanged > 0 { out += "        # (\(unchanged) unchanged attribute\(unchanged == 1 ? "" : "s") hidden)\n" }
        }
        out += "    }\n"
        return out
    }

    /// A value as shown in a plan: like `Value.description`, but multi-line strings are
    /// printed as indented heredoc blocks so scripts stay readable.
    static func show(_ value: Value, indent: String = "        ") -> String {
        switch value {
        case .string(let text) where text.contains("\n"):
            let body = text.split(separator: "\n", omittingEmptySubsequences: false).map { indent + "  " + $0 }.joined(separator: "\n")
            return "<<-EOT\n\(body)\n\(indent)EOT"
        case .list(let items) where items.contains(where: { $0.stringValue?.contains("\n") == true }):
            return "[\n" + items.map { indent + "  " + show($0, indent: indent + "  ") + "," }.joined(separator: "\n") + "\n\(indent)]"
        default:
            return value.description
        }
    }

    /// ANSI colors when writing to a terminal.
    struct Paint {
        var enabled: Bool
        func green(_ s: String) -> String { wrap(s, "32") }
        func yellow(_ s: String) -> String { wrap(s, "33") }
        func red(_ s: String) -> String { wrap(s, "31") }
        func bold(_ s: String) -> String { wrap(s, "1") }
        private func wrap(_ s: String, _ code: String) -> String { enabled ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
    }
}
