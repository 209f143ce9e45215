import Foundation
import StratumCore

/// Checks REST requests against a Google API discovery document: the method by HTTP method and
/// path template, query parameters by the method's parameters, the body by the request schema.
/// Documents (compute v1, storage v1, …) are read from the installed google-api-python-client
/// package, so requests are checked against Google's own description of the API, not a copy of it.
public struct DiscoveryValidator: Sendable {
    /// One thing wrong with a request.
    public struct Violation: Sendable, Hashable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// No method of the API has this HTTP method and path.
            case unknownMethod
            /// A query parameter the method does not take.
            case unknownParameter
            /// A parameter whose value has the wrong type, pattern, range or enum value.
            case invalidParameter
            /// A required parameter that is absent.
            case missingParameter
            /// A body field the schema does not have.
            case unknownField
            /// A body value of the wrong JSON type (or a malformed integer string).
            case wrongType
            /// A body value outside the field's enum.
            case invalidEnum
            /// A field the method requires that is absent.
            case missingField
            /// A field the server sets ("Output only") that a request has no business sending.
            case readOnlyField
            /// A body that is not JSON, is missing, or is present where the method takes none.
            case invalidBody
        }

        public var kind: Kind
        /// Where: `query.maxResults`, `path.zone`, `body.scheduling.provisioningModel`.
        public var location: String
        public var detail: String

        public var description: String { "\(kind.rawValue) at \(location): \(detail)" }
    }

    /// A method of the API a request was matched to, with its path parameters.
    public struct Match: Sendable {
        /// The discovery id, e.g. `compute.instances.insert`.
        public var methodID: String
        public var pathParameters: [String: String]
        public var query: [String: [String]]
    }

    /// The result of checking one request.
    public struct Outcome: Sendable {
        public var match: Match?
        public var violations: [Violation]
    }

    let basePath: String
    let methods: [Method]
    let globalParameters: [String: Parameter]
    let schemas: [String: Schema]

    /// Builds a validator from a discovery document's JSON.
    public init(document: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: document) as? [String: Any],
            let schemas = root["schemas"] as? [String: Any], let resources = root["resources"] as? [String: Any]
        else { throw DiscoveryDocumentError("not a discovery document") }
        basePath = "/" + ((root["servicePath"] as? String) ?? "")
        globalParameters = Self.parameters(root["parameters"])
        self.schemas = schemas.compactMapValues { Schema(json: $0) }
        var methods: [Method] = []
        Self.collectMethods(resources, into: &methods)
        self.methods = methods
    }

    /// The validator for compute v1, read once per process from the installed package.
    public static func computeV1() throws -> DiscoveryValidator {
        try loadedComputeV1.get()
    }

    /// The validator for the Cloud Storage JSON API v1, read once per process from the installed package.
    public static func storageV1() throws -> DiscoveryValidator {
        try loadedStorageV1.get()
    }

    private static let loadedComputeV1: Result<DiscoveryValidator, any Error> = Result { try named("compute.v1") }
    private static let loadedStorageV1: Result<DiscoveryValidator, any Error> = Result { try named("storage.v1") }

    /// A validator for the document `name` (`compute.v1`, `storage.v1`), read now.
    public static func named(_ name: String) throws -> DiscoveryValidator {
        try DiscoveryValidator(document: Data(contentsOf: try documentURL(name)))
    }

    /// Where the discovery document `name` is: for compute v1 `STRATUM_TEST_COMPUTE_DISCOVERY`
    /// if set; `<name>.json` in `STRATUM_TEST_DISCOVERY_DIR` if that is set; else inside the
    /// installed google-api-python-client (asked of `python3`).
    public static func documentURL(_ name: String) throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        if name == "compute.v1", let path = environment["STRATUM_TEST_COMPUTE_DISCOVERY"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        if let directory = environment["STRATUM_TEST_DISCOVERY_DIR"], !directory.isEmpty {
            return URL(fileURLWithPath: directory).appendingPathComponent("\(name).json")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import googleapiclient, os; print(os.path.dirname(googleapiclient.__file__))"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let directory = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let url = URL(fileURLWithPath: directory).appendingPathComponent("discovery_cache/documents/\(name).json")
        guard process.terminationStatus == 0, !directory.isEmpty, FileManager.default.fileExists(atPath: url.path) else {
            throw DiscoveryDocumentError(
                "the \(name) discovery document was not found: install google-api-python-client (`python3 -m pip install google-api-python-client`) or set STRATUM_TEST_DISCOVERY_DIR")
        }
        return url
    }

    /// Matches `method` and `path` (without query) to a method of the API.
    public func match(method httpMethod: String, path: String) -> (methodID: String, pathParameters: [String: String])? {
        guard let found = find(httpMethod: httpMethod, path: path) else { return nil }
        return (found.method.id, found.parameters)
    }

    /// Checks one request as it arrives: `uri` is the path and query as sent.
    public func validate(method httpMethod: String, uri: String, body: Data) -> Outcome {
        let (path, query) = Self.split(uri: uri)
        guard let (method, pathParameters, upload) = find(httpMethod: httpMethod, path: path) else {
            return Outcome(match: nil, violations: [Violation(kind: .unknownMethod, location: path, detail: "no method answers \(httpMethod) \(path)")])
        }
        var violations: [Violation] = []
        for (name, value) in pathParameters.sorted(by: { $0.key < $1.key }) {
            if let parameter = method.parameters[name] {
                violations += parameter.check(value, location: "path.\(name)")
            }
        }
        for (name, values) in query.sorted(by: { $0.key < $1.key }) {
            guard let parameter = method.parameters[name] ?? globalParameters[name], parameter.location == "query" else {
                violations.append(Violation(kind: .unknownParameter, location: "query.\(name)", detail: "\(method.id) takes no parameter '\(name)'"))
                continue
            }
            if values.count > 1 && !parameter.repeated {
                violations.append(Violation(kind: .invalidParameter, location: "query.\(name)", detail: "given \(values.count) times but not repeated"))
            }
            for value in values { violations += parameter.check(value, location: "query.\(name)") }
        }
        for (name, parameter) in method.parameters.sorted(by: { $0.key < $1.key })
        where parameter.required && parameter.location == "query" && query[name] == nil {
            violations.append(Violation(kind: .missingParameter, location: "query.\(name)", detail: "\(method.id) requires '\(name)'"))
        }
        // A simple media upload's body is the object's bytes; a multipart one's first part is
        // the resource, its second the bytes.
        switch (upload, query["uploadType"]?.first) {
        case (true, "media"): break
        case (true, "multipart"):
            if let parts = Self.multipartParts(body), parts.count == 2 {
                violations += checkBody(parts[0].body, method: method)
            } else {
                violations.append(Violation(kind: .invalidBody, location: "body", detail: "not a multipart/related body of two parts (the resource, then the bytes)"))
            }
        default: violations += checkBody(body, method: method)
        }
        return Outcome(match: Match(methodID: method.id, pathParameters: pathParameters, query: query), violations: violations)
    }

    /// Checks an answer a fake is about to send against the response schema of `methodID`
    /// (fields the server sets are expected here, so "output only" is no violation).
    public func validateResponse(_ body: Data, of methodID: String) -> [Violation] {
        guard let method = methods.first(where: { $0.id == methodID }), let schemaName = method.response else {
            return [Violation(kind: .unknownMethod, location: "response", detail: "no method \(methodID) with a response schema")]
        }
        guard let value = try? JSONDecoder().decode(Value.self, from: body), case .map = value else {
            return [Violation(kind: .invalidBody, location: "response", detail: "not a JSON object")]
        }
        var violations: [Violation] = []
        check(value, against: Schema.reference(schemaName), methodID: method.id, location: "response", into: &violations)
        return violations.filter { $0.kind != .readOnlyField }
    }

    private func checkBody(_ body: Data, method: Method) -> [Violation] {
        let empty = body.allSatisfy { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        guard let schemaName = method.request else {
            return empty ? [] : [Violation(kind: .invalidBody, location: "body", detail: "\(method.id) takes no body")]
        }
        guard !empty else { return [Violation(kind: .invalidBody, location: "body", detail: "\(method.id) needs a \(schemaName) body")] }
        guard let value = try? JSONDecoder().decode(Value.self, from: body), case .map = value else {
            return [Violation(kind: .invalidBody, location: "body", detail: "not a JSON object")]
        }
        var violations: [Violation] = []
        check(value, against: Schema.reference(schemaName), methodID: method.id, location: "body", into: &violations)
        return violations
    }

    private func check(_ value: Value, against schema: Schema, methodID: String, location: String, into violations: inout [Violation]) {
        if let name = schema.ref {
            guard let target = schemas[name] else { return }
            return check(value, against: target, methodID: methodID, location: location, into: &violations)
        }
        if case .null = value { return }
        func wrong(_ expected: String) {
            violations.append(Violation(kind: .wrongType, location: location, detail: "expected \(expected), got \(value)"))
        }
        switch schema.type {
        case "object":
            guard case .map(let fields) = value else { return wrong("an object") }
            for (key, field) in fields.sorted(by: { $0.key < $1.key }) {
                if let property = schema.properties[key] {
                    if property.readOnly {
                        violations.append(Violation(kind: .readOnlyField, location: "\(location).\(key)", detail: "output only"))
                    }
                    check(field, against: property, methodID: methodID, location: "\(location).\(key)", into: &violations)
                } else if let additional = schema.additionalProperties {
                    check(field, against: additional, methodID: methodID, location: "\(location).\(key)", into: &violations)
                } else if !schema.properties.isEmpty {
                    violations.append(Violation(kind: .unknownField, location: "\(location).\(key)", detail: "not a field of this object"))
                }
            }
            for (key, property) in schema.properties.sorted(by: { $0.key < $1.key })
            where property.requiredFor.contains(methodID) && (fields[key] == nil || fields[key] == .null) {
                violations.append(Violation(kind: .missingField, location: "\(location).\(key)", detail: "\(methodID) requires it"))
            }
        case "array":
            guard case .list(let items) = value else { return wrong("an array") }
            guard let itemSchema = schema.items else { return }
            for (index, item) in items.enumerated() {
                check(item, against: itemSchema, methodID: methodID, location: "\(location)[\(index)]", into: &violations)
            }
        case "string":
            switch (schema.format ?? "", value) {
            case ("int64", .int), ("uint64", .int):
                // JSON numbers are accepted for 64-bit integers as well as strings.
                return
            case ("int64", .string(let text)) where Int64(text) == nil: return wrong("an int64 string")
            case ("uint64", .string(let text)) where UInt64(text) == nil: return wrong("a uint64 string")
            case (_, .string(let text)):
                if let allowed = schema.enumValues, !allowed.contains(text) {
                    violations.append(Violation(kind: .invalidEnum, location: location, detail: "'\(text)' is not one of \(allowed.joined(separator: ", "))"))
                }
            default: wrong("a string")
            }
        case "integer":
            guard case .int(let number) = value else { return wrong("an integer") }
            if schema.format == "uint32", !(0...Int(UInt32.max)).contains(number) { wrong("a uint32") }
            if schema.format == "int32", !(Int(Int32.min)...Int(Int32.max)).contains(number) { wrong("an int32") }
        case "number":
            switch value {
            case .int, .double: return
            default: wrong("a number")
            }
        case "boolean":
            guard case .bool = value else { return wrong("a boolean") }
        default:
            return
        }
    }

    /// The method a request is for, its path parameters, and whether it came by the method's
    /// media upload path (`/upload/storage/v1/b/{bucket}/o`) rather than its REST path.
    private func find(httpMethod: String, path: String) -> (method: Method, parameters: [String: String], upload: Bool)? {
        func segments(_ text: Substring) -> [String] {
            text.split(separator: "/", omittingEmptySubsequences: false).map { String($0).removingPercentEncoding ?? String($0) }
        }
        let rest = path.hasPrefix(basePath) ? segments(path.dropFirst(basePath.count)) : nil
        let rooted = segments(path.drop { $0 == "/" })
        // Among templates that fit, the one with the most literal segments wins: `instances/bulkInsert`
        // over `instances/{instance}`.
        var best: (method: Method, parameters: [String: String], literals: Int, upload: Bool)?
        for method in methods where method.httpMethod == httpMethod {
            for (template, upload) in [(method.template, false), (method.uploadTemplate, true)] {
                guard let template, let segments = upload ? rooted : rest, let parameters = template.match(segments) else { continue }
                if best == nil || template.literalCount > best?.literals ?? 0 {
                    best = (method, parameters, template.literalCount, upload)
                }
            }
        }
        return best.map { ($0.method, $0.parameters, $0.upload) }
    }

    /// The parts of a multipart body (RFC 2046), each with its headers; the boundary is read
    /// from the body's first line. Nil when the body is not one.
    public static func multipartParts(_ body: Data) -> [(headers: [String: String], body: Data)]? {
        let bytes = [UInt8](body)
        guard let firstLineEnd = bytes.firstIndex(of: 0x0A) else { return nil }
        let first = String(decoding: bytes[..<firstLineEnd], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard first.hasPrefix("--"), first.count > 2 else { return nil }
        let delimiter = Array(("\r\n" + first).utf8)
        var parts: [(headers: [String: String], body: Data)] = []
        var start = firstLineEnd + 1
        while start < bytes.count {
            // The part runs to the next delimiter; its headers end at the first empty line.
            guard let end = find(delimiter, in: bytes, from: start) else { return nil }
            let part = Array(bytes[start..<end])
            guard let split = find(Array("\r\n\r\n".utf8), in: part, from: 0) else { return nil }
            var headers: [String: String] = [:]
            for line in String(decoding: part[..<split], as: UTF8.self).components(separatedBy: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            parts.append((headers, Data(part[(split + 4)...])))
            let after = end + delimiter.count
            if bytes[after...].starts(with: Array("--".utf8)) { return parts }
            guard let next = bytes[after...].firstIndex(of: 0x0A) else { return nil }
            start = next + 1
        }
        return nil
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard needle.count <= haystack.count - start else { return nil }
        var index = start
        while index + needle.count <= haystack.count {
            if haystack[index] == needle[0], Array(haystack[index..<(index + needle.count)]) == needle { return index }
            index += 1
        }
        return nil
    }

    static func split(uri: String) -> (path: String, query: [String: [String]]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: [String]] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                func decode(_ s: Substring) -> String {
                    let plain = s.replacingOccurrences(of: "+", with: " ")
                    return plain.removingPercentEncoding ?? plain
                }
                query[decode(kv[0]), default: []].append(kv.count > 1 ? decode(kv[1]) : "")
            }
        }
        return (String(parts[0]), query)
    }

    private static func collectMethods(_ resources: [String: Any], into methods: inout [Method]) {
        for case let resource as [String: Any] in resources.values {
            for case let method as [String: Any] in (resource["methods"] as? [String: Any] ?? [:]).values {
                guard let id = method["id"] as? String, let verb = method["httpMethod"] as? String,
                    let path = (method["flatPath"] as? String) ?? (method["path"] as? String)
                else { continue }
                let request = (method["request"] as? [String: Any])?["$ref"] as? String
                let response = (method["response"] as? [String: Any])?["$ref"] as? String
                let protocols = (method["mediaUpload"] as? [String: Any])?["protocols"] as? [String: Any]
                let upload = ((protocols?["simple"] as? [String: Any])?["path"] as? String).map { PathTemplate(String($0.drop { $0 == "/" })) }
                methods.append(
                    Method(id: id, httpMethod: verb, template: PathTemplate(path), uploadTemplate: upload, parameters: parameters(method["parameters"]), request: request,
                        response: response))
            }
            collectMethods(resource["resources"] as? [String: Any] ?? [:], into: &methods)
        }
    }

    private static func parameters(_ json: Any?) -> [String: Parameter] {
        (json as? [String: Any] ?? [:]).compactMapValues { Parameter(json: $0) }
    }
}

/// The discovery document could not be found or read.
public struct DiscoveryDocumentError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension DiscoveryValidator {
    struct Method: Sendable {
        var id: String
        var httpMethod: String
        var template: PathTemplate
        /// The simple media upload path, for methods that take one.
        var uploadTemplate: PathTemplate?
        var parameters: [String: Parameter]
        var request: String?
        var response: String?
    }

    /// A path such as `projects/{project}/zones/{zone}/instances`, matched segment by segment;
    /// `{+name}` takes the rest of the path.
    struct PathTemplate: Sendable {
        enum Segment: Sendable {
            case literal(String)
            case variable(String)
            /// `{secretsId}:addVersion`: a variable, then a custom verb.
            case verb(String, suffix: String)
            case rest(String)
        }

        var segments: [Segment]
        var literalCount: Int

        init(_ path: String) {
            segments = path.split(separator: "/").map { part in
                if part.hasPrefix("{+"), part.hasSuffix("}") { return .rest(String(part.dropFirst(2).dropLast())) }
                if part.hasPrefix("{"), part.hasSuffix("}") { return .variable(String(part.dropFirst().dropLast())) }
                if part.hasPrefix("{"), let close = part.firstIndex(of: "}"), part[part.index(after: close)...].hasPrefix(":") {
                    return .verb(String(part[part.index(after: part.startIndex)..<close]), suffix: String(part[part.index(after: close)...]))
                }
                return .literal(String(part))
            }
            // A custom verb counts as a literal: `{secret}:addVersion` over `{secret}`.
            literalCount = segments.filter {
                switch $0 {
                case .literal, .verb: return true
                default: return false
                }
            }.count
        }

        func match(_ parts: [String]) -> [String: String]? {
            var values: [String: String] = [:]
            var index = 0
            for segment in segments {
                switch segment {
                case .literal(let text):
                    guard index < parts.count, parts[index] == text else { return nil }
                case .variable(let name):
                    guard index < parts.count, !parts[index].isEmpty else { return nil }
                    values[name] = parts[index]
                case .verb(let name, let suffix):
                    guard index < parts.count, parts[index].hasSuffix(suffix), parts[index].count > suffix.count else { return nil }
                    values[name] = String(parts[index].dropLast(suffix.count))
                case .rest(let name):
                    guard index < parts.count else { return nil }
                    values[name] = parts[index...].joined(separator: "/")
                    return values
                }
                index += 1
            }
            return index == parts.count ? values : nil
        }
    }

    struct Parameter: Sendable {
        var location: String
        var type: String
        var format: String?
        var required: Bool
        var repeated: Bool
        var enumValues: [String]?
        var pattern: NSRegularExpressionBox?
        var minimum: Int?
        var maximum: Int?

        init?(json: Any) {
            guard let object = json as? [String: Any] else { return nil }
            location = object["location"] as? String ?? "query"
            type = object["type"] as? String ?? "string"
            format = object["format"] as? String
            required = object["required"] as? Bool ?? false
            repeated = object["repeated"] as? Bool ?? false
            enumValues = object["enum"] as? [String]
            pattern = (object["pattern"] as? String).flatMap(NSRegularExpressionBox.init)
            minimum = (object["minimum"] as? String).flatMap { Int($0) }
            maximum = (object["maximum"] as? String).flatMap { Int($0) }
        }

        func check(_ value: String, location: String) -> [DiscoveryValidator.Violation] {
            func invalid(_ detail: String) -> [DiscoveryValidator.Violation] {
                [DiscoveryValidator.Violation(kind: .invalidParameter, location: location, detail: detail)]
            }
            switch type {
            case "integer":
                guard let number = Int(value) else { return invalid("'\(value)' is not an integer") }
                if format == "uint32", number < 0 { return invalid("'\(value)' is negative") }
                if let minimum, number < minimum { return invalid("\(number) is below \(minimum)") }
                if let maximum, number > maximum { return invalid("\(number) is above \(maximum)") }
            case "boolean":
                guard value == "true" || value == "false" else { return invalid("'\(value)' is not true or false") }
            default:
                if let enumValues, !enumValues.contains(value) {
                    return invalid("'\(value)' is not one of \(enumValues.joined(separator: ", "))")
                }
                if let pattern, !pattern.matchesWhole(value) { return invalid("'\(value)' does not match \(pattern.source)") }
            }
            return []
        }
    }

    /// A compiled parameter pattern; `NSRegularExpression` is immutable once made, so sharing it
    /// across tasks is safe.
    struct NSRegularExpressionBox: @unchecked Sendable {
        let source: String
        let expression: NSRegularExpression

        init?(_ source: String) {
            guard let expression = try? NSRegularExpression(pattern: "^(?:\(source))$") else { return nil }
            self.source = source
            self.expression = expression
        }

        func matchesWhole(_ text: String) -> Bool {
            expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
        }
    }

    /// A JSON schema of the discovery document: a named reference or an inline type.
    final class Schema: Sendable {
        let ref: String?
        let type: String?
        let format: String?
        let enumValues: [String]?
        let properties: [String: Schema]
        let additionalProperties: Schema?
        let items: Schema?
        let readOnly: Bool
        /// Method ids for which this property must be present (the document's `annotations.required`).
        let requiredFor: Set<String>

        private init(ref: String) {
            self.ref = ref
            type = nil
            format = nil
            enumValues = nil
            properties = [:]
            additionalProperties = nil
            items = nil
            readOnly = false
            requiredFor = []
        }

        init?(json: Any) {
            guard let object = json as? [String: Any] else { return nil }
            ref = object["$ref"] as? String
            type = object["type"] as? String
            format = object["format"] as? String
            enumValues = object["enum"] as? [String]
            properties = (object["properties"] as? [String: Any] ?? [:]).compactMapValues { Schema(json: $0) }
            additionalProperties = object["additionalProperties"].flatMap { Schema(json: $0) }
            items = object["items"].flatMap { Schema(json: $0) }
            readOnly = object["readOnly"] as? Bool ?? false
            requiredFor = Set(((object["annotations"] as? [String: Any])?["required"] as? [String]) ?? [])
        }

        static func reference(_ name: String) -> Schema { Schema(ref: name) }
    }
}
