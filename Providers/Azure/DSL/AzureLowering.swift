import Foundation
import Stratum
import StratumCore

extension Placement {
    /// Microsoft Azure in `location` (`eastus`, `westeurope`) of `subscription` (nil: the one
    /// the credentials or `AZURE_SUBSCRIPTION_ID` name). `zones` lists the availability zones
    /// (`"1"`, `"2"`, `"3"`) nodes may run in, in order of preference: a node that meets an
    /// allocation failure in one zone is created in the next. Every resource of the placement
    /// lives in one resource group: `resourceGroup` names it, else its name is derived from the
    /// stack.
    public static func azure(subscription: String? = nil, location: String, zones: [String] = [], resourceGroup: String? = nil) -> Placement {
        Placement(provider: "azure", region: location, zones: zones, lowering: AzureLowering(subscription: subscription, resourceGroup: resourceGroup))
    }

    /// The Azure subscription a placement names, nil when it names none (or is not on Azure).
    public var azureSubscription: String? { (lowering as? AzureLowering)?.subscription }
}

/// How the portable resources become Azure resources when placed on `.azure(location:zones:)`.
///
/// Every resource of a placement lives in its resource group, `azure_resource_group.<location>`
/// (`azure_resource_group.<name>` when the placement names one), declared once however many
/// resources need it.
/// - `Network` → `azure_virtual_network` with the network's CIDR + one `azure_subnet` with the
///   same CIDR + `azure_network_security_group` (on the subnet) allowing all traffic from inside
///   that CIDR. Nothing is opened to the world.
/// - `Bucket` → `azure_storage_account` (its name derived from the bucket's to fit Azure's 3–24
///   lowercase letters and digits) + `azure_blob_container`, whose `url` is `az://ACCOUNT/CONTAINER`.
///   The account kind has no blob versioning yet: a bucket's `versioning` is not applied.
/// - `NodePool` → one `azure_virtual_machine` per node with the placement's zones in order (an
///   allocation failure in one zone moves the create to the next) on the network's subnet, the
///   size from `AzureMachineCatalog`, and the node contract inputs. Each node carries its `link`
///   (`NodePool.link(for:)`), which its user data shapes at boot.
public struct AzureLowering: PlacementLowering {
    static let resourceTypes = ["network": "azure_virtual_network", "bucket": "azure_blob_container", "node": "azure_virtual_machine"]

    /// The subscription every lowered resource names (its `subscription` input); nil for the default one.
    public let subscription: String?
    /// The resource group's name; nil: derived from the stack by the provider.
    public let resourceGroup: String?

    public init(subscription: String? = nil, resourceGroup: String? = nil) {
        self.subscription = subscription
        self.resourceGroup = resourceGroup
    }

    public func resourceType(kind: String, on placement: Placement) -> String {
        Self.resourceTypes[kind] ?? "azure_\(kind)"
    }

    /// The address of the resource group the placement's resources live in.
    public static func resourceGroupAddress(of placement: Placement) -> ResourceAddress {
        let lowering = placement.lowering as? AzureLowering
        return ResourceAddress(type: "azure_resource_group", name: lowering?.resourceGroup.flatMap { ResourceAddress.isName($0) ? $0 : nil } ?? placement.region)
    }

    /// The id of the placement's resource group, which its resources' `resource_group` refers to.
    public static func resourceGroup(of placement: Placement) -> Ref<String> {
        Ref(resourceGroupAddress(of: placement), "id")
    }

    /// The id of `network`'s subnet, which VMs attach to.
    public static func subnet(of network: Network) -> Ref<String> {
        Ref(ResourceAddress(type: "azure_subnet", name: network.name), "id")
    }

    /// The id of `network`'s virtual network.
    public static func virtualNetwork(of network: Network) -> Ref<String> {
        Ref(network.address, "id")
    }

    /// The storage account a bucket's container is in.
    public static func storageAccount(of bucket: Bucket) -> ResourceAddress {
        ResourceAddress(type: "azure_storage_account", name: bucket.name)
    }

    func inputs(_ inputs: [String: Value], placement: Placement) -> [String: Value] {
        var inputs = inputs
        inputs["resource_group"] = Self.resourceGroup(of: placement).value
        if let subscription { inputs["subscription"] = .string(subscription) }
        return inputs
    }

    /// Declares the placement's resource group (once per stack) and reports what is wrong
    /// with the placement.
    func declareGroup(_ placement: Placement, address: ResourceAddress, location: SourceLocation, into content: inout StackContent) {
        var problems: [String] = []
        if let subscription, let problem = AzureNaming.problem(subscription: subscription) { problems.append(problem) }
        if let problem = AzureNaming.problem(location: placement.region) { problems.append(problem) }
        if let resourceGroup, let problem = AzureNaming.problem(resourceGroup: resourceGroup) { problems.append(problem) }
        content.diagnostics += problems.map { Diagnostic(address: address, message: $0, location: location) }
        var inputs: [String: Value] = [:]
        if let resourceGroup { inputs["name"] = .string(resourceGroup) }
        if let subscription { inputs["subscription"] = .string(subscription) }
        content.declareShared(DesiredResource(
            address: Self.resourceGroupAddress(of: placement), provider: "azure", region: placement.region, inputs: inputs, dependsOn: []))
    }

    public func declare(network: Network, into content: inout StackContent) {
        let placement = network.placement
        declareGroup(placement, address: network.address, location: network.location, into: &content)
        func add(_ type: String, _ inputs: [String: Value]) {
            content.resources.append(DesiredResource(
                address: ResourceAddress(type: type, name: network.name), provider: "azure", region: placement.region,
                inputs: self.inputs(inputs, placement: placement), dependsOn: network.explicitDependencies, location: network.location))
        }
        let securityGroup = Ref<String>(ResourceAddress(type: "azure_network_security_group", name: network.name), "id")
        add("azure_virtual_network", ["address_space": .list([.string(network.cidr)])])
        add("azure_network_security_group", ["rules": .list([AzureSecurityRule.fromInside(network.cidr).value])])
        add("azure_subnet", [
            "virtual_network": Self.virtualNetwork(of: network).value, "cidr": .string(network.cidr), "network_security_group": securityGroup.value,
        ])
    }

    /// A container is shared with GCP nodes: a managed identity of the container trusts their
    /// service account's Google ID tokens (a federated credential).
    public func sharesBuckets(with clouds: Set<String>) -> Bool { clouds.isSubset(of: ["azure", "gcp"]) }

    /// For GCP nodes: an `azure_node_identity` assigned on the container, and its
    /// `azure_federated_credential` for their account's ID tokens; the nodes exchange those at
    /// Entra for the identity's tokens.
    public func grant(_ bucket: Bucket, to identity: WorkloadIdentity, as name: String, into content: inout StackContent) -> [String: any StringExpression]? {
        guard identity.tokenSource == "gcp" else { return nil }
        let placement = bucket.placement
        let holder = Azure.NodeIdentity(
            name, scope: bucket.id, resourceGroup: Self.resourceGroup(of: placement), subscription: subscription, location: placement.region)
        holder.declare(into: &content)
        Azure.FederatedCredential(name, identity: holder, issuer: "https://accounts.google.com", subject: identity.subject, audience: Self.tokenExchange)
            .declare(into: &content)
        return [
            "AZURE_CLIENT_ID": holder.clientID, "AZURE_TENANT_ID": holder.tenantID, "STRATUM_WEB_IDENTITY": identity.tokenSource,
            "STRATUM_WEB_IDENTITY_AUDIENCE": Self.tokenExchange,
        ]
    }

    /// The audience Entra takes other issuers' tokens for, and issues its own for other clouds.
    static let tokenExchange = "api://AzureADTokenExchange"

    public func declare(bucket: Bucket, into content: inout StackContent) {
        let placement = bucket.placement
        declareGroup(placement, address: bucket.address, location: bucket.location, into: &content)
        let account = Self.storageAccount(of: bucket)
        guard let container = AzureNaming.containerName(bucket.name) else {
            content.diagnostics.append(Diagnostic(
                address: bucket.address, message: "'\(bucket.name)' does not make a blob container name (3-63 of a-z, 0-9 and '-')", location: bucket.location))
            return
        }
        content.resources.append(DesiredResource(
            address: account, provider: "azure", region: placement.region,
            inputs: inputs(["name": .string(AzureNaming.storageAccountName(bucket.name))], placement: placement),
            dependsOn: bucket.explicitDependencies, location: bucket.location))
        content.resources.append(DesiredResource(
            address: bucket.address, provider: "azure", region: placement.region,
            inputs: inputs(["storage_account": .string(AzureNaming.storageAccountName(bucket.name)), "name": .string(container)], placement: placement),
            dependsOn: [account] + bucket.explicitDependencies, location: bucket.location))
    }

    public func declare(nodePool pool: NodePool, into content: inout StackContent) {
        let placement = pool.placement
        func problem(_ message: String) {
            content.diagnostics.append(Diagnostic(address: pool.address, message: message, location: pool.location))
        }
        declareGroup(placement, address: pool.address, location: pool.location, into: &content)
        guard let network = pool.network else {
            return problem("a node pool on Azure needs a network (pass network: Network(…, on: .azure(location: …)))")
        }
        guard network.placement.provider == "azure", network.placement.region == placement.region,
            network.placement.azureSubscription == subscription
        else {
            return problem("the pool's network must be on Azure in \(placement.region)\(subscription.map { " of subscription \($0)" } ?? "") too")
        }
        guard !placement.zones.isEmpty else {
            return problem("a node pool on Azure needs zones to run in: .azure(location: \"\(placement.region)\", zones: [\"1\", \"2\", \"3\"])")
        }
        for message in AzureNaming.problems(zones: placement.zones) { problem(message) }
        guard let machine = AzureMachineCatalog.machine(for: pool.machine) else {
            let what = pool.machine.gpus == 0 ? "\(pool.machine.cpus) vCPUs and \(pool.machine.memoryGiB) GiB" : "\(pool.machine.gpus) × \(pool.machine.gpuClass ?? "GPU")"
            return problem("no Azure VM size known for \(what); set machine.instanceType (e.g. Standard_ND96isr_H100_v5)")
        }
        for message in AzureNaming.problems(tags: pool.labels) { problem(message) }
        var nodeInputs = pool.contractInputs.merging([
            "size": .string(machine.size),
            "zones": .list(placement.zones.map(Value.string)),
            "subnet": Self.subnet(of: network).value,
            "command": .list(pool.command.map(Value.string)),
            "env": .map(pool.env.mapValues(\.value)),
            "tags": .map(pool.labels.mapValues(Value.string)),
            "gpus": .int(machine.gpus),
        ]) { $1 }
        if AzureNaming.isMarketplaceImage(pool.image) {
            nodeInputs["image"] = .string(pool.image)
        } else if !pool.image.isEmpty {
            nodeInputs["container_image"] = .string(pool.image)
        }
        if let gpuClass = machine.gpuClass ?? pool.machine.gpuClass { nodeInputs["gpu_class"] = .string(gpuClass) }
        if pool.machine.spot { nodeInputs["spot"] = .bool(true) }
        if let bucket = pool.checkpointBucket {
            // The nodes carry an identity of their own: assigned on the container on Azure, or
            // trusted by the bucket's cloud, which takes its Entra tokens (for the audience
            // Entra issues managed identities' tokens to other issuers for) for its own keys.
            let local = bucket.placement.provider == "azure"
            let identity = Azure.NodeIdentity(
                pool.name, scope: local ? bucket.id : nil, resourceGroup: Self.resourceGroup(of: placement), subscription: subscription,
                location: placement.region)
            identity.declare(into: &content)
            nodeInputs["identity"] = identity.id.value
            nodeInputs["identity_client_id"] = identity.clientID.value
            if !local {
                let federated = WorkloadIdentity(issuer: identity.issuer, subject: identity.principalID, audience: Self.tokenExchange, tokenSource: "azure")
                guard let environment = pool.federateCheckpoints(as: federated, into: &content) else { return }
                nodeInputs["env"] = environment
            }
        }
        if pool.gang, pool.count > 1 {
            // A gang shares a proximity placement group in the stack's resource group.
            let proximity = Azure.ProximityPlacementGroup(
                pool.name, resourceGroup: Self.resourceGroup(of: placement), vmSizes: [machine.size], subscription: subscription, location: placement.region)
            proximity.declare(into: &content)
            nodeInputs["proximity_placement_group"] = proximity.id.value
        }
        for index in 0..<pool.count {
            var node = nodeInputs
            node["index"] = .int(index)
            node["link"] = pool.link(for: index)?.value
            node.merge(coordinatorInput(index: index, rankZero: pool.node(0))) { $1 }
            content.resources.append(DesiredResource(
                address: pool.node(index), provider: "azure", region: placement.region, inputs: inputs(node, placement: placement),
                dependsOn: pool.explicitDependencies, location: pool.location))
        }
    }
}
