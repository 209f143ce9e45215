import StratumCloud
import StratumCore

extension AzureARMSpec {
    /// `azure_storage_account`: a StorageV2 account for blobs, HTTPS only, TLS 1.2 at least, no
    /// anonymous access. Its name is unique across Azure.
    static let storageAccount = AzureARMSpec(
        type: "azure_storage_account", armType: "Microsoft.Storage/storageAccounts",
        inputs: [
            "resource_group": .input(forceNew: true, required: true), "sku": .input(forceNew: true), "kind": .input(forceNew: true), "tags": .input(),
        ],
        computed: ["blob_endpoint"],
        collection: { inputs, client, address in try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Storage/storageAccounts" },
        nameRule: AzureNames.storageAccount,
        body: { resource, _ in
            [
                "location": .string(resource.region), "sku": ["name": .string(resource.inputs["sku"]?.stringValue ?? "Standard_LRS")],
                "kind": .string(resource.inputs["kind"]?.stringValue ?? "StorageV2"),
                "properties": ["minimumTlsVersion": "TLS1_2", "allowBlobPublicAccess": false, "supportsHttpsTrafficOnly": true],
            ]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["sku"] = item["sku"]?["name"]?.string.map(Value.string)
            attributes["kind"] = item["kind"]?.string.map(Value.string)
            attributes["blob_endpoint"] = item["properties"]?["primaryEndpoints"]?["blob"]?.string.map(Value.string)
            return attributes
        })

    /// `azure_blob_container`: a private container of a storage account; its `url` is
    /// `az://{account}/{container}`. Containers have no tags: ownership is in their metadata,
    /// which `stratum sweep` reads in the storage accounts that carry Stratum's tags.
    static let blobContainer = AzureARMSpec(
        type: "azure_blob_container", armType: "Microsoft.Storage/storageAccounts/blobServices/containers",
        inputs: ["resource_group": .input(forceNew: true, required: true), "storage_account": .input(forceNew: true, required: true)],
        computed: ["url"], ownership: .metadata,
        collection: { inputs, client, address in
            let account = try AzureInputs.string(inputs, "storage_account", address)
            let path = account.hasPrefix("/subscriptions/")
                ? account : try AzureInputs.group(inputs, client, address) + "/providers/Microsoft.Storage/storageAccounts/\(account)"
            return path + "/blobServices/default/containers"
        },
        nameRule: AzureNames.container,
        body: { _, _ in ["properties": ["publicAccess": "None"]] },
        attributes: { item in
            var attributes: [String: Value] = [:]
            let parts = (item["id"]?.string ?? "").split(separator: "/").map(String.init)
            if let index = parts.firstIndex(where: { $0.lowercased() == "storageaccounts" }), index + 1 < parts.count, let name = item["name"]?.string {
                attributes["url"] = .string("az://\(parts[index + 1])/\(name)")
            }
            return attributes
        })
}

extension AzureARMSpec {
    /// `azure_federated_credential`: a federated identity credential of a user-assigned managed
    /// identity (`identity`, its ARM id): tokens of `issuer` for `subject` and one of
    /// `audiences` may be exchanged at Entra for the identity's own. How nodes of another cloud
    /// (a GCP service account's Google ID tokens) reach a container the identity may use. It
    /// has no tags: recovery adopts what has the create's name, and `stratum sweep` cannot list
    /// it (`owned()` is nil); it goes with its identity.
    static let federatedCredential = AzureARMSpec(
        type: "azure_federated_credential", armType: "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        inputs: [
            "identity": .input(forceNew: true, required: true), "issuer": .input(required: true), "subject": .input(required: true),
            "audiences": .input(required: true),
        ],
        computed: [], ownership: .nowhere,
        collection: { inputs, _, address in
            let identity = try AzureInputs.string(inputs, "identity", address)
            guard identity.hasPrefix("/subscriptions/") else {
                throw ProviderError(.permanent, "identity '\(identity)' is not an ARM id of a user-assigned identity", address: address)
            }
            return identity + "/federatedIdentityCredentials"
        },
        nameRule: AzureNames.federatedCredential,
        body: { resource, _ in
            let audiences: [CloudJSON] =
                if case .list(let items)? = resource.inputs["audiences"] { items.compactMap(\.stringValue).map(CloudJSON.string) } else { [] }
            return [
                "properties": [
                    "issuer": .string(try AzureInputs.string(resource.inputs, "issuer", resource.address)),
                    "subject": .string(try AzureInputs.string(resource.inputs, "subject", resource.address)), "audiences": .array(audiences),
                ]
            ]
        },
        attributes: { item in
            var attributes: [String: Value] = [:]
            attributes["issuer"] = item["properties"]?["issuer"]?.string.map(Value.string)
            attributes["subject"] = item["properties"]?["subject"]?.string.map(Value.string)
            if case .array(let audiences)? = item["properties"]?["audiences"] { attributes["audiences"] = .list(audiences.compactMap(\.string).map(Value.string)) }
            return attributes
        })
}
