import Foundation
import PostgresNIO
import StratumState

/// Where a PostgreSQL state lives, parsed from `postgres://user:pass@host:port/db?schema=…&sslmode=…`.
///
/// The password is kept out of every description: `redacted` is what messages and logs show.
public struct PostgresLocation: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, without checking its certificate (libpq's default).
        case prefer
        /// TLS always, without checking the certificate.
        case require
        /// TLS always, certificate checked against the trust roots, host name not checked.
        case verifyCA = "verify-ca"
        /// TLS always, certificate and host name checked.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    /// A directory holding the server's Unix socket (`?host=/var/run/postgresql`), instead of TCP.
    public var socketDirectory: String?
    public var user: String
    public var password: String?
    public var database: String
    /// The schema Stratum's tables live in; one schema holds every workspace (stack).
    public var schema: String
    public var tls: TLSMode
    /// CA bundle for `verify-ca`/`verify-full` (`?sslrootcert=`); the system roots otherwise.
    public var rootCertificate: String?

    public static let defaultSchema = "stratum"

    /// Parses a state URL. A missing password is taken from `PGPASSWORD`, so it need not sit in
    /// the URL (and in shell history).
    public init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "postgres" || scheme == "postgresql"
        else {
            throw StateError("the state URL must look like postgres://user:password@host:5432/database (got \(Self.redact(text)))")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }

        user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? environment["PGUSER"] ?? ""
        guard !user.isEmpty else {
            throw StateError("the state URL \(Self.redact(text)) names no user: write postgres://user@host/database")
        }
        password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding } ?? environment["PGPASSWORD"]
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.removingPercentEncoding ?? path
        guard !database.isEmpty, !database.contains("/") else {
            throw StateError("the state URL \(Self.redact(text)) names no database: write postgres://user@host/database")
        }
        let queryHost = query["host"].flatMap { $0.isEmpty ? nil : $0 }
        if let queryHost, queryHost.hasPrefix("/") {
            socketDirectory = queryHost
        }
        host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? queryHost.flatMap { $0.hasPrefix("/") ? nil : $0 } ?? "localhost"
        port = components.port ?? query["port"].flatMap(Int.init) ?? 5432

        schema = query["schema"] ?? Self.defaultSchema
        guard Self.isIdentifier(schema) else {
            throw StateError("the schema '\(schema)' in the state URL is not a plain identifier (letters, digits and _, not starting with a digit, at most 63)")
        }
        let mode = query["sslmode"] ?? (socketDirectory == nil ? "prefer" : "disable")
        guard let tls = TLSMode(rawValue: mode) else {
            throw StateError("sslmode=\(mode) in the state URL is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.tls = tls
        rootCertificate = query["sslrootcert"]
        let known: Set<String> = ["schema", "sslmode", "sslrootcert", "host", "port"]
        if let unknown = query.keys.filter({ !known.contains($0) }).sorted().first {
            throw StateError("the state URL has an unknown parameter '\(unknown)'; known: \(known.sorted().joined(separator: ", "))")
        }
    }

    /// The location for messages: never the password.
    public var redacted: String {
        let target = socketDirectory.map { "\($0) (socket)" } ?? "\(host):\(port)"
        return "postgres://\(user)@\(target)/\(database) (schema \(schema))"
    }

    public var description: String { redacted }
    public var debugDescription: String { redacted }
    // `dump` and debuggers show the fields through the mirror: leave the password out of it.
    public var customMirror: Mirror { Mirror(self, children: ["location": redacted], displayStyle: .struct) }

    /// `text` with any password replaced, for messages about a URL that did not parse.
    static func redact(_ text: String) -> String {
        guard var components = URLComponents(string: text), components.password != nil else { return text }
        components.password = "***"
        return components.string ?? "(unparsable URL)"
    }

    static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 63, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    func tlsConfiguration() -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch tls {
        case .disable, .prefer, .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: configuration.certificateVerification = .fullVerification
        }
        if let rootCertificate { configuration.trustRoots = .file(rootCertificate) }
        return configuration
    }

    /// How the server lists Stratum's connections (`pg_stat_activity`), with the schema they use.
    var applicationName: String { "stratum:\(schema)" }

    /// The pool's configuration: a few connections, since a run holds at most one at a time per
    /// concurrent step and the server is shared by a team.
    func clientConfiguration() -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketDirectory {
            configuration = PostgresClient.Configuration(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS
            switch self.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(tlsConfiguration())
            case .require, .verifyCA, .verifyFull: tls = .require(tlsConfiguration())
            }
            configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = 4
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.connectionIdleTimeout = .seconds(30)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }

    /// The same settings for the one connection that checks the server before the pool starts.
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socketDirectory {
            configuration = PostgresConnection.Configuration(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            switch self.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(try NIOSSLContext(configuration: tlsConfiguration()))
            case .require, .verifyCA, .verifyFull: tls = .require(try NIOSSLContext(configuration: tlsConfiguration()))
            }
            configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }
}
