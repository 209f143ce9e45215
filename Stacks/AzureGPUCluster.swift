import Foundation
import Stratum
import StratumAzure

/// A GPU training cluster on Azure: a resource group, a virtual network with one subnet behind
/// a security group open only to the network itself, N GPU workers (Standard_ND96isr_H100_v5
/// by default) running the bundled trainer as DiLoCo ranks, packed into a proximity placement
/// group, and a blob container for checkpoints. The trainer reaches the workers as an archive
/// in the container, fetched and built at boot with the workers' user-assigned managed
/// identity (no key in customData), which may read and write that container and nothing else.
/// Each worker lists the zones in order: an allocation failure in one moves its create to the
/// next.
public struct AzureGPUCluster: Stack {
    public static let name = "azure-gpu-cluster"
    public static let summary =
        "Resource group, virtual network, proximity placement group, N GPU workers (Standard_ND96isr_H100_v5) and a blob checkpoint container on Azure"

    public struct Config: StackConfiguration {
        /// The subscription; empty: AZURE_SUBSCRIPTION_ID.
        public var subscription = ""
        public var location = "eastus"
        /// The resource group's name; empty: derived from the stack.
        public var resourceGroup = ""
        /// Availability zones in order of preference.
        public var zones = ["1"]
        public var cidr = "10.40.0.0/16"
        public var workers = 2
        public var size = "Standard_ND96isr_H100_v5"
        /// A marketplace image `publisher:offer:sku:version`; empty: the provider's GPU-ready default.
        public var osImage = ""
        /// The trainer's YAML configuration on every worker (/etc/stratum/trainer.yaml).
        public var trainerConfig = TrainerRun.defaultConfig
        public var spot = false
        public var osDiskGib = 1000
        /// Pack the workers into one datacenter with a proximity placement group.
        public var proximityPlacementGroup = true
        /// The checkpoint container; the storage account is named from it (3-24 of a-z and 0-9,
        /// unique across Azure), so pick one unique to you.
        public var bucketName = "stratum-checkpoints-dev"
        /// An SSH public key for the admin user; empty for none.
        public var sshPublicKey = ""
        public init() {}

        public func problems() -> [ConfigProblem] {
            var check = ConfigCheck()
            // Each worker is one DiLoCo rank of the trainer.
            check.trainer("workers", workers, TrainerLimits.workers)
            // Managed OS disks are 30 GiB to 4 TiB.
            check.range("os_disk_gib", osDiskGib, 30...4095, "the size of an OS disk in GiB")
            check.require(!zones.isEmpty, "zones", "[]", "name at least one availability zone (\"1\", \"2\", \"3\")")
            // A proximity placement group is pinned to the datacenter of its first VM, one zone:
            // workers failing over between zones on their own would not fit it.
            check.require(
                !(proximityPlacementGroup && zones.count > 1), "proximity_placement_group", proximityPlacementGroup,
                "a proximity placement group keeps its workers in one zone: list one zone or turn the group off")
            return check.problems
        }
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        let subscription = config.subscription.isEmpty ? nil : config.subscription
        let placement = Placement.azure(
            subscription: subscription, location: config.location, zones: config.zones,
            resourceGroup: config.resourceGroup.isEmpty ? nil : config.resourceGroup)
        let group = AzureLowering.resourceGroup(of: placement)
        let network = Network("cluster", cidr: config.cidr, on: placement)
        let bucket = Bucket(config.bucketName, on: placement)
        let proximity = config.proximityPlacementGroup
            ? Azure.ProximityPlacementGroup(
                "\(Self.name)-workers", resourceGroup: group, vmSizes: [config.size], subscription: subscription, location: config.location) : nil
        network
        bucket
        proximity
        let identity = Azure.NodeIdentity("\(Self.name)-node", bucket: bucket, resourceGroup: group, subscription: subscription, location: config.location)
        let trainer = Azure.TrainerArchive(in: bucket)
        identity
        trainer
        Azure.VMGroup(
            "worker", count: config.workers, resourceGroup: group,
            Azure.VMSpec(
                size: config.size, zones: config.zones, subnet: AzureLowering.subnet(of: network),
                image: config.osImage.isEmpty ? nil : config.osImage, osDiskGiB: config.osDiskGib, spot: config.spot,
                proximityPlacementGroup: proximity?.id, sshPublicKey: config.sshPublicKey.isEmpty ? nil : config.sshPublicKey,
                tags: ["role": "diloco-worker"], checkpoint: bucket.url,
                trainer: trainer.workload(TrainerRun(config: config.trainerConfig)), identity: identity),
            subscription: subscription, location: config.location)
        Output("checkpoint_container", bucket.url)
        Output("workers", config.workers)
    }
}
