import Foundation
import StratumCore
import StratumTesting
import Testing

/// GPU clusters through the CLI on two fake clouds: where the plan puts them, that the decision
/// holds, and how apply fails over zone → region → cloud when capacity or quota runs out.
@Suite("GPU cluster placement and failover (CLI)")
struct CLIPlacementTests {
    struct World {
        let dir: URL
        let cli: CLI
        let fake: FakeCloudProvider
        let fake2: FakeCloudProvider

        init(_ name: String, config: String = "") throws {
            dir = try TestSupport.temporaryDirectory(name)
            cli = CLI("stratum-fixture", in: dir)
            fake = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake-cloud"))
            fake2 = FakeCloudProvider(root: dir.appendingPathComponent(".stratum/fake2-cloud"), name: "fake2")
            try write(config, to: "Stacks/fake-cluster.dev.yaml")
        }

        func write(_ text: String, to path: String) throws {
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }

        func run(_ arguments: [String]) async throws -> CLI.Result { try await cli.run(arguments + ["--stack", "fake-cluster"]) }

        /// The nodes each cloud holds, as `type zone` per node.
        func nodes(_ cloud: FakeCloudProvider) throws -> [String] {
            try cloud.inventory().values.filter { $0.address.type == "\(cloud.name)_node" }
                .map { "\($0.attributes["instance_type"]?.stringValue ?? "?") \($0.attributes["zone"]?.stringValue ?? "?")" }.sorted()
        }

        /// Every node a cloud created is still there or was deleted: none is left that state does not know.
        func leaked(_ cloud: FakeCloudProvider) async throws -> [String] {
            let state = await Set(try run(["state", "list"]).stdout.split(separator: "\n").map(String.init))
            return try cloud.inventory().values.map(\.address.description).filter { !state.contains($0) }
        }
    }

    @Test("the plan shows where the cluster lands, the runners-up and what was left out; the decision is recorded and kept")
    func decisionIsShownRecordedAndKept() async throws {
        let world = try World("placement")
        let plan = try await world.run(["plan"])
        #expect(plan.status == 0, "\(plan.stderr)")
        #expect(plan.stdout.contains("Placement of GPU cluster 'train' (16 × H100 on-demand):"))
        #expect(plan.stdout.contains("chosen:    fake fk.gpu8 default-a: 2 × 8 GPUs, $80.00/h — cheapest of 5 feasible landings"))
        #expect(plan.stdout.contains("runner-up: fake fk.gpu8 faraway-a: 2 × 8 GPUs, $88.00/h"))
        #expect(plan.stdout.contains("runner-up: fake2 f2.gpu8 yonder-1: 2 × 8 GPUs, $100.00/h"))
        let json = try JSONSerialization.jsonObject(with: Data(try await world.run(["plan", "--json"]).stdout.utf8)) as? [String: Any]
        let placement = try #require((json?["placements"] as? [[String: Any]])?.first)
        #expect(placement["zone"] as? String == "default-a" && placement["machines"] as? Int == 2 && placement["kept"] as? Bool == false)

        let apply = try await world.run(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try world.nodes(world.fake) == ["fk.gpu8 default-a", "fk.gpu8 default-a"])

        // A cheaper landing appears (fresher prices): the recorded decision stays.
        let header = OfferCatalog.columns.joined(separator: ",")
        try world.write("\(header)\nf2.gpu8,H100,8,80,96,1024,nvswitch,roce,1600,yonder,yonder-1,10,,https://fake2.invalid/new,2026-11-28\n", to: ".stratum/catalog/fake2.csv")
        let again = try await world.run(["plan", "--detailed-exitcode"])
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(again.stdout.contains("chosen:    fake fk.gpu8 default-a: 2 × 8 GPUs, $80.00/h — kept from state"))

        // --replace-placement chooses again: the cluster moves to the other cloud.
        let moved = try await world.run(["apply", "--auto-approve", "--replace-placement"])
        #expect(moved.status == 0, "\(moved.stderr)")
        #expect(try world.nodes(world.fake).isEmpty)
        #expect(try world.nodes(world.fake2) == ["f2.gpu8 yonder-1", "f2.gpu8 yonder-1"])
        let leakedFromFirst = try await world.leaked(world.fake), leakedFromSecond = try await world.leaked(world.fake2)
        #expect(leakedFromFirst.isEmpty && leakedFromSecond.isEmpty)

        // A changed request is placed afresh: 8 GPUs need one machine.
        try world.write("gpus: 8\n", to: "Stacks/fake-cluster.dev.yaml")
        let smaller = try await world.run(["plan"])
        #expect(smaller.stdout.contains("chosen:    fake2 f2.gpu8 yonder-1: 1 × 8 GPUs, $10.00/h — cheapest of 4 feasible landings"), "\(smaller.stdout)")
    }

    @Test("a stockout in one zone: the partial gang is released and the cluster lands whole in the next zone; the stockout is remembered")
    func zoneStockout() async throws {
        let world = try World("zone-stockout")
        // Room for one node only in default-a: the first lands, the second does not.
        try world.fake.setCapacityRules(["capacity fk.gpu8 default-a 1"])
        let apply = try await world.run(["apply", "--auto-approve", "--parallelism", "1"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(apply.stderr.contains("GPU cluster 'train': fake fk.gpu8 default-a did not land whole: no capacity (fake has no fk.gpu8 capacity in default-a). Released 1 node."))
        #expect(apply.stderr.contains("GPU cluster 'train': failing over to fake fk.gpu8 default-b: 2 × 8 GPUs, $80.00/h."))
        #expect(try world.nodes(world.fake) == ["fk.gpu8 default-b", "fk.gpu8 default-b"])
        let events = world.fake.events()
        #expect(events.filter { $0.hasPrefix("create fake_node") }.count == 3)
        #expect(events.filter { $0.hasPrefix("delete fake_node") }.count == 1)
        await #expect(try world.leaked(world.fake).isEmpty)

        // Recorded: history says why, the offer is listed as blocked, and a new decision skips it.
        let history = try await world.run(["state", "history"])
        #expect(history.stdout.contains("failover: fake fk.gpu8 default-a — no capacity"), "\(history.stdout)")
        let blocked = try await world.cli.run(["catalog", "--blocked"])
        #expect(blocked.stdout.contains("fake fk.gpu8") && blocked.stdout.contains("default-a") && blocked.stdout.contains("no capacity"), "\(blocked.stdout)")
        let replan = try await world.run(["plan", "--replace-placement"])
        #expect(replan.stdout.contains("chosen:    fake fk.gpu8 default-b"), "\(replan.stdout)")
        #expect(replan.stdout.contains("fake fk.gpu8 default-a: no capacity (fake has no fk.gpu8 capacity in default-a); skipped until"))
    }

    @Test("a quota error moves the cluster to the same cloud's next region, not the next zone")
    func quotaMovesRegion() async throws {
        let world = try World("quota")
        try world.fake.setCapacityRules(["quota fk.gpu8 default"])
        let apply = try await world.run(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(apply.stderr.contains("quota used up"))
        #expect(try world.nodes(world.fake) == ["fk.gpu8 faraway-a", "fk.gpu8 faraway-a"])
        #expect(!world.fake.events().contains { $0.contains("default-b") })
        await #expect(try world.leaked(world.fake).isEmpty)
    }

    @Test("a whole cloud out: the cluster moves to the next cloud")
    func cloudDown() async throws {
        let world = try World("cloud-down")
        try world.fake.setCapacityRules(["down"])
        let apply = try await world.run(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try world.nodes(world.fake).isEmpty)
        #expect(try world.nodes(world.fake2) == ["f2.gpu8 yonder-1", "f2.gpu8 yonder-1"])
        // The fake cloud's network went with the move. The checkpoint bucket stays on the first
        // cloud, and the nodes that moved keep checkpointing into it.
        let left = try world.fake.inventory()
        #expect(left.values.map(\.address.description) == ["fake_bucket.train-checkpoints"])
        let url = try #require(left.values.first?.attributes["url"]?.stringValue)
        let moved = try world.fake2.inventory().values.filter { $0.address.type == "fake2_node" }
        #expect(moved.count == 2 && moved.allSatisfy { $0.attributes["checkpoint_url"]?.stringValue == url })
        await #expect(try world.leaked(world.fake2).isEmpty)
    }

    @Test("failover never goes over the budget or the cluster's price cap; with nowhere left it fails and leaves no node")
    func failoverRespectsBudget() async throws {
        let world = try World("budget-failover", config: "budget_per_hour: 90\n")
        try world.fake.setCapacityRules(["down"])
        let apply = try await world.run(["apply", "--auto-approve"])
        #expect(apply.status == 1)
        #expect(apply.stderr.contains("Passing over fake2 f2.gpu8 yonder-1 — the plan would make the stack cost $100.00/h"), "\(apply.stderr)")
        #expect(apply.stderr.contains("GPU cluster 'train' has nowhere left to land"))
        #expect(try world.nodes(world.fake).isEmpty && world.nodes(world.fake2).isEmpty)

        let capped = try World("cap-failover", config: "max_hourly_price: 85\n")
        try capped.fake.setCapacityRules(["capacity fk.gpu8 default-a", "capacity fk.gpu8 default-b"])
        let run = try await capped.run(["apply", "--auto-approve"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("failing over to fake fk.gpu8 default-b"))
        #expect(!run.stderr.contains("failing over to fake fk.gpu8 faraway") && !run.stderr.contains("failing over to fake2"), "\(run.stderr)")
        #expect(run.stderr.contains("GPU cluster 'train' has nowhere left to land: tried fake fk.gpu8 default-a, fake fk.gpu8 default-b"))
        #expect(try capped.nodes(capped.fake).isEmpty && capped.nodes(capped.fake2).isEmpty)
    }

    @Test("--race 3 with the two cheapest landings stocked out lands on the third and leaves nothing of the others")
    func raceThree() async throws {
        let world = try World("race")
        try world.fake.setCapacityRules(["capacity fk.gpu8 default-a", "capacity fk.gpu8 default-b"])
        let apply = try await world.run(["apply", "--auto-approve", "--race", "3"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(apply.stderr.contains("fake fk.gpu8 faraway-a: 2 × 8 GPUs, $88.00/h landed first of 3 raced"), "\(apply.stderr)")
        #expect(try world.nodes(world.fake) == ["fk.gpu8 faraway-a", "fk.gpu8 faraway-a"])
        // Only the winner's network and nodes are left, in the cloud and in state.
        #expect(try world.fake.inventory().values.map(\.address.description).sorted() == [
            "fake_bucket.train-checkpoints", "fake_network.train-race3", "fake_node.train-race3[0]", "fake_node.train-race3[1]",
        ])
        await #expect(try world.leaked(world.fake).isEmpty)
        // Both stocked-out landings are remembered, and the decision holds.
        let blocked = try await world.cli.run(["catalog", "--blocked"]).stdout
        #expect(blocked.contains("default-a") && blocked.contains("default-b"), "\(blocked)")
        let plan = try await world.run(["plan", "--detailed-exitcode"])
        #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("chosen:    fake fk.gpu8 faraway-a: 2 × 8 GPUs, $88.00/h — kept from state"))
    }

    @Test("a race killed mid-way leaves nothing behind once apply runs again")
    func raceKilled() async throws {
        let world = try World("race-killed")
        try world.fake.setCapacityRules(["capacity fk.gpu8 default-a", "capacity fk.gpu8 default-b"])
        // The winner's second node is created in the cloud, then the process is killed before
        // it hears back: a resource state does not know, covered only by the journal.
        let (process, _, _) = try world.cli.start(
            ["apply", "--stack", "fake-cluster", "--auto-approve", "--race", "3", "--parallelism", "1"],
            extraEnvironment: ["STRATUM_FAKE_BLOCK_AFTER_ON": "fake_node.train-race3[1]"])
        #expect(await eventually(seconds: 60) { FileManager.default.fileExists(atPath: world.fake.blockedMarker.path) })
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(try world.fake.inventory().values.contains { $0.address.description == "fake_node.train-race3[1]" })

        let rerun = try await world.run(["apply", "--auto-approve"])
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("Recovering"), "\(rerun.stderr)")
        // No racer copy is left anywhere, and the cluster landed whole.
        #expect(try !world.fake.inventory().values.contains { $0.address.name.contains("-race") })
        await #expect(try !world.run(["state", "list"]).stdout.contains("-race"))
        #expect(try world.nodes(world.fake).count == 2)
        await #expect(try world.leaked(world.fake).isEmpty)
    }

    @Test("a preempted spot node is replaced on the same offer while it has capacity, else the whole cluster fails over")
    func preemption() async throws {
        let world = try World("preempted", config: "spot: true\n")
        #expect(try await world.run(["apply", "--auto-approve"]).status == 0)
        #expect(try world.nodes(world.fake) == ["fk.gpu8 default-a", "fk.gpu8 default-a"])

        // Preempted with capacity left: the node comes back where it was.
        try world.fake.preempt("fake_node.train[1]")
        let same = try await world.run(["apply", "--auto-approve"])
        #expect(same.status == 0, "\(same.stderr)")
        #expect(!same.stderr.contains("failing over"))
        #expect(try world.nodes(world.fake) == ["fk.gpu8 default-a", "fk.gpu8 default-a"])

        // Preempted, and the zone has no spot capacity left: the cluster moves whole.
        try world.fake.preempt("fake_node.train[0]")
        try world.fake.setCapacityRules(["capacity fk.gpu8 default-a"])
        let moved = try await world.run(["apply", "--auto-approve"])
        #expect(moved.status == 0, "\(moved.stderr)")
        #expect(moved.stderr.contains("GPU cluster 'train': fake fk.gpu8 default-a did not land whole: no capacity"), "\(moved.stderr)")
        // The surviving node and the preempted one's record are released.
        #expect(moved.stderr.contains("Released 2 nodes."))
        #expect(try world.nodes(world.fake) == ["fk.gpu8 default-b", "fk.gpu8 default-b"])
        await #expect(try world.leaked(world.fake).isEmpty)
    }

    @Test("a running cluster is never raced, and a stockout met elsewhere does not move it")
    func runningClusterStays() async throws {
        let world = try World("running-stays")
        #expect(try await world.run(["apply", "--auto-approve"]).status == 0)
        let ids = try world.fake.inventory().keys.sorted()

        // --race on a placed cluster starts no copies and touches none of its nodes.
        let raced = try await world.run(["apply", "--auto-approve", "--race", "3", "--replace-placement"])
        #expect(raced.status == 0, "\(raced.stderr)")
        #expect(!raced.stdout.contains("-race"))
        #expect(try world.fake.inventory().keys.sorted() == ids)

        // Another environment in the same state meets a stockout on the same offer and fails
        // over; this cluster stays where it runs.
        try world.fake.setCapacityRules(["capacity fk.gpu8 default-a"])
        try world.write("gpus: 16\n", to: "Stacks/fake-cluster.other.yaml")
        let other = try await world.run(["apply", "--auto-approve", "--env", "other"])
        #expect(other.status == 0 && other.stderr.contains("failing over to fake fk.gpu8 default-b"), "\(other.stderr)")
        #expect(try await world.cli.run(["catalog", "--blocked"]).stdout.contains("default-a"))
        let plan = try await world.run(["plan", "--detailed-exitcode"])
        #expect(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("kept from state"))
    }

    @Test("--race with a saved plan is refused, and a cluster name that looks like a race copy is refused")
    func raceRefusals() async throws {
        let world = try World("race-refusals")
        let saved = world.dir.appendingPathComponent("plan.bin").path
        #expect(try await world.run(["plan", "--out", saved]).status == 0)
        let refused = try await world.cli.run(["apply", saved, "--race", "2"])
        #expect(refused.status != 0 && refused.stderr.contains("--race does not apply to a saved plan"))
    }

    @Test("a race killed after its winner landed keeps the winner: the next apply removes only the other copies")
    func raceKilledAfterTheWin() async throws {
        let world = try World("race-won-killed")
        try world.fake.setCapacityRules(["capacity fk.gpu8 default-b"])
        // The decision's own second node hangs in its create: the third landing wins meanwhile.
        let (process, _, _) = try world.cli.start(
            ["apply", "--stack", "fake-cluster", "--auto-approve", "--race", "3"], extraEnvironment: ["STRATUM_FAKE_BLOCK_ON": "fake_node.train[1]"])
        #expect(await eventually(seconds: 60) { (try? await world.run(["state", "history"]).stdout.contains("race: fake fk.gpu8 faraway-a landed first")) == true })
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let winners = try world.fake.inventory().filter { $0.value.address.name == "train-race3" && $0.value.address.type == "fake_node" }.keys.sorted()
        #expect(winners.count == 2)

        let rerun = try await world.run(["apply", "--auto-approve"])
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stdout.contains("chosen:    fake fk.gpu8 faraway-a: 2 × 8 GPUs, $88.00/h — kept from state"), "\(rerun.stdout)")
        // The winner's nodes are the same machines; every other copy is gone.
        let nodes = try world.fake.inventory().filter { $0.value.address.type == "fake_node" }
        #expect(nodes.keys.sorted() == winners)
        await #expect(try world.leaked(world.fake).isEmpty)
    }
}
