import Foundation
import Yams

/// Reads a stack's typed configuration from YAML, with the stack's defaults for missing keys.
public enum StackConfigLoader {
    /// A configuration problem: the file cannot be read, a key is unknown or a value has the wrong type.
    public struct ConfigError: Error, CustomStringConvertible, Sendable {
        public var file: String
        public var message: String
        public var description: String { "\(file): \(message)" }
    }

    /// `Stacks/config/<stack>.<env>.yaml` under `root`.
    public static func defaultPath(stack: String, environment: String, root: URL) -> URL {
        root.appendingPathComponent("Stacks/config/\(stack).\(environment).yaml")
    }

    /// Decodes `C` from the YAML at `url`; keys absent from the file keep their defaults.
    public static func load<C: StackConfiguration>(_ type: C.Type, from url: URL) throws -> C {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw ConfigError(file: url.path, message: "cannot read the file: \(error.localizedDescription)")
        }
        return try decode(type, yaml: text, file: url.path)
    }

    /// Decodes `C` from YAML text; `file` names the source in errors.
    public static func decode<C: StackConfiguration>(_ type: C.Type, yaml: String, file: String) throws -> C {
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: yaml)
        } catch {
            throw ConfigError(file: file, message: "not valid YAML: \(error)")
        }
        guard let loaded else { return C() }
        guard let overrides = loaded as? [String: Any] else {
            throw ConfigError(file: file, message: "expected a mapping of keys to values at the top level")
        }

        // Merge the file over the encoded defaults, so every key has a value and any key the
        // configuration type does not have is caught.
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let defaultsData = try encoder.encode(C())
        guard var merged = try JSONSerialization.jsonObject(with: defaultsData) as? [String: Any] else {
            throw ConfigError(file: file, message: "the configuration type does not encode as a mapping")
        }
        // Optional fields without a default do not encode; their names come from the type itself.
        let declared = Mirror(reflecting: C()).children.compactMap(\.label).map(Self.snakeCase)
        let known = Set(merged.keys).union(declared)
        let unknown = overrides.keys.filter { !known.contains($0) }.sorted()
        if !unknown.isEmpty {
            let keys = unknown.map { "'\($0)'" }.joined(separator: ", ")
            throw ConfigError(file: file, message: "unknown config key\(unknown.count == 1 ? "" : "s") \(keys); known keys: \(known.sorted().joined(separator: ", "))")
        }
        for (key, value) in overrides { merged[key] = jsonCompatible(value) }


        let data = try JSONSerialization.data(withJSONObject: merged)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(C.self, from: data)
        } catch let DecodingError.typeMismatch(expected, context) {
            throw ConfigError(file: file, message: "config key '\(keyPath(context))': expected \(describe(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw ConfigError(file: file, message: "config key '\(keyPath(context))': expected \(describe(expected)), got null")
        } catch {
            throw ConfigError(file: file, message: "\(error)")
        }
    }

    private static func keyPath(_ context: DecodingError.Context) -> String {
        context.codingPath.map { key in key.intValue.map { "[\($0)]" } ?? snakeCase(key.stringValue) }.joined(separator: ".")
    }

    private static func snakeCase(_ name: String) -> String {
        var out = ""
        for ch in name {
            if ch.isUppercase {
                out += "_" + ch.lowercased()
            } else {
                out.append(ch)
            }
        }
        return out
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default: return "a value of type \(type)"
        }
    }

    // Yams hands back Swift values that JSONSerialization accepts, except dates and data.
    private static func jsonCompatible(_ value: Any) -> Any {
        switch value {
        case let map as [String: Any]: return map.mapValues(jsonCompatible)
        case let list as [Any]: return list.map(jsonCompatible)
        case let date as Date: return ISO8601DateFormatter().string(from: date)
        case let data as Data: return data.base64EncodedString()
        default: return value
        }
    }
}
