import Crypto
import Foundation
import StratumCore

/// Seals sensitive values with AES-256-GCM. The key comes from `STRATUM_STATE_KEY` (32 bytes in
/// base64, or any passphrase, stretched with HKDF-SHA256) or from a key file that is created with
/// mode 0600 the first time a secret is sealed. Sealed text is `v1:` + base64(nonce ‖ ciphertext ‖ tag).
public final class StateKey: ValueSealer, @unchecked Sendable {
    public enum Source: Sendable, Hashable {
        /// The key material given directly (from the environment).
        case material(String)
        /// A key file, created on first use.
        case file(String)
    }

    public let source: Source
    private let lock = NSLock()
    private var cached: SymmetricKey?

    public init(_ source: Source) {
        self.source = source
    }

    /// `STRATUM_STATE_KEY` when set, else the key file at `keyFile`.
    public static func resolve(environment: [String: String] = ProcessInfo.processInfo.environment, keyFile: String) -> StateKey {
        if let material = environment["STRATUM_STATE_KEY"], !material.isEmpty { return StateKey(.material(material)) }
        return StateKey(.file(keyFile))
    }

    /// Where the key comes from, for messages (never the key itself).
    public var origin: String {
        switch source {
        case .material: return "STRATUM_STATE_KEY"
        case .file(let path): return path
        }
    }

    public func seal(_ plaintext: Data) throws -> String {
        let box = try AES.GCM.seal(plaintext, using: try key(creating: true))
        guard let combined = box.combined else { throw StateError("cannot seal a value") }
        return "v1:" + combined.base64EncodedString()
    }

    public func open(_ sealed: String) throws -> Data {
        guard sealed.hasPrefix("v1:"), let combined = Data(base64Encoded: String(sealed.dropFirst(3))) else {
            throw StateError("an encrypted value in state is malformed")
        }
        do {
            return try AES.GCM.open(try AES.GCM.SealedBox(combined: combined), using: try key(creating: false))
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError("cannot decrypt a secret in state with the key from \(origin): wrong key?")
        }
    }

    private func key(creating: Bool) throws -> SymmetricKey {
        lock.lock()
        defer { lock.unlock() }
        if let cached { return cached }
        let key: SymmetricKey
        switch source {
        case .material(let material):
            key = Self.derive(material)
        case .file(let path):
            key = try Self.loadOrCreate(path: path, creating: creating)
        }
        cached = key
        return key
    }

    static func derive(_ material: String) -> SymmetricKey {
        if let raw = Data(base64Encoded: material.trimmingCharacters(in: .whitespacesAndNewlines)), raw.count == 32 {
            return SymmetricKey(data: raw)
        }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Data(material.utf8)), salt: Data("stratum-state-key".utf8),
            info: Data("aes-256-gcm".utf8), outputByteCount: 32)
    }

    private static func loadOrCreate(path: String, creating: Bool) throws -> SymmetricKey {
        let fm = FileManager.default
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            guard let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), raw.count == 32 else {
                throw StateError("the state key file \(path) is not a base64 256-bit key")
            }
            return SymmetricKey(data: raw)
        }
        guard creating else {
            throw StateError("state holds encrypted secrets but there is no key: set STRATUM_STATE_KEY or restore \(path)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !fm.fileExists(atPath: directory) {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let key = SymmetricKey(size: .bits256)
        let text = key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        // O_EXCL: two processes racing to create the key must not end up with different keys.
        let fd = Foundation.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if fd < 0 {
            if errno == EEXIST { return try loadOrCreate(path: path, creating: false) }
            throw StateError("cannot create the state key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw StateError("cannot write the state key file \(path): \(String(cString: strerror(errno)))")
        }
        return key
    }
}

/// JSON coding of state values, with the sealer that encrypts sensitive ones. Every backend
/// encodes through this so a secret is never written in plain text.
public struct StateCodec: Sendable {
    public var sealer: (any ValueSealer)?

    public init(sealer: (any ValueSealer)?) {
        self.sealer = sealer
    }

    public func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        if let sealer { encoder.userInfo[.stratumSealer] = sealer }
        return encoder
    }

    public func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        if let sealer { decoder.userInfo[.stratumSealer] = sealer }
        return decoder
    }

    public func encode<T: Encodable>(_ value: T) throws -> Data {
        do {
            return try encoder().encode(value)
        } catch let EncodingError.invalidValue(_, context) {
            throw StateError(context.debugDescription)
        }
    }

    /// A resource from its stored columns (attributes and dependencies as encoded JSON). A row
    /// that cannot be decoded throws `UndecodableResourcesError` naming its address; a missing
    /// or wrong key throws the key's own error, as it concerns every secret, not one row.
    public func decodeResource(
        address: String, provider: String, region: String, id: String, attributes: Data, dependencies: Data
    ) throws -> ResourceState {
        func failure(_ reason: String) -> UndecodableResourcesError {
            UndecodableResourcesError(rows: [.init(address: address, reason: reason)])
        }
        guard let parsed = ResourceAddress(parsing: address) else { throw failure("not a resource address") }
        func column<T: Decodable>(_ name: String, _ type: T.Type, _ data: Data) throws -> T {
            do {
                return try decoder().decode(type, from: data)
            } catch DecodingError.dataCorrupted(let context) where sealer == nil && data.range(of: Data("$stratum.sealed".utf8)) != nil {
                // Sealed secrets and no key: a key problem for every such row, not a bad row.
                throw StateError("state is unreadable: \(context.debugDescription)")
            } catch let error as DecodingError {
                throw failure("\(name): \(UndecodableResourcesError.explain(error))")
            }
        }
        return ResourceState(
            address: parsed, provider: provider, region: region, id: id,
            attributes: try column("attributes", [String: Value].self, attributes),
            dependencies: try column("dependencies", [ResourceAddress].self, dependencies))
    }

    public func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        do {
            return try decoder().decode(type, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            throw StateError("state is unreadable: \(context.debugDescription)")
        }
    }
}
