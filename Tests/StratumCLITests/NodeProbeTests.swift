import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumCLI

/// `stratum status`'s probe of cloud nodes, against a loopback trainer stand-in: a GCE gang's
/// members become rows of their own, a gone resource says so, a silent node is unreachable.
@Suite("stratum status: cloud nodes and gangs", .timeLimit(.minutes(3)))
struct NodeProbeTests {
    @Test func aGangsMembersAreRowsAndEveryNodeIsProbed() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            switch request.uri {
            case "/healthz": return ProxyResponse(status: 200, body: Data("ok\n".utf8))
            case "/metrics":
                let text = """
                    # TYPE stratum_trainer_step gauge
                    stratum_trainer_step 1200
                    stratum_trainer_loss 2.25
                    stratum_trainer_tokens_per_second 51234.5
                    stratum_trainer_last_checkpoint_timestamp_seconds \(Int(Date().timeIntervalSince1970) - 90)
                    stratum_allreduce_ok 1
                    stratum_allreduce_bus_bandwidth_bytes_per_second 371500000000
                    stratum_trainer_step{worker="x"} 7
                    """
                return ProxyResponse(status: 200, body: Data(text.utf8))
            default: return ProxyResponse(status: 404)
            }
        }
        defer { Task { await server.shutdown() } }
        let port = try #require(server.url.port)
        let silent = freeLoopbackPort()
        let gang = ResourceState(
            address: ResourceAddress(type: "gcp_instance_gang", name: "worker"), provider: "gcp", region: "us-central1", id: "g",
            attributes: [
                "instances": .list([
                    .map(["name": "worker-0", "zone": "us-central1-a", "private_ip": "127.0.0.1"]),
                    .map(["name": "worker-1", "zone": "us-central1-a", "private_ip": "127.0.0.1"]),
                ])
            ])
        let quiet = ResourceState(
            address: ResourceAddress(type: "aws_instance", name: "quiet", index: 0), provider: "aws", region: "us-east-1", id: "i-1",
            attributes: ["availability_zone": "us-east-1b", "private_ip": "127.0.0.1", "public_ip": "", "metrics_port": .int(silent)])
        let gone = ResourceState(address: ResourceAddress(type: "azure_virtual_machine", name: "old"), provider: "azure", region: "eastus", id: "vm", attributes: [:])

        var probe = NodeProbe(transport: AsyncHTTPTransport(), timeout: .seconds(5))
        probe.cloudPort = port
        let live: [ResourceAddress: ResourceState?] = [gang.address: gang, quiet.address: quiet, gone.address: ResourceState?.none]
        let reports = await probe.reports(for: [gang, quiet, gone], live: live)
        #expect(reports.map(\.address) == ["gcp_instance_gang.worker[0]", "gcp_instance_gang.worker[1]", "aws_instance.quiet[0]", "azure_virtual_machine.old"])
        let member = try #require(reports.first)
        #expect(member.zone == "us-central1-a" && member.endpoint == "127.0.0.1:\(port)" && member.health == "ok")
        #expect(member.step == 1200 && member.loss == 2.25 && member.tokensPerSecond == 51234.5 && member.allreduceBusGbps == 371.5)
        #expect((member.checkpointAgeSeconds ?? 0) >= 89 && (member.checkpointAgeSeconds ?? 0) < 200)
        #expect(reports[2].health.hasPrefix("unreachable") && reports[2].zone == "us-east-1b")
        #expect(reports[3].health.hasPrefix("gone"))
        let table = NodeProbe.table(reports)
        #expect(table.contains("gcp_instance_gang.worker[1]") && table.contains("371.5") && table.range(of: " 9[0-9]s ", options: .regularExpression) != nil, "\(table)")
    }

    /// A node whose interconnect check failed is flagged, and shows no bandwidth.
    @Test func aFailedAllReduceCheckIsFlagged() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            switch request.uri {
            case "/healthz": return ProxyResponse(status: 200, body: Data("ok\n".utf8))
            case "/metrics": return ProxyResponse(status: 200, body: Data("stratum_trainer_step 3\nstratum_allreduce_ok 0\nstratum_allreduce_bus_bandwidth_bytes_per_second 0\n".utf8))
            default: return ProxyResponse(status: 404)
            }
        }
        defer { Task { await server.shutdown() } }
        let node = ResourceState(
            address: ResourceAddress(type: "aws_instance", name: "worker", index: 1), provider: "aws", region: "us-east-1", id: "i-2",
            attributes: ["availability_zone": "us-east-1a", "private_ip": "127.0.0.1", "metrics_port": .int(try #require(server.url.port))])
        let reports = await NodeProbe(transport: AsyncHTTPTransport(), timeout: .seconds(5)).reports(for: [node], live: [node.address: node])
        #expect(reports.first?.health == "ok, but its all-reduce check failed" && reports.first?.allreduceBusGbps == nil, "\(reports)")
        #expect(reports.first?.step == 3)
    }

    /// What `apply --wait-for-nodes` makes of a node: a trainer in a pool is ready once its
    /// interconnect check has reported; a failed check or a gone node fails the wait.
    @Test func readinessFollowsHealthAndTheInterconnectCheck() {
        var node = NodeReport(address: "aws_instance.worker[0]", provider: "aws", zone: "a", endpoint: "10.0.0.1:9464", health: "ok")
        #expect(node.readiness == .ready, "one node alone has no check to wait for")
        node.poolSize = 2
        #expect(node.readiness == .waiting, "a pool's node waits for its check")
        node.allreduceOK = true
        #expect(node.readiness == .ready)
        node.allreduceOK = false
        node.health = "ok, but its all-reduce check failed"
        #expect(node.readiness == .failed)
        #expect(NodeReport(address: "x", provider: "aws", zone: "", endpoint: "", health: "unreachable (connection refused)", poolSize: 2).readiness == .waiting)
        // A node that joined after its pool's check has none to wait for.
        #expect(NodeReport(address: "x", provider: "aws", zone: "", endpoint: "", health: "ok", allreduceSkipped: true, poolSize: 2).readiness == .ready)
        #expect(NodeReport(address: "x", provider: "aws", zone: "", endpoint: "", health: "gone (deleted outside Stratum; the next apply recreates it)").readiness == .failed)
        #expect(NodeReport(address: "x", provider: "local", zone: "", endpoint: "", health: "no metrics endpoint", poolSize: 3).readiness == .waiting)
    }

    /// The wait ends as soon as a node's check has failed, and when the time runs out on a node
    /// that never answers; it ends true once every node is ready. (The first wait is given an
    /// hour: only ending at the failed check gets it done within the test's time limit.)
    @Test(.timeLimit(.minutes(2))) func theWaitEndsOnAFailedCheckOnTimeAndWhenAllAreReady() async throws {
        let passed = LockedValue(false)
        let server = try await LoopbackHTTPServer.start { request in
            switch request.uri {
            case "/healthz": return ProxyResponse(status: 200, body: Data("ok\n".utf8))
            case "/metrics":
                return ProxyResponse(status: 200, body: Data("stratum_trainer_step 3\nstratum_allreduce_ok \(passed.get() ? 1 : 0)\n".utf8))
            default: return ProxyResponse(status: 404)
            }
        }
        defer { Task { await server.shutdown() } }
        func node(_ index: Int, port: Int) -> ResourceState {
            ResourceState(
                address: ResourceAddress(type: "aws_instance", name: "worker", index: index), provider: "aws", region: "us-east-1", id: "i-\(index)",
                attributes: ["availability_zone": "us-east-1a", "private_ip": "127.0.0.1", "metrics_port": .int(port), "count": 2])
        }
        let port = try #require(server.url.port)
        let console = Console(color: false)
        var wait = NodeWait(console: console)
        wait.interval = .milliseconds(50)
        let interruption = Interruption(console: console)

        #expect(try await wait.wait(for: [node(0, port: port), node(1, port: port)], seconds: 3600, interruption: interruption) == false)

        #expect(try await wait.wait(for: [node(0, port: port), node(1, port: freeLoopbackPort())], seconds: 1, interruption: interruption) == false)

        passed.update { $0 = true }
        #expect(try await wait.wait(for: [node(0, port: port), node(1, port: port)], seconds: 30, interruption: interruption))
    }
}
