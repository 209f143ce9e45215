import Foundation
import StratumCore
import Testing

@Suite("LinkProfile: the link input and its traffic control")
struct LinkProfileTests {
    @Test func theInputRoundTripsAndUnknownKeysAreRefused() throws {
        let profile = LinkProfile(rateMbit: 10, delayMs: 100, jitterMs: 10, lossPercent: 1, correlationPercent: 25, reorderPercent: 0.5)
        #expect(profile.value == .map([
            "rate_kbit": 10000, "delay_ms": 100, "jitter_ms": 10, "loss_percent": 1, "correlation_percent": 25, "reorder_percent": .double(0.5),
        ]))
        #expect(try LinkProfile(value: profile.value) == profile)
        #expect(try LinkProfile(value: nil) == nil)
        #expect(try LinkProfile(value: .null) == nil)
        #expect(LinkProfile.unimpaired.value == .map([:]))
        #expect(throws: LinkProfileError.self) { try LinkProfile(value: .map(["latency": 5])) }
        #expect(throws: LinkProfileError.self) { try LinkProfile(value: .map(["delay_ms": "fast"])) }
        #expect(throws: LinkProfileError.self) { try LinkProfile(value: .map(["rate_kbit": .double(1.5)])) }
    }

    /// stratum-netem's `key=value` form, written and read back (as its state file, or one line).
    @Test func theEmulatorsFormRoundTrips() throws {
        let profile = LinkProfile(rateMbit: 10, delayMs: 100, jitterMs: 2.5, lossPercent: 1)
        #expect(profile.emulatorText == "delay_ms=100\njitter_ms=2.5\nloss_percent=1\nrate_kbit=10000\n")
        #expect(try LinkProfile(emulatorText: profile.emulatorText) == profile)
        #expect(try LinkProfile(emulatorText: "rate_kbit=10000 delay_ms=100 jitter_ms=2.5 loss_percent=1 reorder_percent=0") == profile)
        #expect(try LinkProfile(emulatorText: "delay_ms=0\n") == LinkProfile.unimpaired)
    }

    @Test func problemsNameWhatIsWrong() {
        #expect(LinkProfile.poor.problems.isEmpty)
        #expect(LinkProfile(rateMbit: 0.001).problems.contains { $0.contains("at least 8 kbit/s") })
        #expect(LinkProfile(lossPercent: 101).problems.contains { $0.contains("loss must be 0 to 100") })
        #expect(LinkProfile(jitterMs: 5).problems.contains { $0.contains("jitter needs a delay") })
        #expect(LinkProfile(reorderPercent: 5).problems.contains { $0.contains("reordering needs a delay") })
    }

    @Test func summaryAndTrafficControl() {
        #expect(LinkProfile.poor.summary == "10 Mbit/s, 100 ms, 1 % loss")
        #expect(LinkProfile(rateMbit: 0.5, delayMs: 20, jitterMs: 2.5).summary == "500 kbit/s, 20 ms ± 2.5 ms")
        #expect(LinkProfile.unimpaired.summary == "unimpaired")
        #expect(LinkProfile.unimpaired.tcCommands(interface: "eth0", ifb: "ifb0").isEmpty)

        let both = LinkProfile.poor.tcCommands(interface: "eth0", ifb: "ifb0")
        #expect(both.map { $0.joined(separator: " ") } == [
            "qdisc add dev eth0 root handle 1: netem delay 100ms loss 1%",
            "qdisc add dev eth0 parent 1:1 handle 10: tbf rate 10000kbit burst 2500 limit 62500",
            "qdisc add dev eth0 handle ffff: ingress",
            "filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ifb0",
            "qdisc add dev ifb0 root handle 1: tbf rate 10000kbit burst 2500 limit 62500",
        ])
        // Delay only: no rate, so nothing on the way in.
        #expect(LinkProfile(delayMs: 20, jitterMs: 5, correlationPercent: 25).tcCommands(interface: "v", ifb: "i").map { $0.joined(separator: " ") } == [
            "qdisc add dev v root handle 1: netem delay 20ms 5ms 25%"
        ])
        #expect(LinkProfile(rateMbit: 100).tcCommands(interface: "v", ifb: "i").first == ["qdisc", "add", "dev", "v", "root", "handle", "1:", "tbf", "rate", "100000kbit", "burst", "25000", "limit", "625000"])
    }
}
