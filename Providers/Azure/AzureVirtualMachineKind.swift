import Foundation
import StratumCloud
import StratumCore

/// `azure_virtual_machine`: one Linux VM with its own network interface (`<name>-nic`) and,
/// when `public_ip` is set, its own Standard public IP (`<name>-ip`), made before it and
/// deleted after it. The VM goes into the first of `zones` with capacity: an allocation
/// failure in one deletes the failed VM and moves the create to the next (the NIC is reused).
/// The node contract's boot script is the VM's `customData`; its identity is the user-assigned
/// one of `identity` (`azure_node_identity`), else system-assigned.
///
/// Every PUT is by name, so a repeated create replays the same calls; the VM PUT's operation
/// handle is journaled before the wait, and recovery resumes it, then adopts the VM only if
/// its tags carry the create's token. Refresh lists the VMs and the NICs (and public IPs when
/// any VM has one) of a resource group: a few paginated calls, never a GET per VM.
struct AzureVirtualMachineKind: ResourceKind {
    static let typeName = "azure_virtual_machine"
    static let vmType = "Microsoft.Compute/virtualMachines"
    static let nicType = "Microsoft.Network/networkInterfaces"
    static let ipType = "Microsoft.Network/publicIPAddresses"

    let client: AzureClient
    /// What the subscription holds with Stratum's tags, shared with the provider's other kinds.
    let listing: AzureOwnedListing
    let type = Self.typeName

    init(client: AzureClient, listing: AzureOwnedListing? = nil) {
        self.client = client
        self.listing = listing ?? AzureOwnedListing(client: client)
    }

    func billing(_ attributes: [String: Value], region: String) -> Billing? {
        attributes["size"]?.stringValue.map { .machines(instanceType: $0, region: region, spot: attributes["spot"]?.boolValue == true, count: 1) }
    }
    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "subscription": .input(forceNew: true),
        "resource_group": .input(forceNew: true, required: true),
        "name": AttributeSchema(role: .optionalComputed, forceNew: true),
        "size": .input(forceNew: true, required: true),
        // Where a new VM may go, in order; a running one stays where it is.
        "zones": .input(),
        "subnet": .input(forceNew: true, required: true),
        "public_ip": .input(forceNew: true),
        "accelerated_networking": .input(forceNew: true),
        "image": .input(forceNew: true),
        "os_disk_gib": .input(forceNew: true),
        "spot": .input(forceNew: true),
        "max_price": .input(forceNew: true),
        "proximity_placement_group": .input(forceNew: true),
        "admin_username": .input(forceNew: true),
        "ssh_public_key": .input(forceNew: true),
        // A user-assigned managed identity (`azure_node_identity`): its ARM id and client id, which
        // the node asks IMDS for tokens of (AZURE_CLIENT_ID). Without it the VM's identity is system-assigned.
        "identity": .input(forceNew: true),
        "identity_client_id": .input(forceNew: true),
        "tags": .input(),
        // customData is kept by Azure where anyone allowed to read the VM's model can see it.
        "user_data": .input(forceNew: true, plainText: true),
        // The bundled trainer, fetched from the cluster's bucket and built at boot (StratumBootstrap).
        // Rank 0's address (a reference to its private IP): the node contract's STRATUM_COORDINATOR.
        "coordinator": .input(forceNew: true),
        "trainer_url": .input(forceNew: true),
        "trainer_sha256": .input(forceNew: true),
        "trainer_config": .input(forceNew: true, plainText: true),
        "trainer_arguments": .input(forceNew: true, plainText: true),
        "command": .input(forceNew: true, plainText: true),
        // A Secret here goes to the vault of `key_vault` and is read by the node with its identity
        // (AzureNodeSecrets); plain entries are in the customData.
        "env": .input(forceNew: true, deliversSecrets: true),
        // The cluster's Key Vault (`azure_key_vault`'s ARM id), which the identity may read.
        "key_vault": .input(forceNew: true),
        "container_image": .input(forceNew: true),
        // The node's link conditions (LinkProfile.value), shaped by its user data at boot: a change replaces the machine.
        "link": .input(forceNew: true),
        "pool": .input(forceNew: true),
        "index": .input(forceNew: true),
        "count": .input(forceNew: true),
        "checkpoint_url": .input(forceNew: true, plainText: true),
        "gpus": .input(forceNew: true),
        "gpu_class": .input(forceNew: true),
        "id": .computed, "zone": .computed, "private_ip": .computed, "public_ip_address": .computed, "principal_id": .computed, "status": .computed,
        "stratum_lineage": .computed,
    ])

    // MARK: where things are

    func client(subscription: String?) -> AzureClient {
        var copy = client
        if let subscription, !subscription.isEmpty { copy.subscription = subscription }
        return copy
    }

    func client(of state: ResourceState) -> AzureClient {
        client(subscription: AzureVMInputs.subscription(ofID: state.id) ?? state.attributes["subscription"]?.stringValue)
    }

    func group(of state: ResourceState) -> String {
        let parts = state.id.split(separator: "/").map(String.init)
        return parts.count > 3 ? parts[3] : AzureVMInputs.groupName(state.attributes["resource_group"]?.stringValue ?? "")
    }

    /// Paths of a VM and its network interface and public IP, by the VM's name.
    struct Paths {
        var vm: String
        var nic: String
        var ip: String

        init(client: AzureClient, group: String, name: String) {
            vm = client.resourceGroup(group, "\(AzureVirtualMachineKind.vmType)/\(name)")
            nic = client.resourceGroup(group, "\(AzureVirtualMachineKind.nicType)/\(name)-nic")
            ip = client.resourceGroup(group, "\(AzureVirtualMachineKind.ipType)/\(name)-ip")
        }
    }

    func name(of resource: ResolvedResource) -> String {
        resource.inputs["name"]?.stringValue ?? AzureVMInputs.derivedName(from: resource.address, lineage: resource.ownership.lineage)
    }

    /// Resources of one subscription and resource group are read together.
    func batchKey(_ state: ResourceState) -> String { "\(client(of: state).subscription)/\(group(of: state).lowercased())" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        (AzureVMInputs.problems(resource.inputs) + [AzureNodeSecrets.problem(resource.inputs)].compactMap { $0 })
            .map { Diagnostic(address: resource.address, message: $0, location: resource.location) }
    }

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview { NodeContract.review(prior, desired: desired) }

    // MARK: create

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let client = self.client(subscription: resource.inputs["subscription"]?.stringValue)
        let group = AzureVMInputs.groupName(try AzureVMInputs.required(resource, "resource_group"))
        let name = name(of: resource)
        let paths = Paths(client: client, group: group, name: name)
        let address = resource.address
        let region = resource.region
        let tags = AzureTags.ownership(for: resource, token: context.token).merging(AzureTags.input(resource.inputs["tags"])) { $1 }

        // An earlier attempt of this create (a lost answer, a retry) left the VM: go on from it.
        var zones = AzureVMInputs.strings(resource.inputs["zones"]).map { Optional($0) }
        if zones.isEmpty { zones = [nil] }
        var sshKey = resource.inputs["ssh_public_key"]?.stringValue
        // Set when the VM (and so its NIC) already exists: only its own PUT is repeated.
        var madeNetwork = false
        if let existing = try await client.getIfExists(paths.vm, action: "virtualMachines.get", address: address, region: region) {
            guard AzureTags.carry(token: context.token, in: existing["tags"]) else {
                throw ProviderError(.permanent, "a VM named \(name) already exists in resource group \(group) and this create did not make it; name another", address: address)
            }
            switch AzureOperation.provisioningState(existing)?.lowercased() {
            case "failed"?:
                try await client.deleteAndWait(paths.vm, action: "virtualMachines.delete", address: address)
            case "succeeded"?:
                return try await state(of: resource, client: client, paths: paths, vm: existing)
            default:
                // Still being made: the same PUT again answers its operation to wait on.
                zones = existing["zones"]?.array.first?.string.map { [Optional($0)] } ?? [nil]
                madeNetwork = true
            }
            sshKey = sshKey ?? AzureVMInputs.sshKey(of: existing)
        }
        let key = sshKey ?? AzureVMInputs.unusableSSHKey()
        // A secret that arrived through a reference resolved only now is checked again here.
        if let problem = AzureNodeSecrets.problem(resource.inputs) { throw ProviderError(.permanent, problem, address: address) }
        let secrets = try await AzureNodeSecrets.put(resource, vm: name, tags: tags, client: client)

        var publicIP: String?
        if resource.inputs["public_ip"]?.boolValue == true, madeNetwork {
            publicIP = paths.ip
        } else if resource.inputs["public_ip"]?.boolValue == true {
            let answer = try await client.put(paths.ip, body: AzureVMInputs.publicIPBody(resource, tags: tags), action: "publicIPAddresses.put", address: address, region: region)
            _ = try await client.finish(answer, action: "publicIPAddresses.put", address: address, region: region)
            publicIP = paths.ip
        }
        if !madeNetwork {
            let subnet = try AzureVMInputs.required(resource, "subnet")
            let nic = try await client.put(
                paths.nic, body: AzureVMInputs.nicBody(resource, subnet: subnet, publicIP: publicIP, tags: tags), action: "networkInterfaces.put",
                address: address, region: region)
            _ = try await client.finish(nic, action: "networkInterfaces.put", address: address, region: region)
        }

        var stockouts: [String] = []
        do {
            for zone in zones {
                let body = try AzureVMInputs.vmBody(resource, name: name, zone: zone, nic: paths.nic, tags: tags, sshKey: key, secrets: secrets)
                do {
                    let answer = try await client.put(paths.vm, body: body, action: "virtualMachines.put", address: address, zone: zone, region: region)
                    if let operation = answer.operation { try await context.record(handle: operation.handle) }
                    _ = try await client.finish(answer, action: "virtualMachines.put", address: address, zone: zone, region: region)
                    return try await state(of: resource, client: client, paths: paths)
                } catch let error as ProviderError where error.kind == .capacity {
                    stockouts.append("\(zone.map { "zone \($0)" } ?? region): \(error.message)")
                    // A VM whose allocation failed stays, Failed, in its zone; the next zone needs its name.
                    try await client.deleteAndWait(paths.vm, action: "virtualMachines.delete", address: address)
                }
            }
        } catch let error as ProviderError where !error.isRetryable {
            // The create is over (a retry would fail the same way): nothing of it is left behind.
            throw await released(error, client: client, paths: paths, publicIP: publicIP != nil, address: address)
        }
        let size = try AzureVMInputs.required(resource, "size")
        let exhausted = ProviderError(
            .capacity,
            "no capacity for \(size) in any of the \(zones.count) zone(s) allowed (\(stockouts.joined(separator: "; "))); add zones to `zones`, or try another region",
            address: address, scope: .region(region))
        throw await released(exhausted, client: client, paths: paths, publicIP: publicIP != nil, address: address)
    }

    /// Deletes what a create that will not succeed made (its VM, if one is left, its NIC and
    /// public IP), and gives back `error`, saying so if something could not be removed. A create
    /// that fails only for now (throttled, transient) keeps them: its retry goes on from them.
    func released(_ error: ProviderError, client: AzureClient, paths: Paths, publicIP: Bool, address: ResourceAddress) async -> ProviderError {
        var left: [String] = []
        for (path, action) in [(paths.vm, "virtualMachines.delete"), (paths.nic, "networkInterfaces.delete")] + (publicIP ? [(paths.ip, "publicIPAddresses.delete")] : []) {
            do {
                try await client.deleteAndWait(path, action: action, address: address)
            } catch {
                left.append("\(path) (\(error))")
            }
        }
        guard !left.isEmpty else { return error }
        var released = error
        released.message += "; left behind (the next apply of this resource reuses them by name): \(left.joined(separator: ", "))"
        return released
    }

    // MARK: read

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let client = self.client(of: first)
        let group = group(of: first)
        let live: [String: CloudJSON]
        do {
            live = try await listed(client, group: group, type: Self.vmType, action: "virtualMachines.list")
        } catch let error as ProviderError where error.kind == .notFound {
            // The resource group is gone, and everything in it.
            return resources.map { _ in nil }
        }
        let nics = try await listed(client, group: group, type: Self.nicType, action: "networkInterfaces.list")
        let wantsIPs = resources.contains { $0.attributes["public_ip"]?.boolValue == true }
        var ips: [String: CloudJSON] = [:]
        if wantsIPs { ips = try await listed(client, group: group, type: Self.ipType, action: "publicIPAddresses.list") }
        return resources.map { state in
            guard let vm = live[state.id.lowercased()] else { return nil }
            var refreshed = state
            refreshed.attributes.merge(Self.attributes(vm: vm, nics: nics, ips: ips)) { $1 }
            let tags = AzureTags.user(vm["tags"])
            if tags != AzureTags.input(state.attributes["tags"]) { refreshed.attributes["tags"] = tags.isEmpty ? nil : .map(tags.mapValues(Value.string)) }
            return refreshed
        }
    }

    /// Every resource of `type` in a resource group, by lower-cased id: one paginated list.
    func listed(_ client: AzureClient, group: String, type: String, action: String) async throws -> [String: CloudJSON] {
        let items = try await client.list(client.resourceGroup(group, type), action: action)
        return Dictionary(items.compactMap { item in item["id"]?.string.map { ($0.lowercased(), item) } }) { $1 }
    }

    /// The computed attributes of a live VM, with its NIC's and public IP's addresses.
    static func attributes(vm: CloudJSON, nics: [String: CloudJSON], ips: [String: CloudJSON]) -> [String: Value] {
        var attributes: [String: Value] = [:]
        attributes["id"] = vm["id"]?.string.map(Value.string)
        attributes["name"] = vm["name"]?.string.map(Value.string)
        attributes["zone"] = .string(vm["zones"]?.array.first?.string ?? "")
        attributes["status"] = AzureOperation.provisioningState(vm).map(Value.string)
        attributes["principal_id"] = vm["identity"]?["principalId"]?.string.map(Value.string)
        let nicID = vm["properties"]?["networkProfile"]?["networkInterfaces"]?.array.first?["id"]?.string?.lowercased()
        let configuration = nicID.flatMap { nics[$0] }?["properties"]?["ipConfigurations"]?.array.first?["properties"]
        attributes["private_ip"] = .string(configuration?["privateIPAddress"]?.string ?? "")
        let ipID = configuration?["publicIPAddress"]?["id"]?.string?.lowercased()
        attributes["public_ip_address"] = .string(ipID.flatMap { ips[$0] }?["properties"]?["ipAddress"]?.string ?? "")
        return attributes
    }

    /// The state of a VM just made: its model, NIC and public IP read once each.
    func state(of resource: ResolvedResource, client: AzureClient, paths: Paths, vm known: CloudJSON? = nil) async throws -> ResourceState {
        let address = resource.address
        var vm = known
        if vm == nil { vm = try await client.getIfExists(paths.vm, action: "virtualMachines.get", address: address) }
        guard let vm else {
            throw ProviderError(.transient, "Azure virtualMachines.put finished but \(paths.vm) does not exist", address: address)
        }
        var nics: [String: CloudJSON] = [:]
        var ips: [String: CloudJSON] = [:]
        if let nic = try await client.getIfExists(paths.nic, action: "networkInterfaces.get", address: address) { nics[paths.nic.lowercased()] = nic }
        if resource.inputs["public_ip"]?.boolValue == true, let ip = try await client.getIfExists(paths.ip, action: "publicIPAddresses.get", address: address) {
            ips[paths.ip.lowercased()] = ip
        }
        var attributes = resource.inputs
        attributes.merge(Self.attributes(vm: vm, nics: nics, ips: ips)) { $1 }
        attributes["name"] = .string(name(of: resource))
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        let id = vm["id"]?.string ?? paths.vm
        return ResourceState(address: address, provider: "azure", region: resource.region, id: id, attributes: attributes, dependencies: resource.dependencies)
    }

    // MARK: update, delete, recover, import

    /// `tags` change in place (a PATCH that keeps Stratum's own); `zones` only steer where a new VM goes.
    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let wanted = AzureTags.input(desired.inputs["tags"])
        if wanted != AzureTags.input(prior.attributes["tags"]) {
            let client = self.client(of: prior)
            let live = try await client.get(prior.id, action: "virtualMachines.get", address: prior.address)
            let tags = AzureTags.updated(live: live["tags"], wanted: wanted)
            let answer = try await client.patch(
                prior.id, body: ["tags": .object(tags.mapValues(CloudJSON.string))], action: "virtualMachines.patch", address: prior.address)
            _ = try await client.finish(answer, action: "virtualMachines.patch", address: prior.address)
        }
        var state = prior
        for (key, value) in desired.inputs { state.attributes[key] = value }
        if desired.inputs["tags"] == nil { state.attributes["tags"] = nil }
        state.dependencies = desired.dependencies
        return state
    }

    /// Deletes the VM (its OS disk goes with it), then its NIC and public IP, and disables its secrets.
    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let client = self.client(of: state)
        let name = String(state.id.split(separator: "/").last ?? "")
        let paths = Paths(client: client, group: group(of: state), name: name)
        try await client.deleteAndWait(paths.vm, action: "virtualMachines.delete", address: state.address)
        try await client.deleteAndWait(paths.nic, action: "networkInterfaces.delete", address: state.address)
        try await client.deleteAndWait(paths.ip, action: "publicIPAddresses.delete", address: state.address)
        try await AzureNodeSecrets.disable(state, vm: name, client: client)
    }

    /// Resumes the journaled VM operation (whatever its outcome), then adopts the VM if its tags
    /// carry the create's token and it did not fail.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let client = self.client(subscription: resource.inputs["subscription"]?.stringValue)
        if let handle = operation.handle, let started = AzureOperation(handle: handle) {
            do {
                try await client.wait(for: started, action: "virtualMachines.put (resumed)", address: operation.address)
            } catch let error as ProviderError where error.kind != .auth {
                // Failed, forgotten, or a look throttled: what exists answers for it.
            }
        }
        let group = AzureVMInputs.groupName(try AzureVMInputs.required(resource, "resource_group"))
        let paths = Paths(client: client, group: group, name: name(of: resource))
        guard let vm = try await client.getIfExists(paths.vm, action: "virtualMachines.get", address: operation.address),
            AzureTags.carry(token: operation.token, in: vm["tags"]), AzureOperation.provisioningState(vm)?.lowercased() != "failed"
        else { return nil }
        return try await state(of: resource, client: client, paths: paths, vm: vm)
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard AzureVMInputs.subscription(ofID: id) != nil, id.lowercased().contains("/providers/microsoft.compute/virtualmachines/") else { return nil }
        let client = self.client(subscription: AzureVMInputs.subscription(ofID: id))
        guard let vm = try await client.getIfExists(id, action: "virtualMachines.get", address: address) else { return nil }
        return try await adopted(vm, id: id, region: region, address: address, client: client)
    }

    /// The state of a live VM adopted as it is, with its NIC's and public IP's addresses (import,
    /// and what `owned` lists).
    func adopted(_ vm: CloudJSON, id: String, region: String, address: ResourceAddress, client: AzureClient) async throws -> ResourceState {
        let nicID = vm["properties"]?["networkProfile"]?["networkInterfaces"]?.array.first?["id"]?.string
        var nics: [String: CloudJSON] = [:]
        var ips: [String: CloudJSON] = [:]
        if let nicID, let nic = try await client.getIfExists(nicID, action: "networkInterfaces.get", address: address) {
            nics[nicID.lowercased()] = nic
            if let ipID = nic["properties"]?["ipConfigurations"]?.array.first?["properties"]?["publicIPAddress"]?["id"]?.string,
                let ip = try await client.getIfExists(ipID, action: "publicIPAddresses.get", address: address)
            {
                ips[ipID.lowercased()] = ip
            }
        }
        var attributes = Self.attributes(vm: vm, nics: nics, ips: ips)
        let parts = (vm["id"]?.string ?? id).split(separator: "/").map(String.init)
        attributes["subscription"] = .string(parts[1])
        attributes["resource_group"] = parts.count > 3 ? .string(parts[3]) : nil
        attributes["size"] = vm["properties"]?["hardwareProfile"]?["vmSize"]?.string.map(Value.string)
        attributes["zones"] = vm["zones"].map { Value.list($0.array.compactMap(\.string).map(Value.string)) }
        attributes["subnet"] = nics.values.first?["properties"]?["ipConfigurations"]?.array.first?["properties"]?["subnet"]?["id"]?.string.map(Value.string)
        attributes["public_ip"] = .bool(!ips.isEmpty)
        attributes["spot"] = .bool(vm["properties"]?["priority"]?.string == "Spot")
        let tags = AzureTags.user(vm["tags"])
        if !tags.isEmpty { attributes["tags"] = .map(tags.mapValues(Value.string)) }
        return ResourceState(address: address, provider: "azure", region: region, id: vm["id"]?.string ?? id, attributes: attributes, dependencies: [])
    }

    // MARK: owned

    /// The VMs that carry Stratum's tags, from the provider's shared listing; and, as the VM
    /// they were made for, a NIC or public IP with a VM's tags whose VM is gone (a create
    /// interrupted before its VM, or a VM deleted out of band): deleting that state deletes
    /// them. The OS disk goes with its VM. Node secrets in a vault are not listed: deleting
    /// the vault purges them.
    func owned() async throws -> [OwnedResource]? {
        let actions = [Self.vmType: "virtualMachines.get", Self.nicType: "networkInterfaces.get", Self.ipType: "publicIPAddresses.get"]
        func type(of item: CloudJSON) -> String? { actions.keys.first { $0.lowercased() == item["type"]?.string?.lowercased() } }
        let items = try await listing.resources().filter { type(of: $0) != nil && !AzureTags.names(other: Self.typeName, in: $0) }
        var owned: [String: OwnedResource] = [:]
        // VMs first, so that a VM's own NIC and public IP add nothing.
        for item in items.filter({ type(of: $0) == Self.vmType }) + items.filter({ type(of: $0) != Self.vmType }) {
            guard let id = item["id"]?.string, let type = type(of: item), let vmID = Self.vmID(of: id, type: type), owned[vmID.lowercased()] == nil else { continue }
            let client = client(subscription: AzureVMInputs.subscription(ofID: id))
            guard let live = try await client.getIfExists(id, action: actions[type] ?? ""), let owner = AzureTags.owner(of: live["tags"]),
                owner.address.type == Self.typeName
            else { continue }
            let region = live["location"]?.string ?? item["location"]?.string ?? ""
            let state: ResourceState
            if type == Self.vmType {
                state = try await adopted(live, id: id, region: region, address: owner.address, client: client)
            } else {
                // Left by a create without its VM; the VM is looked for once more, as it may be new.
                if try await client.getIfExists(vmID, action: "virtualMachines.get") != nil { continue }
                let parts = vmID.split(separator: "/").map(String.init)
                state = ResourceState(
                    address: owner.address, provider: "azure", region: region, id: vmID,
                    attributes: ["id": .string(vmID), "name": .string(parts[7]), "subscription": .string(parts[1]), "resource_group": .string(parts[3])],
                    dependencies: [])
            }
            owned[vmID.lowercased()] = OwnedResource(state: state, ownership: owner.ownership)
        }
        return owned.values.sorted { $0.state.id < $1.state.id }
    }

    /// The id of the VM a VM, its NIC (`<vm>-nic`) or its public IP (`<vm>-ip`) belongs to.
    static func vmID(of id: String, type: String) -> String? {
        let parts = id.split(separator: "/").map(String.init)
        guard parts.count == 8, parts[0].lowercased() == "subscriptions", parts[2].lowercased() == "resourcegroups" else { return nil }
        let name = parts[7]
        let vm: Substring
        switch type.lowercased() {
        case vmType.lowercased(): return id
        case nicType.lowercased() where name.hasSuffix("-nic"): vm = name.dropLast(4)
        case ipType.lowercased() where name.hasSuffix("-ip"): vm = name.dropLast(3)
        default: return nil
        }
        guard !vm.isEmpty else { return nil }
        return "/subscriptions/\(parts[1])/resourceGroups/\(parts[3])/providers/\(vmType)/\(vm)"
    }
}
