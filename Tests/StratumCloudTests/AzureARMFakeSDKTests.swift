import Foundation
import StratumCore
import StratumTesting
import Testing

/// The ARM fake driven by Azure's own Python management clients (azure-mgmt-resource, -network,
/// -compute, -storage): their long-running-operation pollers, pagers and models must accept what
/// the fake answers, as they accept ARM's.
@Suite("The ARM fake through Azure's Python SDK", .timeLimit(.minutes(3)))
struct AzureARMFakeSDKTests {
    @Test func theSDKsCreateListAndDeleteAGPUNodeThroughTheFake() async throws {
        let fake = try AzureARMFake(subscription: AzureBodies.subscription, pace: .afterPolls(2))
        await fake.set(retryAfter: 0)
        await fake.set(pageSize: 2)
        await fake.set(allocationFailures: ["2": "ZonalAllocationFailed"])
        let server = try await fake.serve()
        let directory = try TestSupport.temporaryDirectory("stratum-arm-sdk")
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("drive_arm.py")
        try Data(Self.script.utf8).write(to: script)
        let out = directory.appendingPathComponent("stdout.txt"), err = directory.appendingPathComponent("stderr.txt")
        try Data().write(to: out)
        try Data().write(to: err)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, server.url.absoluteString, AzureBodies.subscription]
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        await server.shutdown()
        let stderr = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(stderr)")
        let seen = try JSONDecoder().decode(Value.self, from: Data(contentsOf: out)).mapValue ?? [:]
        #expect(seen["group"] == "Succeeded")
        #expect(seen["groupsTagged"] == ["rg"])
        #expect(seen["vnet"] == ["Succeeded", ["workers"]])
        #expect(seen["nsg"] == ["ssh"])
        // Three addresses over pages of two: the SDK's pager followed nextLink.
        #expect(seen["publicIPs"] == ["ip-0", "ip-1", "ip-2"])
        #expect(seen["nic"] == [true, true])
        #expect(seen["ppg"] == "ppg")
        #expect(seen["stockout"] == "ZonalAllocationFailed")
        #expect(seen["vm"] == ["Succeeded", "Standard_ND96isr_H100_v5", "Spot", ["1"], true])
        #expect(seen["vmsTagged"] == ["node-0", "stocked-out"])
        #expect(seen["storage"] == ["Succeeded", "https://stratumckpt.blob.core.windows.net/"])
        #expect(seen["container"] == "checkpoints")
        #expect(seen["vmAfterDelete"] == 404)
        #expect(seen["groupsLeft"] == [])
        #expect(await fake.violations == [])
        let calls = await fake.calls
        #expect(calls["GET operation", default: 0] > 0 && calls["GET operationResult", default: 0] > 0)
    }

    /// Arguments: the fake's URL and the subscription; prints what the clients saw as JSON.
    static let script = #"""
"""Drives the ARM fake with Azure's own Python management clients; prints what they saw as JSON."""
import json, sys
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient

base, subscription = sys.argv[1], sys.argv[2]

class Credential:
    def get_token(self, *scopes, **kwargs):
        raise AssertionError("no token is asked for: the fake takes none")

options = dict(base_url=base, authentication_policy=SansIOHTTPPolicy(), polling_interval=0, retry_total=0)
resources = ResourceManagementClient(Credential(), subscription, **options)
network = NetworkManagementClient(Credential(), subscription, **options)
compute = ComputeManagementClient(Credential(), subscription, **options)
storage = StorageManagementClient(Credential(), subscription, **options)
seen = {}
prefix = f"/subscriptions/{subscription}/resourceGroups/rg/providers"

group = resources.resource_groups.create_or_update("rg", {"location": "eastus", "tags": {"stratum-stack": "sdk"}})
seen["group"] = group.properties.provisioning_state
seen["groupsTagged"] = [g.name for g in resources.resource_groups.list(filter="tagName eq 'stratum-stack' and tagValue eq 'sdk'")]

vnet = network.virtual_networks.begin_create_or_update("rg", "net", {
    "location": "eastus",
    "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                   "subnets": [{"name": "workers", "properties": {"addressPrefix": "10.0.0.0/20"}}]},
}).result()
seen["vnet"] = [vnet.provisioning_state, [s.name for s in vnet.subnets]]
nsg = network.network_security_groups.begin_create_or_update("rg", "nsg", {
    "location": "eastus",
    "properties": {"securityRules": [{"name": "ssh", "properties": {
        "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*", "access": "Allow", "priority": 100, "direction": "Inbound"}}]},
}).result()
seen["nsg"] = [r.name for r in nsg.security_rules]
for index in range(3):
    network.public_ip_addresses.begin_create_or_update("rg", f"ip-{index}", {
        "location": "eastus", "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Static"}, "tags": {"stratum-stack": "sdk"}}).result()
seen["publicIPs"] = sorted(ip.name for ip in network.public_ip_addresses.list_all())
nic = network.network_interfaces.begin_create_or_update("rg", "nic", {
    "location": "eastus",
    "properties": {"enableAcceleratedNetworking": True, "ipConfigurations": [{"name": "ipconfig1", "properties": {
        "subnet": {"id": f"{prefix}/Microsoft.Network/virtualNetworks/net/subnets/workers"},
        "publicIPAddress": {"id": f"{prefix}/Microsoft.Network/publicIPAddresses/ip-0"}}}]},
}).result()
seen["nic"] = [nic.enable_accelerated_networking, nic.ip_configurations[0].private_ip_address is not None]
ppg = compute.proximity_placement_groups.create_or_update("rg", "ppg", {"location": "eastus", "properties": {"proximityPlacementGroupType": "Standard"}})
seen["ppg"] = ppg.name

def vm(zone):
    return {
        "location": "eastus", "zones": [zone], "identity": {"type": "SystemAssigned"}, "tags": {"stratum-stack": "sdk"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_ND96isr_H100_v5"},
            "priority": "Spot", "evictionPolicy": "Delete", "billingProfile": {"maxPrice": -1},
            "storageProfile": {"imageReference": {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"},
                               "osDisk": {"createOption": "FromImage", "diskSizeGB": 256}},
            "osProfile": {"computerName": "node", "adminUsername": "stratum", "customData": "IyEvYmluL3NoCg==",
                          "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                              {"path": "/home/stratum/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA"}]}}},
            "networkProfile": {"networkInterfaces": [{"id": f"{prefix}/Microsoft.Network/networkInterfaces/nic"}]},
            "proximityPlacementGroup": {"id": f"{prefix}/Microsoft.Compute/proximityPlacementGroups/ppg"},
        },
    }

try:
    compute.virtual_machines.begin_create_or_update("rg", "stocked-out", vm("2")).result()
    seen["stockout"] = "created"
except HttpResponseError as error:
    seen["stockout"] = error.error.code if error.error else str(error)
made = compute.virtual_machines.begin_create_or_update("rg", "node-0", vm("1")).result()
seen["vm"] = [made.provisioning_state, made.hardware_profile.vm_size, made.priority, made.zones, made.identity.principal_id is not None]
seen["vmsTagged"] = sorted(r.name for r in resources.resources.list_by_resource_group(
    "rg", filter="resourceType eq 'Microsoft.Compute/virtualMachines'"))

account = storage.storage_accounts.begin_create("rg", "stratumckpt", {
    "location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "properties": {"minimumTlsVersion": "TLS1_2"}}).result()
seen["storage"] = [account.provisioning_state, account.primary_endpoints.blob]
container = storage.blob_containers.create("rg", "stratumckpt", "checkpoints", {"properties": {"publicAccess": "None"}})
seen["container"] = container.name

compute.virtual_machines.begin_delete("rg", "node-0").result()
compute.virtual_machines.begin_delete("rg", "stocked-out").result()
try:
    compute.virtual_machines.get("rg", "node-0")
    seen["vmAfterDelete"] = "present"
except HttpResponseError as error:
    seen["vmAfterDelete"] = error.status_code
resources.resource_groups.begin_delete("rg").result()
seen["groupsLeft"] = [g.name for g in resources.resource_groups.list()]
json.dump(seen, sys.stdout, sort_keys=True)
"""#
}
