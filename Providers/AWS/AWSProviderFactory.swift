import Foundation
import StratumCloud
import StratumCore

extension ProviderFactory {
    /// Amazon Web Services, with credentials from the environment, the shared AWS files or
    /// instance metadata, and `AWS_ENDPOINT_URL` for emulators.
    public static let aws = ProviderFactory(wiring: .aws, catalog: .aws) { _ in AWSProvider.fromEnvironment() }
}

extension ShippedCatalog {
    /// The AWS offers this build ships with (Providers/AWS/Catalog/offers.csv); `stratum
    /// catalog update` refreshes them from the Price List bulk API and, with credentials, EC2's
    /// spot price history (`AWSPriceList`).
    public static let aws = ShippedCatalog(cloud: "aws", csv: StratumShippedCatalog.csv, file: StratumShippedCatalog.path) { current, options in
        var source = await AWSPriceList.fromEnvironment(options.environment, transport: AsyncHTTPTransport())
        source.timeout = options.timeout
        return try await source.prices(for: current, date: options.date, progress: options.progress)
    }
}

extension PackageWiring {
    /// A stack package on AWS: the StratumAWS product, `.aws` in `main`, and an example stack
    /// (a VPC, an S3 bucket and one small CPU instance).
    public static let aws = PackageWiring(
        cloud: "aws", product: "StratumAWS", factory: ".aws",
        files: [
            "ExampleAWSStack.swift": """
                import Stratum
                import StratumAWS

                /// A network, a bucket and a small pool of CPU instances on AWS.
                struct ExampleAWSStack: Stack {
                    static let name = "example-aws"
                    static let summary = "A VPC, an S3 bucket and CPU instances on AWS"

                    /// Read from Stacks/example-aws.<env>.yaml; keys are the property names in snake_case.
                    struct Config: StackConfiguration {
                        var region = "us-east-1"
                        /// Availability zones in order of preference; the network gets one subnet in each.
                        var zones = ["us-east-1a", "us-east-1b"]
                        var workers = 1
                        /// S3 bucket names are global: pick one unique to you.
                        var bucketName = "example-aws-data"
                    }

                    func body(config: Config) -> StackContent {
                        let placement = Placement.aws(region: config.region, zones: config.zones)
                        let network = Network("example", cidr: "10.40.0.0/16", on: placement)
                        let bucket = Bucket(config.bucketName, on: placement)
                        network
                        bucket
                        NodePool(
                            "worker", count: config.workers, machine: MachineRequest(cpus: 2, memoryGiB: 8),
                            image: "ubuntu:24.04", command: ["/bin/sh", "-c", "echo \\"node $STRATUM_NODE_INDEX up\\""],
                            env: ["DATA": bucket.url], network: network, on: placement)
                        Output("bucket_url", bucket.url)
                    }
                }

                """,
            "Stacks/example-aws.dev.yaml": """
                # Configuration of the 'example-aws' stack in the 'dev' environment.
                region: us-east-1
                zones: [us-east-1a, us-east-1b]
                workers: 1
                bucket_name: example-aws-data-dev

                """,
        ],
        stackTypes: ["ExampleAWSStack"], stackNames: ["example-aws"])
}
