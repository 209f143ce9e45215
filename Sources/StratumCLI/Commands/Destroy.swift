import ArgumentParser

struct Destroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete every resource the stack created.",
        discussion: """
            Deletes in reverse dependency order (nodes before the network they run in). Asks for \
            confirmation unless --auto-approve. --target destroys a resource and what depends on \
            it; --exclude keeps a resource and what it needs.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: ChangeOptions

    @Flag(name: .long, help: "Destroy without asking for confirmation.")
    var autoApprove = false

    func run() async throws {
        try await ApplyRun(global: global, change: change, autoApprove: autoApprove, destroy: true, planFile: nil).run()
    }
}
