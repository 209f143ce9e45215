import Crypto
import Foundation
import StratumBootstrap
import StratumCloud
import StratumCore

/// What `azure_virtual_machine` makes of its inputs: names, paths, ownership tags and the
/// request bodies of the VM, its network interface and its public IP.
enum AzureVMInputs {
    /// A GPU-ready marketplace image: Ubuntu 22.04 for HPC and AI with the NVIDIA driver,
    /// CUDA, InfiniBand and NCCL installed (`publisher:offer:sku:version`).
    static let defaultImage = "microsoft-dsvm:ubuntu-hpc:2204:latest"
    static let defaultAdmin = "stratum"
    static let defaultOSDiskGiB = 256

    // Stratum's ownership, in tags (values may be 256 characters: they are written as they are).
    /// A VM name: 1-64 letters, digits, '-', '_' and '.', starting with a letter or digit and
    /// ending in neither '-' nor '.'. Stratum keeps it to 60 so the NIC's and IP's names fit too.
    static func isValidName(_ name: String) -> Bool {
        name.range(of: "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,58}[A-Za-z0-9_])?$", options: .regularExpression) != nil
    }

    /// A name for a VM whose stack names none: its address name (and index) in [a-z0-9-] and
    /// the start of the lineage, so two states never pick the same one.
    static func derivedName(from address: ResourceAddress, lineage: String) -> String {
        let named = address.index.map { "\(address.name)-\($0)" } ?? address.name
        var base = String(named.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" })
        if base.first?.isLetter != true { base = "vm-" + base }
        let suffix = String(lineage.lowercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber) }.prefix(8))
        let trimmed = String(base.prefix(59 - suffix.count)).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return suffix.isEmpty ? trimmed : "\(trimmed)-\(suffix)"
    }

    /// The resource group's name from its name or ARM id.
    static func groupName(_ value: String) -> String {
        let parts = value.split(separator: "/").map(String.init)
        if let index = parts.firstIndex(where: { $0.lowercased() == "resourcegroups" }), index + 1 < parts.count { return parts[index + 1] }
        return value
    }

    /// The subscription of an ARM id (`/subscriptions/S/...`), if it is one.
    static func subscription(ofID id: String) -> String? {
        let parts = id.split(separator: "/").map(String.init)
        guard parts.count >= 2, parts[0].lowercased() == "subscriptions" else { return nil }
        return parts[1]
    }

    static func number(_ value: Value?) -> Double? {
        switch value {
        case .int(let number)?: return Double(number)
        case .double(let number)?: return number
        default: return nil
        }
    }

    static func strings(_ value: Value?) -> [String] { (value?.listValue ?? []).compactMap(\.stringValue) }

    /// Sizes without accelerated networking: the A series and the first B series.
    static func supportsAcceleratedNetworking(_ size: String) -> Bool {
        let lower = size.lowercased()
        if lower.hasPrefix("standard_a") || lower.hasPrefix("basic_") { return false }
        if lower.hasPrefix("standard_b") { return lower.hasSuffix("_v2") }
        return true
    }

    /// `publisher:offer:sku:version` as an image reference; an ARM id (a gallery or managed image) by id.
    static func imageReference(_ image: String) -> CloudJSON? {
        if image.hasPrefix("/") { return ["id": .string(image)] }
        let parts = image.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        return ["publisher": .string(parts[0]), "offer": .string(parts[1]), "sku": .string(parts[2]), "version": .string(parts[3])]
    }

    /// What is wrong with a VM's inputs, one sentence each.
    static func problems(_ inputs: [String: Value]) -> [String] {
        var problems: [String] = []
        if let name = inputs["name"]?.stringValue, !isValidName(name) {
            problems.append("name '\(name)' is not a VM name: 1-60 letters, digits, '-', '_' and '.', starting with a letter or digit, not ending in '-' or '.'")
        }
        if let image = inputs["image"]?.stringValue, imageReference(image) == nil {
            problems.append("image '\(image)' is neither publisher:offer:sku:version nor an image's ARM id")
        }
        if let size = inputs["os_disk_gib"]?.intValue, !(30...4095).contains(size) { problems.append("os_disk_gib must be 30-4095 (it is \(size))") }
        if inputs["max_price"] != nil, inputs["spot"]?.boolValue != true { problems.append("max_price applies to spot VMs only: set spot = true") }
        if let price = number(inputs["max_price"]), price != -1, price <= 0 { problems.append("max_price must be -1 (up to the on-demand price) or above 0") }
        let identity = inputs["identity"]?.stringValue ?? "", clientID = inputs["identity_client_id"]?.stringValue ?? ""
        if identity.isEmpty != clientID.isEmpty { problems.append("identity and identity_client_id name one user-assigned identity: give both or neither") }
        if !(inputs["trainer_url"]?.stringValue ?? "").isEmpty, identity.isEmpty {
            problems.append("a VM running the trainer fetches it with its own identity: give it a user-assigned identity (azure_node_identity)")
        }
        problems += AzureTags.problems(AzureTags.input(inputs["tags"]))
        return problems
    }

    /// The VM's managed identity: the user-assigned one of `identity`, else a system-assigned one.
    static func identity(_ inputs: [String: Value]) -> CloudJSON {
        guard let id = inputs["identity"]?.stringValue, !id.isEmpty else { return ["type": "SystemAssigned"] }
        return ["type": "UserAssigned", "userAssignedIdentities": .object([id: [:]])]
    }

    /// The node as its setup is rendered: with a user-assigned identity, its client id is
    /// `AZURE_CLIENT_ID` in node.env, which the fetch and the trainer ask IMDS for tokens of.
    static func node(_ resource: ResolvedResource) -> ResolvedResource {
        guard let clientID = resource.inputs["identity_client_id"]?.stringValue, !clientID.isEmpty else { return resource }
        var node = resource
        var env = resource.inputs["env"]?.mapValue ?? [:]
        env["AZURE_CLIENT_ID"] = .string(clientID)
        node.inputs["env"] = .map(env)
        return node
    }

    /// The VM's PUT body in `zone` (nil: no zone); `secrets` are the references of its env's
    /// secrets in the vault (AzureNodeSecrets), listed in the customData instead of their values.
    static func vmBody(
        _ resource: ResolvedResource, name: String, zone: String?, nic: String, tags: [String: String], sshKey: String, secrets: [String: String] = [:]
    ) throws -> CloudJSON {
        let inputs = resource.inputs
        let size = try required(resource, "size")
        let image = inputs["image"]?.stringValue ?? defaultImage
        guard let reference = imageReference(image) else {
            throw ProviderError(.permanent, "image '\(image)' is neither publisher:offer:sku:version nor an image's ARM id", address: resource.address)
        }
        let admin = inputs["admin_username"]?.stringValue ?? defaultAdmin
        var osProfile: [String: CloudJSON] = [
            "computerName": .string(name), "adminUsername": .string(admin),
            "linuxConfiguration": [
                "disablePasswordAuthentication": true,
                "ssh": ["publicKeys": [["path": .string("/home/\(admin)/.ssh/authorized_keys"), "keyData": .string(sshKey)]]],
            ],
        ]
        let machine = AzureMachineCatalog.bootstrapMachine(size: size, gpus: inputs["gpus"]?.intValue, gpuClass: inputs["gpu_class"]?.stringValue)
        if let userData = try NodeUserData.render(node(resource), flavour: .azure, machine: machine, secrets: secrets) {
            osProfile["customData"] = .string(userData.bytes.base64EncodedString())
        }
        var properties: [String: CloudJSON] = [
            "hardwareProfile": ["vmSize": .string(size)],
            "storageProfile": [
                "imageReference": reference,
                "osDisk": [
                    "createOption": "FromImage", "deleteOption": "Delete",
                    "diskSizeGB": .number(Double(inputs["os_disk_gib"]?.intValue ?? defaultOSDiskGiB)),
                    "managedDisk": ["storageAccountType": "Premium_LRS"],
                ],
            ],
            "osProfile": .object(osProfile),
            "networkProfile": ["networkInterfaces": [["id": .string(nic), "properties": ["primary": true, "deleteOption": "Delete"]]]],
        ]
        if inputs["spot"]?.boolValue == true {
            properties["priority"] = "Spot"
            properties["evictionPolicy"] = "Delete"
            properties["billingProfile"] = ["maxPrice": .number(number(inputs["max_price"]) ?? -1)]
        }
        if let group = inputs["proximity_placement_group"]?.stringValue, !group.isEmpty {
            properties["proximityPlacementGroup"] = ["id": .string(group)]
        }
        var body: [String: CloudJSON] = [
            "location": .string(resource.region), "tags": .object(tags.mapValues(CloudJSON.string)), "identity": identity(inputs),
            "properties": .object(properties),
        ]
        if let zone { body["zones"] = [.string(zone)] }
        return .object(body)
    }

    /// The NIC's PUT body: one IP configuration in the subnet, with the public IP when there is one.
    static func nicBody(_ resource: ResolvedResource, subnet: String, publicIP: String?, tags: [String: String]) throws -> CloudJSON {
        var configuration: [String: CloudJSON] = ["subnet": ["id": .string(subnet)], "privateIPAllocationMethod": "Dynamic"]
        if let publicIP { configuration["publicIPAddress"] = ["id": .string(publicIP)] }
        let size = try required(resource, "size")
        let accelerated = resource.inputs["accelerated_networking"]?.boolValue ?? supportsAcceleratedNetworking(size)
        return [
            "location": .string(resource.region), "tags": .object(tags.mapValues(CloudJSON.string)),
            "properties": ["enableAcceleratedNetworking": .bool(accelerated), "ipConfigurations": [["name": "ipconfig1", "properties": .object(configuration)]]],
        ]
    }

    /// A Standard static IPv4 address; without zones it serves a VM in any zone.
    static func publicIPBody(_ resource: ResolvedResource, tags: [String: String]) -> CloudJSON {
        ["location": .string(resource.region), "tags": .object(tags.mapValues(CloudJSON.string)), "sku": ["name": "Standard"],
         "properties": ["publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"]]
    }

    static func required(_ resource: ResolvedResource, _ key: String) throws -> String {
        guard let value = resource.inputs[key]?.stringValue, !value.isEmpty else {
            throw ProviderError(.permanent, "\(key) is required", address: resource.address)
        }
        return value
    }

    /// An OpenSSH Ed25519 public key whose private half is thrown away at once: a VM made
    /// without `ssh_public_key` takes no SSH login at all (ARM needs some key for a Linux VM).
    static func unusableSSHKey() -> String {
        let key = Curve25519.Signing.PrivateKey().publicKey.rawRepresentation
        func field(_ bytes: Data) -> Data {
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { Data($0) } + bytes
        }
        let blob = field(Data("ssh-ed25519".utf8)) + field(key)
        return "ssh-ed25519 \(blob.base64EncodedString()) stratum-no-login"
    }

    /// The SSH key a live VM was made with.
    static func sshKey(of item: CloudJSON?) -> String? {
        item?["properties"]?["osProfile"]?["linuxConfiguration"]?["ssh"]?["publicKeys"]?.array.first?["keyData"]?.string
    }
}

extension NodeBootScript.AtBoot {
    /// An Azure VM: its zone from the instance metadata service (empty for a VM without one).
    static let azureVM = NodeBootScript.AtBoot(
        lines: [
            "zone=$(curl -sf -H Metadata:true \"${AZURE_POD_IDENTITY_AUTHORITY_HOST:-http://169.254.169.254}/metadata/instance/compute/zone?api-version=2021-02-01&format=text\" || true)",
            "export \(NodeContract.zoneName)=\"$zone\"",
            "export \(NodeContract.nodeIPName)=\"$(curl -sf -H Metadata:true \"${AZURE_POD_IDENTITY_AUTHORITY_HOST:-http://169.254.169.254}/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress?api-version=2021-02-01&format=text\" || true)\"",
        ],
        variables: [NodeContract.zoneName, NodeContract.nodeIPName])
}
