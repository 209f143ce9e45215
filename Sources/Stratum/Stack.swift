@_exported import StratumCore

/// A stack: a named set of resources declared in Swift.
///
/// ```swift
/// struct Demo: Stack {
///     static let name = "demo"
///     struct Config: StackConfiguration { var nodes = 2 }
///     func body(config: Config) -> StackContent {
///         let bucket = Bucket("data")
///         bucket
///         NodePool("workers", count: config.nodes, command: ["sleep", "600"], env: ["DATA": bucket.path])
///     }
/// }
/// ```
public protocol Stack: Sendable {
    associatedtype Config: StackConfiguration = NoConfiguration
    /// The name users pass to `--stack`.
    static var name: String { get }
    /// One line shown by `stratum stacks`.
    static var summary: String { get }
    init()
    @StackBuilder func body(config: Config) -> StackContent
}

extension Stack {
    public static var summary: String { "" }
}

/// Typed configuration of a stack, read from `Stacks/<stack>.<env>.yaml` or `--config`.
///
/// Every property needs a default: keys missing from the file keep it, keys in the file that
/// are not properties are errors. YAML keys are the property names in snake_case. `problems()`
/// checks the values against the limits of what they feed.
public protocol StackConfiguration: Codable, Sendable {
    init()
    /// Values the stack cannot use (out of the range of what they configure), each naming its
    /// key; checked whenever the configuration is loaded, so `validate` and `plan` report them.
    func problems() -> [ConfigProblem]
}

extension StackConfiguration {
    public func problems() -> [ConfigProblem] { [] }
}

/// The configuration of a stack that takes none.
public struct NoConfiguration: StackConfiguration {
    public init() {}
}
