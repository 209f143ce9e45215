import ArgumentParser
import Foundation
import StratumCore

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a Swift package for your own stacks.",
        discussion: """
            The package depends on the Stratum library and builds an executable with this whole \
            CLI for your stacks:

              stratum init my-infra && cd my-infra
              swift run my-infra plan --stack example
              swift run my-infra apply --stack example

            The Local provider is always wired in. Each --cloud NAME also links that cloud's \
            library product, lists its provider in main.swift and adds an example stack for it:

              stratum init my-infra --cloud NAME

            By default it depends on this Stratum checkout by path; --stratum-url (with \
            --stratum-version) depends on a published copy instead.
            """
    )

    @Argument(help: "The directory to create; its name becomes the package and executable name.")
    var directory: String

    @Option(name: .long, help: ArgumentHelp("Depend on Stratum at this local path.", valueName: "PATH"))
    var stratumPath: String?

    @Option(name: .long, help: ArgumentHelp("Depend on Stratum at this git URL instead of a path.", valueName: "URL"))
    var stratumURL: String?

    @Option(name: .long, help: ArgumentHelp("The version to require with --stratum-url.", valueName: "VERSION"))
    var stratumVersion = StratumVersion.current

    @Option(
        name: .customLong("cloud"),
        help: ArgumentHelp("Also wire in this cloud (repeatable, or comma-separated; Local is always there).", valueName: "NAME"))
    var clouds: [String] = []

    func run() async throws {
        let console = Console(color: false)
        try await reportingErrors(console) {
            let target = URL(fileURLWithPath: directory).standardizedFileURL
            let name = target.lastPathComponent
            guard name.range(of: "^[A-Za-z][A-Za-z0-9_-]*$", options: .regularExpression) != nil else {
                throw CLIError("'\(name)' cannot name a package: start with a letter, then letters, digits, '-' or '_'")
            }
            let wirings = try Self.wirings(for: clouds)
            let fm = FileManager.default
            if let existing = try? fm.contentsOfDirectory(atPath: target.path), !existing.isEmpty {
                throw CLIError("\(target.path) exists and is not empty; nothing was written")
            }
            let dependency: String
            let packageIdentity: String
            if let url = stratumURL {
                dependency = ".package(url: \"\(url)\", from: \"\(stratumVersion)\")"
                packageIdentity = URL(string: url)?.deletingPathExtension().lastPathComponent ?? "Stratum"
            } else {
                let path = URL(fileURLWithPath: stratumPath ?? Self.checkoutPath).standardizedFileURL.path
                guard fm.fileExists(atPath: path + "/Package.swift") else {
                    throw CLIError("no Stratum package at \(path); pass --stratum-path or --stratum-url")
                }
                dependency = ".package(path: \"\(path)\")"
                packageIdentity = URL(fileURLWithPath: path).lastPathComponent
            }
            let files = Scaffold.files(name: name, dependency: dependency, packageIdentity: packageIdentity, clouds: wirings)
            for (relative, content) in files.sorted(by: { $0.key < $1.key }) {
                let url = target.appendingPathComponent(relative)
                try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try content.write(to: url, atomically: true, encoding: .utf8)
            }
            let stacks = ["example"] + wirings.flatMap(\.stackNames)
            console.output("""
                Created \(target.path) with the stack\(stacks.count == 1 ? "" : "s") \(stacks.map { "'\($0)'" }.joined(separator: ", ")).

                Next:
                  cd \(directory)
                  swift run \(name) plan --stack example
                  swift run \(name) apply --stack example
                  swift run \(name) destroy --stack example
                """)
        }
    }

    /// The wiring of each cloud named with --cloud, from the providers this binary carries.
    static func wirings(for clouds: [String]) throws -> [PackageWiring] {
        let known = CLIEnvironment.current.providers.compactMap(\.wiring)
        var chosen: [PackageWiring] = []
        let names = clouds.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        for cloud in names where cloud != "local" {
            guard let wiring = known.first(where: { $0.cloud == cloud }) else {
                let knownNames = (["local"] + known.map(\.cloud)).joined(separator: ", ")
                throw CLIError("this stratum binary cannot wire the cloud '\(cloud)'; it knows: \(knownNames)")
            }
            if !chosen.contains(where: { $0.cloud == cloud }) { chosen.append(wiring) }
        }
        return chosen
    }

    /// This Stratum checkout, found from where this file was compiled.
    static var checkoutPath: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

/// The files of a new stack package.
enum Scaffold {
    static func files(name: String, dependency: String, packageIdentity: String, clouds: [PackageWiring] = []) -> [String: String] {
        let products = (["Stratum"] + clouds.map(\.product))
            .map { ".product(name: \"\($0)\", package: \"\(packageIdentity)\")" }.joined(separator: ", ")
        let imports = (["StratumCLI"] + clouds.map(\.product)).sorted().map { "import \($0)" }.joined(separator: "\n")
        let stacks = (["ExampleStack"] + clouds.flatMap(\.stackTypes)).map { "\($0).self" }.joined(separator: ", ")
        let call = clouds.isEmpty
            ? "await StratumCLI.main(stacks: [\(stacks)])"
            : "await StratumCLI.main(stacks: [\(stacks)], providers: [\((([".local"] + clouds.map(\.factory))).joined(separator: ", "))])"
        let cloudNote = clouds.isEmpty ? "" : """

            Clouds wired in besides Local: \(clouds.map(\.cloud).joined(separator: ", ")) \
            (example stacks: \(clouds.flatMap(\.stackNames).joined(separator: ", "))).

            """
        var files = [
            "Package.swift": """
                // swift-tools-version:6.0
                import PackageDescription

                let package = Package(
                    name: "\(name)",
                    platforms: [.macOS(.v15)],
                    dependencies: [
                        \(dependency),
                    ],
                    targets: [
                        .executableTarget(
                            name: "\(name)",
                            dependencies: [\(products)],
                            path: "Sources/\(name)"
                        ),
                    ]
                )

                """,
            "Sources/\(name)/main.swift": """
                \(imports)

                // The full Stratum CLI (plan, apply, destroy, state, ...) for this package's stacks.
                \(call)

                """,
            "Sources/\(name)/ExampleStack.swift": """
                import Stratum

                /// A bucket and a small pool of local worker processes that write into it.
                struct ExampleStack: Stack {
                    static let name = "example"
                    static let summary = "A bucket and worker processes on the Local provider"

                    /// Read from Stacks/example.<env>.yaml; keys are the property names in snake_case.
                    struct Config: StackConfiguration {
                        var workers = 1
                        var message = "hello from Stratum"
                    }

                    func body(config: Config) -> StackContent {
                        let bucket = Bucket("example-data")
                        bucket
                        NodePool(
                            "worker", count: config.workers,
                            command: ["/bin/sh", "-c", "while true; do echo \\"$MESSAGE\\" > \\"$DATA/$STRATUM_NODE_NAME.txt\\"; sleep 5; done"],
                            env: ["DATA": bucket.path, "MESSAGE": config.message])
                        Output("bucket_path", bucket.path)
                    }
                }

                """,
            "Stacks/example.dev.yaml": """
                # Configuration of the 'example' stack in the 'dev' environment.
                workers: 2
                message: hello from dev

                """,
            ".gitignore": """
                .build/
                .stratum/
                Package.resolved

                """,
            "README.md": """
                # \(name)

                Infrastructure stacks written with Stratum.

                    swift run \(name) plan --stack example     # what would change
                    swift run \(name) apply --stack example    # make it so
                    swift run \(name) destroy --stack example  # remove it all

                """ + cloudNote,
        ]
        for cloud in clouds {
            for (path, content) in cloud.files {
                files[path.hasPrefix("Stacks/") ? path : "Sources/\(name)/\(path)"] = content
            }
        }
        return files
    }
}
