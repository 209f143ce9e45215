import Foundation
import StratumTesting
import Testing

@Suite("CLI state, graph, refresh and lock commands")
struct CLIStateCommandTests {
    func applied() async throws -> (CLI, FakeCloudProvider) {
        let dir = try TestSupport.temporaryDirectory("state-cmds")
        let cli = CLI("stratum-fixture", in: dir)
        let apply = try await cli.run(["apply", "--stack", "fake-fan", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")
        return (cli, FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud")))
    }

    @Test func showMoveAndRemove() async throws {
        let (cli, cloud) = try await applied()
        let show = try await cli.run(["state", "show", "--stack", "fake-fan", "fake_thing.child[1]"])
        #expect(show.status == 0)
        #expect(show.stdout.contains("# fake_thing.child[1]"))
        #expect(show.stdout.contains("depends on: fake_thing.root"))

        let moved = try await cli.run(["state", "mv", "--stack", "fake-fan", "fake_thing.root", "fake_thing.base"])
        #expect(moved.status == 0, "\(moved.stderr)")
        let list = try await cli.run(["state", "list", "--stack", "fake-fan"]).stdout
        #expect(list.contains("fake_thing.base") && !list.contains("fake_thing.root"))
        let dependent = try await cli.run(["state", "show", "--stack", "fake-fan", "fake_thing.child[0]"]).stdout
        #expect(dependent.contains("depends on: fake_thing.base"))
        let wrongType = try await cli.run(["state", "mv", "--stack", "fake-fan", "fake_thing.base", "other_type.base"])
        #expect(wrongType.status == 1 && wrongType.stderr.contains("different type"))

        let removed = try await cli.run(["state", "rm", "--stack", "fake-fan", "fake_thing.child[4]"])
        #expect(removed.status == 0)
        #expect(!(try await cli.run(["state", "list", "--stack", "fake-fan"]).stdout.contains("fake_thing.child[4]")))
        // rm forgets; the thing itself still exists in the cloud.
        #expect(try cloud.inventory().values.contains { $0.address.description == "fake_thing.child[4]" })
        let missing = try await cli.run(["state", "show", "--stack", "fake-fan", "fake_thing.nope"])
        #expect(missing.status == 1 && missing.stderr.contains("not in state"))
        let history = try await cli.run(["state", "history", "--stack", "fake-fan"]).stdout
        #expect(history.contains("mv fake_thing.root -> fake_thing.base"))
        #expect(history.contains("rm fake_thing.child[4]"))
    }

    @Test func refreshRecordsOutOfBandDeletion() async throws {
        let (cli, cloud) = try await applied()
        let victim = try #require(cloud.inventory().first { $0.value.address.description == "fake_thing.child[2]" })
        try FileManager.default.removeItem(at: cloud.root.appendingPathComponent("resources/\(victim.key).json"))
        let refresh = try await cli.run(["refresh", "--stack", "fake-fan"])
        #expect(refresh.status == 0)
        #expect(refresh.stdout.contains("fake_thing.child[2]: no longer exists"))
        #expect(refresh.stdout.contains("1 read call(s)"))
        #expect(!(try await cli.run(["state", "list", "--stack", "fake-fan"]).stdout.contains("fake_thing.child[2]")))
        let plan = try await cli.run(["plan", "--stack", "fake-fan", "--target", "fake_thing.child[2]"])
        #expect(plan.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."))
    }

    @Test func graphIsDOT() async throws {
        let dir = try TestSupport.temporaryDirectory("graph")
        let graph = try await CLI("stratum-fixture", in: dir).run(["graph", "--stack", "fake-fan"])
        #expect(graph.status == 0)
        #expect(graph.stdout.hasPrefix("digraph \"fake-fan\" {"))
        #expect(graph.stdout.contains("\"fake_thing.child[3]\" -> \"fake_thing.root\";"))
    }

    @Test func forceUnlockNeedsTheRightID() async throws {
        let dir = try TestSupport.temporaryDirectory("unlock")
        let cli = CLI("stratum-fixture", in: dir)
        let cloud = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud"))
        let (process, _, _) = try cli.start(["apply", "--stack", "fake-fan", "--auto-approve"], extraEnvironment: ["STRATUM_FAKE_BLOCK_ON": "fake_thing.root"])
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: cloud.blockedMarker.path) })
        let held = try await cli.run(["plan", "--stack", "fake-fan"])
        let idLine = try #require(held.stderr.split(separator: "\n").first { $0.contains("force-unlock") })
        let lockID = try #require(idLine.split(separator: " ").last.map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "`.")) })
        let wrong = try await cli.run(["force-unlock", "--stack", "fake-fan", "not-the-id"])
        #expect(wrong.status == 1 && wrong.stderr.contains("does not match"))
        let right = try await cli.run(["force-unlock", "--stack", "fake-fan", lockID])
        #expect(right.status == 0, "\(right.stderr)")
        #expect(right.stdout.contains("Released lock \(lockID)"))
    }
}
