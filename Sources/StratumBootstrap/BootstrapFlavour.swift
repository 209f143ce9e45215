import CompressNIO
import Foundation
import NIOCore
import StratumCloud
import StratumCore

/// What one cloud adds to a node's setup; each provider folder supplies its own
/// (`BootstrapFlavour.aws`, `.gcp`, `.azure`).
public struct BootstrapFlavour: Sendable {
    /// The provider's name, as in `STRATUM_CLOUD`.
    public var cloud: String
    /// Shell lines that export what only the running machine knows (its zone; a gang member's
    /// rank and name), from the cloud's metadata service; written into node.env at first boot.
    public var atBoot: NodeBootScript.AtBoot
    /// The body of the shell function `stratum_fetch URL FILE`: downloads an object of the
    /// cluster's bucket to FILE with the machine's own identity (its role, service account or
    /// managed identity), so no key is ever in user data.
    public var fetch: String
    /// Shell functions the `fetch` and `secret` bodies share (sourced before them).
    public var library: String
    /// The body of `stratum_secret REFERENCE`: prints a secret of the cloud's secret store read
    /// with the machine's identity; nil where the cloud's secrets are not delivered yet.
    public var secret: String?
    /// Shell lines that install the userspace of an interconnect when the image lacks it.
    public var interconnectSetup: [Interconnect: String]
    public var userData: UserDataLimit

    public init(
        cloud: String, atBoot: NodeBootScript.AtBoot, library: String = "", fetch: String, secret: String? = nil,
        interconnectSetup: [Interconnect: String] = [:], userData: UserDataLimit
    ) {
        self.cloud = cloud
        self.atBoot = atBoot
        self.library = library
        self.fetch = fetch
        self.secret = secret
        self.interconnectSetup = interconnectSetup
        self.userData = userData
    }
}

/// How large a cloud lets a node's user data be, and whether cloud-init may be handed it
/// gzipped (it unpacks a gzip document itself).
public struct UserDataLimit: Sendable, Hashable {
    /// What the limit is called, for messages: "EC2 user data".
    public var name: String
    public var bytes: Int
    /// Whether the cloud carries binary user data, so a gzipped document can go.
    public var gzip: Bool

    public init(name: String, bytes: Int, gzip: Bool) {
        self.name = name
        self.bytes = bytes
        self.gzip = gzip
    }

    /// `document` as it fits: as is when it does, else gzipped where allowed and it then fits.
    public func fit(_ document: Data, address: String) throws -> UserData {
        if document.count <= bytes { return UserData(bytes: document, gzipped: false, documentSize: document.count) }
        var compressedSize: Int?
        if gzip {
            let packed = try Self.gzip(document)
            if packed.count <= bytes { return UserData(bytes: packed, gzipped: true, documentSize: document.count) }
            compressedSize = packed.count
        }
        var message = "the node setup of \(address) is \(document.count) bytes"
        if let compressedSize { message += " (\(compressedSize) gzipped)" }
        message += "; \(name) holds at most \(bytes) bytes\(gzip ? "" : " and cannot be gzipped")"
        message += ": shorten the node's env, command or user_data"
        throw ProviderError(.permanent, message)
    }

    /// `data` gzipped (RFC 1952), as cloud-init recognises it by its magic bytes.
    public static func gzip(_ data: Data) throws -> Data {
        var buffer = ByteBuffer(bytes: data)
        let packed = try buffer.compress(with: .gzip())
        return Data(packed.readableBytesView)
    }

    /// `data` gunzipped.
    public static func gunzip(_ data: Data) throws -> Data {
        var buffer = ByteBuffer(bytes: data)
        let unpacked = try buffer.decompress(with: .gzip(), maxSize: 16 << 20)
        return Data(unpacked.readableBytesView)
    }
}

/// User data ready for the cloud's API (which base64-encodes it where it must).
public struct UserData: Sendable, Hashable {
    public var bytes: Data
    public var gzipped: Bool
    /// The size of the `#cloud-config` document before any gzip.
    public var documentSize: Int
}
