import Foundation
import Stratum
import StratumCore

/// Checks of Azure names (subscriptions, locations, zones, resource names, tags) and the names
/// the lowering derives.
public enum AzureNaming {
    /// Why `subscription` is not a subscription id (a GUID), or nil.
    public static func problem(subscription: String) -> String? {
        UUID(uuidString: subscription) != nil ? nil : "'\(subscription)' is not an Azure subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)"
    }

    /// Why `location` is not an Azure location name (`eastus`, `westeurope`, `eastus2`), or nil.
    public static func problem(location: String) -> String? {
        location.range(of: "^[a-z]+[a-z0-9]*$", options: .regularExpression) != nil
            ? nil : "'\(location)' is not an Azure location name (e.g. eastus, westeurope, swedencentral)"
    }

    /// The problems of a list of availability zones: names (`1`, `2`, `3`), and one named twice.
    public static func problems(zones: [String]) -> [String] {
        var problems = zones.filter { !["1", "2", "3"].contains($0) }.map { "'\($0)' is not an Azure availability zone (they are \"1\", \"2\" and \"3\")" }
        var seen = Set<String>()
        for zone in zones where !seen.insert(zone).inserted { problems.append("zone '\(zone)' is listed twice") }
        return problems
    }

    /// Why `name` is not a resource group name (1-90 of letters, digits, '_', '-', '.', '(' and ')', not ending in '.'), or nil.
    public static func problem(resourceGroup name: String) -> String? {
        name.range(of: #"^[-\w.()]{1,90}$"#, options: .regularExpression) != nil && !name.hasSuffix(".") && name.allSatisfy(\.isASCII)
            ? nil : "'\(name)' is not a resource group name: 1-90 of letters, digits, '_', '-', '.', '(' and ')', not ending in '.'"
    }

    /// Why `name` is not a name for a network resource, a proximity placement group or a VM
    /// (1-`limit` of letters, digits, '_', '-' and '.', starting with a letter or digit and
    /// ending with one or '_'), or nil.
    public static func problem(resourceName name: String, limit: Int = 80) -> String? {
        name.range(of: "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,\(limit - 2)}[A-Za-z0-9_])?$", options: .regularExpression) != nil
            ? nil : "'\(name)' is not an Azure resource name: 1-\(limit) of letters, digits, '_', '-' and '.', starting with a letter or digit, ending with one or '_'"
    }

    /// Why `name` is not a storage account name (3-24 of a-z and 0-9), or nil.
    public static func problem(storageAccount name: String) -> String? {
        name.range(of: "^[a-z0-9]{3,24}$", options: .regularExpression) != nil
            ? nil : "'\(name)' is not a storage account name: 3-24 lowercase letters and digits, unique across Azure"
    }

    /// Why `name` is not a blob container name (3-63 of a-z, 0-9 and '-', starting and ending
    /// with a letter or digit, no '--'), or nil.
    public static func problem(container name: String) -> String? {
        name.range(of: "^[a-z0-9]([-a-z0-9]{1,61})[a-z0-9]$", options: .regularExpression) != nil && !name.contains("--")
            ? nil : "'\(name)' is not a blob container name: 3-63 of a-z, 0-9 and '-', starting and ending with a letter or digit, no '--'"
    }

    /// The problems of tags: names of at most 512 characters without `<>%&\?/`, values of at most 256.
    public static func problems(tags: [String: String]) -> [String] {
        tags.sorted { $0.key < $1.key }.flatMap { key, value -> [String] in
            var problems: [String] = []
            if key.isEmpty || key.count > 512 || key.contains(where: { "<>%&\\?/".contains($0) }) {
                problems.append("tag name '\(key)' must be 1-512 characters without < > % & \\ ? /")
            }
            if value.count > 256 { problems.append("the value of tag '\(key)' is longer than 256 characters") }
            return problems
        }
    }

    /// The storage account name of a bucket: its name in lowercase when that already is one,
    /// else what is left of it in a-z and 0-9 (at most 16) and 8 hex digits of a hash of the
    /// whole name, so two buckets whose names differ only in what is dropped differ still.
    public static func storageAccountName(_ bucket: String) -> String {
        let kept = String(bucket.lowercased().filter { $0.isASCII && ($0.isLowercase || $0.isNumber) })
        if kept == bucket, problem(storageAccount: kept) == nil { return kept }
        return String(kept.prefix(16)) + fnv1a(bucket)
    }

    /// The blob container name of a bucket: lowercase, '_' as '-', '-' runs as one; nil when
    /// that is no container name.
    public static func containerName(_ bucket: String) -> String? {
        var name = bucket.lowercased().replacingOccurrences(of: "_", with: "-")
        while name.contains("--") { name = name.replacingOccurrences(of: "--", with: "-") }
        name = name.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return problem(container: name) == nil ? name : nil
    }

    /// A marketplace image `publisher:offer:sku:version` rather than a container image.
    public static func isMarketplaceImage(_ image: String) -> Bool {
        !image.contains("/") && image.split(separator: ":", omittingEmptySubsequences: false).count == 4
    }

    /// Why `image` is not `publisher:offer:sku:version`, or nil.
    public static func problem(image: String) -> String? {
        let parts = image.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy({ !$0.isEmpty }) && !image.contains("/")
            ? nil : "image '\(image)' is not publisher:offer:sku:version (e.g. microsoft-dsvm:ubuntu-hpc:2204:latest)"
    }

    /// Why `size` is not a VM size name (`Standard_ND96isr_H100_v5`), or nil.
    public static func problem(size: String) -> String? {
        size.range(of: "^(Standard|Basic)_[A-Za-z0-9_]+$", options: .regularExpression) != nil
            ? nil : "'\(size)' is not an Azure VM size (e.g. Standard_ND96isr_H100_v5, Standard_D4s_v5)"
    }

    /// 32-bit FNV-1a of `text`, as 8 hex digits: stable across runs and machines.
    static func fnv1a(_ text: String) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }
}

/// One rule of a network security group. Its inputs are ARM's security rule properties in
/// snake_case: `name`, `priority` (100-4096), `direction` (Inbound, Outbound), `access`
/// (Allow, Deny), `protocol` (Tcp, Udp, Icmp, `*`), `source_address_prefix`,
/// `destination_address_prefix`, `source_port_range`, `destination_port_range`.
public struct AzureSecurityRule: Sendable, Hashable {
    public enum Direction: String, Sendable { case inbound = "Inbound", outbound = "Outbound" }
    public enum Access: String, Sendable { case allow = "Allow", deny = "Deny" }

    public var name: String
    public var priority: Int
    public var direction: Direction
    public var access: Access
    /// `Tcp`, `Udp`, `Icmp` or `*`.
    public var ipProtocol: String
    /// A CIDR, an IP, a service tag (`VirtualNetwork`, `Internet`) or `*`.
    public var sourceAddressPrefix: String
    public var destinationAddressPrefix: String
    /// A port, a range (`8000-9000`) or `*`.
    public var sourcePortRange: String
    public var destinationPortRange: String

    public init(
        _ name: String, priority: Int, direction: Direction = .inbound, access: Access = .allow, protocol ipProtocol: String = "*",
        source: String, destination: String = "*", sourcePorts: String = "*", destinationPorts: String = "*"
    ) {
        self.name = name
        self.priority = priority
        self.direction = direction
        self.access = access
        self.ipProtocol = ipProtocol
        self.sourceAddressPrefix = source
        self.destinationAddressPrefix = destination
        self.sourcePortRange = sourcePorts
        self.destinationPortRange = destinationPorts
    }

    /// Every protocol and port from inside `cidr`, inbound.
    public static func fromInside(_ cidr: String) -> AzureSecurityRule {
        AzureSecurityRule("allow-inside", priority: 100, source: cidr, destination: cidr)
    }

    public var value: Value {
        .map([
            "name": .string(name), "priority": .int(priority), "direction": .string(direction.rawValue), "access": .string(access.rawValue),
            "protocol": .string(ipProtocol), "source_address_prefix": .string(sourceAddressPrefix),
            "destination_address_prefix": .string(destinationAddressPrefix), "source_port_range": .string(sourcePortRange),
            "destination_port_range": .string(destinationPortRange),
        ])
    }

    func problems() -> [String] {
        var problems: [String] = []
        if !(100...4096).contains(priority) { problems.append("rule '\(name)': priority \(priority) is outside 100...4096") }
        if !["Tcp", "Udp", "Icmp", "Esp", "Ah", "*"].contains(ipProtocol) { problems.append("rule '\(name)': protocol '\(ipProtocol)' must be Tcp, Udp, Icmp, Esp, Ah or *") }
        if let why = AzureNaming.problem(resourceName: name) { problems.append("rule: \(why)") }
        return problems
    }
}
