import Foundation
import Stratum
import StratumGCP

/// A GPU training cluster on GCP: a VPC network with one subnetwork in the region, N GPU
/// workers (a3-highgpu-8g by default) running the bundled trainer as DiLoCo ranks, made
/// together by one bulk insert and packed by a compact placement policy, and a versioned Cloud
/// Storage bucket for checkpoints. The trainer reaches the workers as an archive in the
/// bucket, fetched and built at boot as the workers' own service account (no key in user
/// data), which may read and write that bucket and nothing else. The workers list the zones in
/// order: a stockout in one moves the create to the next (the whole gang at once, or each
/// worker on its own without the gang).
public struct GCPGPUCluster: Stack {
    public static let name = "gcp-gpu-cluster"
    public static let summary = "VPC network, compact placement, a gang of N GPU workers (a3-highgpu-8g) and a Cloud Storage checkpoint bucket on GCP"

    public struct Config: StackConfiguration {
        /// The project; empty: GOOGLE_CLOUD_PROJECT or the one the credentials name.
        public var project = ""
        public var region = "us-central1"
        /// Zones in order of preference.
        public var zones = ["us-central1-a", "us-central1-b", "us-central1-c"]
        public var cidr = "10.30.0.0/16"
        public var workers = 2
        public var machineType = "a3-highgpu-8g"
        /// The boot image (`projects/P/global/images/family/F`); empty: the provider's GPU-ready default.
        public var bootImage = ""
        /// The trainer's YAML configuration on every worker (/etc/stratum/trainer.yaml).
        public var trainerConfig = TrainerRun.defaultConfig
        public var spot = false
        public var bootDiskGib = 500
        /// Make every worker with one bulk insert, all or none, in one zone.
        public var gang = true
        /// Pack the workers close together with a compact placement policy (one zone).
        public var placementPolicy = true
        /// Checkpoint bucket; Cloud Storage names are global, so pick one unique to you.
        public var bucketName = "stratum-checkpoints-dev"
        public init() {}

        public func problems() -> [ConfigProblem] {
            var check = ConfigCheck()
            // Each worker is one DiLoCo rank of the trainer.
            check.trainer("workers", workers, TrainerLimits.workers)
            // Persistent disks are 10 GiB to 64 TiB.
            check.range("boot_disk_gib", bootDiskGib, 10...65536, "the size of a boot disk in GiB")
            check.require(!zones.isEmpty, "zones", "[]", "name at least one zone of the region")
            // Workers of a compact placement policy share one zone; a gang moves to the next zone
            // as a whole, but single workers would each fail over on their own.
            check.require(
                !(placementPolicy && !gang && zones.count > 1), "placement_policy", placementPolicy,
                "a compact placement policy keeps its workers in one zone: with gang: false, list one zone or turn the policy off")
            return check.problems
        }
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        let project = config.project.isEmpty ? nil : config.project
        let placement = Placement.gcp(project: project, region: config.region, zones: config.zones)
        let network = Network("cluster", cidr: config.cidr, on: placement)
        let bucket = Bucket(config.bucketName, versioning: true, on: placement)
        let policy = config.placementPolicy
            ? GCP.PlacementPolicy("\(Self.name)-workers", vmCount: config.workers, project: project, region: config.region) : nil
        let account = GCP.ServiceAccount("\(Self.name)-node", bucket: bucket, project: project, region: config.region)
        let trainer = GCP.TrainerArchive(in: bucket, project: project, region: config.region)
        let spec = GCP.InstanceSpec(
            machineType: config.machineType, zones: config.zones, subnetwork: GCPLowering.subnetwork(of: network),
            image: config.bootImage.isEmpty ? nil : config.bootImage, bootDiskGiB: config.bootDiskGib, spot: config.spot,
            serviceAccount: account.email, resourcePolicy: policy?.selfLink, labels: ["role": "diloco-worker"], checkpoint: bucket.url,
            trainer: trainer.workload(TrainerRun(config: config.trainerConfig)))
        network
        bucket
        policy
        account
        trainer
        if config.gang {
            GCP.InstanceGang("worker", count: config.workers, spec, project: project, region: config.region)
        } else {
            GCP.InstanceGroup("worker", count: config.workers, spec, project: project, region: config.region)
        }
        Output("checkpoint_bucket", bucket.url)
        Output("workers", config.workers)
    }
}
