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

    /// Where the CLI looks for a stack's configuration when no `--config` is given:
    /// `Stacks/<stack>.<env>.yaml`, relative to the directory it runs in.
    public static func conventionalPath(stack: String, environment: String) -> String {
        "Stacks/\(stack).\(environment).yaml"
    }

    /// `Stacks/<stack>.<env>.yaml` under `root`.
    public static func defaultPath(stack: String, environment: String, root: URL) -> URL {
        root.appendingPathComponent(conventionalPath(stack: stack, environment: environment))
    }

    /// Decodes `C` from the YAML at `url`; keys absent from the file keep their defaults.
    public static func load<C: StackConfiguration>(_ type: C.Type, from url: URL) throws -> C {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ConfigError(file: url.path, message: "is a directory, not a config file: give the path of a YAML file")
        }
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            let reason = FileManager.default.fileExists(atPath: url.path)
                ? (FileManager.default.isReadableFile(atPath: url.path) ? "it is not UTF-8 text" : "permission denied")
                : "no such file"
            throw ConfigError(file: url.path, message: "cannot read the file: \(reason)")
        }
        return try decode(type, yaml: text, file: url.path)
    }

    /// Keys any stack's config file may set, whatever its configuration type: read by Stratum
    /// itself. `budget_per_hour`: the most the stack's machines may cost an hour in this
    /// environment, in US dollars.
    public static let reservedKeys = ["budget_per_hour"]

    /// The environment's `budget_per_hour` in the config file at `url`, nil when it sets none.
    public static func budget(in url: URL) throws -> Double? {
        guard let text = try? String(contentsOf: url, encoding: .utf8), let mapping = (try? Yams.load(yaml: text)) as? [String: Any],
            let value = mapping["budget_per_hour"]
        else { return nil }
        let number: Double?
        switch value {
        case let int as Int: number = Double(int)
        case let double as Double: number = double
        default: number = nil
        }
        guard let number, number.isFinite, number > 0 else {
            throw ConfigError(file: url.path, message: "config key 'budget_per_hour' = \(value): expected a positive number of US dollars an hour")
        }
        return number
    }

    /// Throws the configuration's `problems()`, all at once, naming `file`.
    public static func check<C: StackConfiguration>(_ config: C, file: String) throws -> C {
        let problems = config.problems()
        guard problems.isEmpty else {
            throw ConfigError(file: file, message: problems.map(\.description).joined(separator: "; "))
        }
        return config
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
        guard var overrides = loaded as? [String: Any] else {
            throw ConfigError(file: file, message: "expected a mapping of keys to values at the top level")
        }
        // Keys every environment's file may set, read by Stratum rather than the stack.
        for key in reservedKeys { overrides[key] = nil }

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
        // A fraction, or a number too large for an integer, fails in the decoder without the
        // key's name: name it here.
        let defaults = Dictionary(Mirror(reflecting: C()).children.compactMap { child in child.label.map { (snakeCase($0), child.value) } }, uniquingKeysWith: { first, _ in first })
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
            guard let field = defaults[key], isInteger(field), let number = value as? Double else { continue }
            throw ConfigError(file: file, message: "config key '\(key)' = \(number): expected an integer (a whole number in range)")
        }


        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: merged)
        } catch {
            throw ConfigError(file: file, message: "a value cannot be used as configuration (\(error.localizedDescription))")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let config: C
        do {
            config = try decoder.decode(C.self, from: data)
        } catch let DecodingError.typeMismatch(expected, context) {
            throw ConfigError(file: file, message: "config key '\(keyPath(context))'\(shown(context, in: overrides)): expected \(describe(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw ConfigError(file: file, message: "config key '\(keyPath(context))': expected \(describe(expected)), got null")
        } catch let DecodingError.dataCorrupted(context) {
            // A number the key's type cannot hold (the decoder may not say which key).
            let key = context.codingPath.isEmpty ? "" : "config key '\(keyPath(context))'\(shown(context, in: overrides)): "
            throw ConfigError(file: file, message: "\(key)a value does not fit its key's type: \(context.debugDescription)")
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath + [key]).map { $0.intValue.map { "[\($0)]" } ?? snakeCase($0.stringValue) }.joined(separator: ".")
            throw ConfigError(file: file, message: "config key '\(path)' is missing")
        } catch let error as DecodingError {
            let context: DecodingError.Context?
            switch error {
            case .dataCorrupted(let found), .valueNotFound(_, let found), .typeMismatch(_, let found), .keyNotFound(_, let found): context = found
            @unknown default: context = nil
            }
            let key = context.map { $0.codingPath.isEmpty ? "" : "config key '\(keyPath($0))': " } ?? ""
            throw ConfigError(file: file, message: "\(key)cannot decode the configuration: \(context?.debugDescription ?? "\(error)")")
        }
        return try check(config, file: file)
    }

    /// ` = VALUE` as the file wrote it, when the path leads to a value in the file.
    private static func shown(_ context: DecodingError.Context, in overrides: [String: Any]) -> String {
        var current: Any? = overrides
        for key in context.codingPath {
            if let index = key.intValue {
                guard let list = current as? [Any], list.indices.contains(index) else { return "" }
                current = list[index]
            } else {
                current = (current as? [String: Any])?[snakeCase(key.stringValue)]
            }
        }
        guard let current, !(current is [String: Any]), !(current is [Any]) else { return "" }
        return " = \(current)"
    }

    /// Whether a configuration property holds an integer (optional or not).
    private static func isInteger(_ value: Any) -> Bool {
        switch value {
        case is Int, is Int64, is Int32, is UInt, is UInt64, is UInt32: return true
        default:
            return type(of: value) == Int?.self || type(of: value) == Int64?.self || type(of: value) == UInt?.self
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
        case is [Any].Type, is [String].Type, is [Int].Type: return "a list"
        case is [String: Any].Type, is [String: String].Type: return "a mapping"
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
        // JSON has no infinity or NaN: passed on as text, they are reported as the wrong type.
        case let number as Double where !number.isFinite: return "\(number)"
        default: return value
        }
    }
}
