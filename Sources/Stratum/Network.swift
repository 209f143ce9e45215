/// A private network with an IPv4 CIDR block.
public struct Network: Resource {
    public let name: String
    public var cidr: String
    public var placement: Placement
    public var explicitDependencies: [ResourceAddress] = []
    public let location: SourceLocation

    public init(_ name: String, cidr: String, on placement: Placement = .local, fileID: String = #fileID, line: Int = #line) {
        self.name = name
        self.cidr = cidr
        self.placement = placement
        self.location = SourceLocation(file: fileID, line: line)
    }

    public var address: ResourceAddress { placement.address(kind: "network", name: name) }
    /// The provider's id for the network.
    public var id: Ref<String> { Ref(address, "id") }

    public func declare(into content: inout StackContent) {
        content.diagnostics += nameDiagnostics(name, location: location)
        if let problem = CIDR.problem(in: cidr) {
            content.diagnostics.append(Diagnostic(address: address, message: "invalid CIDR '\(cidr)': \(problem)", location: location))
        }
        placement.lowering.declare(network: self, into: &content)
    }
}

/// IPv4 CIDR notation checks.
public enum CIDR {
    /// Why `text` is not a valid IPv4 CIDR block, or nil when it is.
    public static func problem(in text: String) -> String? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return "expected ADDRESS/PREFIX, e.g. 10.0.0.0/16" }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return "the address needs four dot-separated numbers" }
        var address: UInt32 = 0
        for octet in octets {
            guard let n = UInt32(octet), n <= 255, octet.count <= 3 else { return "'\(octet)' is not a number from 0 to 255" }
            address = address << 8 | n
        }
        guard let prefix = Int(parts[1]), (0...32).contains(prefix) else { return "the prefix length must be 0 to 32" }
        let hostBits: UInt32 = prefix == 0 ? .max : (prefix == 32 ? 0 : (UInt32(1) << UInt32(32 - prefix)) - 1)
        guard address & hostBits == 0 else { return "host bits are set beyond the /\(prefix) prefix" }
        return nil
    }
}
