/// A cap on what the stack's machines may cost an hour, in US dollars, in every environment.
/// A plan that would raise the stack's cost over it is refused, naming the cost and the cap;
/// an environment's config file can set a lower cap of its own (`budget_per_hour`).
///
///     Budget(hourly: 250)
public struct Budget: Declaration {
    public var hourly: Double
    public let location: SourceLocation

    public init(hourly: Double, fileID: String = #fileID, line: Int = #line) {
        self.hourly = hourly
        self.location = SourceLocation(file: fileID, line: line)
    }

    public func declare(into content: inout StackContent) {
        guard hourly.isFinite, hourly > 0 else {
            content.diagnostics.append(Diagnostic(message: "a Budget must be a positive number of dollars an hour (got \(hourly))", location: location))
            return
        }
        content.budgets.append(BudgetDeclaration(hourly: hourly, location: location))
    }
}

/// A `Budget` as the stack body declared it.
public struct BudgetDeclaration: Sendable, Hashable {
    public var hourly: Double
    public var location: SourceLocation
}
