import Foundation
import Stratum
import StratumBootstrap
import StratumCloud
import StratumCore
import StratumEngine
import StratumState
import StratumTesting
import Testing
@testable import StratumGCP

extension GCPFakeWorld {
    static let zones: [Value] = ["us-central1-a", "us-central1-b", "us-central1-c"]

    /// A network and a subnetwork in the region for instances to live in; the subnetwork's self link.
    func subnetwork() async throws -> String {
        _ = try await network("vpc")
        let subnet = try await provider.create(
            ResolvedResource(
                address: ResourceAddress(type: "gcp_subnetwork", name: "nodes"), region: Self.region,
                inputs: ["name": "nodes", "network": "vpc", "cidr": "10.8.0.0/20"], dependencies: []),
            token: UUID().uuidString.lowercased())
        return try #require(subnet.attributes["self_link"]?.stringValue)
    }

    static func instance(
        _ name: String, _ inputs: [String: Value], subnetwork: String, type: String = "gcp_instance", lineage: String = "lineage-0001"
    ) -> ResolvedResource {
        var all: [String: Value] = ["machine_type": "n1-standard-8", "zones": .list(zones), "subnetwork": .string(subnetwork)]
        all.merge(inputs) { $1 }
        return ResolvedResource(
            address: ResourceAddress(type: type, name: name), region: region, inputs: all, dependencies: [], ownership: Ownership(stack: "demo/dev", lineage: lineage))
    }

    /// The body the fake stored for an instance (its request, with what the server adds).
    func live(_ path: String) async throws -> [String: Value] {
        try #require(await fake.resource(path)?.mapValue)
    }
}

@Suite("ProviderContractTests: GCP instances, gangs and placement policies on the Compute fake", .timeLimit(.minutes(3)))
struct GCPInstanceContractTests {
    static func instance(_ world: GCPFakeWorld) async throws -> ProviderContractTests {
        let subnet = try await world.subnetwork()
        return ProviderContractTests(.init(
            provider: world.provider, type: "gcp_instance", region: GCPFakeWorld.region,
            inputs: { ["name": .string("vm-\($0)"), "machine_type": "e2-standard-4", "zones": .list(GCPFakeWorld.zones), "subnetwork": .string(subnet)] }))
    }

    static func gang(_ world: GCPFakeWorld) async throws -> ProviderContractTests {
        let subnet = try await world.subnetwork()
        return ProviderContractTests(.init(
            provider: world.provider, type: "gcp_instance_gang", region: GCPFakeWorld.region,
            inputs: { [
                "name_prefix": .string("gang-\($0)"), "count": 3, "machine_type": "a3-highgpu-8g", "zones": .list(GCPFakeWorld.zones),
                "subnetwork": .string(subnet),
            ] }))
    }

    static func policy(_ world: GCPFakeWorld) async throws -> ProviderContractTests {
        ProviderContractTests(.init(provider: world.provider, type: "gcp_resource_policy", region: GCPFakeWorld.region, inputs: { ["name": .string("pp-\($0)"), "vm_count": 4] }))
    }

    @Test func instanceContract() async throws { try await GCPProviderContractTests.run({ try await $0.all() }, on: Self.instance) }
    @Test func gangContract() async throws { try await GCPProviderContractTests.run({ try await $0.all() }, on: Self.gang) }
    @Test func resourcePolicyContract() async throws { try await GCPProviderContractTests.run({ try await $0.all() }, on: Self.policy) }
}

@Suite("GCP instances and gangs on the Compute fake", .timeLimit(.minutes(3)))
struct GCPInstanceTests {
    /// An N1 machine with an attached T4: the insert's body has the GPU, the maintenance policy
    /// GPUs need, Stratum's ownership as labels, an external address and the node's boot
    /// script, which reads its zone from the metadata server.
    @Test func anN1WithAGPUCarriesItsAcceleratorAndBootScript() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            let node = GCPFakeWorld.instance("worker", [
                "accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1, "boot_disk_gib": 200, "labels": ["team": "ml"],
                "command": ["python", "train.py"], "env": ["MODE": "train"], "pool": "trainer", "index": 2, "count": 4, "network_tags": ["trainer"],
            ], subnetwork: subnet)
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(node, token: token)
            #expect(state.id.hasPrefix("projects/\(GCPFakeWorld.project)/zones/us-central1-a/instances/worker-"))
            #expect(state.attributes["zone"] == "us-central1-a")
            #expect(state.attributes["status"] == "RUNNING")
            #expect(state.attributes["private_ip"]?.stringValue?.hasPrefix("10.") == true)
            #expect(state.attributes["public_ip"]?.stringValue?.isEmpty == false)

            let live = try await world.live(state.id)
            let accelerators = try #require(live["guestAccelerators"]?.listValue)
            #expect(accelerators.first?.mapValue?["acceleratorType"]?.stringValue == "projects/\(GCPFakeWorld.project)/zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4")
            #expect(live["scheduling"]?.mapValue?["onHostMaintenance"] == "TERMINATE")
            #expect(live["scheduling"]?.mapValue?["provisioningModel"] == nil)
            let labels = try #require(live["labels"]?.mapValue)
            #expect(labels["stratum-lineage"] == "lineage-0001")
            #expect(labels["stratum-stack"] == .string(GCPLabels.value("demo/dev")))
            #expect(labels["stratum-token"] == .string(token))
            #expect(labels["team"] == "ml")
            #expect(live["tags"]?.mapValue?["items"] == ["trainer"])
            let disk = try #require(live["disks"]?.listValue?.first?.mapValue?["initializeParams"]?.mapValue)
            #expect(disk["diskSizeGb"] == "200")
            #expect(disk["sourceImage"] == .string(GCPInstanceInputs.defaultImage))
            let interface = try #require(live["networkInterfaces"]?.listValue?.first?.mapValue)
            #expect(interface["accessConfigs"]?.listValue?.first?.mapValue?["type"] == "ONE_TO_ONE_NAT")
            #expect(interface["subnetwork"]?.stringValue?.hasSuffix("projects/\(GCPFakeWorld.project)/regions/us-central1/subnetworks/nodes") == true)

            let metadata = try #require(live["metadata"]?.mapValue?["items"]?.listValue?.first?.mapValue)
            // The node setup, where cloud-init reads it: the contract in node.env, the zone from
            // the metadata server at boot, the command as the workload unit.
            #expect(metadata["key"] == "user-data")
            let setup = try NodeSetupDocument(try #require(metadata["value"]?.stringValue))
            let env = setup.environment
            #expect(env["STRATUM_NODE_INDEX"] == "2" && env["STRATUM_NODE_COUNT"] == "4" && env["STRATUM_CLOUD"] == "gcp")
            #expect(env["STRATUM_REGION"] == "us-central1" && env["MODE"] == "train" && env["STRATUM_ZONE"] == nil)
            #expect(setup.bootEnv.contains("http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1/instance/$1"))
            #expect(setup.bootEnv.contains("export STRATUM_ZONE=\"${zone##*/}\""))
            #expect(setup.workload.hasSuffix("exec 'python' 'train.py'\n"))
            // An N1 with a T4: the GPU setup runs, without NVSwitch's fabric manager.
            let gpu = try #require(setup.files["/usr/local/lib/stratum/gpu-setup.sh"])
            #expect(gpu.contains("nvidia-smi -pm 1") && !gpu.contains("fabricmanager"))
        }
    }

    /// A2, A3 and G2 carry their GPUs: no guestAccelerators in the body, but the maintenance
    /// policy GPUs need (the fake, like Compute, refuses a GPU machine without it); asking for
    /// attached GPUs on them is a diagnostic before any call.
    @Test func machinesWithBuiltInGPUsSendNoAcceleratorsAndStopForMaintenance() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            for machine in ["a3-highgpu-8g", "a2-highgpu-1g", "g2-standard-8"] {
                let state = try await world.provider.create(
                    GCPFakeWorld.instance("gpu-\(machine.prefix(2))", ["machine_type": .string(machine)], subnetwork: subnet), token: UUID().uuidString.lowercased())
                let live = try await world.live(state.id)
                #expect(live["guestAccelerators"] == nil, "\(machine)")
                #expect(live["scheduling"]?.mapValue?["onHostMaintenance"] == "TERMINATE", "\(machine)")
                #expect(live["machineType"]?.stringValue?.hasSuffix("zones/us-central1-a/machineTypes/\(machine)") == true)
            }
            let cpu = try await world.provider.create(GCPFakeWorld.instance("cpu", ["machine_type": "e2-standard-4"], subnetwork: subnet), token: UUID().uuidString)
            #expect(try await world.live(cpu.id)["scheduling"] == nil, "a machine without GPUs keeps Compute's default (live migration)")

            let kind = try #require(world.provider.kinds["gcp_instance"])
            func diagnostics(_ inputs: [String: Value]) -> [String] {
                var all: [String: Value] = ["machine_type": "a3-highgpu-8g", "zones": ["us-central1-a"], "subnetwork": "nodes"]
                all.merge(inputs) { $1 }
                return kind.validate(DesiredResource(address: ResourceAddress(type: "gcp_instance", name: "x"), provider: "gcp", region: GCPFakeWorld.region, inputs: all))
                    .map(\.message)
            }
            #expect(diagnostics(["accelerator_type": "nvidia-h100-80gb", "accelerator_count": 8]).first?.contains("comes with its GPUs") == true)
            #expect(diagnostics(["machine_type": "e2-standard-4", "accelerator_type": "nvidia-tesla-t4"]).first?.contains("N1 machine types only") == true)
            #expect(diagnostics(["machine_type": "n1-standard-8", "accelerator_count": 2]).first?.contains("needs accelerator_type") == true)
            #expect(diagnostics(["zones": ["europe-west4-a"]]).first?.contains("not in region us-central1") == true)
            #expect(diagnostics(["zones": []]).first?.contains("at least one zone") == true)
            #expect(diagnostics(["machine_type": "A3_HIGH"]).first?.contains("not a Compute machine type") == true)
            #expect(diagnostics(["labels": ["stratum-lineage": "x"]]).count == 1)
            #expect(diagnostics(["labels": ["Team": "ml"]]).count == 1)
            #expect(diagnostics(["labels": ["team": "ML Research"]]).first?.contains("values are at most 63") == true)
            #expect(diagnostics(["labels": ["team": "ml-research_2"]]).isEmpty)
            #expect(diagnostics([:]).isEmpty)

            // The fake refuses what Compute refuses: a machine with GPUs that would be live-migrated.
            #expect(GCPComputeFake.acceleratorRefusal(["machineType": "zones/us-central1-a/machineTypes/a3-highgpu-8g"])?.status == 400)
            #expect(GCPComputeFake.acceleratorRefusal(["machineType": "n1-standard-8", "guestAccelerators": [["acceleratorCount": 1]]])?.status == 400)
            #expect(GCPComputeFake.acceleratorRefusal(["machineType": "a3-highgpu-8g", "scheduling": ["onHostMaintenance": "TERMINATE"]]) == nil)
            #expect(GCPComputeFake.acceleratorRefusal(["machineType": "e2-standard-4"]) == nil)
        }
    }

    @Test func spotInstancesAreProvisionedAsSpotAndDeletedWhenReclaimed() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            let state = try await world.provider.create(
                GCPFakeWorld.instance("spot", ["machine_type": "g2-standard-8", "spot": true, "external_ip": false], subnetwork: subnet), token: UUID().uuidString)
            let live = try await world.live(state.id)
            let scheduling = try #require(live["scheduling"]?.mapValue)
            #expect(scheduling["provisioningModel"] == "SPOT")
            #expect(scheduling["instanceTerminationAction"] == "DELETE")
            #expect(scheduling["automaticRestart"] == false)
            #expect(scheduling["onHostMaintenance"] == "TERMINATE")
            #expect(live["networkInterfaces"]?.listValue?.first?.mapValue?["accessConfigs"] == nil)
            #expect(state.attributes["public_ip"] == "")
        }
    }

    /// A stockout in the first zone moves the create to the next, under a requestId of its own;
    /// with every zone out the error is capacity for the region and nothing is left behind.
    @Test func aStockoutMovesAnInstanceToTheNextZone() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            await world.fake.set(zonesWithoutCapacity: ["us-central1-a"])
            let node = GCPFakeWorld.instance("moved", ["machine_type": "a3-highgpu-8g"], subnetwork: subnet)
            let token = UUID().uuidString.lowercased()
            let state = try await world.provider.create(node, token: token)
            #expect(state.attributes["zone"] == "us-central1-b")
            #expect(await world.fake.paths(of: "instances") == [state.id])
            #expect(await world.fake.calls["compute.instances.insert"] == 2)
            #expect(await world.fake.injected["stockout"] == 1)
            // A retry with the same token replays both zones' calls and makes nothing new.
            let again = try await world.provider.create(node, token: token)
            #expect(again.id == state.id)
            #expect(await world.fake.injected["replayedRequestID"] == 2)
            #expect(await world.fake.paths(of: "instances").count == 1)

            await world.fake.set(zonesWithoutCapacity: ["us-central1-a", "us-central1-b", "us-central1-c"])
            let failure = await #expect(throws: ProviderError.self) {
                try await world.provider.create(GCPFakeWorld.instance("nowhere", ["machine_type": "a3-highgpu-8g"], subnetwork: subnet), token: UUID().uuidString)
            }
            #expect(failure?.kind == .capacity)
            #expect(failure?.scope == .region("us-central1"))
            #expect(failure?.message.contains("3 zone(s)") == true)
            #expect(await world.fake.paths(of: "instances").count == 1)
        }
    }

    /// A gang member's boot script in a container: the rank and name it learns at boot are
    /// passed into the container with the rest of the contract, and are not fixed in the script.
    @Test func aGangMembersContainerGetsTheRankItReadsAtBoot() throws {
        let member = GCPFakeWorld.instance(
            "trainers", ["count": 8, "pool": "trainer", "command": ["python", "train.py"], "container_image": "ghcr.io/example/trainer:1", "env": ["MODE": "train"]],
            subnetwork: "nodes", type: "gcp_instance_gang")
        let machine = GCPMachineCatalog.bootstrapMachine(machineType: "a3-highgpu-8g", gpus: 8, gpuClass: "H100")
        let rendered = try #require(try NodeUserData.render(member, flavour: .gcpGangMember(cluster: "trainer"), machine: machine))
        let setup = try NodeSetupDocument(String(decoding: rendered.bytes, as: UTF8.self))
        let run = try #require(setup.workload.split(separator: "\n").last.map(String.init))
        #expect(run.hasPrefix("exec docker run --rm --name stratum-workload --gpus all --network host --ipc host "))
        // Every variable of node.env (and of secrets.env) goes into the container by name, those
        // added at boot too.
        #expect(setup.workload.contains("cat /etc/stratum/node.env /etc/stratum/secrets.env 2>/dev/null | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/-e \\1/p'"))
        #expect(run.hasSuffix("'ghcr.io/example/trainer:1' 'python' 'train.py'"))
        // Rank and name are read at boot, not fixed in node.env.
        #expect(setup.environment["STRATUM_NODE_INDEX"] == nil && setup.environment["STRATUM_NODE_NAME"] == nil)
        #expect(setup.environment["STRATUM_NODE_COUNT"] == "8")
        for name in ["STRATUM_NODE_INDEX", "STRATUM_NODE_NAME", "STRATUM_ZONE"] {
            #expect(setup.bootEnv.contains("printf \"%s='%s'\\n\" \(name) "), "\(name) is not added at boot")
        }
        // A stack's own cloud-init document is sent as it is.
        var raw = member
        raw.inputs["user_data"] = "#cloud-config\nruncmd: [true]\n"
        let sent = try #require(try NodeUserData.render(raw, flavour: .gcpGangMember(cluster: "trainer"), machine: machine))
        #expect(String(decoding: sent.bytes, as: UTF8.self) == "#cloud-config\nruncmd: [true]\n")
    }

    /// A zone that does not offer the machine type is passed over like a stockout; when no zone
    /// offers it the error is permanent and names the zones.
    @Test func aZoneThatDoesNotOfferTheMachineTypeIsPassedOver() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            await world.fake.set(unofferedMachineTypes: ["us-central1-a": ["a3-highgpu-8g"], "us-central1-b": ["a3-highgpu-8g"]])
            let single = try await world.provider.create(
                GCPFakeWorld.instance("offered", ["machine_type": "a3-highgpu-8g"], subnetwork: subnet), token: UUID().uuidString)
            #expect(single.attributes["zone"] == "us-central1-c")
            let gang = try await world.provider.create(
                GCPFakeWorld.instance("offered-gang", ["machine_type": "a3-highgpu-8g", "count": 2], subnetwork: subnet, type: "gcp_instance_gang"),
                token: UUID().uuidString)
            #expect(gang.attributes["zone"] == "us-central1-c")

            await world.fake.set(unofferedMachineTypes: ["us-central1-a": ["a3-highgpu-8g"], "us-central1-b": ["a3-highgpu-8g"], "us-central1-c": ["a3-highgpu-8g"]])
            let failure = await #expect(throws: ProviderError.self) {
                try await world.provider.create(GCPFakeWorld.instance("unoffered", ["machine_type": "a3-highgpu-8g"], subnetwork: subnet), token: UUID().uuidString)
            }
            #expect(failure?.kind == .permanent)
            #expect(failure?.message.contains("is not offered in any of the 3 zone(s)") == true)
            #expect(await world.fake.paths(of: "instances").count == 3)
        }
    }

    /// A gang is one bulkInsert with minCount = count in one zone; a stockout moves the whole
    /// gang to the next zone, and a quota failure leaves no instance at all.
    @Test func aGangIsAllOrNothingAndFailsOverAsAWhole() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            await world.fake.set(zonesWithoutCapacity: ["us-central1-a"])
            let gang = GCPFakeWorld.instance(
                "trainers", ["machine_type": "a3-highgpu-8g", "count": 4, "name_prefix": "trainer", "command": ["train"], "pool": "trainer"], subnetwork: subnet,
                type: "gcp_instance_gang")
            let state = try await world.provider.create(gang, token: UUID().uuidString.lowercased())
            #expect(state.id == "projects/\(GCPFakeWorld.project)/zones/us-central1-b/instances/trainer-*")
            #expect(state.attributes["zone"] == "us-central1-b")
            let members = try #require(state.attributes["instances"]?.listValue)
            #expect(members.compactMap { $0.mapValue?["name"]?.stringValue } == ["trainer-0", "trainer-1", "trainer-2", "trainer-3"])
            #expect(members.allSatisfy { $0.mapValue?["private_ip"]?.stringValue?.hasPrefix("10.") == true })
            #expect(await world.fake.paths(of: "instances").count == 4)
            #expect(await world.fake.calls["compute.instances.bulkInsert"] == 2)
            // All or nothing: minCount is the gang's size, the names are given one by one.
            let bulk = try #require(await world.fake.bulkInsertBodies.last?.mapValue)
            #expect(bulk["count"] == "4" && bulk["minCount"] == "4")
            #expect(bulk["perInstanceProperties"]?.mapValue?.keys.sorted() == ["trainer-0", "trainer-1", "trainer-2", "trainer-3"])
            #expect(bulk["instanceProperties"]?.mapValue?["machineType"] == "a3-highgpu-8g")
            let member = try await world.live("projects/\(GCPFakeWorld.project)/zones/us-central1-b/instances/trainer-2")
            #expect(member["guestAccelerators"] == nil)
            #expect(member["scheduling"]?.mapValue?["onHostMaintenance"] == "TERMINATE")
            // The rank comes from the name at boot.
            let setup = try NodeSetupDocument(try #require(member["metadata"]?.mapValue?["items"]?.listValue?.first?.mapValue?["value"]?.stringValue))
            #expect(setup.bootEnv.contains("export STRATUM_NODE_INDEX=\"${name##*-}\""))
            #expect(setup.bootEnv.contains("export STRATUM_NODE_NAME='trainer'-\"${name##*-}\""))
            #expect(setup.environment["STRATUM_NODE_COUNT"] == "4")
            #expect(setup.environment["STRATUM_NODE_INDEX"] == nil)

            // Refreshed as one: every member read by one aggregated list.
            let before = await world.fake.calls["compute.instances.aggregatedList", default: 0]
            let read = try await world.provider.read(type: "gcp_instance_gang", resources: [state])
            #expect(read.first??.attributes["instances"]?.listValue?.count == 4)
            #expect(await world.fake.calls["compute.instances.aggregatedList", default: 0] == before + 1)

            // A member reclaimed out of band: the gang reads back short and is replaced as a whole.
            await world.fake.deleteOutOfBand("projects/\(GCPFakeWorld.project)/zones/us-central1-b/instances/trainer-3")
            let short = try #require(try await world.provider.read(type: "gcp_instance_gang", resources: [state]).first ?? nil)
            let kind = try #require(world.provider.kinds["gcp_instance_gang"])
            #expect(kind.review(short, desired: gang.inputs).replacement == "1 of the gang's 4 instances are gone")
            try await world.provider.delete(short)
            #expect(await world.fake.paths(of: "instances").isEmpty)

            // Quota: the bulkInsert's operation fails, and no instance of the gang exists.
            await world.fake.set(zonesWithoutCapacity: [])
            await world.fake.inject(.quotaExceeded(metric: "NVIDIA_H100_GPUS", region: "us-central1"), into: "compute.instances.bulkInsert")
            let failure = await #expect(throws: ProviderError.self) { try await world.provider.create(gang, token: UUID().uuidString.lowercased()) }
            #expect(failure?.kind == .quota)
            #expect(await world.fake.paths(of: "instances").isEmpty)
        }
    }

    /// An insert that took effect but whose answer was lost is found by its token label; a
    /// retry replays the first call, so there is one instance.
    @Test(arguments: ["gcp_instance", "gcp_instance_gang"])
    func aLostInsertAnswerIsRecoveredByItsTokenLabel(type: String) async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            await world.fake.inject(.lostResponse, into: type == "gcp_instance" ? "compute.instances.insert" : "compute.instances.bulkInsert")
            let node = GCPFakeWorld.instance("lost", ["count": 3], subnetwork: subnet, type: type)
            let token = UUID().uuidString.lowercased()
            let failure = await #expect(throws: ProviderError.self) { try await world.provider.create(node, token: token) }
            #expect(failure?.isRetryable == true)
            await world.fake.finishOperations()
            let recovered = try #require(try await world.provider.recover(PendingOperation(creating: node, provider: "gcp", token: token)))
            let retried = try await world.provider.create(node, token: token)
            #expect(retried.id == recovered.id)
            #expect(await world.fake.paths(of: "instances").count == (type == "gcp_instance" ? 1 : 3))
            #expect(await world.fake.injected["replayedRequestID"] == 1)
        }
    }

    /// A create whose wait is cancelled after its operation's handle was recorded is settled by
    /// recovery from that handle: the same operation finishes and its instance (or gang) is
    /// adopted; nothing is inserted twice.
    @Test(arguments: ["gcp_instance", "gcp_instance_gang"])
    func aCreateInterruptedWhileWaitingIsRecoveredFromItsHandle(type: String) async throws {
        let world = try await GCPFakeWorld.make(pace: .onDemand, clock: .system)
        defer { Task { await world.server.shutdown() } }
        await world.fake.set(pace: .afterPolls(0))
        let subnet = try await world.subnetwork()
        await world.fake.set(pace: .onDemand)
        let resource = GCPFakeWorld.instance("waiting", ["machine_type": "a3-highgpu-8g", "count": 2], subnetwork: subnet, type: type)
        let token = UUID().uuidString.lowercased()
        let (handles, recorded) = AsyncStream.makeStream(of: String.self)
        let context = OperationContext(token: token) { recorded.yield($0) }
        let create = Task { try await world.provider.create(resource, context: context) }
        var iterator = handles.makeAsyncIterator()
        let handle = try #require(await iterator.next())
        create.cancel()
        await #expect(throws: (any Error).self) { try await create.value }
        #expect(GCPOperationReference(handle: handle)?.scope == .zone("us-central1-a"))

        var pending = PendingOperation(creating: resource, provider: "gcp", token: token)
        pending.handle = handle
        let method = "compute.zoneOperations.get"
        let looksBefore = await world.fake.calls[method, default: 0]
        let recovery = Task { try await world.provider.recover(pending) }
        let deadline = ContinuousClock.now + .seconds(20)
        while await world.fake.calls[method, default: 0] <= looksBefore, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(await world.fake.finishOperations() == 1)
        let recovered = try #require(try await recovery.value)
        #expect(recovered.attributes["zone"] == "us-central1-a")
        #expect(await world.fake.paths(of: "instances").count == (type == "gcp_instance" ? 1 : 2))
        #expect(await world.fake.calls[type == "gcp_instance" ? "compute.instances.insert" : "compute.instances.bulkInsert"] == 1)
        #expect(await world.problems().isEmpty)
    }

    /// Refresh of many instances: one label-filtered aggregatedList per project, paged, and no
    /// GET per instance.
    @Test func refreshOfSixHundredInstancesIsTwoCalls() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            let gang = GCPFakeWorld.instance("many", ["machine_type": "e2-standard-4", "count": 600, "name_prefix": "many"], subnetwork: subnet, type: "gcp_instance_gang")
            let made = try await world.provider.create(gang, token: UUID().uuidString.lowercased())
            let members = try #require(made.attributes["instances"]?.listValue)
            #expect(members.count == 600)
            // The same machines recorded as 600 single instances of one stack.
            let states = members.enumerated().map { i, member in
                let name = member.mapValue?["name"]?.stringValue ?? ""
                return ResourceState(
                    address: ResourceAddress(type: "gcp_instance", name: "node", index: i), provider: "gcp", region: GCPFakeWorld.region,
                    id: "projects/\(GCPFakeWorld.project)/zones/us-central1-a/instances/\(name)",
                    attributes: ["name": .string(name), "stratum_lineage": "lineage-0001", "machine_type": "e2-standard-4"])
            }
            let before = await world.fake.calls
            let live = try await world.provider.read(type: "gcp_instance", resources: states)
            let after = await world.fake.calls
            #expect(live.compactMap { $0 }.count == 600)
            #expect(after["compute.instances.aggregatedList", default: 0] - before["compute.instances.aggregatedList", default: 0] == 2)
            #expect(after["compute.instances.get", default: 0] == before["compute.instances.get", default: 0])
            #expect(live[17]?.attributes["private_ip"]?.stringValue?.isEmpty == false)
        }
    }

    /// Labels change in place (setLabels with the instance's fingerprint), keeping Stratum's own;
    /// a label changed outside Stratum shows as drift on refresh.
    @Test func labelsChangeInPlaceAndDriftShows() async throws {
        try await GCPFakeWorld.run { world in
            let subnet = try await world.subnetwork()
            let node = GCPFakeWorld.instance("labelled", ["labels": ["team": "ml"]], subnetwork: subnet)
            let state = try await world.provider.create(node, token: UUID().uuidString)
            var desired = node
            desired.inputs["labels"] = ["team": "research", "cost": "gpu"]
            let updated = try await world.provider.update(state, to: desired)
            #expect(updated.attributes["labels"] == ["team": "research", "cost": "gpu"])
            let labels = try #require(try await world.live(state.id)["labels"]?.mapValue)
            #expect(labels["team"] == "research" && labels["cost"] == "gpu")
            #expect(labels["stratum-lineage"] == "lineage-0001")
            #expect(await world.fake.calls["compute.instances.setLabels"] == 1)
            let kind = try #require(world.provider.kinds["gcp_instance"])
            #expect(kind.schema.attributes["labels"]?.forceNew == false)
            #expect(kind.schema.attributes["zones"]?.forceNew == false)
            #expect(kind.schema.attributes["machine_type"]?.forceNew == true)

            let refreshed = try #require(try await world.provider.read(type: "gcp_instance", resources: [updated]).first ?? nil)
            #expect(refreshed.attributes["labels"] == updated.attributes["labels"])

            // Someone relabels the instance outside Stratum: refresh reports their labels.
            try await GCPInstanceKind(client: world.provider.client).setLabels(state.id, user: ["team": "ops"], address: state.address)
            let drifted = try #require(try await world.provider.read(type: "gcp_instance", resources: [updated]).first ?? nil)
            #expect(drifted.attributes["labels"] == ["team": "ops"])
            #expect(try await world.live(state.id)["labels"]?.mapValue?["stratum-lineage"] == "lineage-0001")
        }
    }

    /// Every kind honours `project`: the resource lives there, and is read and deleted there.
    @Test func resourcesLiveInTheProjectTheyName() async throws {
        try await GCPFakeWorld.run { world in
            let policy = try await world.provider.create(
                ResolvedResource(
                    address: ResourceAddress(type: "gcp_resource_policy", name: "compact"), region: GCPFakeWorld.region,
                    inputs: ["project": "shared-gpus", "vm_count": 2], dependencies: [], ownership: Ownership(stack: "demo/dev", lineage: "abcd1234")),
                token: UUID().uuidString)
            #expect(policy.id == "projects/shared-gpus/regions/us-central1/resourcePolicies/compact-abcd1234")
            let live = try await world.live(policy.id)
            #expect(live["groupPlacementPolicy"]?.mapValue?["collocation"] == "COLLOCATED")
            #expect(live["groupPlacementPolicy"]?.mapValue?["vmCount"] == 2)
            let kind = try #require(world.provider.kinds["gcp_resource_policy"])
            #expect(kind.batchKey(policy) == "projects/shared-gpus")
            #expect(try await world.provider.read(type: "gcp_resource_policy", resources: [policy]).first??.id == policy.id)

            // A gang placed by the policy names it (by name, as bulkInsert takes it).
            let subnet = try await world.subnetwork()
            let gang = GCPFakeWorld.instance(
                "placed", ["machine_type": "a3-highgpu-8g", "count": 2, "resource_policy": .string(try #require(policy.attributes["self_link"]?.stringValue))],
                subnetwork: subnet, type: "gcp_instance_gang")
            let made = try await world.provider.create(gang, token: UUID().uuidString)
            let first = try #require(made.attributes["instances"]?.listValue?.first?.mapValue?["self_link"]?.stringValue)
            let member = try await world.live(try #require(GCPNames.path(ofLink: first)))
            #expect(member["resourcePolicies"] == ["compact-abcd1234"])
            try await world.provider.delete(made)
            try await world.provider.delete(policy)
            #expect(await world.fake.paths(of: "resourcePolicies").isEmpty)
        }
    }
}

/// Instances, a gang and its placement policy driven through the real Planner, Refresher and
/// Executor against the Compute fake.
@Suite("GCP instances through the engine on the Compute fake", .timeLimit(.minutes(3)))
struct GCPInstanceLifecycleTests {
    static func stack(labels: Value = ["team": "ml"]) throws -> EvaluatedStack {
        var content = StackContent()
        let region = GCPFakeWorld.region
        let network = CustomResource("gcp_network", "vpc", provider: "gcp", region: region, inputs: [:])
        network.declare(into: &content)
        let subnet = CustomResource("gcp_subnetwork", "nodes", provider: "gcp", region: region, inputs: ["network": network["name"], "cidr": "10.0.0.0/20"])
        subnet.declare(into: &content)
        let policy = CustomResource("gcp_resource_policy", "compact", provider: "gcp", region: region, inputs: ["vm_count": 3])
        policy.declare(into: &content)
        CustomResource(
            "gcp_instance_gang", "trainers", provider: "gcp", region: region,
            inputs: [
                "count": 3, "machine_type": "a3-highgpu-8g", "zones": Value.list(GCPFakeWorld.zones), "subnetwork": subnet["self_link"],
                "resource_policy": policy["self_link"], "command": Value.list(["train"]), "labels": labels,
            ]
        ).declare(into: &content)
        for index in 0..<2 {
            CustomResource(
                "gcp_instance", "server", index: index, provider: "gcp", region: region,
                inputs: [
                    "machine_type": "g2-standard-8", "zones": Value.list(GCPFakeWorld.zones), "subnetwork": subnet["self_link"], "spot": true,
                    "command": Value.list(["serve"]), "index": Value.int(index), "count": 2, "labels": labels,
                ]
            ).declare(into: &content)
        }
        return try StackEvaluator.evaluate(content, name: "gcp-gpu", environment: "test")
    }

    @Test func applyRefreshRelabelReplaceAReclaimedGangAndDestroy() async throws {
        try await GCPFakeWorld.run { world in
            let registry = ProviderRegistry([world.provider])
            let store = InMemoryStateStore()
            let workspace = "gcp-gpu/test"
            let retry = RetryPolicy(maxAttempts: 5, clock: world.provider.client.clock)
            func plan(_ stack: EvaluatedStack) async throws -> Plan {
                let snapshot = await store.read(workspace: workspace)
                let refreshed = try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources)
                return try Planner(providers: registry).plan(stack: stack, snapshot: snapshot, refreshed: refreshed, now: Date())
            }
            func apply(_ plan: Plan) async throws {
                let result = try await Executor(providers: registry, store: store, workspace: workspace, parallelism: 4, retry: retry).apply(plan)
                #expect(result.ok, "\(result.failed.map { "\($0.step.address): \($0.error)" })")
            }
            let stack = try Self.stack()
            try Planner(providers: registry).validate(stack)
            try await apply(try await plan(stack))
            #expect(await world.fake.paths(of: "instances").count == 5)
            #expect(await world.fake.paths(of: "resourcePolicies").count == 1)

            // Refresh: one aggregatedList for the two servers, one for the gang; nothing to change.
            let before = await world.fake.calls
            let again = try await plan(stack)
            #expect(!again.hasChanges, "\(again.actionable.map { "\($0.address) \($0.action) \($0.changedAttributes)" })")
            let after = await world.fake.calls
            #expect(after["compute.instances.aggregatedList", default: 0] - before["compute.instances.aggregatedList", default: 0] == 2)
            #expect(after["compute.instances.get", default: 0] == before["compute.instances.get", default: 0])

            // New labels are an in-place update of every instance.
            let relabel = try await plan(try Self.stack(labels: ["team": "research"]))
            #expect(relabel.actionable.count == 3 && relabel.actionable.allSatisfy { $0.action == .update })
            try await apply(relabel)
            #expect(await world.fake.calls["compute.instances.setLabels"] == 5)
            #expect(await world.fake.paths(of: "instances").count == 5)

            // A gang member reclaimed: the gang is replaced as a whole, the rest stays.
            let gangState = try #require(await store.read(workspace: workspace).resources[ResourceAddress(type: "gcp_instance_gang", name: "trainers")])
            let member = try #require(gangState.attributes["instances"]?.listValue?.first?.mapValue?["self_link"]?.stringValue)
            await world.fake.deleteOutOfBand(try #require(GCPNames.path(ofLink: member)))
            let replace = try await plan(try Self.stack(labels: ["team": "research"]))
            #expect(replace.actionable.map(\.address.description) == ["gcp_instance_gang.trainers"])
            #expect(replace.actionable.first?.action == .replace)
            try await apply(replace)
            #expect(await world.fake.paths(of: "instances").count == 5)
            #expect(!(try await plan(try Self.stack(labels: ["team": "research"]))).hasChanges)

            let snapshot = await store.read(workspace: workspace)
            let refreshed = try await Refresher(providers: registry, retry: retry).refresh(snapshot.resources)
            try await apply(Planner(providers: registry).destroyPlan(stackName: "gcp-gpu", environment: "test", snapshot: snapshot, refreshed: refreshed, now: Date()))
            for kind in ["instances", "resourcePolicies", "subnetworks", "networks"] {
                #expect(await world.fake.paths(of: kind).isEmpty, "\(kind) left behind")
            }
        }
    }
}
