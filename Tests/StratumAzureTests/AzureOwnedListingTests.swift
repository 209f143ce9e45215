import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

/// `owned()` of the Azure kinds against the ARM fake: what carries Stratum's ownership is
/// listed with its address, ownership and region, what does not is left out, the listing is
/// one paged call shared by the kinds, and a listed state deletes what it names.
@Suite("Azure owned listing on the ARM fake", .timeLimit(.minutes(3)))
struct AzureOwnedListingTests {
    /// An ephemeral environment's ownership.
    static let ownership = Ownership(stack: "train/alice-1", lineage: "lineage-eph-01", owner: "alice", expires: Date(timeIntervalSince1970: 1_900_000_000))
    static let group = "owned-rg"
    static let account = "stratumowned01"

    static func resource(_ type: String, _ name: String, _ inputs: [String: Value]) -> ResolvedResource {
        ResolvedResource(address: ResourceAddress(type: type, name: name), region: AzureVMWorld.region, inputs: inputs, dependencies: [], ownership: ownership)
    }

    static func create(_ world: AzureVMWorld, _ type: String, _ name: String, _ inputs: [String: Value]) async throws -> ResourceState {
        try await world.provider.create(resource(type, name, inputs), token: UUID().uuidString.lowercased())
    }

    /// Every kind's listing, by type; nil where the kind cannot list.
    static func listings(_ provider: AzureProvider) async throws -> [String: [OwnedResource]?] {
        var all: [String: [OwnedResource]?] = [:]
        for (type, kind) in provider.kinds { all[type] = .some(try await kind.owned()) }
        return all
    }

    /// Top-level resources (as the `resources` list holds them) with the `stratum-lineage` tag.
    static func tagged(_ fake: AzureARMFake) async -> Int {
        var count = 0
        for id in await fake.allIDs {
            guard let resource = await fake.resource(id)?.mapValue, let type = resource["type"]?.stringValue else { continue }
            let tags = resource["tags"]?.mapValue ?? [:]
            if type.split(separator: "/").count == 2, type != "Microsoft.Resources/resourceGroups", tags["stratum-lineage"] != nil { count += 1 }
        }
        return count
    }

    @Test func listsWhatCarriesStratumsOwnershipAndDeletesIt() async throws {
        try await AzureVMWorld.run { world in
            // Owned: made through the provider with an ephemeral environment's ownership.
            var made: [String: ResourceState] = [:]
            made["azure_resource_group"] = try await Self.create(world, "azure_resource_group", "main", ["name": .string(Self.group)])
            made["azure_virtual_network"] = try await Self.create(
                world, "azure_virtual_network", "net", ["resource_group": .string(Self.group), "name": "net", "address_space": ["10.8.0.0/16"]])
            let subnet = try await Self.create(
                world, "azure_subnet", "nodes", ["resource_group": .string(Self.group), "virtual_network": "net", "name": "nodes", "cidr": "10.8.1.0/24"])
            made["azure_network_security_group"] = try await Self.create(world, "azure_network_security_group", "nsg", ["resource_group": .string(Self.group), "name": "nsg"])
            made["azure_public_ip"] = try await Self.create(world, "azure_public_ip", "ip", ["resource_group": .string(Self.group), "name": "ip"])
            made["azure_storage_account"] = try await Self.create(
                world, "azure_storage_account", "data", ["resource_group": .string(AzureVMWorld.group), "name": .string(Self.account)])
            made["azure_blob_container"] = try await Self.create(
                world, "azure_blob_container", "ckpt", ["resource_group": .string(AzureVMWorld.group), "storage_account": .string(Self.account), "name": "ckpt"])
            let identity = try await Self.create(
                world, "azure_node_identity", "node", ["resource_group": .string(AzureVMWorld.group), "scope": .string(made["azure_blob_container"]!.id)])
            made["azure_node_identity"] = identity
            made["azure_key_vault"] = try await Self.create(world, "azure_key_vault", "secrets", [
                "resource_group": .string(AzureVMWorld.group), "tenant_id": identity.attributes["tenant_id"] ?? .null, "reader": identity.attributes["principal_id"] ?? .null,
            ])
            // A VM with a public IP: its NIC and IP carry the VM's address, so they are the VM's, not azure_public_ip's.
            var vm = AzureVMWorld.vm("worker", ["public_ip": true], world: world)
            vm.ownership = Self.ownership
            made["azure_virtual_machine"] = try await world.provider.create(vm, token: UUID().uuidString.lowercased())

            // Not owned: made in the fake directly, without Stratum's tags (the world's group,
            // network, subnet and placement group are too).
            let foreignIP = world.client.resourceGroup(AzureVMWorld.group, "Microsoft.Network/publicIPAddresses/foreign")
            try await world.put(foreignIP, ["location": "eastus", "sku": ["name": "Standard"], "properties": ["publicIPAllocationMethod": "Static"], "tags": ["team": "ml"]])
            let looseContainer = made["azure_storage_account"]!.id + "/blobServices/default/containers/loose"
            try await world.put(looseContainer, ["properties": ["publicAccess": "None"]])

            await world.fake.set(pageSize: 2)
            let before = await world.calls("GET resources")
            let listed = try await Self.listings(world.provider)
            // One listing, paged by nextLink, served every kind.
            let pages = (await Self.tagged(world.fake) + 1) / 2
            #expect(pages > 1)
            #expect(await world.calls("GET resources") - before == pages)

            for type in ["azure_subnet", "azure_federated_credential", "azure_blob"] {
                #expect(listed[type].map { $0 == nil } == true, "\(type) carries no ownership of its own")
            }
            #expect(listed["azure_proximity_placement_group"]??.isEmpty == true)
            for (type, state) in made.sorted(by: { $0.key < $1.key }) {
                let items = try #require(listed[type] ?? nil, "\(type)")
                #expect(items.map(\.state.address) == [state.address], "\(type)")
                guard let item = items.first else { continue }
                #expect(item.state.id.lowercased() == state.id.lowercased(), "\(type)")
                #expect(item.ownership == Self.ownership, "\(type)")
                #expect(item.state.region == AzureVMWorld.region && item.state.provider == "azure", "\(type)")
            }
            // The holders of role assignments are listed with them, so their delete removes them.
            for type in ["azure_node_identity", "azure_key_vault"] {
                let assignment = try #require(made[type]?.attributes["role_assignment_id"]?.stringValue)
                #expect((listed[type] ?? nil)?.first?.state.attributes["role_assignment_id"]?.stringValue?.lowercased() == assignment.lowercased(), "\(type)")
            }
            // Every kind asked again within a minute: the same listing, no new call.
            let again = await world.calls("GET resources")
            _ = try await Self.listings(world.provider)
            #expect(await world.calls("GET resources") == again)

            // Deleting each listed state through the provider deletes what it names.
            let order = [
                "azure_virtual_machine", "azure_key_vault", "azure_node_identity", "azure_blob_container", "azure_storage_account", "azure_public_ip",
                "azure_network_security_group", "azure_virtual_network", "azure_resource_group",
            ]
            for type in order {
                for item in try #require(listed[type] ?? nil) { try await world.provider.delete(item.state) }
                #expect(await world.fake.resource(made[type]!.id) == nil, "\(type)")
                // The container without metadata stays until its account goes.
                if type == "azure_blob_container" { #expect(await world.fake.resource(looseContainer) != nil) }
            }
            #expect(await world.fake.resource(subnet.id) == nil)
            #expect(await world.ids("Microsoft.Authorization/roleAssignments").isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).isEmpty)
            let after = try await Self.listings(world.provider)
            for type in order { #expect((after[type] ?? nil)?.isEmpty == true, "\(type)") }
            // What was not Stratum's is still there.
            for id in [foreignIP, world.subnet, world.placementGroup] { #expect(await world.fake.resource(id) != nil, "\(id)") }
        }
    }

    /// The binary's provider (`AzureProvider.fromEnvironment`, a `DeferredProvider`) lists
    /// through the live provider's kinds.
    @Test func theDeferredProviderListsThroughTheLiveOne() async throws {
        try await AzureVMWorld.run { world in
            let group = try await Self.create(world, "azure_resource_group", "main", ["name": .string(Self.group)])
            let deferred = DeferredProvider(name: "azure", cloud: "Azure", offline: { world.provider }, live: { world.provider })
            let listed = try #require(try await deferred.kinds["azure_resource_group"]?.owned())
            #expect(listed.map(\.state.id) == [group.id] && listed.first?.ownership == Self.ownership)
            #expect(try await deferred.kinds["azure_subnet"]?.owned() == nil)
            // Without a subscription it cannot list, and says why (the sweep names Azure with
            // the reason); a kind that cannot list at all still says nil.
            let bare = AzureProvider.fromEnvironment([:], transport: AsyncHTTPTransport())
            await #expect(throws: (any Error).self) { try await bare.kinds["azure_resource_group"]?.owned() }
            #expect(try await bare.kinds["azure_subnet"]?.owned() == nil)
        }
    }

    /// A NIC and public IP a VM create left without its VM are listed as that VM, whose delete removes them.
    @Test func aVMsLeftoversAreListedAsTheVM() async throws {
        try await AzureVMWorld.run { world in
            var vm = AzureVMWorld.vm("worker", ["public_ip": true], world: world)
            vm.ownership = Self.ownership
            let state = try await world.provider.create(vm, token: UUID().uuidString.lowercased())
            await world.fake.deleteOutOfBand(state.id)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).count == 1)
            #expect(await world.ids(AzureVirtualMachineKind.ipType).count == 1)

            let kind = try #require(world.provider.kinds["azure_virtual_machine"])
            let listed = try #require(try await kind.owned())
            #expect(listed.map(\.state.address) == [vm.address])
            let item = try #require(listed.first)
            #expect(item.state.id.lowercased() == state.id.lowercased() && item.ownership == Self.ownership)
            #expect(try #require(try await world.provider.kinds["azure_public_ip"]?.owned()).isEmpty)

            try await world.provider.delete(item.state)
            #expect(await world.ids(AzureVirtualMachineKind.nicType).isEmpty)
            #expect(await world.ids(AzureVirtualMachineKind.ipType).isEmpty)
            #expect(try #require(try await kind.owned()).isEmpty)
        }
    }

    /// The fake's lists as ARM's reference has them: a tag filter and a type filter are not
    /// taken together; filtered by a tag's name and value, the tags are left out; role
    /// assignments are filtered by principal.
    @Test func theFakeFiltersListsAsARMDoes() async throws {
        try await AzureVMWorld.run { world in
            let ip = world.client.resourceGroup(AzureVMWorld.group, "Microsoft.Network/publicIPAddresses/tagged")
            try await world.put(ip, ["location": "eastus", "sku": ["name": "Standard"], "properties": ["publicIPAllocationMethod": "Static"], "tags": ["stratum-lineage": "l1"]])
            let resources = "/subscriptions/\(AzureVMWorld.subscription)/resources"
            let byName = try await world.client.list(resources, query: [("$filter", "tagName eq 'stratum-lineage'")], action: "test")
            #expect(byName.map { $0["id"]?.string } == [ip] && byName.first?["tags"]?["stratum-lineage"]?.string == "l1")
            let byValue = try await world.client.list(resources, query: [("$filter", "tagName eq 'stratum-lineage' and tagValue eq 'l1'")], action: "test")
            #expect(byValue.map { $0["id"]?.string } == [ip] && byValue.first?["tags"] == nil)
            #expect(try await world.client.list(resources, query: [("$filter", "tagName eq 'stratum-lineage' and tagValue eq 'l2'")], action: "test").isEmpty)
            let refused = await #expect(throws: ProviderError.self) {
                _ = try await world.client.list(
                    resources, query: [("$filter", "tagName eq 'stratum-lineage' and resourceType eq 'Microsoft.Network/publicIPAddresses'")], action: "test")
            }
            #expect(refused?.message.contains("InvalidFilterInQueryString") == true)
            #expect(await world.fake.violations.isEmpty)

            let identity = world.client.resourceGroup(AzureVMWorld.group, "Microsoft.ManagedIdentity/userAssignedIdentities/id")
            try await world.put(identity, ["location": "eastus"])
            let principal = try #require(await world.fake.resource(identity)?.mapValue?["properties"]?.mapValue?["principalId"]?.stringValue)
            let role = "/subscriptions/\(AzureVMWorld.subscription)/providers/Microsoft.Authorization/roleDefinitions/\(AzureNodeIdentityKind.blobDataContributor)"
            let assignment = AzureRoleAssignment.id(scope: ip, principal: principal, role: role)
            try await world.put(assignment, ["properties": ["roleDefinitionId": .string(role), "principalId": .string(principal), "principalType": "ServicePrincipal"]])
            #expect(try await AzureRoleAssignment.find(AzureNodeIdentityKind.blobDataContributor, to: principal, client: world.client) == assignment)
            #expect(try await AzureRoleAssignment.find(AzureNodeIdentityKind.blobDataContributor, to: "00000000-0000-4000-8000-0000000000ff", client: world.client) == nil)
            #expect(try await AzureRoleAssignment.find(AzureNodeIdentityKind.blobDataContributor, at: ip, client: world.client) == assignment)
            #expect(try await AzureRoleAssignment.find(AzureKeyVaultKind.secretsUser, at: ip, client: world.client) == nil)
        }
    }

    /// Ownership read back from tags and from container metadata; without an address or a
    /// lineage there is none.
    @Test func ownershipIsReadFromTagsAndMetadata() {
        let resource = Self.resource("azure_blob_container", "ckpt", [:])
        let tags = AzureTags.ownership(for: resource, token: "t")
        let read = AzureTags.owner(of: .object(tags.mapValues(CloudJSON.string)))
        #expect(read?.address == resource.address && read?.ownership == Self.ownership)
        let metadata = AzureTags.owner(of: .object(AzureTags.metadata(for: resource, token: "t").mapValues(CloudJSON.string)), metadata: true)
        #expect(metadata?.address == resource.address && metadata?.ownership == Self.ownership)
        // Tag names are case-insensitive.
        #expect(AzureTags.owner(of: ["Stratum-Address": "azure_public_ip.ip", "STRATUM-LINEAGE": "l"])?.ownership == Ownership(stack: "", lineage: "l"))
        #expect(AzureTags.owner(of: ["stratum-address": "azure_public_ip.ip"]) == nil)
        #expect(AzureTags.owner(of: ["stratum-address": "not an address", "stratum-lineage": "l"]) == nil)
        #expect(AzureTags.owner(of: ["team": "ml"]) == nil)
    }
}
