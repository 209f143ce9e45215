import Foundation
import Stratum
import StratumCore
import StratumEngine
import StratumCloud
import StratumStacks
import StratumTrainerArtifact
import Testing
@testable import StratumAzure

/// An Azure provider for schema checks: its kinds' schemas and checks, no calls.
private func schemaProvider() -> any Provider {
    AzureProvider.fromEnvironment(["AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555"])
}

private func content(_ declarations: [any Declaration]) -> StackContent {
    var content = StackContent()
    for declaration in declarations { declaration.declare(into: &content) }
    return content
}

private func evaluate(_ declarations: [any Declaration]) throws -> EvaluatedStack {
    try StackEvaluator.evaluate(content(declarations), name: "t", environment: "dev")
}

private func diagnostics(_ declarations: [any Declaration]) -> [String] {
    content(declarations).diagnostics.map(\.message)
}

private func references(_ value: Value?) -> [String] {
    value?.references.map { "\($0.address).\($0.attribute)" } ?? []
}

@Suite("Azure lowering of portable resources")
struct AzureLoweringTests {
    static let placement = Placement.azure(location: "eastus", zones: ["1", "2", "3"])

    @Test func portableResourcesBecomeAzureResourcesInOneResourceGroup() throws {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        let bucket = Bucket("ckpt_Bucket-1", versioning: true, on: Self.placement)
        let pool = NodePool(
            "gpu", count: 2, machine: .gpu("H100", count: 8), command: ["train"], env: ["CKPT": bucket.url], labels: ["team": "ml"],
            checkpoint: bucket.url, network: network, on: Self.placement)
        // Three declarations each need the placement's group: it is declared once.
        let stack = try evaluate([network, bucket, pool])
        #expect(stack.resources.map(\.address.description).sorted() == [
            "azure_blob_container.ckpt_Bucket-1", "azure_network_security_group.net", "azure_resource_group.eastus", "azure_storage_account.ckpt_Bucket-1",
            "azure_subnet.net", "azure_virtual_machine.gpu[0]", "azure_virtual_machine.gpu[1]", "azure_virtual_network.net",
        ])
        #expect(stack.resources.allSatisfy { $0.provider == "azure" && $0.region == "eastus" && $0.inputs["subscription"] == nil })
        let byAddress = stack.resourcesByAddress
        let group = try #require(byAddress[ResourceAddress(type: "azure_resource_group", name: "eastus")])
        #expect(group.inputs == [:])
        for resource in stack.resources where resource.address.type != "azure_resource_group" {
            #expect(references(resource.inputs["resource_group"]) == ["azure_resource_group.eastus.id"], "\(resource.address)")
        }
        #expect(byAddress[network.address]?.inputs["address_space"] == ["10.0.0.0/16"])
        let subnet = try #require(byAddress[ResourceAddress(type: "azure_subnet", name: "net")])
        #expect(references(subnet.inputs["virtual_network"]) == ["azure_virtual_network.net.id"])
        #expect(references(subnet.inputs["network_security_group"]) == ["azure_network_security_group.net.id"])
        #expect(subnet.inputs["cidr"] == "10.0.0.0/16")
        // All traffic from inside the network, nothing from anywhere else.
        let nsg = try #require(byAddress[ResourceAddress(type: "azure_network_security_group", name: "net")])
        let rules = try #require(nsg.inputs["rules"]?.listValue)
        #expect(rules.count == 1)
        let rule = try #require(rules.first?.mapValue)
        #expect(rule["direction"] == "Inbound" && rule["access"] == "Allow" && rule["protocol"] == "*" && rule["priority"] == 100)
        #expect(rule["source_address_prefix"] == "10.0.0.0/16" && rule["destination_address_prefix"] == "10.0.0.0/16")

        // The account's name fits Azure's rules; the container's is the bucket's, lowercase.
        let account = try #require(byAddress[ResourceAddress(type: "azure_storage_account", name: "ckpt_Bucket-1")])
        let accountName = try #require(account.inputs["name"]?.stringValue)
        #expect(AzureNaming.problem(storageAccount: accountName) == nil && accountName.hasPrefix("ckptbucket1"))
        #expect(account.inputs["versioning"] == nil)
        let container = try #require(byAddress[bucket.address])
        #expect(container.inputs["name"] == "ckpt-bucket-1" && container.inputs["storage_account"] == .string(accountName))
        #expect(container.dependsOn.contains(account.address))
        #expect(bucket.url.value.references.map(\.address) == [bucket.address])

        let node = try #require(byAddress[pool.node(1)])
        #expect(node.inputs["size"] == "Standard_ND96isr_H100_v5" && node.inputs["gpus"] == 8 && node.inputs["gpu_class"] == "H100")
        #expect(node.inputs["zones"] == ["1", "2", "3"])
        #expect(references(node.inputs["subnet"]) == ["azure_subnet.net.id"])
        #expect(node.inputs["container_image"] == nil && node.inputs["image"] == nil)
        #expect(node.inputs["pool"] == "gpu" && node.inputs["count"] == 2 && node.inputs["index"] == 1)
        #expect(node.inputs["command"] == ["train"] && node.inputs["tags"] == ["team": "ml"])
        #expect(references(node.inputs["checkpoint_url"]) == ["azure_blob_container.ckpt_Bucket-1.url"])
        #expect(references(node.inputs["env"]?.mapValue?["CKPT"]) == ["azure_blob_container.ckpt_Bucket-1.url"])
    }

    @Test func azurePlacementCarriesTheAzureLowering() {
        let placement = Placement.azure(subscription: "11111111-2222-3333-4444-555555555555", location: "westeurope", zones: ["2"])
        #expect(placement.provider == "azure" && placement.region == "westeurope" && placement.zones == ["2"])
        #expect(placement.azureSubscription == "11111111-2222-3333-4444-555555555555")
        #expect(Placement.local.azureSubscription == nil)
        #expect(Network("n", cidr: "10.0.0.0/16", on: placement).address.description == "azure_virtual_network.n")
        #expect(Bucket("b", on: placement).address.description == "azure_blob_container.b")
    }

    @Test func aNamedResourceGroupAndASubscriptionReachEveryResource() throws {
        let subscription = "11111111-2222-3333-4444-555555555555"
        let placement = Placement.azure(subscription: subscription, location: "eastus", zones: ["1"], resourceGroup: "ml-training")
        let network = Network("net", cidr: "10.1.0.0/16", on: placement)
        let stack = try evaluate([network, Bucket("data", on: placement)])
        #expect(stack.resources.allSatisfy { $0.inputs["subscription"] == .string(subscription) })
        let group = try #require(stack.resourcesByAddress[ResourceAddress(type: "azure_resource_group", name: "ml-training")])
        #expect(group.inputs["name"] == "ml-training")
        #expect(stack.resources.filter { $0.address.type == "azure_resource_group" }.count == 1)
    }

    @Test func twoLocationsHaveTwoGroupsAndOneGroupDeclaredDifferentlyIsADuplicate() throws {
        let east = Network("east", cidr: "10.1.0.0/16", on: .azure(location: "eastus"))
        let west = Network("west", cidr: "10.2.0.0/16", on: .azure(location: "westus3"))
        let stack = try evaluate([east, west])
        #expect(Set(stack.resources.filter { $0.address.type == "azure_resource_group" }.map(\.address.name)) == ["eastus", "westus3"])
        // Two placements naming the same group in different subscriptions cannot share it.
        let one = Network("a", cidr: "10.1.0.0/16", on: .azure(subscription: "11111111-2222-3333-4444-555555555555", location: "eastus"))
        let other = Network("b", cidr: "10.2.0.0/16", on: .azure(subscription: "66666666-2222-3333-4444-555555555555", location: "eastus"))
        var builder = StackContent()
        builder.append(content([one]))
        builder.append(content([other]))
        #expect(throws: ValidationError.self) { try StackEvaluator.evaluate(builder, name: "t", environment: "dev") }
    }

    @Test func aMarketplaceImageIsTheOSImage() throws {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        let pool = NodePool(
            "cpu", count: 1, machine: MachineRequest(cpus: 4, memoryGiB: 16), image: "Canonical:ubuntu-24_04-lts:server:latest", command: ["run"],
            network: network, on: Self.placement)
        let node = try #require(try evaluate([network, pool]).resourcesByAddress[pool.node(0)])
        #expect(node.inputs["image"] == "Canonical:ubuntu-24_04-lts:server:latest" && node.inputs["container_image"] == nil)
        #expect(node.inputs["size"] == "Standard_D4s_v5" && node.inputs["gpus"] == 0 && node.inputs["gpu_class"] == nil)
    }

    @Test func poolsOnAzureNeedANetworkZonesAndAKnownSize() {
        let network = Network("net", cidr: "10.0.0.0/16", on: Self.placement)
        #expect(diagnostics([NodePool("p", count: 1, command: ["x"], on: Self.placement)]).contains { $0.contains("needs a network") })
        #expect(diagnostics([NodePool("p", count: 1, command: ["x"], network: network, on: .azure(location: "eastus"))]).contains { $0.contains("needs zones") })
        let elsewhere = Network("w", cidr: "10.0.0.0/16", on: .azure(location: "westus3"))
        #expect(diagnostics([NodePool("p", count: 1, command: ["x"], network: elsewhere, on: Self.placement)]).contains { $0.contains("must be on Azure in eastus") })
        let unknown = NodePool("p", count: 1, machine: .gpu("V100", count: 3), command: ["x"], network: network, on: Self.placement)
        #expect(diagnostics([unknown]).contains { $0.contains("no Azure VM size known for 3 × V100") })
        let badZones = NodePool("p", count: 1, command: ["x"], network: network, on: .azure(location: "eastus", zones: ["eastus-1", "1", "1"]))
        let messages = diagnostics([badZones])
        #expect(messages.contains { $0.contains("'eastus-1' is not an Azure availability zone") })
        #expect(messages.contains { $0.contains("zone '1' is listed twice") })
    }

    @Test func locationsSubscriptionsAndGroupNamesAreChecked() {
        let bad = Placement.azure(subscription: "not-a-guid", location: "East US", resourceGroup: "ends-with-dot.")
        let messages = diagnostics([Network("n", cidr: "10.0.0.0/16", on: bad)])
        #expect(messages.contains { $0.contains("'not-a-guid' is not an Azure subscription id") })
        #expect(messages.contains { $0.contains("'East US' is not an Azure location name") })
        #expect(messages.contains { $0.contains("'ends-with-dot.' is not a resource group name") })
        #expect(diagnostics([Network("n", cidr: "10.0.0.0/16", on: Self.placement)]).isEmpty)
        #expect(diagnostics([Bucket("ab", on: Self.placement)]).contains { $0.contains("does not make a blob container name") })
    }
}

@Suite("Azure VM size catalog and names")
struct AzureCatalogTests {
    @Test func gpuRequestsMapToTheirSizes() {
        func size(_ request: MachineRequest) -> String? { AzureMachineCatalog.machine(for: request)?.size }
        #expect(size(.gpu("H100", count: 8)) == "Standard_ND96isr_H100_v5")
        #expect(size(.gpu("h200", count: 8)) == "Standard_ND96isr_H200_v5")
        #expect(size(.gpu("A100", count: 1)) == "Standard_NC24ads_A100_v4")
        #expect(size(.gpu("A100", count: 2)) == "Standard_NC48ads_A100_v4")
        #expect(size(.gpu("A100", count: 4)) == "Standard_NC96ads_A100_v4")
        #expect(size(.gpu("A100", count: 8)) == "Standard_ND96asr_v4")
        #expect(size(.gpu("A100-80GB", count: 8)) == "Standard_ND96amsr_A100_v4")
        #expect(size(.gpu("T4", count: 1)) == "Standard_NC4as_T4_v3")
        #expect(size(MachineRequest(gpus: 1, gpuClass: "T4", cpus: 8, memoryGiB: 32)) == "Standard_NC8as_T4_v3")
        #expect(size(.gpu("T4", count: 4)) == "Standard_NC64as_T4_v3")
        #expect(size(.gpu("H100", count: 3)) == nil)
        #expect(size(MachineRequest(gpus: 2)) == nil)
    }

    @Test func cpuRequestsGetTheSmallestDSizeThatFitsAndNamedSizesAreKept() {
        #expect(AzureMachineCatalog.machine(for: .cpu)?.size == "Standard_D2s_v5")
        #expect(AzureMachineCatalog.machine(for: MachineRequest(cpus: 6, memoryGiB: 8))?.size == "Standard_D8s_v5")
        #expect(AzureMachineCatalog.machine(for: MachineRequest(cpus: 200, memoryGiB: 8)) == nil)
        let named = AzureMachineCatalog.machine(for: MachineRequest(instanceType: "Standard_ND96isr_H100_v5"))
        #expect(named == AzureMachine(size: "Standard_ND96isr_H100_v5", gpus: 8, gpuClass: "H100"))
        #expect(AzureMachineCatalog.gpus(ofSize: "standard_nc24ads_a100_v4") == AzureMachine(size: "Standard_NC24ads_A100_v4", gpus: 1, gpuClass: "A100-80GB"))
        #expect(AzureMachineCatalog.gpus(ofSize: "Standard_ND96asr_v4")?.gpuClass == "A100")
        #expect(AzureMachineCatalog.gpus(ofSize: "Standard_D4s_v5") == nil)
        let custom = AzureMachineCatalog.machine(for: MachineRequest(gpus: 1, gpuClass: "L40S", instanceType: "Standard_Custom_1"))
        #expect(custom == AzureMachine(size: "Standard_Custom_1", gpus: 1, gpuClass: "L40S"))
    }

    @Test func derivedStorageAccountAndContainerNamesFitAzuresRules() {
        #expect(AzureNaming.storageAccountName("ckptdata") == "ckptdata")
        let long = AzureNaming.storageAccountName("stratum-checkpoints-dev")
        #expect(long.count == 24 && long.hasPrefix("stratumcheckpoin") && AzureNaming.problem(storageAccount: long) == nil)
        // Names that differ only in what is dropped still differ.
        #expect(AzureNaming.storageAccountName("data-1") != AzureNaming.storageAccountName("data1"))
        #expect(AzureNaming.storageAccountName("data-1") == AzureNaming.storageAccountName("data-1"))
        #expect(AzureNaming.problem(storageAccount: AzureNaming.storageAccountName("__")) == nil)
        #expect(AzureNaming.containerName("My__Data-") == "my-data")
        #expect(AzureNaming.containerName("x") == nil)
        #expect(AzureNaming.isMarketplaceImage("microsoft-dsvm:ubuntu-hpc:2204:latest"))
        #expect(!AzureNaming.isMarketplaceImage("ghcr.io/org/img:1") && !AzureNaming.isMarketplaceImage("ubuntu:24.04"))
    }
}

@Suite("Azure.* declarations")
struct AzureDeclarationTests {
    static let location = "eastus"

    @Test func networkingAndStorageTypesDeclareTheirContractInputs() throws {
        let group = Azure.ResourceGroup("rg", groupName: "ml-rg", location: Self.location)
        let vnet = Azure.VirtualNetwork("vnet", resourceGroup: group.id, addressSpace: ["10.8.0.0/16"], location: Self.location)
        let nsg = Azure.NetworkSecurityGroup(
            "nsg", resourceGroup: group.id,
            rules: [AzureSecurityRule("ssh", priority: 200, protocol: "Tcp", source: "203.0.113.0/24", destinationPorts: "22")], location: Self.location)
        let subnet = Azure.Subnet("sub", resourceGroup: group.id, virtualNetwork: vnet.id, cidr: "10.8.1.0/24", networkSecurityGroup: nsg.id, location: Self.location)
        let ip = Azure.PublicIP("ip", resourceGroup: group.id, zones: ["1"], location: Self.location)
        let ppg = Azure.ProximityPlacementGroup("ppg", resourceGroup: group.id, vmSizes: ["Standard_ND96isr_H100_v5"], location: Self.location)
        let account = Azure.StorageAccount("acct", resourceGroup: group.id, accountName: "stratumckpt01", location: Self.location)
        let container = Azure.BlobContainer("ckpt", resourceGroup: group.id, storageAccount: "stratumckpt01", containerName: "checkpoints", location: Self.location)
        let stack = try evaluate([group, vnet, nsg, subnet, ip, ppg, account, container.dependsOn(account)])
        let byAddress = stack.resourcesByAddress
        #expect(byAddress[group.address]?.inputs == ["name": "ml-rg"])
        #expect(byAddress[vnet.address]?.inputs["address_space"] == ["10.8.0.0/16"])
        #expect(references(byAddress[vnet.address]?.inputs["resource_group"]) == ["azure_resource_group.rg.id"])
        let rule = try #require(byAddress[nsg.address]?.inputs["rules"]?.listValue?.first?.mapValue)
        #expect(rule["destination_port_range"] == "22" && rule["protocol"] == "Tcp" && rule["source_address_prefix"] == "203.0.113.0/24")
        #expect(references(byAddress[subnet.address]?.inputs["virtual_network"]) == ["azure_virtual_network.vnet.id"])
        #expect(references(byAddress[subnet.address]?.inputs["network_security_group"]) == ["azure_network_security_group.nsg.id"])
        #expect(byAddress[ip.address]?.inputs["zones"] == ["1"])
        #expect(byAddress[ppg.address]?.inputs["vm_sizes"] == ["Standard_ND96isr_H100_v5"])
        #expect(byAddress[account.address]?.inputs["name"] == "stratumckpt01" && byAddress[account.address]?.inputs["sku"] == "Standard_LRS")
        #expect(byAddress[account.address]?.inputs["kind"] == "StorageV2")
        #expect(byAddress[container.address]?.inputs["storage_account"] == "stratumckpt01" && byAddress[container.address]?.inputs["name"] == "checkpoints")
        #expect(byAddress[container.address]?.dependsOn == [account.address])
        #expect(container.url.value.references.first?.attribute == "url")
    }

    @Test func vmsAndGroupsDeclareTheNodeContract() throws {
        let spec = Azure.VMSpec(
            size: "Standard_ND96isr_H100_v5", zones: ["2", "1"], subnet: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
            image: "microsoft-dsvm:ubuntu-hpc:2204:latest", osDiskGiB: 512, spot: true, maxPrice: -1, publicIP: true, acceleratedNetworking: false,
            proximityPlacementGroup: "ppg-id", adminUsername: "stratum", sshPublicKey: "ssh-ed25519 AAAA test", tags: ["role": "worker"],
            command: ["train"], env: ["A": "b"], containerImage: "registry.example.com/team/trainer:1.4", checkpoint: "az://acct/ckpt")
        let group = Azure.VMGroup("worker", count: 2, resourceGroup: "ml-rg", spec, location: Self.location)
        let single = Azure.VirtualMachine(
            "debug", resourceGroup: "ml-rg", Azure.VMSpec(size: "Standard_NC4as_T4_v3", zones: ["1"], subnet: "sub", userData: "#cloud-config\n"),
            vmName: "debug-vm", location: Self.location)
        let stack = try evaluate([group, single])
        let worker = try #require(stack.resourcesByAddress[group.vm(1)])
        #expect(worker.inputs["size"] == "Standard_ND96isr_H100_v5" && worker.inputs["zones"] == ["2", "1"] && worker.inputs["gpus"] == 8)
        #expect(worker.inputs["gpu_class"] == "H100" && worker.inputs["image"] == "microsoft-dsvm:ubuntu-hpc:2204:latest" && worker.inputs["os_disk_gib"] == 512)
        #expect(worker.inputs["spot"] == true && worker.inputs["max_price"] == .double(-1) && worker.inputs["public_ip"] == true)
        #expect(worker.inputs["accelerated_networking"] == false && worker.inputs["proximity_placement_group"] == "ppg-id")
        #expect(worker.inputs["admin_username"] == "stratum" && worker.inputs["ssh_public_key"] == "ssh-ed25519 AAAA test")
        #expect(worker.inputs["tags"] == ["role": "worker"] && worker.inputs["resource_group"] == "ml-rg")
        #expect(worker.inputs["pool"] == "worker" && worker.inputs["count"] == 2 && worker.inputs["index"] == 1)
        #expect(worker.inputs["command"] == ["train"] && worker.inputs["env"] == ["A": "b"] && worker.inputs["checkpoint_url"] == "az://acct/ckpt")
        #expect(worker.inputs["container_image"] == "registry.example.com/team/trainer:1.4")
        let debug = try #require(stack.resourcesByAddress[single.address])
        #expect(debug.inputs["name"] == "debug-vm" && debug.inputs["gpus"] == 1 && debug.inputs["gpu_class"] == "T4")
        #expect(debug.inputs["user_data"] == "#cloud-config\n" && debug.inputs["accelerated_networking"] == nil && debug.inputs["public_ip"] == false)
    }

    @Test func specsRulesAndNamesAreChecked() {
        let bad = Azure.VMSpec(size: "nd96", zones: [], subnet: "s", image: "ubuntu", osDiskGiB: 10, maxPrice: 0, sshPublicKey: "AAAA")
        let messages = diagnostics([Azure.VirtualMachine("v", resourceGroup: "rg", bad, vmName: "-bad", location: "eastus")])
        for expected in [
            "needs at least one availability zone", "'nd96' is not an Azure VM size", "image 'ubuntu' is not publisher:offer:sku:version",
            "outside 30...4095", "max_price applies to spot VMs only", "max_price must be above 0", "not an OpenSSH public key", "'-bad' is not an Azure resource name",
        ] {
            #expect(messages.contains { $0.contains(expected) }, "missing: \(expected) in \(messages)")
        }
        let rules = [
            AzureSecurityRule("a", priority: 100, source: "*"), AzureSecurityRule("b", priority: 100, source: "*"),
            AzureSecurityRule("c", priority: 5000, protocol: "gre", source: "*"),
        ]
        let nsgMessages = diagnostics([Azure.NetworkSecurityGroup("nsg", resourceGroup: "rg", rules: rules, location: "eastus")])
        #expect(nsgMessages.contains { $0.contains("rules 'a' and 'b' share priority 100 Inbound") })
        #expect(nsgMessages.contains { $0.contains("priority 5000 is outside 100...4096") })
        #expect(nsgMessages.contains { $0.contains("protocol 'gre'") })
        #expect(diagnostics([Azure.StorageAccount("s", resourceGroup: "rg", accountName: "Has-Dash", sku: "Cheap", location: "eastus")]).count == 2)
        #expect(diagnostics([Azure.BlobContainer("c", resourceGroup: "rg", storageAccount: "acct01", containerName: "a--b", location: "eastus")]).count == 1)
        #expect(diagnostics([Azure.VirtualNetwork("v", resourceGroup: "rg", addressSpace: ["10.0.0.0/33"], location: "eastus")]).count == 1)
        #expect(diagnostics([Azure.PublicIP("ip", resourceGroup: "rg", zones: ["4"], location: "eastus")]).count == 1)
        #expect(diagnostics([Azure.ResourceGroup("rg", location: "eastus")]).isEmpty)
    }

    /// The trainer on a VM needs the node identity, and is the VM's one workload; the identity
    /// and the archive declare their resources from a bucket on Azure.
    @Test func aTrainerSpecNeedsAnIdentityAndNoOtherWorkload() throws {
        let placement = Placement.azure(location: "eastus", zones: ["1"])
        let bucket = Bucket("ckpt", on: placement)
        let identity = Azure.NodeIdentity("node", bucket: bucket, resourceGroup: "rg", location: "eastus")
        let archive = Azure.TrainerArchive(in: bucket)
        let workload = archive.workload()
        let alone = Azure.VMSpec(size: "Standard_D4s_v5", zones: ["1"], subnet: "sub", trainer: workload)
        #expect(diagnostics([Azure.VirtualMachine("v", resourceGroup: "rg", alone, location: "eastus")]).contains { $0.contains("give it an identity (Azure.NodeIdentity)") })
        let both = Azure.VMSpec(size: "Standard_D4s_v5", zones: ["1"], subnet: "sub", command: ["train"], trainer: workload, identity: identity)
        #expect(diagnostics([Azure.VirtualMachine("v", resourceGroup: "rg", both, location: "eastus")]).contains { $0.contains("a node runs one workload") })
        let good = Azure.VMSpec(size: "Standard_D4s_v5", zones: ["1"], subnet: "sub", trainer: workload, identity: identity)
        let vm = Azure.VirtualMachine("v", resourceGroup: "rg", good, location: "eastus")
        #expect(diagnostics([bucket, identity, archive, vm]).isEmpty)
        let stack = try evaluate([bucket, identity, archive, vm])
        let node = try #require(stack.resourcesByAddress[vm.address])
        #expect(references(node.inputs["identity"]) == ["azure_node_identity.node.id"] && references(node.inputs["trainer_url"]) == ["azure_blob.trainer.url"])
        #expect(stack.resourcesByAddress[identity.address]?.inputs["resource_group"] == "rg")
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
        // The archive's bucket must be on Azure.
        let elsewhere = Bucket("aws-bucket", on: Placement(provider: "aws", region: "us-east-1"))
        #expect(diagnostics([Azure.TrainerArchive(in: elsewhere)]).contains { $0.contains("is not on Azure") })
        // The kind refuses an identity whose scope is not an ARM id, and a bad name.
        let kind = AzureNodeIdentityKind(client: try AzureProvider.offlineClient(environment: [:], transport: AsyncHTTPTransport()))
        let bad = DesiredResource(
            address: identity.address, provider: "azure", region: "eastus", inputs: ["resource_group": "rg", "scope": "ckpt", "name": "a.b"], dependsOn: [])
        let messages = kind.validate(bad).map(\.message)
        #expect(messages.contains { $0.contains("is not an ARM id") } && messages.contains { $0.contains("3-128 letters") }, "\(messages)")
    }

    @Test func aGroupReportsItsSpecsProblemsOnce() {
        let spec = Azure.VMSpec(size: "Standard_D4s_v5", zones: ["7"], subnet: "sub", tags: ["bad/key": "x"])
        let messages = diagnostics([Azure.VMGroup("g", count: 3, resourceGroup: "rg", spec, location: "eastus")])
        #expect(messages.filter { $0.contains("'7'") }.count == 1)
        #expect(messages.filter { $0.contains("tag name 'bad/key'") }.count == 1)
    }
}

@Suite("azure-gpu-cluster stack")
struct AzureGPUClusterStackTests {
    static func load(_ file: String) throws -> AzureGPUCluster.Config {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Stacks/\(file)").standardized
        return try StackConfigLoader.load(AzureGPUCluster.Config.self, from: url)
    }

    static func evaluate(_ config: AzureGPUCluster.Config) throws -> EvaluatedStack {
        try StackEvaluator.evaluate(AzureGPUCluster().body(config: config), name: AzureGPUCluster.name, environment: "x")
    }

    @Test func devIsSpotT4WorkersWithoutAPlacementGroup() throws {
        let config = try Self.load("azure-gpu-cluster.dev.yaml")
        let stack = try Self.evaluate(config)
        let workers = stack.resources.filter { $0.address.type == "azure_virtual_machine" }.sorted { $0.address < $1.address }
        #expect(workers.count == config.workers && config.workers == 2)
        #expect(workers.allSatisfy { $0.inputs["size"] == "Standard_NC4as_T4_v3" && $0.inputs["spot"] == true && $0.inputs["gpus"] == 1 })
        #expect(workers.allSatisfy { $0.inputs["zones"] == ["1", "2", "3"] && $0.inputs["proximity_placement_group"] == nil })
        #expect(workers.map { $0.inputs["index"] } == [0, 1])
        #expect(!stack.resources.contains { $0.address.type == "azure_proximity_placement_group" })
    }

    /// Needs the kinds' schemas (`azure_*` kinds registered in `AzureProvider`).
    @Test func devValidatesAgainstTheProvidersSchemas() throws {
        let stack = try Self.evaluate(try Self.load("azure-gpu-cluster.dev.yaml"))
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func prodIsH100WorkersPackedByAProximityPlacementGroup() throws {
        let config = try Self.load("azure-gpu-cluster.prod.yaml")
        let stack = try Self.evaluate(config)
        #expect(Set(stack.resources.map(\.address.type)) == [
            "azure_resource_group", "azure_virtual_network", "azure_subnet", "azure_network_security_group", "azure_storage_account", "azure_blob_container",
            "azure_proximity_placement_group", "azure_virtual_machine", "azure_node_identity", "azure_blob",
        ])
        let workers = stack.resources.filter { $0.address.type == "azure_virtual_machine" }
        #expect(workers.count == 8)
        let worker = try #require(workers.first)
        #expect(worker.inputs["size"] == "Standard_ND96isr_H100_v5" && worker.inputs["gpus"] == 8 && worker.inputs["spot"] == false)
        #expect(worker.inputs["os_disk_gib"] == 1000 && worker.inputs["zones"] == ["1"])
        #expect(references(worker.inputs["proximity_placement_group"]) == ["azure_proximity_placement_group.azure-gpu-cluster-workers.id"])
        #expect(references(worker.inputs["subnet"]) == ["azure_subnet.cluster.id"])
        #expect(references(worker.inputs["resource_group"]) == ["azure_resource_group.eastus.id"])
        // The trainer wiring: the bundled trainer's archive in the container, fetched with the
        // node identity, DiLoCo from the node contract, checkpoints in the container; no image.
        #expect(references(worker.inputs["checkpoint_url"]) == ["azure_blob_container.stratum-checkpoints-prod.url"])
        #expect(references(worker.inputs["trainer_url"]) == ["azure_blob.trainer.url"])
        #expect(worker.inputs["trainer_sha256"] == .string(TrainerArchive.bundled.sha256))
        #expect(worker.inputs["trainer_arguments"] == .list(TrainerRun.dilocoArguments.map(Value.string)))
        #expect(worker.inputs["trainer_config"] == .string(TrainerRun.defaultConfig))
        #expect(references(worker.inputs["identity"]) == ["azure_node_identity.azure-gpu-cluster-node.id"])
        #expect(references(worker.inputs["identity_client_id"]) == ["azure_node_identity.azure-gpu-cluster-node.client_id"])
        #expect(worker.inputs["container_image"] == nil && worker.inputs["command"] == nil && worker.inputs["env"] == nil)
        let identity = try #require(stack.resourcesByAddress[ResourceAddress(type: "azure_node_identity", name: "azure-gpu-cluster-node")])
        #expect(references(identity.inputs["scope"]) == ["azure_blob_container.stratum-checkpoints-prod.id"])
        let archive = try #require(stack.resourcesByAddress[ResourceAddress(type: "azure_blob", name: "trainer")])
        #expect(references(archive.inputs["container"]) == ["azure_blob_container.stratum-checkpoints-prod.id"])
        #expect(archive.inputs["key"] == .string(TrainerArchive.bundled.objectKey) && archive.inputs["source"] == "stratum:trainer")
        #expect(stack.resources.first { $0.address.type == "azure_proximity_placement_group" }?.inputs["vm_sizes"] == ["Standard_ND96isr_H100_v5"])
    }

    /// Needs the kinds' schemas (`azure_*` kinds registered in `AzureProvider`).
    @Test func prodValidatesAgainstTheProvidersSchemas() throws {
        let stack = try Self.evaluate(try Self.load("azure-gpu-cluster.prod.yaml"))
        try Planner(providers: ProviderRegistry([schemaProvider()])).validate(stack)
    }

    @Test func defaultsAreH100sInAGroupAndConfigProblemsAreNamed() throws {
        let defaults = AzureGPUCluster.Config()
        #expect(defaults.size == "Standard_ND96isr_H100_v5" && defaults.proximityPlacementGroup)
        #expect(defaults.problems().isEmpty)
        var config = defaults
        config.zones = []
        config.osDiskGib = 5
        let fields = config.problems().map(\.key)
        #expect(fields.contains("zones") && fields.contains("os_disk_gib"))
        config = defaults
        config.zones = ["1", "2"]
        #expect(config.problems().map(\.key) == ["proximity_placement_group"])
        config.proximityPlacementGroup = false
        #expect(config.problems().isEmpty)
        config = defaults
        config.subscription = "11111111-2222-3333-4444-555555555555"
        config.resourceGroup = "ml"
        let stack = try Self.evaluate(config)
        // The archive's blob is in its container's subscription (the container's id says it).
        #expect(stack.resources.allSatisfy { $0.address.type == "azure_blob" || $0.inputs["subscription"] == "11111111-2222-3333-4444-555555555555" })
        #expect(stack.resourcesByAddress[ResourceAddress(type: "azure_resource_group", name: "ml")]?.inputs["name"] == "ml")
        #expect(BundledStacks.all.contains { $0.name == AzureGPUCluster.name })
    }
}

@Suite("Azure: a GPU cluster where placement put it")
struct AzureClusterLoweringTests {
    @Test func aGPUClusterLandsAsANetworkAndAGangOfVMsInTheDecidedZone() throws {
        let landing = Landing(
            cloud: "azure", region: "eastus", zone: "2", instanceType: "Standard_ND96isr_H100_v5", machines: 2, gpusPerMachine: 8, spot: false, hourly: 196)
        let decision = PlacementDecision(request: "r", landing: landing, runnersUp: [], reason: "test")
        let cluster = GPUCluster("train", gpu: .h100, count: 16, clouds: [.azure(location: "eastus", zones: ["1", "2", "3"])], command: ["true"])
        let stack = try ClusterDecisions.$current.withValue(["train": decision]) { try evaluate([cluster]) }
        let vms = stack.resources.filter { $0.address.type == "azure_virtual_machine" }
        #expect(vms.count == 2)
        #expect(vms.allSatisfy { $0.inputs["size"] == "Standard_ND96isr_H100_v5" && $0.inputs["zones"] == .list(["2"]) && $0.inputs["spot"] == nil })
        // The gang shares a proximity placement group.
        let proximity = ResourceAddress(type: "azure_proximity_placement_group", name: "train")
        #expect(stack.resources.contains { $0.address == proximity })
        #expect(vms.allSatisfy { $0.inputs["proximity_placement_group"] == .reference(AttributeReference(address: proximity, attribute: "id")) })
        try Planner(providers: ProviderRegistry([schemaProvider(), StratumBuiltinProvider()])).validate(stack)
    }
}
