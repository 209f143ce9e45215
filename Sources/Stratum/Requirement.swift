/// A check a stack makes about its environment while it is evaluated, reported with the
/// other validation errors when it fails (e.g. a binary the workload needs is missing).
public struct Requirement: Declaration {
    public var isMet: Bool
    public var message: String
    public let location: SourceLocation

    public init(_ isMet: Bool, _ message: String, fileID: String = #fileID, line: Int = #line) {
        self.isMet = isMet
        self.message = message
        self.location = SourceLocation(file: fileID, line: line)
    }

    public func declare(into content: inout StackContent) {
        if !isMet { content.diagnostics.append(Diagnostic(message: message, location: location)) }
    }
}
