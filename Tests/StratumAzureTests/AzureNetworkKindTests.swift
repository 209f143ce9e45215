import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

@Suite("ProviderContractTests: Azure networking and storage on the ARM fake", .timeLimit(.minutes(3)))
struct AzureProviderContractTests {
    static let group = "contract-rg"

    static func subject(_ world: AzureFakeWorld, _ type: String, inputs: @escaping @Sendable (String) -> [String: Value]) -> ProviderContractTests {
        ProviderContractTests(.init(provider: world.provider, type: type, region: AzureFakeWorld.region, inputs: inputs))
    }

    static func resourceGroup(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        subject(world, "azure_resource_group") { ["name": .string("rg-\($0)"), "tags": ["team": "ml"]] }
    }

    static func virtualNetwork(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        return subject(world, "azure_virtual_network") { ["resource_group": .string(group), "name": .string("vnet-\($0)"), "address_space": ["10.1.0.0/16"]] }
    }

    static func subnet(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        try await world.create("azure_virtual_network", "net", inputs: ["resource_group": .string(group), "name": "net", "address_space": ["10.2.0.0/16"]])
        return subject(world, "azure_subnet") { ["resource_group": .string(group), "virtual_network": "net", "name": .string("sub-\($0)"), "cidr": "10.2.1.0/24"] }
    }

    static func securityGroup(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        return subject(world, "azure_network_security_group") { [
            "resource_group": .string(group), "name": .string("nsg-\($0)"),
            "rules": [["name": "internal", "priority": 100, "protocol": "*", "source_address_prefixes": ["10.0.0.0/16"]]],
        ] }
    }

    static func publicIP(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        return subject(world, "azure_public_ip") { ["resource_group": .string(group), "name": .string("ip-\($0)"), "zones": ["1"]] }
    }

    static func placementGroup(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        return subject(world, "azure_proximity_placement_group") { [
            "resource_group": .string(group), "name": .string("ppg-\($0)"), "vm_sizes": ["Standard_ND96isr_H100_v5"],
        ] }
    }

    static func storageAccount(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        return subject(world, "azure_storage_account") { ["resource_group": .string(group), "name": .string("st" + $0.filter { $0.isLetter || $0.isNumber })] }
    }

    static func container(_ world: AzureFakeWorld) async throws -> ProviderContractTests {
        try await world.resourceGroup(group)
        try await world.create("azure_storage_account", "account", inputs: ["resource_group": .string(group), "name": "stratumcontract"])
        return subject(world, "azure_blob_container") { ["resource_group": .string(group), "storage_account": "stratumcontract", "name": .string("c-\($0)")] }
    }

    static func run(_ check: (ProviderContractTests) async throws -> Void, on make: (AzureFakeWorld) async throws -> ProviderContractTests) async throws {
        try await AzureFakeWorld.run { world in try await check(make(world)) }
    }

    @Test func resourceGroupContract() async throws { try await Self.run({ try await $0.all() }, on: Self.resourceGroup) }
    @Test func virtualNetworkContract() async throws { try await Self.run({ try await $0.all() }, on: Self.virtualNetwork) }
    @Test func securityGroupContract() async throws { try await Self.run({ try await $0.all() }, on: Self.securityGroup) }
    @Test func publicIPContract() async throws { try await Self.run({ try await $0.all() }, on: Self.publicIP) }
    @Test func placementGroupContract() async throws { try await Self.run({ try await $0.all() }, on: Self.placementGroup) }
    @Test func storageAccountContract() async throws { try await Self.run({ try await $0.all() }, on: Self.storageAccount) }
    @Test func blobContainerContract() async throws { try await Self.run({ try await $0.all() }, on: Self.container) }

    /// Subnets have no tags, so a stranger's token cannot be told apart (see `subnetRecoveryAdoptsOnlyWhatMatches`);
    /// the rest of the contract holds.
    @Test func subnetIdempotentCreateByToken() async throws { try await Self.run({ try await $0.idempotentCreateByToken() }, on: Self.subnet) }
    @Test func subnetBatchedReadWithMissingMembers() async throws { try await Self.run({ try await $0.batchedReadWithMissingMembers() }, on: Self.subnet) }
    @Test func subnetDeleteOfWhatIsGone() async throws { try await Self.run({ try await $0.deleteOfWhatIsGone() }, on: Self.subnet) }
    @Test func subnetImportByID() async throws { try await Self.run({ try await $0.importByID() }, on: Self.subnet) }
}

@Suite("Azure networking and storage kinds on the ARM fake", .timeLimit(.minutes(3)))
struct AzureNetworkKindTests {
    static let ownership = Ownership(stack: "demo/dev", lineage: "5f2c9a7e-lineage")

    static func resource(_ type: String, _ name: String, _ inputs: [String: Value], index: Int? = nil) -> ResolvedResource {
        ResolvedResource(
            address: ResourceAddress(type: type, name: name, index: index), region: AzureFakeWorld.region, inputs: inputs, dependencies: [], ownership: ownership)
    }

    /// What the fake stores for a security group and a subnet pointing at it: the rules in ARM's
    /// shape, the ownership tags, the subnet's group by id; refresh finds no difference.
    @Test func securityGroupAndSubnetBodies() async throws {
        try await AzureFakeWorld.run { world in
            try await world.resourceGroup("rg")
            let rules: Value = [
                ["name": "internal", "priority": 100, "protocol": "all", "source_address_prefix": "10.0.0.0/16"],
                ["name": "ssh", "priority": 200, "direction": "inbound", "protocol": "tcp", "source_address_prefixes": ["10.1.0.0/24", "10.2.0.0/24"], "destination_port_ranges": ["22"]],
            ]
            let token = UUID().uuidString.lowercased()
            let nsg = try await world.provider.create(
                Self.resource("azure_network_security_group", "fw", ["resource_group": "rg", "rules": rules, "tags": ["team": "ml"]]), token: token)
            let live = try #require(await world.fake.resource(nsg.id)?.mapValue)
            let tags = try #require(live["tags"]?.mapValue)
            #expect(tags["stratum-token"] == .string(token))
            #expect(tags["stratum-stack"] == "demo/dev" && tags["stratum-address"] == "azure_network_security_group.fw" && tags["team"] == "ml")
            let stored = try #require(live["properties"]?.mapValue?["securityRules"]?.listValue)
            #expect(stored.count == 2)
            let ssh = try #require(stored.first { $0.mapValue?["name"] == "ssh" }?.mapValue?["properties"]?.mapValue)
            #expect(ssh["protocol"] == "Tcp" && ssh["direction"] == "Inbound" && ssh["access"] == "Allow" && ssh["priority"]?.intValue == 200)
            #expect(ssh["sourceAddressPrefixes"] == ["10.1.0.0/24", "10.2.0.0/24"] && ssh["destinationPortRange"] == "22" && ssh["sourcePortRange"] == "*")
            // A derived name: the address and the lineage's start.
            #expect(nsg.attributes["name"] == "fw-5f2c9a7e")

            try await world.create("azure_virtual_network", "net", inputs: ["resource_group": "rg", "name": "net", "address_space": ["10.0.0.0/16"]])
            let subnet = try await world.provider.create(
                Self.resource("azure_subnet", "nodes", ["resource_group": "rg", "virtual_network": "net", "cidr": "10.0.1.0/24", "network_security_group": .string(nsg.id)]),
                token: UUID().uuidString)
            let subnetLive = try #require(await world.fake.resource(subnet.id)?.mapValue?["properties"]?.mapValue)
            #expect(subnetLive["networkSecurityGroup"]?.mapValue?["id"]?.stringValue?.lowercased() == nsg.id.lowercased())
            #expect(subnetLive["addressPrefix"] == "10.0.1.0/24")

            // Read back, nothing differs from what was declared.
            let kind = try #require(world.provider.kinds["azure_network_security_group"])
            let read = try #require(try await kind.read([nsg]).first ?? nil)
            #expect(read.attributes == nsg.attributes, "\(read.attributes) vs \(nsg.attributes)")
            let subnetRead = try #require(try await world.provider.kinds["azure_subnet"]?.read([subnet]).first ?? nil)
            #expect(subnetRead.attributes == subnet.attributes)
        }
    }

    /// A changed rule set and changed tags are put in place: the same group, the ownership kept.
    @Test func rulesAndTagsChangeInPlace() async throws {
        try await AzureFakeWorld.run { world in
            try await world.resourceGroup("rg")
            let token = UUID().uuidString.lowercased()
            let before = Self.resource("azure_network_security_group", "fw", ["resource_group": "rg", "name": "fw", "rules": [["name": "a", "priority": 100]], "tags": ["team": "ml"]])
            let made = try await world.provider.create(before, token: token)
            let after = Self.resource("azure_network_security_group", "fw", ["resource_group": "rg", "name": "fw", "rules": [["name": "b", "priority": 300, "access": "Deny"]], "tags": ["team": "infra"]])
            let kind = try #require(world.provider.kinds["azure_network_security_group"])
            let updated = try await kind.update(made, to: after)
            #expect(updated.id == made.id)
            let live = try #require(await world.fake.resource(made.id)?.mapValue)
            #expect(live["tags"]?.mapValue?["team"] == "infra" && live["tags"]?.mapValue?["stratum-token"] == .string(token))
            let rules = live["properties"]?.mapValue?["securityRules"]?.listValue ?? []
            #expect(rules.compactMap { $0.mapValue?["name"]?.stringValue } == ["b"])
            // Refresh of the old state shows the drift the planner needs to see.
            let read = try #require(try await kind.read([made]).first ?? nil)
            #expect(read.attributes["tags"] == ["team": "infra"])
            #expect(read.attributes["rules"] != made.attributes["rules"])
        }
    }

    /// Refresh of many networks of a resource group is one list, however many pages it takes.
    @Test func refreshListsEachCollectionOnce() async throws {
        try await AzureFakeWorld.run { world in
            try await world.resourceGroup("rg")
            await world.fake.set(pageSize: 4)
            var states: [ResourceState] = []
            for index in 0..<10 {
                states.append(try await world.create(
                    "azure_virtual_network", "net-\(index)", inputs: ["resource_group": "rg", "name": .string("net-\(index)"), "address_space": .list([.string("10.\(index).0.0/16")])]))
            }
            await world.fake.deleteOutOfBand(states[3].id)
            let kind = try #require(world.provider.kinds["azure_virtual_network"])
            #expect(Set(states.map { kind.batchKey($0) }).count == 1)
            let before = await world.fake.calls["GET Microsoft.Network/virtualNetworks", default: 0]
            let read = try await world.provider.read(type: "azure_virtual_network", resources: states)
            let pages = await world.fake.calls["GET Microsoft.Network/virtualNetworks", default: 0] - before
            #expect(pages == 3, "9 networks in pages of 4 are 3 list calls, not \(pages)")
            #expect(read.enumerated().allSatisfy { ($0.offset == 3) == ($0.element == nil) })
            #expect(read.compactMap { $0 }.map(\.id) == states.enumerated().filter { $0.offset != 3 }.map(\.element.id))
        }
    }

    /// A create whose wait is cancelled after the operation's handle was recorded is settled by
    /// recovery from that handle: the same operation finishes and the account is adopted.
    @Test func aCreateInterruptedWhileWaitingIsRecoveredFromItsHandle() async throws {
        let world = try await AzureFakeWorld.make(pace: .onDemand, clock: .system)
        await world.fake.set(retryAfter: 0)
        try await world.resourceGroup("rg")
        let resource = Self.resource("azure_storage_account", "data", ["resource_group": "rg", "name": "stratumdata01"])
        let token = UUID().uuidString.lowercased()
        let (handles, recorded) = AsyncStream.makeStream(of: String.self)
        let context = OperationContext(token: token) { recorded.yield($0) }
        let create = Task { try await world.provider.create(resource, context: context) }
        var iterator = handles.makeAsyncIterator()
        let handle = try #require(await iterator.next())
        create.cancel()
        await #expect(throws: (any Error).self) { try await create.value }
        #expect(AzureOperation(handle: handle)?.style == .location)

        var pending = PendingOperation(creating: resource, provider: "azure", token: token)
        pending.handle = handle
        let looksBefore = await world.fake.calls["GET operationResult", default: 0]
        let recovery = Task { try await world.provider.recover(pending) }
        let deadline = ContinuousClock.now + .seconds(20)
        while await world.fake.calls["GET operationResult", default: 0] <= looksBefore, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(await world.fake.finishOperations() == 1)
        let recovered = try #require(try await recovery.value)
        #expect(recovered.id.hasSuffix("/providers/Microsoft.Storage/storageAccounts/stratumdata01"))
        #expect(recovered.attributes["blob_endpoint"] == "https://stratumdata01.blob.core.windows.net/")
        #expect(await world.fake.calls["PUT Microsoft.Storage/storageAccounts"] == 1)
        #expect(await world.problems().isEmpty)
        await world.server.shutdown()
    }

    /// A PUT that took effect but whose answer was lost is adopted by recovery with the
    /// create's token; with another token, nothing is.
    @Test func aLostPutAnswerIsRecoveredByToken() async throws {
        try await AzureFakeWorld.run { world in
            try await world.resourceGroup("rg")
            await world.fake.inject(.lostResponse, into: "PUT Microsoft.Network/virtualNetworks")
            let resource = Self.resource("azure_virtual_network", "net", ["resource_group": "rg", "address_space": "10.9.0.0/16"])
            let token = UUID().uuidString.lowercased()
            await #expect(throws: ProviderError.self) { try await world.provider.create(resource, token: token) }
            let recovered = try #require(try await world.provider.recover(PendingOperation(creating: resource, provider: "azure", token: token)))
            #expect(recovered.attributes["name"] == "net-5f2c9a7e")
            #expect(try await world.provider.recover(PendingOperation(creating: resource, provider: "azure", token: "other")) == nil)
            #expect(await world.fake.ids(ofType: "Microsoft.Network/virtualNetworks").count == 1)
        }
    }

    /// A subnet carries no tags: recovery adopts the subnet of the create's name only when its
    /// range is the one asked for.
    @Test func subnetRecoveryAdoptsOnlyWhatMatches() async throws {
        try await AzureFakeWorld.run { world in
            let made = try await world.subnet()
            let same = Self.resource("azure_subnet", "nodes", ["resource_group": "rg", "virtual_network": "vnet", "name": "nodes", "cidr": "10.0.0.0/24"])
            #expect(try await world.provider.recover(PendingOperation(creating: same, provider: "azure", token: "t"))?.id == made.id)
            var other = same
            other.inputs["cidr"] = "10.0.5.0/24"
            #expect(try await world.provider.recover(PendingOperation(creating: other, provider: "azure", token: "t")) == nil)
        }
    }

    /// Derived names fit each type's rule; a declared name that does not is refused before any call.
    @Test func namesFitAzureRules() throws {
        let long = ResourceAddress(type: "azure_storage_account", name: "Checkpoints_For-The.Big-Training-Run", index: 12)
        let account = AzureNames.derived(from: long, lineage: "AB12-cd34-ef56", rule: AzureNames.storageAccount)
        #expect(AzureNames.storageAccount.problem(account) == nil, "\(account)")
        #expect(account.count <= 24 && account.hasSuffix("ab12cd34"))
        let group = AzureNames.derived(from: ResourceAddress(type: "azure_resource_group", name: "net"), lineage: "l1", rule: AzureNames.resourceGroup)
        #expect(group == "net-l1")
        #expect(AzureNames.container.problem("Data") != nil && AzureNames.container.problem("data-1") == nil)
        #expect(AzureNames.storageAccount.problem("my-account") != nil)
    }

    /// `validate` refuses a declared name outside the type's rule and tags in Stratum's own prefix, before any call.
    @Test func validateRefusesBadNamesAndTags() async throws {
        let world = try await AzureFakeWorld.make()
        defer { Task { await world.server.shutdown() } }
        let account = try #require(world.provider.kinds["azure_storage_account"])
        func desired(_ inputs: [String: Value]) -> DesiredResource {
            DesiredResource(address: ResourceAddress(type: "azure_storage_account", name: "data"), provider: "azure", region: AzureFakeWorld.region, inputs: inputs)
        }
        #expect(account.validate(desired(["resource_group": "rg", "name": "stratumdata"])).isEmpty)
        let badName = account.validate(desired(["resource_group": "rg", "name": "Stratum-Data"]))
        #expect(badName.count == 1 && badName[0].message.contains("3-24 lowercase letters and digits"))
        let badTags = account.validate(desired(["resource_group": "rg", "name": "stratumdata", "tags": ["stratum-token": "x", "team": "ml"]]))
        #expect(badTags.map(\.message) == ["tag 'stratum-token': names starting with 'stratum-' are Stratum's own"])
        #expect(await world.fake.calls.isEmpty)
    }
}
