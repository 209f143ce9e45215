/// Something a stack body can contain: resources and outputs.
public protocol Declaration: Sendable {
    /// Adds what this declares to the stack being built.
    func declare(into content: inout StackContent)
}

/// What a stack body evaluates to: its resources (lowered for their providers) and outputs.
public struct StackContent: Sendable {
    public var resources: [DesiredResource] = []
    public var outputs: [OutputDeclaration] = []
    /// Problems found while lowering (bad CIDR, negative count, ...), reported with the rest.
    public var diagnostics: [Diagnostic] = []
    /// Caps on the stack's hourly cost (`Budget`).
    public var budgets: [BudgetDeclaration] = []
    /// GPU clusters whose placement is decided at plan time (`GPUCluster`).
    public var clusters: [ClusterDeclaration] = []
    /// The churn schedule (`Churn`, `NodePool(churn:)`); a stack declares at most one.
    public var churn: [ChurnDeclaration] = []

    /// Addresses of resources that several declarations may each declare (an Azure resource
    /// group a placement's network, bucket and nodes all live in): the same resource declared
    /// as shared again is kept once; one declared with other inputs is still a duplicate.
    public var shared: Set<ResourceAddress> = []

    public init() {}

    /// Declares `resource` as shared: kept once however many declarations declare it alike.
    public mutating func declareShared(_ resource: DesiredResource) {
        var other = StackContent()
        other.resources = [resource]
        other.shared = [resource.address]
        append(other)
    }

    public mutating func append(_ other: StackContent) {
        resources += other.resources.filter { resource in
            guard shared.contains(resource.address), other.shared.contains(resource.address) else { return true }
            return !resources.contains { $0.address == resource.address && $0.provider == resource.provider && $0.region == resource.region && $0.inputs == resource.inputs }
        }
        shared.formUnion(other.shared)
        outputs += other.outputs
        diagnostics += other.diagnostics
        budgets += other.budgets
        clusters += other.clusters
        churn += other.churn
    }
}

/// The result builder behind `Stack.body`: supports `if`/`else`, `for … in`, optionals and `let`.
@resultBuilder
public enum StackBuilder {
    public static func buildExpression(_ declaration: some Declaration) -> StackContent {
        var content = StackContent()
        declaration.declare(into: &content)
        return content
    }

    public static func buildExpression(_ declaration: (some Declaration)?) -> StackContent {
        guard let declaration else { return StackContent() }
        return buildExpression(declaration)
    }

    public static func buildExpression(_ declarations: [some Declaration]) -> StackContent {
        var content = StackContent()
        for declaration in declarations { declaration.declare(into: &content) }
        return content
    }

    public static func buildExpression(_ content: StackContent) -> StackContent { content }

    public static func buildBlock(_ parts: StackContent...) -> StackContent {
        var content = StackContent()
        for part in parts { content.append(part) }
        return content
    }

    public static func buildOptional(_ content: StackContent?) -> StackContent { content ?? StackContent() }
    public static func buildEither(first content: StackContent) -> StackContent { content }
    public static func buildEither(second content: StackContent) -> StackContent { content }
    public static func buildLimitedAvailability(_ content: StackContent) -> StackContent { content }

    public static func buildArray(_ parts: [StackContent]) -> StackContent {
        var content = StackContent()
        for part in parts { content.append(part) }
        return content
    }
}

/// A named value the stack exposes after apply (`stratum output`).
public struct OutputDeclaration: Declaration, Hashable {
    public var name: String
    public var value: Value
    public var location: SourceLocation

    public init(_ name: String, _ value: some ValueExpression, fileID: String = #fileID, line: Int = #line) {
        self.name = name
        self.value = value.value
        self.location = SourceLocation(file: fileID, line: line)
    }

    public func declare(into content: inout StackContent) {
        content.outputs.append(self)
    }
}

/// `Output("url", bucket.url)` declares an output.
public typealias Output = OutputDeclaration
