import Foundation
import StratumCore

/// Checks ARM request bodies against the models of Azure's own Python SDK (azure-mgmt-compute,
/// -network, -resource, -storage, -msi, -authorization, -keyvault; azure-keyvault-secrets for
/// Key Vault's data-plane answers): at first use a Python script imports the model classes and
/// walks each one's declared REST keys and types recursively (TypeSpec-generated `rest_field`s,
/// or msrest's `_attribute_map` and `_validation` in older packages), dumping a JSON schema;
/// bodies are then walked against it. An undeclared field, a value of the wrong JSON type, a
/// value outside a closed enum, a missing required field, or a read-only field set by the
/// caller is a violation. Nothing of the SDK is copied into the repository.
public struct AzureModelValidator: Sendable {
    /// One thing wrong with a body.
    public struct Violation: Sendable, Hashable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// A key the model does not declare.
            case unknownField
            /// A value of the wrong JSON type.
            case wrongType
            /// A value outside a closed enum.
            case invalidEnum
            /// A required key that is absent or null.
            case missingField
            /// A key the service sets (read-only) in a request.
            case readOnlyField
            /// A body that is not a JSON object, or a root model the schema lacks.
            case invalidBody
        }

        public var kind: Kind
        /// Where: `body.properties.hardwareProfile.vmSize`.
        public var location: String
        public var detail: String

        public var description: String { "\(kind.rawValue) at \(location): \(detail)" }
    }

    /// The SDK classes the ARM fake checks bodies against, by the name the fake uses for them.
    public static let sdkModels: [String: String] = [
        "ResourceGroup": "azure.mgmt.resource.resources.models:ResourceGroup",
        "ResourceGroupPatchable": "azure.mgmt.resource.resources.models:ResourceGroupPatchable",
        "VirtualNetwork": "azure.mgmt.network.models:VirtualNetwork",
        "Subnet": "azure.mgmt.network.models:Subnet",
        "NetworkSecurityGroup": "azure.mgmt.network.models:NetworkSecurityGroup",
        "SecurityRule": "azure.mgmt.network.models:SecurityRule",
        "NetworkInterface": "azure.mgmt.network.models:NetworkInterface",
        "PublicIPAddress": "azure.mgmt.network.models:PublicIPAddress",
        "TagsObject": "azure.mgmt.network.models:TagsObject",
        "ProximityPlacementGroup": "azure.mgmt.compute.models:ProximityPlacementGroup",
        "ProximityPlacementGroupUpdate": "azure.mgmt.compute.models:ProximityPlacementGroupUpdate",
        "VirtualMachine": "azure.mgmt.compute.models:VirtualMachine",
        "VirtualMachineUpdate": "azure.mgmt.compute.models:VirtualMachineUpdate",
        "StorageAccountCreateParameters": "azure.mgmt.storage.models:StorageAccountCreateParameters",
        "StorageAccountUpdateParameters": "azure.mgmt.storage.models:StorageAccountUpdateParameters",
        "StorageAccount": "azure.mgmt.storage.models:StorageAccount",
        "BlobContainer": "azure.mgmt.storage.models:BlobContainer",
        "StorageAccountListKeysResult": "azure.mgmt.storage.models:StorageAccountListKeysResult",
        "Identity": "azure.mgmt.msi.v2024_11_30.models:Identity",
        "IdentityUpdate": "azure.mgmt.msi.v2024_11_30.models:IdentityUpdate",
        "FederatedIdentityCredential": "azure.mgmt.msi.v2024_11_30.models:FederatedIdentityCredential",
        "RoleAssignmentCreateParameters": "azure.mgmt.authorization.v2022_04_01.models:RoleAssignmentCreateParameters",
        "RoleAssignment": "azure.mgmt.authorization.v2022_04_01.models:RoleAssignment",
        "VaultCreateOrUpdateParameters": "azure.mgmt.keyvault.models:VaultCreateOrUpdateParameters",
        "VaultPatchParameters": "azure.mgmt.keyvault.models:VaultPatchParameters",
        "Vault": "azure.mgmt.keyvault.models:Vault",
        "DeletedVault": "azure.mgmt.keyvault.models:DeletedVault",
        "SecretCreateOrUpdateParameters": "azure.mgmt.keyvault.models:SecretCreateOrUpdateParameters",
        "SecretPatchParameters": "azure.mgmt.keyvault.models:SecretPatchParameters",
        "Secret": "azure.mgmt.keyvault.models:Secret",
        // Key Vault's data plane: what a secret GET answers (the Key Vault fake).
        "SecretBundle": "azure.keyvault.secrets._generated.models:SecretBundle",
    ]

    /// Root names (`VirtualMachine`) to model ids in `models`.
    public let roots: [String: String]
    let models: [String: [String: Field]]

    /// Builds a validator from a schema the dump script wrote.
    public init(schema: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: schema) as? [String: Any],
            let roots = root["roots"] as? [String: String], let models = root["models"] as? [String: Any]
        else { throw AzureModelSchemaError("not a model schema: it needs `roots` and `models`") }
        self.roots = roots
        self.models = models.compactMapValues { model in
            ((model as? [String: Any])?["fields"] as? [String: Any]).map(Self.fields)
        }
    }

    /// The validator for `sdkModels`, dumped once per process from the installed packages.
    public static func installedSDK() throws -> AzureModelValidator { try loaded.get() }

    private static let loaded: Result<AzureModelValidator, any Error> = Result {
        if let path = ProcessInfo.processInfo.environment["STRATUM_TEST_AZURE_MODELS"], !path.isEmpty {
            return try AzureModelValidator(schema: Data(contentsOf: URL(fileURLWithPath: path)))
        }
        return try AzureModelValidator(schema: dump(sdkModels))
    }

    /// Runs the dump script with `python3` for `models` (name → `module:Class`); `pythonPath`
    /// is prepended to the interpreter's module path. Returns the schema JSON.
    public static func dump(_ models: [String: String], pythonPath: String? = nil) throws -> Data {
        let directory = try TestSupport.temporaryDirectory("stratum-azure-models")
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("dump_models.py")
        try Data(dumpScript.utf8).write(to: script)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path] + models.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        var environment = ProcessInfo.processInfo.environment
        if let pythonPath {
            environment["PYTHONPATH"] = [pythonPath, environment["PYTHONPATH"]].compactMap { $0 }.joined(separator: ":")
        }
        process.environment = environment
        let output = directory.appendingPathComponent("schema.json")
        let errors = directory.appendingPathComponent("errors.txt")
        try Data().write(to: output)
        try Data().write(to: errors)
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = (try? String(contentsOf: errors, encoding: .utf8))?.split(separator: "\n").last.map(String.init) ?? ""
            throw AzureModelSchemaError(
                "the Azure SDK models could not be read (\(message)): install azure-mgmt-compute, azure-mgmt-network, azure-mgmt-resource, azure-mgmt-storage, azure-mgmt-msi and azure-mgmt-authorization (`python3 -m pip install ...`) or set STRATUM_TEST_AZURE_MODELS to a dumped schema")
        }
        return try Data(contentsOf: output)
    }

    /// Which way a body travels: a request may not set read-only fields and must have the
    /// required ones; a response may hold read-only fields and omit any.
    public enum Direction: Sendable {
        case request
        case response
    }

    /// Checks a JSON body against the root model `root` (a key of `roots`).
    public func validate(_ body: Data, as root: String, _ direction: Direction = .request) -> [Violation] {
        guard let value = try? JSONDecoder().decode(Value.self, from: body), case .map = value else {
            return [Violation(kind: .invalidBody, location: "body", detail: "not a JSON object")]
        }
        return validate(value, as: root, direction)
    }

    /// Checks a body, as a value, against the root model `root`.
    public func validate(_ value: Value, as root: String, _ direction: Direction = .request) -> [Violation] {
        guard let model = roots[root] else {
            return [Violation(kind: .invalidBody, location: "body", detail: "the schema has no model '\(root)'")]
        }
        var violations: [Violation] = []
        check(value, against: .model(model), location: "body", request: direction == .request, into: &violations)
        return violations
    }

    /// The model id a root name stands for, and its declared REST keys (for tests and reports).
    public func keys(of root: String) -> [String] {
        roots[root].flatMap { models[$0] }.map { $0.keys.sorted() } ?? []
    }

    private func check(_ value: Value, against type: FieldType, location: String, request: Bool, into violations: inout [Violation]) {
        if case .null = value { return }
        func wrong(_ expected: String) {
            violations.append(Violation(kind: .wrongType, location: location, detail: "expected \(expected), got \(value)"))
        }
        switch type {
        case .any:
            return
        case .string(let allowed):
            guard case .string(let text) = value else { return wrong("a string") }
            if let allowed, !allowed.contains(text) {
                violations.append(Violation(kind: .invalidEnum, location: location, detail: "'\(text)' is not one of \(allowed.joined(separator: ", "))"))
            }
        case .integer:
            guard case .int = value else { return wrong("an integer") }
        case .number:
            switch value {
            case .int, .double: return
            default: wrong("a number")
            }
        case .boolean:
            guard case .bool = value else { return wrong("a boolean") }
        case .list(let items):
            guard case .list(let elements) = value else { return wrong("an array") }
            for (index, element) in elements.enumerated() { check(element, against: items, location: "\(location)[\(index)]", request: request, into: &violations) }
        case .dict(let values):
            guard case .map(let entries) = value else { return wrong("an object") }
            for (key, entry) in entries.sorted(by: { $0.key < $1.key }) { check(entry, against: values, location: "\(location).\(key)", request: request, into: &violations) }
        case .model(let id):
            guard let fields = models[id] else { return }
            checkObject(value, fields: fields, location: location, request: request, into: &violations)
        case .inline(let fields):
            checkObject(value, fields: fields, location: location, request: request, into: &violations)
        }
    }

    private func checkObject(_ value: Value, fields: [String: Field], location: String, request: Bool, into violations: inout [Violation]) {
        guard case .map(let entries) = value else {
            violations.append(Violation(kind: .wrongType, location: location, detail: "expected an object, got \(value)"))
            return
        }
        for (key, entry) in entries.sorted(by: { $0.key < $1.key }) {
            guard let field = fields[key] else {
                violations.append(Violation(kind: .unknownField, location: "\(location).\(key)", detail: "not declared by the model"))
                continue
            }
            if field.readOnly && request {
                violations.append(Violation(kind: .readOnlyField, location: "\(location).\(key)", detail: "read-only: set by the service"))
            }
            check(entry, against: field.type, location: "\(location).\(key)", request: request, into: &violations)
        }
        for (key, field) in fields.sorted(by: { $0.key < $1.key }) where request && field.required && (entries[key] == nil || entries[key] == .null) {
            violations.append(Violation(kind: .missingField, location: "\(location).\(key)", detail: "required by the model"))
        }
    }

    private static func fields(_ json: [String: Any]) -> [String: Field] {
        json.compactMapValues { entry in
            guard let field = entry as? [String: Any], let type = FieldType(json: field["type"]) else { return nil }
            return Field(type: type, required: field["required"] as? Bool ?? false, readOnly: field["readOnly"] as? Bool ?? false)
        }
    }

    struct Field: Sendable {
        var type: FieldType
        var required: Bool
        var readOnly: Bool
    }

    indirect enum FieldType: Sendable {
        case any
        case string(enumValues: [String]?)
        case integer
        case number
        case boolean
        case list(FieldType)
        case dict(FieldType)
        /// A model by id in `models`.
        case model(String)
        /// An object with no class of its own (msrest's flattened `properties.…` keys).
        case inline([String: Field])

        init?(json: Any?) {
            guard let object = json as? [String: Any], let kind = object["kind"] as? String else { return nil }
            switch kind {
            case "any": self = .any
            case "string": self = .string(enumValues: object["enum"] as? [String])
            case "integer": self = .integer
            case "number": self = .number
            case "boolean": self = .boolean
            case "list": self = .list(FieldType(json: object["items"]) ?? .any)
            case "dict": self = .dict(FieldType(json: object["values"]) ?? .any)
            case "model":
                guard let id = object["model"] as? String else { return nil }
                self = .model(id)
            case "inline": self = .inline(AzureModelValidator.fields(object["fields"] as? [String: Any] ?? [:]))
            default: return nil
            }
        }
    }

    /// The script that dumps SDK models: arguments `NAME=module:Class`, JSON on standard output.
    static let dumpScript = #"""
"""Dumps the REST shape of Azure SDK models as JSON: for each model its REST keys with type,
required and read-only flags. Handles TypeSpec-generated models (rest_field) and msrest models
(_attribute_map / _validation). Arguments: ROOT=module:Class ... ; prints JSON on stdout."""
import datetime, enum, importlib, json, sys, typing

models = {}
roots = {}

def model_name(cls):
    return cls.__module__ + "." + cls.__qualname__

def is_typespec(cls):
    return isinstance(cls, type) and getattr(cls, "_is_model", False) and not hasattr(cls, "_attribute_map")

def is_msrest(cls):
    return isinstance(cls, type) and isinstance(getattr(cls, "_attribute_map", None), dict)

def primitive(py):
    if py is bool: return {"kind": "boolean"}
    if py is int: return {"kind": "integer"}
    if py is float: return {"kind": "number"}
    if py in (str, bytes, bytearray, datetime.datetime, datetime.date, datetime.time, datetime.timedelta):
        return {"kind": "string"}
    if isinstance(py, type) and issubclass(py, enum.Enum):
        return {"kind": "string", "enum": sorted(str(m.value) for m in py)}
    return None

def typespec_type(tp, module):
    if isinstance(tp, typing.ForwardRef):
        tp = tp.__forward_arg__
    if isinstance(tp, str):
        namespace = dict(vars(sys.modules[module]))
        # The generated modules import their package's models as `_models` for type checking only.
        namespace.setdefault("_models", sys.modules[module.rsplit(".", 1)[0]])
        tp = eval(tp, namespace)
    if tp is typing.Any or tp is object:
        return {"kind": "any"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return typespec_type(options[0], module)
        kinds = [typespec_type(a, module) for a in options]
        # Union[str, SomeEnum]: an extensible enum, any string.
        if all(k["kind"] == "string" for k in kinds):
            return {"kind": "string"}
        if all(k["kind"] in ("integer", "number") for k in kinds):
            return {"kind": "number"}
        return {"kind": "any"}
    if origin is typing.Literal:
        return {"kind": "string", "enum": sorted(str(a) for a in args)}
    if origin in (list, typing.List) or origin is getattr(__import__("collections.abc").abc, "Sequence"):
        return {"kind": "list", "items": typespec_type(args[0], module) if args else {"kind": "any"}}
    if origin in (dict, typing.Dict) or origin is getattr(__import__("collections.abc").abc, "Mapping"):
        return {"kind": "dict", "values": typespec_type(args[1], module) if len(args) > 1 else {"kind": "any"}}
    found = primitive(tp)
    if found: return found
    if is_typespec(tp) or is_msrest(tp):
        return {"kind": "model", "model": walk(tp)}
    return {"kind": "any"}

def optional(tp):
    if isinstance(tp, str):
        return tp.startswith("Optional[")
    return type(None) in typing.get_args(tp)

def walk_typespec(cls):
    fields = {}
    for klass in reversed(cls.__mro__):
        for attr, rf in vars(klass).items():
            if attr.startswith("_") or not hasattr(rf, "_visibility") or not hasattr(rf, "_rest_name_input"):
                continue
            annotation = getattr(klass, "__annotations__", {}).get(attr)
            rest = rf._rest_name_input or attr
            visibility = rf._visibility or []
            read_only = bool(visibility) and not any(v in visibility for v in ("create", "update"))
            fields[rest] = {
                "type": typespec_type(annotation, klass.__module__) if annotation is not None else {"kind": "any"},
                "required": annotation is not None and not optional(annotation) and not read_only,
                "readOnly": read_only,
            }
            if getattr(rf, "_is_discriminator", False):
                fields[rest]["discriminator"] = True
    return fields

def msrest_type(text, module):
    if text.startswith("[") and text.endswith("]"):
        return {"kind": "list", "items": msrest_type(text[1:-1], module)}
    if text.startswith("{") and text.endswith("}"):
        return {"kind": "dict", "values": msrest_type(text[1:-1], module)}
    simple = {"str": "string", "iso-8601": "string", "rfc-1123": "string", "duration": "string", "date": "string",
              "bytearray": "string", "base64": "string", "unix-time": "integer", "int": "integer", "long": "integer",
              "float": "number", "decimal": "number", "bool": "boolean", "object": "any"}
    if text in simple:
        return {"kind": simple[text]}
    target = getattr(sys.modules[module], text, None)
    if is_msrest(target):
        return {"kind": "model", "model": walk(target)}
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return {"kind": "string"}
    return {"kind": "any"}

def walk_msrest(cls):
    # Keys such as `properties.hardwareProfile` are flattened on the Python side: unflatten them
    # into nested objects, as they travel.
    tree = {}
    validation = getattr(cls, "_validation", {}) or {}
    for attr, entry in cls._attribute_map.items():
        key = entry.get("key", attr)
        parts = [p.replace("\\.", ".") for p in key.replace("\\.", "\x00").split(".")]
        parts = [p.replace("\x00", ".") for p in parts]
        rules = validation.get(attr, {})
        field = {"type": msrest_type(entry.get("type", "object"), cls.__module__),
                 "required": bool(rules.get("required")) and not rules.get("readonly"),
                 "readOnly": bool(rules.get("readonly"))}
        node = tree
        for part in parts[:-1]:
            holder = node.setdefault(part, {"type": {"kind": "inline", "fields": {}}, "required": False, "readOnly": False})
            node = holder["type"]["fields"]
        node[parts[-1]] = field
    # An inline object whose every field is read-only is read-only itself; one with a required
    # field is required.
    def settle(fields):
        for field in fields.values():
            if field["type"]["kind"] == "inline":
                inner = field["type"]["fields"]
                settle(inner)
                field["readOnly"] = all(f["readOnly"] for f in inner.values())
                field["required"] = any(f["required"] for f in inner.values())
    settle(tree)
    return tree

def walk(cls):
    name = model_name(cls)
    if name in models:
        return name
    models[name] = {}  # placeholder against recursion
    models[name] = {"fields": walk_msrest(cls) if is_msrest(cls) else walk_typespec(cls),
                    "style": "msrest" if is_msrest(cls) else "typespec"}
    return name

for argument in sys.argv[1:]:
    root, _, target = argument.partition("=")
    module, _, qualname = target.partition(":")
    cls = getattr(importlib.import_module(module), qualname)
    roots[root] = walk(cls)

json.dump({"roots": roots, "models": models}, sys.stdout, sort_keys=True)
"""#
}

/// The model schema could not be made or read.
public struct AzureModelSchemaError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
