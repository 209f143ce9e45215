import Stratum

/// A bucket on a cloud this binary does not carry: for the error that says how a package
/// links a cloud's provider.
struct ElsewhereStack: Stack {
    static let name = "elsewhere"
    static let summary = "A bucket on a provider this binary lacks (tests)"

    func body(config: NoConfiguration) -> StackContent {
        Bucket("data", on: Placement(provider: "nimbus", region: "region-1"))
    }
}
