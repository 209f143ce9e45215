/// Object storage for checkpoints and data.
public struct Bucket: Resource {
    public let name: String
    public var versioning: Bool
    public var placement: Placement
    public var explicitDependencies: [ResourceAddress] = []
    public let location: SourceLocation

    /// In an ephemeral environment (`stratum up`) the name carries the environment's suffix
    /// (`StackNaming.suffix`): bucket names are global, and copies of a stack must not share one.
    public init(_ name: String, versioning: Bool = false, on placement: Placement = .local, fileID: String = #fileID, line: Int = #line) {
        self.name = name + StackNaming.suffix
        self.versioning = versioning
        self.placement = placement
        self.location = SourceLocation(file: fileID, line: line)
    }

    public var address: ResourceAddress { placement.address(kind: "bucket", name: name) }
    public var id: Ref<String> { Ref(address, "id") }
    /// Where the bucket is reached: `file:///…` on Local, `s3://…` on AWS.
    public var url: Ref<String> { Ref(address, "url") }
    /// The bucket's directory (Local provider).
    public var path: Ref<String> { Ref(address, "path") }

    public func declare(into content: inout StackContent) {
        content.diagnostics += nameDiagnostics(name, location: location)
        placement.lowering.declare(bucket: self, into: &content)
    }
}
