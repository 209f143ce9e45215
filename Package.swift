// swift-tools-version:6.0
import PackageDescription

// The C trainer core is compiled with optimisation even in debug builds so that
// `swift test` trains at full speed.
let trainerCFlags: [CSetting] = [.unsafeFlags(["-O3", "-ffast-math", "-fno-finite-math-only"])]

let package = Package(
    name: "Stratum",
    platforms: [.macOS(.v15)],
    products: [
        // What a user's own stack package depends on: the DSL, the full CLI entry point and the
        // Local provider. Each cloud is a library product of its own, so a package links only
        // the clouds it uses.
        .library(name: "Stratum", targets: ["Stratum", "StratumCLI", "StratumLocal"]),
        .library(name: "StratumAWS", targets: ["StratumAWS"]),
        .library(name: "StratumGCP", targets: ["StratumGCP"]),
        .library(name: "StratumAzure", targets: ["StratumAzure"]),
        .executable(name: "stratum", targets: ["stratum"]),
        .executable(name: "stratum-netem", targets: ["stratum-netem"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .target(name: "StratumCore"),
        .target(name: "Stratum", dependencies: ["StratumCore", "Yams"]),
        .target(
            name: "StratumState",
            dependencies: ["StratumCore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The team backend: the same StateStore contract on a PostgreSQL server.
        .target(
            name: "StratumPostgres",
            dependencies: [
                "StratumCore", "StratumState",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // HTTP transport, rate limiting and clocks shared by the cloud providers.
        .target(
            name: "StratumCloud",
            dependencies: [
                "StratumCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The trainer's sources, embedded at build time (TrainerSourcesPlugin), as the
        // content-addressed archive nodes fetch from their cluster's bucket and build.
        .executableTarget(name: "stratum-trainer-sources"),
        .plugin(
            name: "TrainerSourcesPlugin", capability: .buildTool(), dependencies: ["stratum-trainer-sources"], path: "Sources/TrainerSourcesPlugin"),
        // Each cloud's offer catalog (Providers/<Cloud>/Catalog/offers.csv), embedded at build
        // time in the cloud's module as the prices a binary ships with.
        .executableTarget(name: "stratum-catalog-embed"),
        .plugin(name: "CatalogDataPlugin", capability: .buildTool(), dependencies: ["stratum-catalog-embed"], path: "Sources/CatalogDataPlugin"),
        .target(
            name: "StratumTrainerArtifact",
            dependencies: ["StratumCore", .product(name: "Crypto", package: "swift-crypto"), .product(name: "ZIPFoundation", package: "ZIPFoundation")],
            plugins: ["TrainerSourcesPlugin"]
        ),
        // A node's first-boot setup as #cloud-config: GPU setup, the workload as a supervised
        // unit, exporters; each cloud's flavour comes from its provider folder.
        .target(
            name: "StratumBootstrap",
            dependencies: [
                "StratumCore", "StratumCloud", "Yams",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Everything AWS: the AWS.* DSL types and the lowering of the portable resources, the
        // provider and its resource kinds, SigV4, the query/XML client, credentials.
        .target(
            name: "StratumAWS",
            dependencies: [
                "Stratum", "StratumCore", "StratumCloud", "StratumBootstrap", "StratumTrainerArtifact",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Providers/AWS",
            exclude: ["Catalog"],
            plugins: ["CatalogDataPlugin"]
        ),
        // Everything GCP: the GCP.* DSL types and the lowering of the portable resources, the
        // provider and its resource kinds, OAuth2 credentials (service-account key,
        // authorized_user, metadata server) and the JSON REST client with its error classification.
        .target(
            name: "StratumGCP",
            dependencies: [
                "Stratum", "StratumCore", "StratumCloud", "StratumBootstrap", "StratumTrainerArtifact",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Providers/GCP",
            exclude: ["Catalog"],
            plugins: ["CatalogDataPlugin"]
        ),
        // Everything Azure: the Azure.* DSL types and the lowering of the portable resources,
        // Microsoft Entra and managed-identity credentials and the Azure Resource Manager client
        // with its long-running operations and error classification.
        .target(
            name: "StratumAzure",
            dependencies: [
                "Stratum", "StratumCore", "StratumCloud", "StratumBootstrap", "StratumTrainerArtifact",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Providers/Azure",
            exclude: ["Catalog"],
            plugins: ["CatalogDataPlugin"]
        ),
        .target(
            name: "StratumEngine",
            dependencies: ["StratumCore", "StratumState", .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics")]),
        .target(name: "CStratumSpawn"),
        .target(name: "StratumLocal", dependencies: ["StratumCore", "CStratumSpawn"], path: "Providers/Local"),
        .target(
            name: "StratumCLI",
            dependencies: [
                "Stratum", "StratumCore", "StratumState", "StratumPostgres", "StratumEngine", "StratumLocal", "StratumCloud",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "StratumStacks", dependencies: ["Stratum", "StratumAWS", "StratumGCP", "StratumAzure"], path: "Stacks",
            exclude: [
                "local-demo.dev.yaml", "local-lab.dev.yaml", "local-lab.unimpaired.yaml", "aws-gpu-cluster.dev.yaml", "aws-gpu-cluster.prod.yaml", "gcp-gpu-cluster.dev.yaml", "gcp-gpu-cluster.prod.yaml",
                "azure-gpu-cluster.dev.yaml", "azure-gpu-cluster.prod.yaml",
            ]),
        // The bundled binary: the clouds it carries are listed here and in its main.swift.
        .executableTarget(name: "stratum", dependencies: ["StratumCLI", "StratumStacks", "StratumAWS", "StratumGCP", "StratumAzure"]),

        // Test support: a file-backed fake cloud and a CLI binary that carries it.
        .target(
            name: "StratumTesting",
            dependencies: [
                "Stratum", "StratumCore", "StratumState", "StratumEngine", "StratumCloud", "Yams",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(name: "stratum-fixture", dependencies: ["StratumCLI", "StratumTesting"]),

        // The bundled trainer: C core (CPU) and its command-line entry point.
        .target(
            name: "TrainerCore",
            cSettings: trainerCFlags,
            linkerSettings: [.linkedLibrary("yaml"), .linkedLibrary("curl"), .linkedLibrary("ssl"), .linkedLibrary("crypto"), .linkedLibrary("m"), .linkedLibrary("pthread")]
        ),
        .executableTarget(name: "stratum-trainer", dependencies: ["TrainerCore"], cSettings: trainerCFlags),
        // The link emulator Local networks use where the kernel has no sch_netem.
        .executableTarget(name: "stratum-netem"),

        .executableTarget(
            name: "stratum-bench",
            dependencies: ["StratumCore", "StratumEngine", "StratumState", "StratumTesting"],
            path: "Benchmarks/PlanBench"
        ),
        // Refresh of 1,000 EC2 instances: batched Describe versus one call per resource.
        .executableTarget(
            name: "stratum-aws-refresh-bench",
            dependencies: ["Stratum", "StratumAWS", "StratumCloud", "StratumCore", "StratumEngine", "StratumState", "StratumTesting", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/AWSRefresh",
            exclude: ["README.md"]
        ),

        // GCP instances on the loopback Compute fake: refresh of 1,000 instances and a throttled apply.
        .executableTarget(
            name: "stratum-gcp-bench",
            dependencies: ["Stratum", "StratumGCP", "StratumBootstrap", "StratumCloud", "StratumCore", "StratumEngine", "StratumState", "StratumTesting", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/GCPInstances",
            exclude: ["README.md"]
        ),

        // Azure VMs on the loopback ARM fake: refresh of 1,000 VMs and a throttled apply of a gang.
        .executableTarget(
            name: "stratum-azure-bench",
            dependencies: ["Stratum", "StratumAzure", "StratumBootstrap", "StratumCloud", "StratumCore", "StratumEngine", "StratumState", "StratumTesting", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/AzureVMs",
            exclude: ["README.md"]
        ),

        .executableTarget(name: "stratum-chaos", dependencies: ["StratumTesting"], path: "Benchmarks/Chaos"),

        // GPU cluster placement on the fixture's fake clouds: serial failover vs --race, and a
        // 64-node gang under throttling (runs the stratum-fixture binary).
        .executableTarget(name: "stratum-placement-bench", dependencies: ["StratumTesting"], path: "Benchmarks/Placement"),

        .testTarget(name: "StratumCoreTests", dependencies: ["StratumCore"]),
        .testTarget(
            name: "StratumBootstrapTests",
            dependencies: [
                "StratumBootstrap", "StratumTrainerArtifact", "StratumAWS", "StratumGCP", "StratumAzure", "StratumCloud", "StratumCore", "StratumTesting",
                "Yams", "stratum-trainer",
            ],
            exclude: ["Golden"]
        ),
        .testTarget(name: "StratumTests", dependencies: ["Stratum", "StratumCore", "StratumTesting"]),
        .testTarget(name: "StratumStateTests", dependencies: ["StratumState", "StratumPostgres", "StratumCore", "StratumTesting"]),
        .testTarget(name: "StratumCloudTests", dependencies: ["StratumCloud", "StratumCore", "StratumTesting", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "StratumAWSTests",
            dependencies: [
                "StratumAWS", "StratumBootstrap", "StratumTrainerArtifact", "StratumLocal", "StratumCloud", "StratumCore", "StratumEngine", "StratumState", "Stratum", "StratumStacks", "StratumTesting",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "StratumGCPTests",
            dependencies: [
                "StratumGCP", "StratumBootstrap", "StratumCloud", "StratumCore", "StratumEngine", "StratumState", "Stratum", "StratumStacks", "StratumTesting",
                "StratumTrainerArtifact", "stratum",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "StratumAzureTests",
            dependencies: [
                "StratumAzure", "StratumBootstrap", "StratumCloud", "StratumCore", "StratumEngine", "StratumState", "StratumTesting", "Stratum", "StratumStacks", "stratum",
                "StratumTrainerArtifact",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "StratumEngineTests", dependencies: ["StratumEngine", "StratumState", "StratumCore", "Stratum", "StratumTesting"]),
        .testTarget(name: "StratumLocalTests", dependencies: ["StratumLocal", "StratumCore", "StratumTesting"]),
        .testTarget(name: "TrainerTests", dependencies: ["TrainerCore", "stratum-trainer", "StratumTesting", "StratumCore"]),
        .testTarget(
            name: "StratumCLITests",
            dependencies: ["StratumCLI", "StratumLocal", "StratumStacks", "StratumTesting", "stratum", "stratum-fixture", "stratum-trainer", "stratum-netem"]),
    ]
)
