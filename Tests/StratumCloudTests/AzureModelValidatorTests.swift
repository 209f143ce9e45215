import Foundation
import StratumCore
import StratumTesting
import Testing

/// Request bodies a GPU cluster on Azure sends, well formed, by the SDK model each is checked against.
enum AzureBodies {
    static let subscription = "00000000-0000-4000-8000-000000000001"

    static func id(_ group: String, _ type: String, _ name: String) -> String {
        "/subscriptions/\(subscription)/resourceGroups/\(group)/providers/\(type)/\(name)"
    }

    static func virtualMachine(group: String = "rg", nic: String = "node-0-nic", zone: String? = "1", tags: [String: Value] = ["stratum-stack": "demo"]) -> Value {
        var body: [String: Value] = [
            "location": "eastus",
            "tags": .map(tags),
            "identity": ["type": "SystemAssigned"],
            "properties": [
                "hardwareProfile": ["vmSize": "Standard_ND96isr_H100_v5"],
                "priority": "Spot", "evictionPolicy": "Delete", "billingProfile": ["maxPrice": -1],
                "storageProfile": [
                    "imageReference": ["publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"],
                    "osDisk": ["createOption": "FromImage", "diskSizeGB": 256, "deleteOption": "Delete", "managedDisk": ["storageAccountType": "Premium_LRS"]],
                ],
                "osProfile": [
                    "computerName": "node-0", "adminUsername": "stratum", "customData": "IyEvYmluL3NoCmVjaG8gcmVhZHkK",
                    "linuxConfiguration": ["disablePasswordAuthentication": true,
                        "ssh": ["publicKeys": [["path": "/home/stratum/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA stratum"]]]],
                ],
                "networkProfile": ["networkInterfaces": [["id": .string(id(group, "Microsoft.Network/networkInterfaces", nic)), "properties": ["primary": true, "deleteOption": "Delete"]]]],
                "proximityPlacementGroup": ["id": .string(id(group, "Microsoft.Compute/proximityPlacementGroups", "ppg"))],
            ],
        ]
        if let zone { body["zones"] = [.string(zone)] }
        return .map(body)
    }

    static func networkInterface(group: String = "rg", publicIP: Bool = false) -> Value {
        var configuration: [String: Value] = [
            "subnet": ["id": .string(id(group, "Microsoft.Network/virtualNetworks", "net") + "/subnets/workers")],
            "privateIPAllocationMethod": "Dynamic",
        ]
        if publicIP { configuration["publicIPAddress"] = ["id": .string(id(group, "Microsoft.Network/publicIPAddresses", "node-0-ip"))] }
        return [
            "location": "eastus",
            "properties": [
                "enableAcceleratedNetworking": true,
                "ipConfigurations": [["name": "ipconfig1", "properties": .map(configuration)]],
                "networkSecurityGroup": ["id": .string(id(group, "Microsoft.Network/networkSecurityGroups", "nsg"))],
            ],
        ]
    }

    static let virtualNetwork: Value = [
        "location": "eastus", "tags": ["stratum-stack": "demo"],
        "properties": [
            "addressSpace": ["addressPrefixes": ["10.0.0.0/16"]],
            "subnets": [["name": "workers", "properties": ["addressPrefix": "10.0.0.0/20"]]],
        ],
    ]

    static let subnet: Value = ["properties": ["addressPrefix": "10.0.16.0/20"]]

    static let securityRule: Value = [
        "properties": [
            "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": "Internet",
            "destinationAddressPrefix": "*", "access": "Allow", "priority": 100, "direction": "Inbound",
        ],
    ]

    static let securityGroup: Value = [
        "location": "eastus",
        "properties": ["securityRules": [["name": "ssh", "properties": securityRule.mapValue?["properties"] ?? .null]]],
    ]

    static let publicIP: Value = [
        "location": "eastus", "sku": ["name": "Standard"], "zones": ["1"],
        "properties": ["publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"],
    ]

    static let placementGroup: Value = ["location": "eastus", "properties": ["proximityPlacementGroupType": "Standard"]]
    static let resourceGroup: Value = ["location": "eastus", "tags": ["stratum-stack": "demo"]]
    static let storageAccount: Value = [
        "location": "eastus", "kind": "StorageV2", "sku": ["name": "Standard_LRS"],
        "properties": ["minimumTlsVersion": "TLS1_2", "allowBlobPublicAccess": false],
    ]
    static let container: Value = ["properties": ["publicAccess": "None"]]

    /// Each body with the model the fake checks it against.
    static var all: [(String, Value)] {
        [
            ("VirtualMachine", virtualMachine()), ("NetworkInterface", networkInterface(publicIP: true)), ("VirtualNetwork", virtualNetwork),
            ("Subnet", subnet), ("SecurityRule", securityRule), ("NetworkSecurityGroup", securityGroup), ("PublicIPAddress", publicIP),
            ("ProximityPlacementGroup", placementGroup), ("ResourceGroup", resourceGroup), ("StorageAccountCreateParameters", storageAccount),
            ("BlobContainer", container), ("TagsObject", ["tags": ["stratum-stack": "demo"]]),
            ("VirtualMachineUpdate", ["tags": ["stratum-stack": "demo"]]), ("ResourceGroupPatchable", ["tags": ["a": "b"]]),
        ]
    }

    static func editing(_ value: Value, _ edit: (inout [String: Value]) -> Void) -> Value {
        var fields = value.mapValue ?? [:]
        edit(&fields)
        return .map(fields)
    }
}

@Suite("ARM bodies checked against the Azure SDK's models", .timeLimit(.minutes(3)))
struct AzureModelValidatorTests {
    let validator: AzureModelValidator

    init() throws {
        validator = try AzureModelValidator.installedSDK()
    }

    @Test func acceptsTheBodiesAGPUClusterSends() {
        for (model, body) in AzureBodies.all {
            #expect(validator.validate(body, as: model) == [], "\(model)")
        }
        // The schema comes from the SDK: the VM's REST keys are ARM's, not Python's.
        #expect(validator.keys(of: "VirtualMachine").contains("properties"))
        #expect(validator.keys(of: "VirtualMachine").contains("zones"))
        #expect(!validator.keys(of: "VirtualMachine").contains("hardware_profile"))
    }

    @Test func rejectsEachClassOfBadBody() {
        let vm = AzureBodies.virtualMachine()
        func vmEditing(_ path: [String], _ value: Value?) -> Value {
            func set(_ node: Value, _ rest: ArraySlice<String>) -> Value {
                guard let key = rest.first else { return value ?? .null }
                var fields = node.mapValue ?? [:]
                fields[key] = rest.count == 1 ? value : set(fields[key] ?? [:], rest.dropFirst())
                return .map(fields)
            }
            return set(vm, path[...])
        }
        let bad: [(String, Value, AzureModelValidator.Violation.Kind, String)] = [
            ("VirtualMachine", vmEditing(["properties", "hardwareProfile", "vmSzie"], "Standard_ND96isr_H100_v5"), .unknownField, "body.properties.hardwareProfile.vmSzie"),
            ("VirtualMachine", vmEditing(["properties", "hardware_profile"], ["vmSize": "x"]), .unknownField, "body.properties.hardware_profile"),
            ("VirtualMachine", vmEditing(["properties", "storageProfile", "osDisk", "diskSizeGB"], "256"), .wrongType, "body.properties.storageProfile.osDisk.diskSizeGB"),
            ("VirtualMachine", vmEditing(["zones"], "1"), .wrongType, "body.zones"),
            ("VirtualMachine", vmEditing(["properties", "billingProfile", "maxPrice"], "cheap"), .wrongType, "body.properties.billingProfile.maxPrice"),
            ("VirtualMachine", vmEditing(["tags", "count"], 3), .wrongType, "body.tags.count"),
            ("VirtualMachine", vmEditing(["location"], nil), .missingField, "body.location"),
            ("VirtualMachine", vmEditing(["properties", "storageProfile", "osDisk", "createOption"], nil), .missingField, "body.properties.storageProfile.osDisk.createOption"),
            ("VirtualMachine", vmEditing(["properties", "provisioningState"], "Succeeded"), .readOnlyField, "body.properties.provisioningState"),
            ("VirtualMachine", vmEditing(["id"], "/subscriptions/x"), .readOnlyField, "body.id"),
            ("VirtualMachine", vmEditing(["identity", "principalId"], "p"), .readOnlyField, "body.identity.principalId"),
            ("NetworkInterface", AzureBodies.editing(AzureBodies.networkInterface()) { $0["properties"] = ["enableAcceleratedNetworking": "yes"] }, .wrongType,
                "body.properties.enableAcceleratedNetworking"),
            ("SecurityRule", ["properties": ["protocol": "Tcp", "access": "Allow", "direction": "Inbound"]], .missingField, "body.properties.priority"),
            ("StorageAccountCreateParameters", AzureBodies.editing(AzureBodies.storageAccount) { $0["sku"] = nil }, .missingField, "body.sku"),
            ("StorageAccountCreateParameters", AzureBodies.editing(AzureBodies.storageAccount) { $0["sku"] = ["name": "Standard_LRS", "tier": "Standard"] }, .readOnlyField,
                "body.sku.tier"),
            ("ResourceGroup", ["location": "eastus", "properties": ["provisioningState": "Succeeded"]], .readOnlyField, "body.properties.provisioningState"),
            ("BlobContainer", ["properties": ["publicAccess": "None"], "etag": "\"0x1\""], .readOnlyField, "body.etag"),
        ]
        for (model, body, kind, location) in bad {
            let violations = validator.validate(body, as: model)
            #expect(violations.map(\.kind) == [kind], "\(model) \(location): \(violations)")
            #expect(violations.first?.location == location)
        }
        // What the service answers may hold read-only fields and leave out required ones, but not
        // undeclared fields or wrong types.
        #expect(validator.validate(vmEditing(["properties", "provisioningState"], "Succeeded"), as: "VirtualMachine", .response) == [])
        #expect(validator.validate(vmEditing(["location"], nil), as: "VirtualMachine", .response) == [])
        #expect(validator.validate(vmEditing(["properties", "vmSzie"], "x"), as: "VirtualMachine", .response).map(\.kind) == [.unknownField])
        #expect(validator.validate(vmEditing(["zones"], 1), as: "VirtualMachine", .response).map(\.kind) == [.wrongType])
        #expect(validator.validate(Data("[1]".utf8), as: "VirtualMachine").map(\.kind) == [.invalidBody])
        #expect(validator.validate(Data("not json".utf8), as: "VirtualMachine").map(\.kind) == [.invalidBody])
        #expect(validator.validate(AzureBodies.placementGroup, as: "NoSuchModel").map(\.kind) == [.invalidBody])
    }

    /// Older SDK packages generate msrest models: `_attribute_map` with flattened `properties.…`
    /// keys and `_validation`. A module of that shape is dumped and checked the same way.
    @Test func readsMsrestModels() throws {
        let directory = try TestSupport.temporaryDirectory("stratum-msrest-models")
        defer { try? FileManager.default.removeItem(at: directory) }
        let module = """
            class SubResource:
                _attribute_map = {"id": {"key": "id", "type": "str"}}

            class Sku:
                _validation = {"name": {"required": True}, "tier": {"readonly": True}}
                _attribute_map = {"name": {"key": "name", "type": "str"}, "tier": {"key": "tier", "type": "str"}}

            class Widget:
                _validation = {"location": {"required": True}, "id": {"readonly": True}, "provisioning_state": {"readonly": True}}
                _attribute_map = {
                    "id": {"key": "id", "type": "str"},
                    "location": {"key": "location", "type": "str"},
                    "tags": {"key": "tags", "type": "{str}"},
                    "sku": {"key": "sku", "type": "Sku"},
                    "size_gb": {"key": "properties.sizeGB", "type": "int"},
                    "parts": {"key": "properties.parts", "type": "[SubResource]"},
                    "provisioning_state": {"key": "properties.provisioningState", "type": "str"},
                    "dotted": {"key": "properties.a\\\\.b", "type": "bool"},
                }
            """
        try Data(module.utf8).write(to: directory.appendingPathComponent("msrest_widgets.py"))
        let schema = try AzureModelValidator.dump(["Widget": "msrest_widgets:Widget"], pythonPath: directory.path)
        let validator = try AzureModelValidator(schema: schema)
        let good: Value = [
            "location": "eastus", "tags": ["k": "v"], "sku": ["name": "Basic"],
            "properties": ["sizeGB": 10, "parts": [["id": "/subscriptions/s/x"]], "a.b": true],
        ]
        #expect(validator.validate(good, as: "Widget") == [])
        let cases: [(Value, AzureModelValidator.Violation.Kind, String)] = [
            (AzureBodies.editing(good) { $0["location"] = nil }, .missingField, "body.location"),
            (AzureBodies.editing(good) { $0["properties"] = ["sizeGB": "10"] }, .wrongType, "body.properties.sizeGB"),
            (AzureBodies.editing(good) { $0["properties"] = ["size_gb": 10] }, .unknownField, "body.properties.size_gb"),
            (AzureBodies.editing(good) { $0["properties"] = ["provisioningState": "Succeeded"] }, .readOnlyField, "body.properties.provisioningState"),
            (AzureBodies.editing(good) { $0["sku"] = ["tier": "Basic"] }, .readOnlyField, "body.sku.tier"),
            (AzureBodies.editing(good) { $0["properties"] = ["parts": [["id": 1]]] }, .wrongType, "body.properties.parts[0].id"),
        ]
        for (body, kind, location) in cases {
            let violations = validator.validate(body, as: "Widget")
            #expect(violations.contains { $0.kind == kind && $0.location == location }, "\(location): \(violations)")
        }
        // The missing sku name is reported where it is missing.
        #expect(validator.validate(AzureBodies.editing(good) { $0["sku"] = [:] }, as: "Widget").map(\.location) == ["body.sku.name"])
    }

    @Test func aSchemaThatIsNotOneIsRefused() {
        #expect(throws: AzureModelSchemaError.self) { try AzureModelValidator(schema: Data(#"{"kind": "x"}"#.utf8)) }
        #expect(throws: (any Error).self) { try AzureModelValidator(schema: Data("not json".utf8)) }
        #expect(throws: AzureModelSchemaError.self) { try AzureModelValidator.dump(["X": "no_such_module_for_stratum:X"]) }
    }
}
