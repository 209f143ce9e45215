import Foundation
import Stratum
import StratumAWS

/// A GPU training cluster on AWS: a VPC spanning two zones, a cluster placement group, N GPU
/// workers (p5.48xlarge by default) running the bundled trainer as DiLoCo ranks, and a
/// versioned S3 bucket for checkpoints. The trainer reaches the workers as an archive in the
/// bucket, fetched and built at boot with the workers' own role (no key in user data), which
/// may read and write that bucket and nothing else. Workers list every zone's subnet, so a
/// stockout in the first zone sends them to the next.
public struct AWSGPUCluster: Stack {
    public static let name = "aws-gpu-cluster"
    public static let summary = "VPC, placement group, N GPU workers (p5.48xlarge) and an S3 checkpoint bucket on AWS"

    public struct Config: StackConfiguration {
        public var region = "us-east-1"
        /// Zones in order of preference; one subnet each.
        public var zones = ["us-east-1a", "us-east-1b"]
        public var cidr = "10.20.0.0/16"
        public var workers = 2
        public var instanceType = "p5.48xlarge"
        /// An AMI id, or an SSM parameter as `resolve:ssm:NAME` (default: AWS's deep-learning base image).
        public var ami = AWSLowering.defaultGPUImage
        /// The trainer's YAML configuration on every worker (/etc/stratum/trainer.yaml).
        public var trainerConfig = TrainerRun.defaultConfig
        public var spot = false
        public var rootVolumeGib = 500
        /// Pack the workers onto one network spine. AWS pins a cluster group to the zone of its
        /// first instance, so with it a stockout can only move the whole gang before it lands.
        public var placementGroup = true
        /// Checkpoint bucket; S3 names are global, so pick one unique to you.
        public var bucketName = "stratum-checkpoints-dev"
        /// An SSH public key to log in with; empty for none.
        public var sshPublicKey = ""
        public init() {}

        public func problems() -> [ConfigProblem] {
            var check = ConfigCheck()
            // Each worker is one DiLoCo rank of the trainer.
            check.trainer("workers", workers, TrainerLimits.workers)
            // The root volume is gp3, which EC2 sizes from 1 GiB to 16 TiB.
            check.range("root_volume_gib", rootVolumeGib, 1...16384, "the size of a gp3 volume in GiB")
            check.require(!zones.isEmpty, "zones", "[]", "name at least one availability zone")
            return check.problems
        }
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        let placement = Placement.aws(region: config.region, zones: config.zones)
        let network = Network("cluster", cidr: config.cidr, on: placement)
        let bucket = Bucket(config.bucketName, versioning: true, on: placement)
        let group = config.placementGroup ? AWS.PlacementGroup("\(Self.name)-workers", region: config.region) : nil
        let key = config.sshPublicKey.isEmpty ? nil : AWS.KeyPair("\(Self.name)-admin", publicKey: config.sshPublicKey, region: config.region)
        network
        bucket
        group
        key
        let role = AWS.InstanceRole("\(Self.name)-node", bucket: bucket, region: config.region)
        let trainer = AWS.TrainerArchive(in: bucket, region: config.region)
        role
        trainer
        AWS.InstanceGroup(
            "worker", count: config.workers,
            AWS.LaunchSpec(
                ami: config.ami, instanceType: config.instanceType,
                subnets: AWSLowering.subnets(of: network), securityGroups: [AWSLowering.securityGroup(of: network)],
                placementGroup: group?.id, keyName: key?.keyName,
                trainer: trainer.workload(TrainerRun(config: config.trainerConfig, arguments: TrainerRun.dilocoArguments + ["--set", "s3.region=$STRATUM_REGION"])),
                instanceProfile: role.instanceProfile, checkpoint: bucket.url,
                rootVolumeGiB: config.rootVolumeGib, spot: config.spot, tags: ["role": "diloco-worker"]),
            region: config.region)
        Output("checkpoint_bucket", bucket.url)
        Output("workers", config.workers)
    }
}
