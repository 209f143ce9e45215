import Foundation
import StratumCore

/// A secret input (an API token, a password): sealed with AES-GCM in state and saved plans,
/// shown as `(sensitive)` in plans, `state show` and JSON output, and never logged. Providers
/// receive the plain value only for the call that needs it.
///
/// ```swift
/// NodePool("worker", count: 2, ..., env: ["WANDB_API_KEY": config.wandbKey])   // config.wandbKey: Secret
/// NodePool("worker", count: 2, ..., env: ["HF_TOKEN": try Secret.environment("HF_TOKEN")])
/// ```
///
/// In stack configuration YAML a `Secret` field is a plain string; keep such files out of
/// version control, or read the secret from the environment instead.
///
/// Inputs that a cloud keeps in plain text (EC2 user data, which a node's `env` and `command`
/// become) refuse a `Secret`: a validation error names the resource and the key.
public struct Secret: StringExpression, Hashable, Codable, CustomStringConvertible {
    private let plaintext: String

    public init(_ plaintext: String) {
        self.plaintext = plaintext
    }

    /// The secret in environment variable `name`; an error naming the variable if it is unset.
    public static func environment(_ name: String, in environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Secret {
        guard let value = environment[name], !value.isEmpty else {
            throw SecretMissingError(variable: name)
        }
        return Secret(value)
    }

    public var value: Value { .sensitive(.string(plaintext)) }

    /// Never the secret itself, so string interpolation and logging cannot leak it.
    public var description: String { "(sensitive)" }

    public init(from decoder: any Decoder) throws {
        plaintext = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        // Stack defaults are encoded only to be merged with YAML; a secret default carries through.
        var container = encoder.singleValueContainer()
        try container.encode(plaintext)
    }
}

public struct SecretMissingError: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var description: String { "the secret environment variable \(variable) is not set" }
}
