import Foundation
import StratumCore

/// Where a Compute operation lives, and its name: enough to look at it again after a restart.
/// Its `handle` is what the journal records (`zones/us-central1-a/operations/operation-…`).
public struct GCPOperationReference: Sendable, Hashable, CustomStringConvertible {
    public enum Scope: Sendable, Hashable {
        case zone(String)
        case region(String)
        case global
    }

    public var scope: Scope
    public var name: String

    public init(scope: Scope, name: String) {
        self.scope = scope
        self.name = name
    }

    /// Reads a handle written by `handle`.
    public init?(handle: String) {
        let parts = handle.split(separator: "/").map(String.init)
        switch (parts.count, parts.first) {
        case (4, "zones") where parts[2] == "operations": self.init(scope: .zone(parts[1]), name: parts[3])
        case (4, "regions") where parts[2] == "operations": self.init(scope: .region(parts[1]), name: parts[3])
        case (3, "global") where parts[1] == "operations": self.init(scope: .global, name: parts[2])
        default: return nil
        }
    }

    public var handle: String {
        switch scope {
        case .zone(let zone): return "zones/\(zone)/operations/\(name)"
        case .region(let region): return "regions/\(region)/operations/\(name)"
        case .global: return "global/operations/\(name)"
        }
    }

    /// The operation's path under a project.
    public func path(project: String) -> String { "projects/\(project)/\(handle)" }

    public var description: String { handle }
}

/// A Compute operation resource: what every mutating call answers, and what a wait looks at.
public struct GCPOperation: Sendable {
    public var reference: GCPOperationReference
    /// `PENDING`, `RUNNING` or `DONE`.
    public var status: String
    /// The resource the operation acts on (`targetLink`), and its id.
    public var targetLink: String?
    public var targetId: String?
    public var operationType: String?
    /// Set when a finished operation failed.
    public var error: GCPServiceError?

    public var isDone: Bool { status == "DONE" }

    /// Reads an operation resource; nil when `json` is not one.
    public init?(json: GCPJSON) {
        guard let name = json["name"]?.string, let status = json["status"]?.string else { return nil }
        // `zone` and `region` are URLs ending in the name; neither means a global operation.
        if let zone = json["zone"]?.string.flatMap(Self.lastComponent) {
            reference = GCPOperationReference(scope: .zone(zone), name: name)
        } else if let region = json["region"]?.string.flatMap(Self.lastComponent) {
            reference = GCPOperationReference(scope: .region(region), name: name)
        } else {
            reference = GCPOperationReference(scope: .global, name: name)
        }
        self.status = status
        targetLink = json["targetLink"]?.string
        targetId = json["targetId"]?.string
        operationType = json["operationType"]?.string
        if let failure = json["error"], !(failure["errors"]?.array.isEmpty ?? true) {
            error = GCPServiceError.parse(
                operationError: failure, status: json["httpErrorStatusCode"]?.number.map { Int($0) }, httpMessage: json["httpErrorMessage"]?.string)
        }
    }

    static func lastComponent(_ url: String) -> String? {
        url.split(separator: "/").last.map(String.init)
    }
}
