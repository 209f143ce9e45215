import Foundation
import StratumCloud
import StratumCore

/// Finds AWS credentials the way the AWS CLI does: environment, then the shared credentials
/// and config files (profile from `AWS_PROFILE`), then the EC2 instance metadata service
/// (IMDSv2). The first source that has credentials wins; IMDS answers are cached until
/// shortly before they expire.
public actor AWSCredentialChain {
    public let environment: [String: String]
    let imds: InstanceMetadataCredentials?
    let clock: StratumClock
    private var cached: AWSCredentials?

    /// `environment` defaults to the process environment; `imds` nil turns IMDS off.
    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        imds: InstanceMetadataCredentials? = nil,
        clock: StratumClock = .system
    ) {
        self.environment = environment
        self.imds = imds
        self.clock = clock
    }

    /// The chain for this process: IMDS at its default (or overridden) endpoint unless disabled.
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment, transport: any HTTPTransport) -> AWSCredentialChain {
        let disabled = environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true"
        let endpoint = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap(URL.init(string:)) ?? InstanceMetadataCredentials.defaultEndpoint
        // AWS_METADATA_SERVICE_TIMEOUT (seconds) as the AWS tools read it; 1 s by default.
        let timeout = environment["AWS_METADATA_SERVICE_TIMEOUT"].flatMap(Double.init).map { Duration.milliseconds(Int($0 * 1000)) } ?? .seconds(1)
        return AWSCredentialChain(
            environment: environment, imds: disabled ? nil : InstanceMetadataCredentials(endpoint: endpoint, transport: transport, timeout: timeout))
    }

    public func credentials() async throws -> AWSCredentials {
        // Every API call asks; the files are read once and role keys refreshed before they expire.
        if let cached, !cached.expires(within: 300, of: clock.date()) { return cached }
        if let fromEnvironment = Self.fromEnvironment(environment) {
            cached = fromEnvironment
            return fromEnvironment
        }
        if let fromFiles = try Self.fromSharedFiles(environment) {
            cached = fromFiles
            return fromFiles
        }
        if let imds, let fromIMDS = try await imds.fetch() {
            cached = fromIMDS
            return fromIMDS
        }
        throw AWSCredentialsError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure a profile in ~/.aws/credentials (AWS_PROFILE selects one), or run on EC2 with an instance role")
    }

    /// The region for calls that do not name one: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
    public static func defaultRegion(_ environment: [String: String]) -> String? {
        if let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"], !region.isEmpty { return region }
        let profile = environment["AWS_PROFILE"] ?? "default"
        guard let config = try? INIFile.load(configFile(environment)) else { return nil }
        return config.section(profile == "default" ? "default" : "profile \(profile)")?["region"]
    }

    static func fromEnvironment(_ environment: [String: String]) -> AWSCredentials? {
        guard let key = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"], !key.isEmpty, !secret.isEmpty else {
            return nil
        }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyId: key, secretAccessKey: secret, sessionToken: token, source: "environment")
    }

    static func home(_ environment: [String: String]) -> URL {
        URL(fileURLWithPath: environment["HOME"] ?? NSHomeDirectory())
    }

    static func credentialsFile(_ environment: [String: String]) -> URL {
        environment["AWS_SHARED_CREDENTIALS_FILE"].map { URL(fileURLWithPath: $0) } ?? home(environment).appendingPathComponent(".aws/credentials")
    }

    static func configFile(_ environment: [String: String]) -> URL {
        environment["AWS_CONFIG_FILE"].map { URL(fileURLWithPath: $0) } ?? home(environment).appendingPathComponent(".aws/config")
    }

    /// Keys of the selected profile from the credentials file, else from the config file
    /// (where profiles other than `default` are written `[profile NAME]`).
    static func fromSharedFiles(_ environment: [String: String]) throws -> AWSCredentials? {
        let explicit = environment["AWS_PROFILE"]
        let profile = explicit ?? "default"
        let credentials = try INIFile.loadIfPresent(credentialsFile(environment))
        let config = try INIFile.loadIfPresent(configFile(environment))
        let candidates: [(String, [String: String]?)] = [
            ("\(credentialsFile(environment).path) [\(profile)]", credentials?.section(profile)),
            ("\(configFile(environment).path) [\(profile == "default" ? "default" : "profile \(profile)")]",
             config?.section(profile == "default" ? "default" : "profile \(profile)")),
        ]
        for (origin, section) in candidates {
            guard let section, let key = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] else { continue }
            return AWSCredentials(
                accessKeyId: key, secretAccessKey: secret, sessionToken: section["aws_session_token"], source: "profile \(profile) (\(origin))")
        }
        if let explicit, credentials?.section(explicit) == nil, config?.section("profile \(explicit)") == nil {
            throw AWSCredentialsError("AWS_PROFILE names profile '\(explicit)', which is in neither \(credentialsFile(environment).path) nor \(configFile(environment).path)")
        }
        return nil
    }
}

/// The shared AWS credentials/config file format: `[section]` headers and `key = value` lines.
public struct INIFile: Sendable {
    public var sections: [String: [String: String]]

    public init(parsing text: String) {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                current = name.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                if let current, sections[current] == nil { sections[current] = [:] }
                continue
            }
            guard let current, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[current, default: [:]][key] = value
        }
        self.sections = sections
    }

    public func section(_ name: String) -> [String: String]? { sections[name] }

    static func load(_ url: URL) throws -> INIFile {
        do {
            return INIFile(parsing: try String(contentsOf: url, encoding: .utf8))
        } catch {
            throw AWSCredentialsError("cannot read \(url.path): \(error.localizedDescription)")
        }
    }

    static func loadIfPresent(_ url: URL) throws -> INIFile? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try load(url)
    }
}
