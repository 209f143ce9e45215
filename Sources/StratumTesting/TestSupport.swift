import Foundation

/// Temporary directories and helpers shared by tests.
public enum TestSupport {
    /// A fresh empty directory under the system temporary directory.
    public static func temporaryDirectory(_ label: String = "stratum") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
