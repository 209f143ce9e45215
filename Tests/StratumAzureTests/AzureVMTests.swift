import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

/// The ARM fake served on loopback (every request recorded on the way in, since ARM never
/// answers a VM's `customData`), a provider whose client points at it on a virtual clock, and
/// a resource group with a network, a subnet and a proximity placement group for VMs to use.
struct AzureVMWorld {
    static let region = "eastus"
    static let group = "stratum-vms"
    static let zones: [Value] = ["1", "2", "3"]
    static let subscription = "00000000-0000-4000-8000-00000000a2e0"

    let fake: AzureARMFake
    let server: LoopbackHTTPServer
    let received: RecordedRequests
    let provider: AzureProvider
    let client: AzureClient

    static func make(pace: AzureARMFake.OperationPace = .afterPolls(2)) async throws -> AzureVMWorld {
        let fake = try AzureARMFake(subscription: subscription, pace: pace)
        let received = RecordedRequests()
        let server = try await LoopbackHTTPServer.start { request in
            received.append(request)
            return await fake.handle(request)
        }
        let clock = VirtualClock().clock
        let tokens = BearerTokenCache(clock: clock) { BearerToken(value: "arm-token", lifetime: .seconds(3600)) }
        let credentials = AzureCredentials(source: .managedIdentity(clientId: nil), subscription: subscription, tokens: tokens)
        let poller = OperationPoller(timeout: .seconds(600), backoff: Backoff(base: .milliseconds(5), cap: .milliseconds(20)), clock: clock)
        let client = try AzureClient(
            configuration: AzureClient.Configuration(endpoints: AzureEndpoints(resourceManager: server.url), operationPoller: poller),
            credentials: credentials, transport: AsyncHTTPTransport(), clock: clock)
        let world = AzureVMWorld(fake: fake, server: server, received: received, provider: AzureProvider(client: client), client: client)
        try await world.network()
        return world
    }

    /// Runs `body` on a fresh world; afterwards the fake must have seen nothing ARM would refuse.
    static func run(pace: AzureARMFake.OperationPace = .afterPolls(2), _ body: (AzureVMWorld) async throws -> Void) async throws {
        let world = try await make(pace: pace)
        do {
            try await body(world)
        } catch {
            await world.server.shutdown()
            throw error
        }
        let violations = await world.fake.violations
        await world.server.shutdown()
        #expect(violations.isEmpty, "\(violations)")
    }

    func put(_ path: String, _ body: CloudJSON) async throws {
        let answer = try await client.put(path, body: body, action: "setup")
        _ = try await client.finish(answer, action: "setup")
    }

    /// The resource group, network, subnet and placement group, made through the client.
    func network() async throws {
        try await put(client.resourceGroup(Self.group), ["location": .string(Self.region)])
        try await put(
            client.resourceGroup(Self.group, "Microsoft.Network/virtualNetworks/net"),
            ["location": .string(Self.region), "properties": ["addressSpace": ["addressPrefixes": ["10.0.0.0/16"]]]])
        try await put(subnet, ["properties": ["addressPrefix": "10.0.0.0/20"]])
        try await put(placementGroup, ["location": .string(Self.region), "properties": ["proximityPlacementGroupType": "Standard"]])
    }

    var subnet: String { client.resourceGroup(Self.group, "Microsoft.Network/virtualNetworks/net/subnets/nodes") }
    var placementGroup: String { client.resourceGroup(Self.group, "Microsoft.Compute/proximityPlacementGroups/gang") }

    static func vm(_ name: String, _ inputs: [String: Value] = [:], world: AzureVMWorld, lineage: String = "lineage-0001") -> ResolvedResource {
        var all: [String: Value] = [
            "resource_group": .string(group), "size": "Standard_D4s_v5", "zones": .list(zones), "subnet": .string(world.subnet), "name": .string(name),
        ]
        all.merge(inputs) { $1 }
        return ResolvedResource(
            address: ResourceAddress(type: "azure_virtual_machine", name: name), region: region, inputs: all, dependencies: [],
            ownership: Ownership(stack: "demo/dev", lineage: lineage))
    }

    func ids(_ type: String) async -> [String] { await fake.ids(ofType: type) }

    /// The last PUT body sent to a path.
    func sentBody(_ path: String) throws -> CloudJSON {
        let request = try #require(received.all.last { $0.method == "PUT" && pathOf($0).lowercased() == path.lowercased() })
        return try #require(CloudJSON.parse(request.body))
    }

    func calls(_ operation: String) async -> Int { await fake.calls[operation] ?? 0 }
}

@Suite("ProviderContractTests: Azure virtual machines on the ARM fake", .timeLimit(.minutes(3)))
struct AzureVMContractTests {
    @Test func virtualMachineContract() async throws {
        try await AzureVMWorld.run { world in
            let subnet = world.subnet
            try await ProviderContractTests(.init(
                provider: world.provider, type: "azure_virtual_machine", region: AzureVMWorld.region,
                inputs: { [
                    "name": .string("vm-\($0)"), "resource_group": .string(AzureVMWorld.group), "size": "Standard_NC4as_T4_v3",
                    "zones": .list(AzureVMWorld.zones), "subnet": .string(subnet), "public_ip": true,
                ] })).all()
            #expect(await world.ids(AzureVirtualMachineKind.vmType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.ipType).isEmpty)
        }
    }
}

@Suite("Azure virtual machines on the ARM fake", .timeLimit(.minutes(3)))
struct AzureVMTests {
    /// An ND H100 v5 node: its size, image, OS disk, identity, ownership tags, its NIC with
    /// accelerated networking and a public IP, the placement group, and customData that decodes
    /// to the node boot script with the node contract.
    @Test func anNDH100NodeCarriesItsBootScriptAndOwnership() async throws {
        try await AzureVMWorld.run { world in
            let node = AzureVMWorld.vm("worker-0", [
                "size": "Standard_ND96isr_H100_v5", "os_disk_gib": 512, "public_ip": true, "proximity_placement_group": .string(world.placementGroup),
                "tags": ["team": "ml"], "command": ["python", "train.py"], "env": ["MODE": "train"], "pool": "trainer", "index": 2, "count": 4,
                "checkpoint_url": "az://ckpts/run", "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxk stratum@test",
            ], world: world)
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(node, token: token)
            let paths = AzureVirtualMachineKind.Paths(client: world.client, group: AzureVMWorld.group, name: "worker-0")
            #expect(state.id.lowercased() == paths.vm.lowercased())
            #expect(state.attributes["zone"] == "1")
            #expect(state.attributes["status"] == "Succeeded")
            #expect(state.attributes["private_ip"]?.stringValue?.hasPrefix("10.") == true)
            #expect(state.attributes["public_ip_address"]?.stringValue?.isEmpty == false)
            #expect(state.attributes["principal_id"]?.stringValue?.isEmpty == false)

            let body = try world.sentBody(paths.vm)
            #expect(body["location"]?.string == "eastus")
            #expect(body["zones"] == ["1"])
            #expect(body["identity"]?["type"]?.string == "SystemAssigned")
            let tags = try #require(body["tags"]?.object)
            #expect(tags["stratum-token"]?.string == token)
            #expect(tags["stratum-lineage"]?.string == "lineage-0001")
            #expect(tags["stratum-stack"]?.string == "demo/dev")
            #expect(tags["stratum-address"]?.string == "azure_virtual_machine.worker-0")
            #expect(tags["team"]?.string == "ml")
            let properties = try #require(body["properties"])
            #expect(properties["hardwareProfile"]?["vmSize"]?.string == "Standard_ND96isr_H100_v5")
            #expect(properties["storageProfile"]?["imageReference"] == ["publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"])
            #expect(properties["storageProfile"]?["osDisk"]?["diskSizeGB"]?.number == 512)
            #expect(properties["storageProfile"]?["osDisk"]?["deleteOption"]?.string == "Delete")
            #expect(properties["priority"] == nil)
            #expect(properties["proximityPlacementGroup"]?["id"]?.string == world.placementGroup)
            #expect(properties["networkProfile"]?["networkInterfaces"]?.array.first?["id"]?.string == paths.nic)
            let ssh = properties["osProfile"]?["linuxConfiguration"]?["ssh"]?["publicKeys"]?.array.first
            #expect(ssh?["keyData"]?.string == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxk stratum@test")
            #expect(ssh?["path"]?.string == "/home/stratum/.ssh/authorized_keys")

            let encoded = try #require(properties["osProfile"]?["customData"]?.string)
            let setup = try NodeSetupDocument(base64: encoded)
            let env = setup.environment
            #expect(env["STRATUM_NODE_INDEX"] == "2" && env["STRATUM_NODE_COUNT"] == "4" && env["STRATUM_NODE_NAME"] == "trainer-2")
            #expect(env["STRATUM_CLOUD"] == "azure" && env["STRATUM_REGION"] == "eastus" && env["STRATUM_CHECKPOINT_URL"] == "az://ckpts/run")
            #expect(env["MODE"] == "train")
            #expect(setup.bootEnv.contains("${AZURE_POD_IDENTITY_AUTHORITY_HOST:-http://169.254.169.254}/metadata/instance/compute/zone"))
            #expect(setup.workload.hasSuffix("exec 'python' 'train.py'\n"))
            // ND H100 v5: NVSwitch and InfiniBand.
            let gpu = try #require(setup.files["/usr/local/lib/stratum/gpu-setup.sh"])
            #expect(gpu.contains("nvidia-fabricmanager") && gpu.contains("rdma-core"))

            let nic = try world.sentBody(paths.nic)
            #expect(nic["properties"]?["enableAcceleratedNetworking"] == true)
            let configuration = nic["properties"]?["ipConfigurations"]?.array.first?["properties"]
            #expect(configuration?["subnet"]?["id"]?.string == world.subnet)
            #expect(configuration?["publicIPAddress"]?["id"]?.string == paths.ip)
            #expect(try world.sentBody(paths.ip)["sku"]?["name"]?.string == "Standard")
            // The create's handle went to the journal before the wait: recorded by the engine's
            // context, and the deletion takes the NIC and IP with the VM.
            try await world.provider.delete(state)
            #expect(await world.ids(AzureVirtualMachineKind.vmType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.ipType).isEmpty)
        }
    }

    /// A spot VM: priority Spot, evicted by deletion, at most `max_price` (or -1: the on-demand
    /// price); without `ssh_public_key` it gets a key nobody holds, and a retry keeps that key.
    @Test func spotFieldsAndNoLoginKey() async throws {
        try await AzureVMWorld.run { world in
            let spot = AzureVMWorld.vm("spot-0", ["spot": true, "max_price": 1.25, "size": "Standard_NC4as_T4_v3"], world: world)
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(spot, token: token)
            let body = try world.sentBody(state.id)
            #expect(body["properties"]?["priority"]?.string == "Spot")
            #expect(body["properties"]?["evictionPolicy"]?.string == "Delete")
            #expect(body["properties"]?["billingProfile"]?["maxPrice"]?.number == 1.25)
            let key = try #require(body["properties"]?["osProfile"]?["linuxConfiguration"]?["ssh"]?["publicKeys"]?.array.first?["keyData"]?.string)
            #expect(key.hasPrefix("ssh-ed25519 ") && key.hasSuffix(" stratum-no-login"))
            // A retried create with the same token answers the same VM and sends no new key.
            let again = try await world.provider.create(spot, token: token)
            #expect(again.id == state.id)
            #expect(try world.sentBody(state.id)["properties"]?["osProfile"]?["linuxConfiguration"]?["ssh"]?["publicKeys"]?.array.first?["keyData"]?.string == key)

            let unpriced = try await world.provider.create(AzureVMWorld.vm("spot-1", ["spot": true], world: world), token: UUID().uuidString.lowercased())
            #expect(try world.sentBody(unpriced.id)["properties"]?["billingProfile"]?["maxPrice"]?.number == -1)
            // The D-series takes accelerated networking by default; the A series cannot.
            #expect(try world.sentBody(AzureVirtualMachineKind.Paths(client: world.client, group: AzureVMWorld.group, name: "spot-1").nic)["properties"]?[
                "enableAcceleratedNetworking"] == true)
            #expect(!AzureVMInputs.supportsAcceleratedNetworking("Standard_A2_v2"))
        }
    }

    /// ZonalAllocationFailed in zone 1: the failed VM is deleted and the VM is made in zone 2
    /// on the same NIC; nothing else is left.
    @Test func zonalAllocationFailureMovesToTheNextZone() async throws {
        try await AzureVMWorld.run { world in
            await world.fake.set(allocationFailures: ["1": "ZonalAllocationFailed"])
            let state = try await world.provider.create(AzureVMWorld.vm("moved", ["size": "Standard_ND96isr_H100_v5"], world: world), token: UUID().uuidString.lowercased())
            #expect(state.attributes["zone"] == "2")
            #expect(await world.ids(AzureVirtualMachineKind.vmType).count == 1)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).count == 1)
            #expect(await world.calls("PUT Microsoft.Network/networkInterfaces") == 1)
            #expect(await world.calls("DELETE Microsoft.Compute/virtualMachines") == 1)
            #expect(await world.fake.injected["allocation"] == 1)

            // SkuNotAvailable refuses the PUT itself in zone 1 and 2: zone 3.
            await world.fake.set(allocationFailures: ["1": "SkuNotAvailable", "2": "OverconstrainedZonalAllocationRequest"])
            let third = try await world.provider.create(AzureVMWorld.vm("third", [:], world: world), token: UUID().uuidString.lowercased())
            #expect(third.attributes["zone"] == "3")
        }
    }

    /// Every zone out: a capacity error scoped to the region, and neither VM nor NIC nor IP left.
    @Test func allZonesOutIsCapacityForTheRegion() async throws {
        try await AzureVMWorld.run { world in
            await world.fake.set(allocationFailures: ["1": "ZonalAllocationFailed", "2": "AllocationFailed", "3": "SkuNotAvailable"])
            let node = AzureVMWorld.vm("nowhere", ["size": "Standard_ND96isr_H100_v5", "public_ip": true], world: world)
            do {
                _ = try await world.provider.create(node, token: UUID().uuidString.lowercased())
                Issue.record("a create with every zone out succeeded")
            } catch let error as ProviderError {
                #expect(error.kind == .capacity)
                #expect(error.scope == .region("eastus"))
                #expect(error.message.contains("Standard_ND96isr_H100_v5"))
            }
            #expect(await world.ids(AzureVirtualMachineKind.vmType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.ipType).isEmpty)
        }
    }

    /// A core quota refusal ends the create: its NIC and public IP are deleted, not left for a
    /// retry that would fail the same way.
    @Test func aCreateThatWillNotSucceedLeavesNothing() async throws {
        try await AzureVMWorld.run { world in
            await world.fake.inject(.quotaExceeded(family: "standardNCADSH100v5Family"), into: "PUT Microsoft.Compute/virtualMachines")
            let node = AzureVMWorld.vm("over-quota", ["size": "Standard_ND96isr_H100_v5", "public_ip": true], world: world)
            let error = await #expect(throws: ProviderError.self) { _ = try await world.provider.create(node, token: UUID().uuidString.lowercased()) }
            #expect(error?.kind == .quota)
            #expect(await world.calls("PUT Microsoft.Network/networkInterfaces") == 1)
            #expect(await world.ids(AzureVirtualMachineKind.vmType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.ipType).isEmpty)
        }
    }

    /// Calls refused as throttled are sent again by the client: one create attempt lands the
    /// VM, with each refused call repeated and nothing made twice.
    @Test func throttledCallsDoNotCostTheCreate() async throws {
        try await AzureVMWorld.run { world in
            await world.fake.inject(.throttled(retryAfter: 3), into: "PUT Microsoft.Network/networkInterfaces", times: 2)
            await world.fake.inject(.throttled(retryAfter: 3), into: "PUT Microsoft.Compute/virtualMachines", times: 3)
            let node = AzureVMWorld.vm("busy", [:], world: world)
            let made = try await world.provider.create(node, token: UUID().uuidString.lowercased())
            #expect(made.attributes["status"] == "Succeeded")
            #expect(await world.fake.injected["throttled"] == 5)
            #expect(await world.ids(AzureVirtualMachineKind.vmType).count == 1)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).count == 1)
        }
    }

    /// The VM PUT took effect but its answer was lost: the engine's retry (same token) answers
    /// the one VM, and recovery by token finds it; another token finds nothing.
    @Test func aLostPutAnswerIsRecovered() async throws {
        try await AzureVMWorld.run { world in
            await world.fake.inject(.lostResponse, into: "PUT Microsoft.Compute/virtualMachines")
            let node = AzureVMWorld.vm("lost", [:], world: world)
            let token = UUID().uuidString.lowercased()
            await #expect(throws: ProviderError.self) { _ = try await world.provider.create(node, token: token) }
            #expect(await world.fake.injected["lostResponse"] == 1)
            #expect(await world.ids(AzureVirtualMachineKind.vmType).count == 1)
            let recovered = try #require(try await world.provider.recover(PendingOperation(creating: node, provider: "azure", token: token)))
            let retried = try await world.provider.create(node, token: token)
            #expect(retried.id == recovered.id)
            #expect(await world.ids(AzureVirtualMachineKind.vmType).count == 1)
            #expect(try await world.provider.recover(PendingOperation(creating: node, provider: "azure", token: UUID().uuidString.lowercased())) == nil)
        }
    }

    /// A create interrupted right after its VM operation's handle reached the journal: recovery
    /// resumes that operation (polling its URL) and adopts the VM.
    @Test func anInterruptedCreateIsRecoveredFromItsJournaledHandle() async throws {
        struct Interrupted: Error {}
        try await AzureVMWorld.run(pace: .afterPolls(3)) { world in
            let node = AzureVMWorld.vm("interrupted", ["size": "Standard_ND96isr_H100_v5"], world: world)
            let token = UUID().uuidString.lowercased()
            let journal = LockedValue([String]())
            let context = OperationContext(token: token) { handle in
                journal.update { $0.append(handle) }
                throw Interrupted()
            }
            await #expect(throws: Interrupted.self) { _ = try await world.provider.create(node, context: context) }
            let handle = try #require(journal.get().last)
            #expect(AzureOperation(handle: handle)?.style == .asyncOperation)
            #expect(await world.fake.operationStatuses().values.contains("InProgress"))
            let polledBefore = await world.calls("GET operation")

            var pending = PendingOperation(creating: node, provider: "azure", token: token)
            pending.handle = handle
            let recovered = try #require(try await world.provider.recover(pending))
            #expect(recovered.attributes["status"] == "Succeeded")
            #expect(await world.calls("GET operation") > polledBefore)
            #expect(!(await world.fake.operationStatuses().values.contains("InProgress")))
            #expect(await world.ids(AzureVirtualMachineKind.vmType) == [recovered.id])
        }
    }

    /// `tags` change in place by PATCH, keeping Stratum's ownership tags; the VM stays.
    @Test func tagsChangeInPlace() async throws {
        try await AzureVMWorld.run { world in
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(AzureVMWorld.vm("tagged", ["tags": ["team": "a"]], world: world), token: token)
            let desired = AzureVMWorld.vm("tagged", ["tags": ["team": "b", "cost": "gpu"]], world: world)
            let updated = try await world.provider.update(state, to: desired)
            #expect(updated.id == state.id)
            #expect(await world.calls("PATCH Microsoft.Compute/virtualMachines") == 1)
            #expect(await world.calls("PUT Microsoft.Compute/virtualMachines") == 1)
            let live = try #require(await world.fake.resource(state.id)?.mapValue?["tags"]?.mapValue)
            #expect(live["team"] == "b")
            #expect(live["cost"] == "gpu")
            #expect(live["stratum-token"] == .string(token))
            let read = try await world.provider.read(type: "azure_virtual_machine", resources: [updated])
            #expect(read.first??.attributes["tags"] == ["team": "b", "cost": "gpu"])
            // Changed outside Stratum: refresh shows it.
            try await world.put(state.id, try world.sentBody(state.id))
            let drifted = try await world.provider.read(type: "azure_virtual_machine", resources: [updated])
            #expect(drifted.first??.attributes["tags"] == ["team": "a"])
        }
    }

    /// 40 VMs in a resource group refresh with one paginated list of VMs and one of NICs (10
    /// per page: 39 VMs left after one is deleted out of band and 40 NICs are 4 + 4 calls),
    /// never a GET per VM; the deleted one reads as gone.
    @Test func refreshOfManyVMsTakesAHandfulOfCalls() async throws {
        try await AzureVMWorld.run { world in
            await world.fake.set(pageSize: 10)
            var states: [ResourceState] = []
            for index in 0..<40 {
                states.append(try await world.provider.create(AzureVMWorld.vm("many-\(index)", [:], world: world), token: UUID().uuidString.lowercased()))
            }
            await world.fake.deleteOutOfBand(states[7].id)
            let before = await world.fake.calls
            let live = try await world.provider.read(type: "azure_virtual_machine", resources: states)
            let after = await world.fake.calls
            let sent = after.reduce(0) { $0 + $1.value } - before.reduce(0) { $0 + $1.value }
            #expect(sent == 8)
            #expect((after["GET Microsoft.Compute/virtualMachines"] ?? 0) - (before["GET Microsoft.Compute/virtualMachines"] ?? 0) == 4)
            #expect(live.count == 40)
            #expect(live[7] == nil)
            #expect(live.enumerated().allSatisfy { $0.offset == 7 || $0.element?.id == states[$0.offset].id })
            #expect(live[3]?.attributes["private_ip"]?.stringValue?.hasPrefix("10.") == true)
        }
    }

    /// Inputs Azure would refuse are diagnosed before any call.
    @Test func badInputsAreDiagnosed() throws {
        let kind = AzureVirtualMachineKind(client: try AzureClient(
            configuration: .init(), credentials: AzureCredentials(source: .managedIdentity(clientId: nil), subscription: "s",
                tokens: BearerTokenCache(clock: VirtualClock().clock) { BearerToken(value: "t", lifetime: .seconds(60)) }),
            transport: AsyncHTTPTransport()))
        let resource = DesiredResource(
            address: ResourceAddress(type: "azure_virtual_machine", name: "bad"), provider: "azure", region: "eastus",
            inputs: ["name": "-bad-", "image": "ubuntu", "os_disk_gib": 10, "max_price": 2, "tags": ["stratum-x": "y"]])
        let messages = kind.validate(resource).map(\.message)
        #expect(messages.count == 5, "\(messages)")
        #expect(AzureVMInputs.derivedName(from: ResourceAddress(type: "azure_virtual_machine", name: "Worker_Pool", index: 3), lineage: "AB12-cd34-ef") == "worker-pool-3-ab12cd34")
    }
}
