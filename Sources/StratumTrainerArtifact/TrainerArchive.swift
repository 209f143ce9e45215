import Crypto
import Foundation
import StratumCore
import ZIPFoundation

/// The bundled trainer's sources as the zip archive Stratum uploads to a cluster's bucket and
/// nodes build from (`TrainerCore/`, `stratum-trainer/main.c`, `TrainerCUDA/` with its
/// Makefile: `make -C TrainerCUDA cpu`, or the CUDA trainer with nvcc). The archive is the
/// same bytes for the same sources: entries sorted, one fixed date, fixed permissions. So its
/// SHA-256 names it, and a change of trainer source is a new name.
public struct TrainerArchive: Sendable {
    public let data: Data
    /// Lower-case hex.
    public let sha256: String
    /// The archive's paths, sorted.
    public let paths: [String]

    /// The trainer this binary was built with.
    public static let bundled: TrainerArchive = {
        do {
            return try TrainerArchive(files: GeneratedTrainerSources.files.map { ($0.path, Data(base64Encoded: $0.base64) ?? Data()) })
        } catch {
            fatalError("the bundled trainer's sources do not make an archive: \(error)")
        }
    }()

    /// The date every entry carries (zip dates start in 1980).
    static let entryDate = Date(timeIntervalSince1970: 315_532_800 + 86_400)

    public init(files: [(path: String, contents: Data)]) throws {
        let sorted = files.sorted { $0.path < $1.path }
        let archive = try Archive(accessMode: .create)
        for (path, contents) in sorted {
            try archive.addEntry(
                with: path, type: .file, uncompressedSize: Int64(contents.count), modificationDate: Self.entryDate, permissions: 0o644,
                compressionMethod: .deflate
            ) { position, size in
                contents.subdata(in: Int(position)..<Int(position) + size)
            }
        }
        guard let data = archive.data else { throw ArchiveError(message: "the in-memory archive has no data") }
        self.data = data
        self.sha256 = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        self.paths = sorted.map(\.path)
    }

    /// Where the archive goes in a bucket: named by its content.
    public var objectKey: String { "stratum/trainer/\(sha256).zip" }

    /// The inputs of a provider's bucket-object resource for this archive: its `key`, its
    /// `source` (`BundledArtifact.trainer`) and its `sha256`.
    public var objectInputs: [String: String] { ["key": objectKey, "source": BundledArtifact.trainer, "sha256": sha256] }

    public struct ArchiveError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }
}

/// What a stack may ask a provider to put in a bucket from inside this binary, by name.
public enum BundledArtifact {
    /// The trainer's source archive.
    public static let trainer = "stratum:trainer"
    public static let names = [trainer]

    /// The bytes and SHA-256 of a named artifact; nil for a name this binary does not carry.
    public static func contents(of name: String) -> (data: Data, sha256: String)? {
        switch name {
        case trainer: return (TrainerArchive.bundled.data, TrainerArchive.bundled.sha256)
        default: return nil
        }
    }

    /// The error for a create whose planned SHA-256 is not what this binary carries: the plan
    /// was made by another build of Stratum.
    public static func mismatch(_ name: String, planned: String, carried: String) -> String {
        "this stratum binary carries \(name) \(carried.prefix(12)), but the plan was made for \(planned.prefix(12)) (by another build of Stratum): plan again with this binary"
    }

    /// A bucket object kind's check of its `source` input: a name this binary carries.
    public static func diagnostics(_ resource: DesiredResource) -> [Diagnostic] {
        guard let source = resource.inputs["source"]?.stringValue, contents(of: source) == nil else { return [] }
        return [
            Diagnostic(
                address: resource.address, message: "source '\(source)' is not an artifact Stratum carries (\(names.joined(separator: ", ")))",
                location: resource.location)
        ]
    }

    /// The bytes a bucket object kind's create puts: those of its `source`, checked against the
    /// `sha256` the plan recorded. A permanent error when this binary does not carry them.
    public static func bytes(for resource: ResolvedResource) throws -> Data {
        guard let source = resource.inputs["source"]?.stringValue, let artifact = contents(of: source) else {
            throw ProviderError(.permanent, "source '\(resource.inputs["source"]?.stringValue ?? "")' is not an artifact this binary carries", address: resource.address)
        }
        let planned = resource.inputs["sha256"]?.stringValue ?? ""
        guard planned == artifact.sha256 else {
            throw ProviderError(.permanent, mismatch(source, planned: planned, carried: artifact.sha256), address: resource.address)
        }
        return artifact.data
    }
}
