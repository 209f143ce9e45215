import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumStacks
import StratumTrainerArtifact
import Testing
@testable import StratumGCP

/// A GCP provider for schema checks: its kinds' schemas and checks, no calls.
private func schemaProvider() -> any Provider {
    GCPProvider.fromEnvironment(["GOOGLE_CLOUD_PROJECT": "stratum-test", "NO_GCE_CHECK": "true"])
}

private func evaluate(_ declarations: [any Declaration]) throws -> EvaluatedStack {
    var content = StackContent()
    for declaration in declarations { declaration.declare(into: &content) }
    return try StackEvaluator.evaluate(content, name: "t", environment: "dev")
}

private func diagnostics(_ declarations: [any Declaration]) -> [String] {
    var content = StackContent()
    for declaration in declarations { declaration.declare(into: &content) }
    return content.diagnostics.map(\.message)
}

private func references(_ value: Value?) -> [String] {
    value?.references.map { "\($0.address).\($0.attribute)" } ?? []
}

@Suite("GCP lowering of portable resources")
struct GCPLoweringTests {
    static let placement = Placement.gcp(region: "us-central1", zones: ["us-central1-a", "us-central1-b", "us-central1-c"])

    @Test func portableResourcesBecomeGCPResources() throws {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        let bucket = Bucket("ckpt-bucket", versioning: true, on: Self.placement)
        let pool = NodePool(
            "gpu", count: 2, machine: .gpu("H100", count: 8), command: ["train"], env: ["CKPT": bucket.url], labels: ["team": "ml"],
            checkpoint: bucket.url, network: network, on: Self.placement)
        let stack = try evaluate([network, bucket, pool])
        #expect(stack.resources.map(\.address.description).sorted() == [
            "gcp_bucket.ckpt-bucket", "gcp_firewall.net", "gcp_instance.gpu[0]", "gcp_instance.gpu[1]", "gcp_network.net", "gcp_subnetwork.net",
        ])
        #expect(stack.resources.allSatisfy { $0.provider == "gcp" && $0.region == "us-central1" && $0.inputs["project"] == nil })
        let byAddress = stack.resourcesByAddress
        let subnetwork = try #require(byAddress[ResourceAddress(type: "gcp_subnetwork", name: "net")])
        #expect(references(subnetwork.inputs["network"]) == ["gcp_network.net.self_link"])
        #expect(subnetwork.inputs["cidr"] == "10.0.0.0/16")
        #expect(subnetwork.inputs["private_google_access"] == true)
        // All traffic from inside the network, nothing from anywhere else.
        let firewall = try #require(byAddress[ResourceAddress(type: "gcp_firewall", name: "net")])
        #expect(references(firewall.inputs["network"]) == ["gcp_network.net.self_link"])
        #expect(firewall.inputs["source_ranges"] == ["10.0.0.0/16"])
        #expect(firewall.inputs["allow"] == [["protocol": "all"]])
        #expect(firewall.inputs["direction"] == "INGRESS")
        #expect(byAddress[ResourceAddress(type: "gcp_network", name: "net")]?.inputs == [:])

        let bucketResource = try #require(byAddress[bucket.address])
        #expect(bucketResource.inputs == ["name": "ckpt-bucket", "versioning": true])

        let node = try #require(byAddress[pool.node(1)])
        #expect(node.inputs["machine_type"] == "a3-highgpu-8g")
        #expect(node.inputs["zones"] == ["us-central1-a", "us-central1-b", "us-central1-c"])
        #expect(references(node.inputs["subnetwork"]) == ["gcp_subnetwork.net.self_link"])
        #expect(node.inputs["container_image"] == nil)
        #expect(node.inputs["image"] == nil)
        #expect(node.inputs["accelerator_type"] == nil && node.inputs["accelerator_count"] == nil)
        // The node contract inputs, as on AWS.
        #expect(node.inputs["pool"] == "gpu" && node.inputs["count"] == 2 && node.inputs["index"] == 1)
        #expect(references(node.inputs["checkpoint_url"]) == ["gcp_bucket.ckpt-bucket.url"])
        #expect(node.inputs["gpus"] == 8 && node.inputs["gpu_class"] == "H100")
        #expect(node.inputs["command"] == ["train"] && node.inputs["labels"] == ["team": "ml"])
        #expect(references(node.inputs["env"]) == ["gcp_bucket.ckpt-bucket.url"])
        // Order follows the references: network, then its subnetwork and firewall, then the nodes;
        // rank 1 after rank 0, whose address is its coordinator.
        #expect(Set(node.dependencies) == [ResourceAddress(type: "gcp_subnetwork", name: "net"), bucket.address, pool.node(0)])
        #expect(references(node.inputs["coordinator"]) == ["gcp_instance.gpu[0].private_ip"])
        #expect(subnetwork.dependencies == [ResourceAddress(type: "gcp_network", name: "net")])
        // Every lowered resource passes the GCP provider's schema and checks.
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func gcpPlacementCarriesTheGCPLowering() {
        let placement = Placement.gcp(project: "my-project-1", region: "europe-west4")
        #expect(placement.lowering is GCPLowering)
        #expect(placement.gcpProject == "my-project-1")
        #expect(Placement.gcp(region: "europe-west4").gcpProject == nil)
        #expect(Placement.aws(region: "us-east-1").gcpProject == nil)
        #expect(placement == Placement(provider: "gcp", region: "europe-west4"))
        #expect(Network("n", cidr: "10.0.0.0/16", on: placement).address.description == "gcp_network.n")
        #expect(Bucket("b-1", on: placement).address.description == "gcp_bucket.b-1")
        #expect(NodePool("p", count: 1, command: ["x"], on: placement).node(0).description == "gcp_instance.p[0]")
    }

    @Test func aPlacementProjectReachesEveryResource() throws {
        let placement = Placement.gcp(project: "my-project-1", region: "us-east1", zones: ["us-east1-b", "us-east1-c"])
        let network = Network("net", cidr: "10.8.0.0/16", on: placement)
        let stack = try evaluate([
            network, Bucket("data-1", on: placement),
            NodePool("cpu", count: 1, machine: MachineRequest(cpus: 4, memoryGiB: 16), command: ["x"], network: network, on: placement),
        ])
        #expect(stack.resources.count == 5)
        #expect(stack.resources.allSatisfy { $0.inputs["project"] == "my-project-1" })
        #expect(stack.resourcesByAddress[ResourceAddress(type: "gcp_instance", name: "cpu", index: 0)]?.inputs["machine_type"] == "e2-standard-4")
    }

    @Test func aComputeImageIsTheBootImageAndAnN1PoolGetsItsAccelerator() throws {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        let image = "projects/my-images/global/images/family/trainer-gpu"
        let stack = try evaluate([network, NodePool("t4", count: 1, machine: .gpu("T4", count: 2), image: image, command: ["x"], network: network, on: Self.placement)])
        let node = try #require(stack.resources.first { $0.address.type == "gcp_instance" })
        #expect(node.inputs["image"] == .string(image) && node.inputs["container_image"] == nil)
        #expect(node.inputs["machine_type"] == "n1-standard-16")
        #expect(node.inputs["accelerator_type"] == "nvidia-tesla-t4" && node.inputs["accelerator_count"] == 2)
        #expect(node.inputs["gpus"] == 2)
    }

    @Test func poolsOnGCPNeedANetworkZonesAndAKnownMachine() {
        let network = Network("n", cidr: "10.0.0.0/16", on: Self.placement)
        let messages = diagnostics([
            NodePool("lonely", count: 1, command: ["x"], on: Self.placement),
            NodePool("far", count: 1, command: ["x"], network: Network("w", cidr: "10.1.0.0/16", on: .gcp(region: "europe-west4")), on: Self.placement),
            NodePool("other-project", count: 1, command: ["x"], network: network, on: .gcp(project: "other-project", region: "us-central1", zones: ["us-central1-a"])),
            NodePool("zoneless", count: 1, command: ["x"], network: Network("z", cidr: "10.2.0.0/16", on: .gcp(region: "us-central1")), on: .gcp(region: "us-central1")),
            NodePool("odd", count: 1, machine: .gpu("Z9000", count: 3), command: ["x"], network: network, on: Self.placement),
            NodePool("huge", count: 1, machine: MachineRequest(cpus: 512, memoryGiB: 4096), command: ["x"], network: network, on: Self.placement),
            NodePool("labelled", count: 1, command: ["x"], labels: ["Team": "ML"], network: network, on: Self.placement),
        ])
        #expect(messages.contains { $0.contains("a node pool on GCP needs a network") })
        #expect(messages.contains { $0.contains("the pool's network must be on GCP in us-central1 too") })
        #expect(messages.contains { $0.contains("the pool's network must be on GCP in us-central1 of project other-project too") })
        #expect(messages.contains { $0.contains("a node pool on GCP needs zones to run in") })
        #expect(messages.contains { $0.contains("no GCP machine type known for 3 × Z9000; set machine.instanceType") })
        #expect(messages.contains { $0.contains("no GCP machine type known for 512 vCPUs and 4096 GiB") })
        #expect(messages.contains("label key 'Team' must be 1-63 of a-z, 0-9, '_' and '-', starting with a letter"))
        #expect(messages.contains("label 'Team' has value 'ML'; values are at most 63 of a-z, 0-9, '_' and '-'"))
    }

    @Test func zonesRegionsAndProjectsAreChecked() {
        let bad = Placement.gcp(project: "Bad_Project", region: "us-central1", zones: ["us-central1-a", "europe-west4-a", "us-central1", "us-central1-a"])
        let network = Network("n", cidr: "10.0.0.0/16", on: bad)
        let messages = diagnostics([network, NodePool("p", count: 1, command: ["x"], network: network, on: bad), Bucket("b-1", on: .gcp(region: "central"))])
        #expect(messages.contains("zone 'europe-west4-a' is not in the region us-central1 (its zones are us-central1-a, us-central1-b, …)"))
        #expect(messages.contains("'us-central1' is not a GCP zone name (e.g. us-central1-a)"))
        #expect(messages.contains("zone 'us-central1-a' is listed twice"))
        #expect(messages.contains { $0.contains("'Bad_Project' is not a GCP project id") })
        #expect(messages.contains("'central' is not a GCP region name (e.g. us-central1, europe-west4)"))
        #expect(GCPLocations.problem(zone: "us-central1-f", region: "us-central1") == nil)
        #expect(GCPLocations.problem(project: "example.com:my-project") == nil)
    }
}

@Suite("GCP machine catalog")
struct GCPMachineCatalogTests {
    @Test func gpuRequestsMapToAcceleratorOptimizedTypes() {
        func type(_ request: MachineRequest) -> String? { GCPMachineCatalog.machine(for: request)?.machineType }
        #expect(type(.gpu("H100", count: 8)) == "a3-highgpu-8g")
        #expect(type(.gpu("h100", count: 4)) == "a3-highgpu-4g")
        #expect(type(.gpu("H200", count: 8)) == "a3-ultragpu-8g")
        #expect(type(.gpu("A100", count: 1)) == "a2-highgpu-1g")
        #expect(type(.gpu("A100", count: 16)) == "a2-megagpu-16g")
        #expect(type(.gpu("A100 80GB", count: 8)) == "a2-ultragpu-8g")
        #expect(type(.gpu("a100-80gb", count: 2)) == "a2-ultragpu-2g")
        #expect(type(.gpu("L4", count: 1)) == "g2-standard-4")
        #expect(type(MachineRequest(gpus: 1, gpuClass: "L4", cpus: 8, memoryGiB: 32)) == "g2-standard-8")
        #expect(type(.gpu("L4", count: 8)) == "g2-standard-96")
        #expect(type(.gpu("H100", count: 3)) == nil)
        #expect(type(MachineRequest(gpus: 2)) == nil)
    }

    @Test func cpuRequestsGetTheSmallestTypeThatFits() {
        #expect(GCPMachineCatalog.machine(for: .cpu)?.machineType == "e2-standard-2")
        #expect(GCPMachineCatalog.machine(for: MachineRequest(cpus: 6, memoryGiB: 16))?.machineType == "e2-standard-8")
        #expect(GCPMachineCatalog.machine(for: MachineRequest(cpus: 40, memoryGiB: 100))?.machineType == "n2-standard-48")
    }

    @Test func attachedGPUsGoOnN1AndNamedTypesAreKept() {
        let t4 = GCPMachineCatalog.machine(for: .gpu("T4", count: 1))
        #expect(t4 == GCPMachine(machineType: "n1-standard-8", acceleratorType: "nvidia-tesla-t4", gpus: 1, gpuClass: "T4"))
        let named = GCPMachineCatalog.machine(for: MachineRequest(gpus: 4, gpuClass: "V100", instanceType: "n1-highmem-32"))
        #expect(named == GCPMachine(machineType: "n1-highmem-32", acceleratorType: "nvidia-tesla-v100", gpus: 4, gpuClass: "V100"))
        // A named accelerator-optimized type brings its own GPUs, whatever the request says.
        #expect(GCPMachineCatalog.machine(for: MachineRequest(instanceType: "a3-megagpu-8g")) == GCPMachine(machineType: "a3-megagpu-8g", gpus: 8, gpuClass: "H100"))
        #expect(GCPMachineCatalog.gpus(ofMachineType: "a2-ultragpu-4g") == GCPMachine(machineType: "a2-ultragpu-4g", gpus: 4, gpuClass: "A100-80GB"))
        #expect(GCPMachineCatalog.gpus(ofMachineType: "g2-standard-8")?.gpus == 1)
        #expect(GCPMachineCatalog.gpus(ofMachineType: "n1-standard-8") == nil)
    }
}

@Suite("GCP.* resources")
struct GCPResourceTests {
    static let region = "us-central1"

    @Test func networkingTypesDeclareTheirContractInputs() throws {
        let network = GCP.Network("vpc", networkName: "training-vpc", routingMode: "GLOBAL", project: "my-project-1", region: Self.region)
        let subnetwork = GCP.Subnetwork("vpc-a", network: network.selfLink, cidr: "10.4.0.0/20", privateGoogleAccess: false, region: Self.region)
        let firewall = GCP.Firewall(
            "ssh", network: network.selfLink, allow: [.tcp("22"), .udp("8000-9000"), .all], sourceRanges: ["203.0.113.0/24"], targetTags: ["worker"],
            priority: 900, region: Self.region)
        let stack = try evaluate([network, subnetwork, firewall])
        let byAddress = stack.resourcesByAddress
        #expect(byAddress[network.address]?.inputs == ["name": "training-vpc", "routing_mode": "GLOBAL", "project": "my-project-1"])
        let sub = try #require(byAddress[subnetwork.address])
        #expect(sub.inputs["cidr"] == "10.4.0.0/20" && sub.inputs["private_google_access"] == false)
        #expect(sub.dependencies == [network.address])
        let rule = try #require(byAddress[firewall.address])
        #expect(rule.inputs["allow"] == [["protocol": "tcp", "ports": ["22"]], ["protocol": "udp", "ports": ["8000-9000"]], ["protocol": "all"]])
        #expect(rule.inputs["source_ranges"] == ["203.0.113.0/24"] && rule.inputs["target_tags"] == ["worker"])
        #expect(rule.inputs["priority"] == 900 && rule.inputs["direction"] == "INGRESS")
        #expect(rule.dependencies == [network.address])
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func instancesGangsPoliciesAndBucketsDeclareTheirContractInputs() throws {
        let subnetwork = GCP.Subnetwork("sub", network: "default", cidr: "10.4.0.0/20", region: Self.region)
        let policy = GCP.PlacementPolicy("pack", vmCount: 4, policyName: "pack-a3", region: Self.region)
        let bucket = GCP.Bucket(
            "ckpt-1", storageLocation: "US", versioning: true, storageClass: "STANDARD", forceDestroy: true, labels: ["team": "ml"], region: Self.region)
        let spec = GCP.InstanceSpec(
            machineType: "a3-highgpu-8g", zones: ["us-central1-a", "us-central1-c"], subnetwork: subnetwork.selfLink, bootDiskGiB: 800, spot: true,
            serviceAccount: "trainer@my-project-1.iam.gserviceaccount.com", scopes: ["https://www.googleapis.com/auth/devstorage.read_write"],
            resourcePolicy: policy.selfLink, networkTags: ["worker"], externalIP: false, labels: ["role": "worker"], command: ["train"],
            env: ["CKPT": bucket.url], containerImage: "trainer:1", checkpoint: bucket.url)
        let gang = GCP.InstanceGang("gang", count: 4, spec, namePrefix: "trainer", region: Self.region)
        let single = GCP.Instance("debug", GCP.InstanceSpec(
            machineType: "n1-standard-8", zones: ["us-central1-b"], subnetwork: "regions/us-central1/subnetworks/sub", accelerator: GCP.Accelerator("nvidia-tesla-t4"),
            userData: "#cloud-config\n"), region: Self.region)
        let group = GCP.InstanceGroup("cpu", count: 2, GCP.InstanceSpec(machineType: "e2-standard-4", zones: ["us-central1-a"], subnetwork: subnetwork.selfLink), region: Self.region)
        let stack = try evaluate([subnetwork, policy, bucket, gang, single, group])
        let byAddress = stack.resourcesByAddress

        #expect(byAddress[policy.address]?.inputs == ["vm_count": 4, "name": "pack-a3"])
        #expect(byAddress[bucket.address]?.inputs == [
            "name": "ckpt-1", "location": "US", "versioning": true, "storage_class": "STANDARD", "uniform_access": true, "force_destroy": true,
            "labels": ["team": "ml"],
        ])
        let gangResource = try #require(byAddress[gang.address])
        #expect(gangResource.inputs["machine_type"] == "a3-highgpu-8g" && gangResource.inputs["zones"] == ["us-central1-a", "us-central1-c"])
        #expect(gangResource.inputs["count"] == 4 && gangResource.inputs["pool"] == "gang" && gangResource.inputs["name_prefix"] == "trainer")
        #expect(gangResource.inputs["index"] == nil)
        #expect(gangResource.inputs["gpus"] == 8 && gangResource.inputs["gpu_class"] == "H100")
        #expect(gangResource.inputs["spot"] == true && gangResource.inputs["external_ip"] == false && gangResource.inputs["boot_disk_gib"] == 800)
        #expect(gangResource.inputs["service_account"] == "trainer@my-project-1.iam.gserviceaccount.com")
        #expect(gangResource.inputs["scopes"] == ["https://www.googleapis.com/auth/devstorage.read_write"])
        #expect(gangResource.inputs["network_tags"] == ["worker"] && gangResource.inputs["labels"] == ["role": "worker"])
        #expect(gangResource.inputs["container_image"] == "trainer:1" && gangResource.inputs["command"] == ["train"])
        #expect(references(gangResource.inputs["resource_policy"]) == ["gcp_resource_policy.pack.self_link"])
        #expect(references(gangResource.inputs["checkpoint_url"]) == ["gcp_bucket.ckpt-1.url"])
        #expect(Set(gangResource.dependencies) == [subnetwork.address, policy.address, bucket.address])

        let debug = try #require(byAddress[single.address])
        #expect(debug.inputs["accelerator_type"] == "nvidia-tesla-t4" && debug.inputs["accelerator_count"] == 1)
        #expect(debug.inputs["gpus"] == 1 && debug.inputs["gpu_class"] == "T4" && debug.inputs["user_data"] == "#cloud-config\n")
        #expect(debug.inputs["subnetwork"] == "regions/us-central1/subnetworks/sub" && debug.dependencies.isEmpty)

        #expect(group.ids.count == 2)
        let second = try #require(byAddress[group.instance(1)])
        #expect(second.inputs["pool"] == "cpu" && second.inputs["count"] == 2 && second.inputs["index"] == 1 && second.inputs["gpus"] == 0)
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func instanceSpecsAndResourcesAreChecked() {
        func spec(_ machineType: String, zones: [String] = ["us-central1-a"], accelerator: GCP.Accelerator? = nil, bootDiskGiB: Int? = nil) -> GCP.InstanceSpec {
            GCP.InstanceSpec(machineType: machineType, zones: zones, subnetwork: "sub", bootDiskGiB: bootDiskGiB, accelerator: accelerator)
        }
        let messages = diagnostics([
            GCP.Instance("a3", spec("a3-highgpu-8g", accelerator: GCP.Accelerator("nvidia-h100-80gb", count: 8)), region: Self.region),
            GCP.Instance("e2", spec("e2-standard-4", accelerator: GCP.Accelerator("nvidia-tesla-t4")), region: Self.region),
            GCP.Instance("nozone", spec("n1-standard-8", zones: []), region: Self.region),
            GCP.Instance("tiny-disk", spec("n1-standard-8", bootDiskGiB: 5), region: Self.region),
            GCP.Instance("weird", spec("A3 HIGH"), region: Self.region),
            GCP.InstanceGang("empty", count: 0, spec("a3-highgpu-8g"), region: Self.region),
            GCP.InstanceGang("prefix", count: 2, spec("a3-highgpu-8g"), namePrefix: "Trainer", region: Self.region),
            GCP.InstanceGroup("neg", count: -1, spec("e2-standard-4"), region: Self.region),
            GCP.Network("vpc", networkName: "Bad_Name", routingMode: "SIDEWAYS", region: Self.region),
            GCP.Subnetwork("sub", network: "vpc", cidr: "10.0.0.1/16", region: Self.region),
            GCP.Firewall("fw", network: "vpc", allow: [], sourceRanges: ["0.0.0.0/33"], priority: 70000, region: Self.region),
            GCP.PlacementPolicy("pp", vmCount: 0, region: Self.region),
            GCP.Bucket("b-1", labels: ["Bad": "x"], region: Self.region),
        ])
        for expected in [
            "a3-highgpu-8g carries its own GPUs; attach no accelerator (only N1 types take one)",
            "accelerators attach only to N1 machine types, not e2-standard-4",
            "an instance needs at least one zone",
            "boot disk of 5 GiB is outside 10...65536",
            "'A3 HIGH' is not a Compute machine type name (e.g. a3-highgpu-8g, n1-standard-8)",
            "a gang needs at least one instance (got 0)",
            "count must not be negative (got -1)",
            "routing mode 'SIDEWAYS' must be REGIONAL or GLOBAL",
            "a firewall needs at least one rule to allow",
            "priority 70000 is outside 0...65535",
            "vm_count must be at least 1 (got 0)",
        ] {
            #expect(messages.contains(expected), "missing: \(expected)")
        }
        #expect(messages.contains { $0.hasPrefix("name prefix 'Trainer' does not make Compute names") })
        #expect(messages.contains { $0.hasPrefix("name 'Bad_Name' is not a Compute name") })
        #expect(messages.contains { $0.hasPrefix("invalid CIDR '10.0.0.1/16'") })
        #expect(messages.contains { $0.hasPrefix("invalid source range '0.0.0.0/33'") })
        #expect(messages.contains { $0.hasPrefix("label key 'Bad' must be") })
    }

    @Test func aGroupReportsItsSpecsProblemsOnce() {
        let spec = GCP.InstanceSpec(machineType: "e2-standard-4", zones: ["europe-west4-a"], subnetwork: "sub", labels: ["Bad": "x"])
        let messages = diagnostics([GCP.InstanceGroup("g", count: 3, spec, region: Self.region)])
        #expect(messages.filter { $0.contains("europe-west4-a") }.count == 1)
        #expect(messages.filter { $0.contains("label key 'Bad'") }.count == 1)
    }
}

@Suite("gcp-gpu-cluster stack")
struct GCPGPUClusterStackTests {
    static func load(_ file: String) throws -> GCPGPUCluster.Config {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/\(file)").standardized
        return try StackConfigLoader.load(GCPGPUCluster.Config.self, from: url)
    }

    static func evaluate(_ config: GCPGPUCluster.Config) throws -> EvaluatedStack {
        try StackEvaluator.evaluate(GCPGPUCluster().body(config: config), name: GCPGPUCluster.name, environment: "x")
    }

    @Test func devIsSpotL4WorkersOneByOneWithoutAPolicy() throws {
        let config = try Self.load("gcp-gpu-cluster.dev.yaml")
        let stack = try Self.evaluate(config)
        let workers = stack.resources.filter { $0.address.type == "gcp_instance" }.sorted { $0.address < $1.address }
        #expect(workers.count == config.workers && config.workers == 2)
        #expect(workers.allSatisfy { $0.inputs["machine_type"] == "g2-standard-8" && $0.inputs["spot"] == true && $0.inputs["gpus"] == 1 })
        #expect(workers.map { $0.inputs["index"] } == [0, 1])
        #expect(workers.allSatisfy { $0.inputs["resource_policy"] == nil })
        #expect(!stack.resources.contains { $0.address.type == "gcp_resource_policy" || $0.address.type == "gcp_instance_gang" })
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func prodIsAnA3GangPackedByACompactPolicy() throws {
        let config = try Self.load("gcp-gpu-cluster.prod.yaml")
        let stack = try Self.evaluate(config)
        #expect(
            Set(stack.resources.map(\.address.type)) == [
                "gcp_network", "gcp_subnetwork", "gcp_firewall", "gcp_bucket", "gcp_resource_policy", "gcp_instance_gang", "gcp_service_account",
                "gcp_storage_object",
            ])
        let gang = try #require(stack.resources.first { $0.address.type == "gcp_instance_gang" })
        #expect(gang.inputs["count"] == 8 && gang.inputs["machine_type"] == "a3-highgpu-8g" && gang.inputs["gpus"] == 8)
        #expect(gang.inputs["spot"] == false && gang.inputs["boot_disk_gib"] == 1000)
        #expect(references(gang.inputs["resource_policy"]) == ["gcp_resource_policy.gcp-gpu-cluster-workers.self_link"])
        #expect(references(gang.inputs["subnetwork"]) == ["gcp_subnetwork.cluster.self_link"])
        // The trainer wiring: the bundled trainer's archive in the bucket, fetched as the stack's
        // own service account (bound to that bucket); checkpoints and DiLoCo rounds in the bucket.
        #expect(references(gang.inputs["checkpoint_url"]) == ["gcp_bucket.stratum-checkpoints-prod.url"])
        #expect(references(gang.inputs["trainer_url"]) == ["gcp_storage_object.trainer.url"])
        #expect(gang.inputs["trainer_sha256"] == .string(TrainerArchive.bundled.sha256))
        #expect(references(gang.inputs["service_account"]) == ["gcp_service_account.gcp-gpu-cluster-node.email"])
        #expect(gang.inputs["trainer_arguments"] == .list(TrainerRun.dilocoArguments.map(Value.string)))
        #expect(gang.inputs["command"] == nil && gang.inputs["container_image"] == nil && gang.inputs["env"] == nil)
        let account = try #require(stack.resources.first { $0.address.type == "gcp_service_account" })
        #expect(references(account.inputs["bucket"]) == ["gcp_bucket.stratum-checkpoints-prod.id"])
        let archive = try #require(stack.resources.first { $0.address.type == "gcp_storage_object" })
        #expect(references(archive.inputs["bucket"]) == ["gcp_bucket.stratum-checkpoints-prod.id"])
        #expect(archive.inputs["name"] == .string(TrainerArchive.bundled.objectKey) && archive.inputs["source"] == .string(BundledArtifact.trainer))
        #expect(stack.resources.first { $0.address.type == "gcp_resource_policy" }?.inputs["vm_count"] == 8)
        #expect(stack.resources.first { $0.address.type == "gcp_bucket" }?.inputs["versioning"] == true)
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func defaultsAreAnA3GangAndConfigProblemsAreNamed() throws {
        let defaults = GCPGPUCluster.Config()
        #expect(defaults.machineType == "a3-highgpu-8g" && defaults.gang && defaults.placementPolicy)
        var config = defaults
        config.zones = []
        config.bootDiskGib = 5
        let fields = config.problems().map(\.key)
        #expect(fields.contains("zones") && fields.contains("boot_disk_gib"))
        config = defaults
        config.gang = false
        #expect(config.problems().map(\.key) == ["placement_policy"])
        config.zones = ["us-central1-a"]
        #expect(config.problems().isEmpty)
        config = defaults
        config.project = "my-project-1"
        #expect(try Self.evaluate(config).resources.allSatisfy { $0.inputs["project"] == "my-project-1" })
        #expect(BundledStacks.all.contains { $0.name == GCPGPUCluster.name })
    }
}

@Suite("GCP: a GPU cluster where placement put it")
struct GCPClusterLoweringTests {
    @Test func aGPUClusterLandsAsANetworkAndAGangOfSpotNodesInTheDecidedZone() throws {
        let landing = Landing(cloud: "gcp", region: "us-central1", zone: "us-central1-b", instanceType: "a3-highgpu-8g", machines: 2, gpusPerMachine: 8, spot: true, hourly: 100)
        let decision = PlacementDecision(request: "r", landing: landing, runnersUp: [], reason: "test")
        let cluster = GPUCluster(
            "train", gpu: .h100, count: 16, clouds: [.gcp(region: "us-central1", zones: ["us-central1-a", "us-central1-b"])], spot: true,
            command: ["true"])
        let stack = try ClusterDecisions.$current.withValue(["train": decision]) { try evaluate([cluster]) }
        let nodes = stack.resources.filter { $0.address.type == "gcp_instance" }
        #expect(nodes.map(\.address.description) == ["gcp_instance.train[0]", "gcp_instance.train[1]"])
        #expect(nodes.allSatisfy { $0.inputs["machine_type"] == "a3-highgpu-8g" && $0.inputs["zones"] == .list(["us-central1-b"]) && $0.inputs["spot"] == true })
        #expect(nodes.allSatisfy { $0.dependencies.contains(ResourceAddress(type: "stratum_placement", name: "train")) })
        #expect(stack.resources.contains { $0.address.description == "gcp_network.train" })
        // The gang shares a compact placement policy.
        #expect(nodes.allSatisfy { $0.inputs["resource_policy"] == .reference(AttributeReference(address: ResourceAddress(type: "gcp_resource_policy", name: "train"), attribute: "self_link")) })
        #expect(stack.resources.first { $0.address.type == "stratum_placement" }?.inputs["zone"] == "us-central1-b")
        try Planner(providers: ProviderRegistry([schemaProvider(), StratumBuiltinProvider()])).validate(stack)

        // The nodes run as an account bound to the cluster's bucket, on GCP like them.
        let bucket = try #require(stack.resources.first { $0.address == ResourceAddress(type: "gcp_bucket", name: "train-checkpoints") })
        let account = try #require(stack.resources.first { $0.address == ResourceAddress(type: "gcp_service_account", name: "train") })
        #expect(account.inputs["bucket"] == .reference(AttributeReference(address: bucket.address, attribute: "id")))
        #expect(nodes.allSatisfy { $0.inputs["service_account"] == .reference(AttributeReference(address: account.address, attribute: "email")) })
        #expect(nodes.allSatisfy { $0.inputs["checkpoint_url"] == .reference(AttributeReference(address: bucket.address, attribute: "url")) })

        // Without a decision the cluster declares its request and its bucket only.
        let undecided = try evaluate([cluster])
        #expect(undecided.resources.map(\.address) == [bucket.address])
        #expect(undecided.clusters.map(\.name) == ["train"])
    }
}
