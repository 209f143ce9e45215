import Foundation

/// The network conditions a node's link is held to: a bandwidth cap, delay with jitter, packet
/// loss, and optionally correlation and reordering — what a consumer-grade or cross-region link
/// does to traffic. Applied with Linux traffic control on the node's side of its link: what
/// the node sends is delayed, dropped and reordered (netem) and capped at the rate (tbf); what
/// it receives is capped at the rate too, through an IFB device. So a node 100 ms away from an
/// unimpaired peer sees a round trip of 100 ms more, and two such nodes 200 ms more.
///
/// A node resource carries it as its `link` input (`value`), the same map on every provider.
public struct LinkProfile: Sendable, Hashable, Codable {
    /// Kilobits per second each way; nil: not capped.
    public var rateKbit: Int?
    /// One-way delay added to each packet, in milliseconds.
    public var delayMs: Double
    /// Random variation of the delay, in milliseconds (netem's jitter).
    public var jitterMs: Double
    /// Share of packets dropped, in percent.
    public var lossPercent: Double
    /// How much each packet's delay and loss follow the one before, in percent.
    public var correlationPercent: Double
    /// Share of packets sent at once, ahead of those delayed, in percent (needs a delay).
    public var reorderPercent: Double

    public init(
        rateMbit: Double? = nil, delayMs: Double = 0, jitterMs: Double = 0, lossPercent: Double = 0, correlationPercent: Double = 0,
        reorderPercent: Double = 0
    ) {
        self.rateKbit = rateMbit.map { Int(($0 * 1000).rounded()) }
        self.delayMs = delayMs
        self.jitterMs = jitterMs
        self.lossPercent = lossPercent
        self.correlationPercent = correlationPercent
        self.reorderPercent = reorderPercent
    }

    /// No impairment at all.
    public static let unimpaired = LinkProfile()
    /// A 100 Mbit/s link with 20 ms delay.
    public static let broadband = LinkProfile(rateMbit: 100, delayMs: 20)
    /// A 10 Mbit/s link with 100 ms delay and 1 % loss.
    public static let poor = LinkProfile(rateMbit: 10, delayMs: 100, lossPercent: 1)

    public var isUnimpaired: Bool { self == .unimpaired }

    // MARK: as a resource input

    /// The `link` input: `rate_kbit` (absent when uncapped), `delay_ms`, `jitter_ms`,
    /// `loss_percent`, `correlation_percent`, `reorder_percent` (absent when zero).
    public var value: Value {
        var map: [String: Value] = [:]
        if let rateKbit { map["rate_kbit"] = .int(rateKbit) }
        for (key, number) in [
            ("delay_ms", delayMs), ("jitter_ms", jitterMs), ("loss_percent", lossPercent), ("correlation_percent", correlationPercent),
            ("reorder_percent", reorderPercent),
        ] where number != 0 {
            map[key] = number == number.rounded() && abs(number) < 1e9 ? .int(Int(number)) : .double(number)
        }
        return .map(map)
    }

    /// The keys `value` writes.
    public static let keys: Set<String> = ["rate_kbit", "delay_ms", "jitter_ms", "loss_percent", "correlation_percent", "reorder_percent"]

    /// A `link` input read back; nil when absent or null. Throws, naming the key, for what no
    /// profile writes.
    public init?(value: Value?) throws {
        guard let value, value != .null else { return nil }
        guard case .map(let map) = value else { throw LinkProfileError("link must be a map of \(Self.keys.sorted().joined(separator: ", "))") }
        if let unknown = map.keys.sorted().first(where: { !Self.keys.contains($0) }) {
            throw LinkProfileError("link has no setting '\(unknown)' (it takes \(Self.keys.sorted().joined(separator: ", ")))")
        }
        func number(_ key: String) throws -> Double {
            switch map[key] {
            case nil, .null?: return 0
            case .int(let i)?: return Double(i)
            case .double(let d)?: return d
            default: throw LinkProfileError("link \(key) must be a number")
            }
        }
        self.init(
            delayMs: try number("delay_ms"), jitterMs: try number("jitter_ms"), lossPercent: try number("loss_percent"),
            correlationPercent: try number("correlation_percent"), reorderPercent: try number("reorder_percent"))
        if map["rate_kbit"] != nil, map["rate_kbit"] != .null {
            let rate = try number("rate_kbit")
            guard rate == rate.rounded() else { throw LinkProfileError("link rate_kbit must be a whole number") }
            rateKbit = Int(rate)
        }
    }

    /// The profile as `stratum-netem` reads and reports it: one `key=value` line per key of
    /// `value`.
    public var emulatorText: String {
        guard case .map(let map) = value else { return "" }
        return map.keys.sorted().compactMap { key in
            switch map[key] {
            case .int(let i)?: return "\(key)=\(i)"
            case .double(let d)?: return "\(key)=\(d)"
            default: return nil
            }
        }.joined(separator: "\n") + "\n"
    }

    /// A profile in `stratum-netem`'s form read back (pairs separated by newlines or spaces;
    /// zeros mean unset, so an empty text is the unimpaired profile).
    public init(emulatorText text: String) throws {
        var map: [String: Value] = [:]
        for pair in text.split(whereSeparator: { $0 == "\n" || $0 == " " }) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let number = Double(parts[1]), number != 0 else { continue }
            map[parts[0]] = number == number.rounded() ? .int(Int(number)) : .double(number)
        }
        self = try LinkProfile(value: .map(map)) ?? .unimpaired
    }

    /// What is wrong with the profile, one sentence each; empty when nothing is.
    public var problems: [String] {
        var problems: [String] = []
        if let rateKbit, rateKbit < 8 { problems.append("the link rate must be at least 8 kbit/s (got \(rateKbit) kbit/s)") }
        if delayMs < 0 || delayMs > 60_000 { problems.append("the link delay must be 0 to 60000 ms (got \(delayMs))") }
        if jitterMs < 0 || jitterMs > 60_000 { problems.append("the link jitter must be 0 to 60000 ms (got \(jitterMs))") }
        if jitterMs > 0 && delayMs == 0 { problems.append("a link jitter needs a delay to vary around") }
        for (name, percent) in [("loss", lossPercent), ("correlation", correlationPercent), ("reorder", reorderPercent)] where percent < 0 || percent > 100 {
            problems.append("the link \(name) must be 0 to 100 percent (got \(percent))")
        }
        if reorderPercent > 0 && delayMs == 0 { problems.append("reordering needs a delay: packets are reordered by sending some without it") }
        return problems
    }

    /// One line for plans and status: `10 Mbit/s, 100 ms ± 10 ms, 1 % loss`.
    public var summary: String {
        guard !isUnimpaired else { return "unimpaired" }
        var parts: [String] = []
        if let rateKbit { parts.append(rateKbit % 1000 == 0 ? "\(rateKbit / 1000) Mbit/s" : "\(rateKbit) kbit/s") }
        if delayMs > 0 { parts.append("\(Self.format(delayMs)) ms" + (jitterMs > 0 ? " ± \(Self.format(jitterMs)) ms" : "")) }
        if lossPercent > 0 { parts.append("\(Self.format(lossPercent)) % loss") }
        if correlationPercent > 0 { parts.append("\(Self.format(correlationPercent)) % correlation") }
        if reorderPercent > 0 { parts.append("\(Self.format(reorderPercent)) % reordered") }
        return parts.joined(separator: ", ")
    }

    static func format(_ number: Double) -> String {
        number == number.rounded() ? String(Int(number)) : String(format: "%g", number)
    }

    // MARK: traffic control

    /// The `tc qdisc … netem` parameters (`delay 100ms 10ms 25% loss 1% 25% reorder 5%`), or
    /// nil when netem has nothing to do.
    public var netemArguments: [String]? {
        var args: [String] = []
        let correlation = correlationPercent > 0 ? ["\(Self.format(correlationPercent))%"] : []
        if delayMs > 0 {
            args += ["delay", "\(Self.format(delayMs))ms"]
            if jitterMs > 0 { args += ["\(Self.format(jitterMs))ms"] + correlation }
        }
        if lossPercent > 0 { args += ["loss", "\(Self.format(lossPercent))%"] + correlation }
        if reorderPercent > 0 { args += ["reorder", "\(Self.format(reorderPercent))%"] + correlation }
        return args.isEmpty ? nil : args
    }

    /// The `tc qdisc … tbf` parameters for the rate cap, or nil when uncapped: a burst of at
    /// least one full-size frame or 1 ms at the rate, and a queue of about 50 ms.
    public var tbfArguments: [String]? {
        guard let rateKbit else { return nil }
        let bytesPerMs = max(1, rateKbit / 8)
        let burst = max(1600, bytesPerMs * 2)
        let limit = max(3000, bytesPerMs * 50)
        return ["rate", "\(rateKbit)kbit", "burst", String(burst), "limit", String(limit)]
    }

    /// The `tc` command lines (without the leading `tc`) that hold `interface` to the profile:
    /// what the node sends goes through netem (delay, jitter, loss, reordering) and then tbf
    /// (the rate); what it receives is redirected through `ifb` (an IFB device the caller has
    /// made and set up) and capped at the rate there. Run after clearing both devices' root
    /// and ingress qdiscs. Empty for an unimpaired link.
    public func tcCommands(interface: String, ifb: String) -> [[String]] {
        var commands: [[String]] = []
        switch (netemArguments, tbfArguments) {
        case (let netem?, let tbf?):
            commands.append(["qdisc", "add", "dev", interface, "root", "handle", "1:", "netem"] + netem)
            commands.append(["qdisc", "add", "dev", interface, "parent", "1:1", "handle", "10:", "tbf"] + tbf)
        case (let netem?, nil):
            commands.append(["qdisc", "add", "dev", interface, "root", "handle", "1:", "netem"] + netem)
        case (nil, let tbf?):
            commands.append(["qdisc", "add", "dev", interface, "root", "handle", "1:", "tbf"] + tbf)
        case (nil, nil):
            break
        }
        if let tbf = tbfArguments {
            commands.append(["qdisc", "add", "dev", interface, "handle", "ffff:", "ingress"])
            commands.append(["filter", "add", "dev", interface, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb])
            commands.append(["qdisc", "add", "dev", ifb, "root", "handle", "1:", "tbf"] + tbf)
        }
        return commands
    }
}

public struct LinkProfileError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
