import Foundation
import StratumCore

/// A cloud kept in a directory, so that several processes (a CLI killed mid-apply and its
/// rerun) see the same resources. Type `fake_thing`: `size` forces replacement, `value`
/// updates in place, `id` is assigned by the cloud. Every create is logged, so tests can
/// count duplicates.
public struct FakeCloudProvider: Provider {
    public struct Options: Sendable {
        /// Simulated latency of every API call.
        public var latency: Duration = .zero
        /// Creating this address blocks forever (after logging `blocked`), so a test can kill the process.
        public var blockOn: String?
        /// Creating or updating this address fails with a permanent error.
        public var failOn: String?
        /// Whether replacements create the new thing before deleting the old one.
        public var createBeforeDestroy: Bool
        /// Creating this address takes effect, then the call fails as if the response was lost.
        public var loseResponseOn: String?
        /// Creating this address takes effect, then blocks forever (after logging `blocked`):
        /// a kill then leaves a resource the caller never heard about.
        public var blockAfterOn: String?
        /// Once the cloud holds this many things, creates fail with `exhaustion` (each refusal is logged).
        public var quota: Int?
        /// The error kind a create beyond `quota` fails with: `.quota` or `.capacity`.
        public var exhaustion: ProviderError.Kind
        /// The share of creates refused as throttled before they take effect (0 to 1).
        public var throttleRate: Double = 0
        /// Creating or deleting this address waits (after writing the blocked marker) until the
        /// release file exists, then goes on: a test holds the call in flight as long as it needs,
        /// however slowly it gets to look.
        public var holdOn: String?

        public init(
            latency: Duration = .zero, blockOn: String? = nil, failOn: String? = nil, createBeforeDestroy: Bool = false,
            loseResponseOn: String? = nil, blockAfterOn: String? = nil, quota: Int? = nil, exhaustion: ProviderError.Kind = .quota,
            throttleRate: Double = 0, holdOn: String? = nil
        ) {
            self.holdOn = holdOn
            self.throttleRate = throttleRate
            self.quota = quota
            self.exhaustion = exhaustion
            self.blockAfterOn = blockAfterOn
            self.latency = latency
            self.blockOn = blockOn
            self.failOn = failOn
            self.createBeforeDestroy = createBeforeDestroy
            self.loseResponseOn = loseResponseOn
        }

        /// Options from `STRATUM_FAKE_LATENCY_MS`, `STRATUM_FAKE_BLOCK_ON`, `STRATUM_FAKE_FAIL_ON`,
        /// `STRATUM_FAKE_QUOTA` (with `STRATUM_FAKE_EXHAUSTION=capacity` for capacity errors).
        public static func fromEnvironment() -> Options {
            let env = ProcessInfo.processInfo.environment
            return Options(
                latency: .milliseconds(Int(env["STRATUM_FAKE_LATENCY_MS"] ?? "") ?? 0),
                blockOn: env["STRATUM_FAKE_BLOCK_ON"], failOn: env["STRATUM_FAKE_FAIL_ON"],
                loseResponseOn: env["STRATUM_FAKE_LOSE_RESPONSE_ON"], blockAfterOn: env["STRATUM_FAKE_BLOCK_AFTER_ON"],
                quota: Int(env["STRATUM_FAKE_QUOTA"] ?? ""), exhaustion: env["STRATUM_FAKE_EXHAUSTION"].flatMap(ProviderError.Kind.init(rawValue:)) ?? .quota,
                throttleRate: Double(env["STRATUM_FAKE_THROTTLE"] ?? "") ?? 0, holdOn: env["STRATUM_FAKE_HOLD_ON"])
        }
    }

    public let name: String
    public let root: URL
    public var options: Options

    /// A fake cloud named `name` (its types are `<name>_thing`, `<name>_network`, `<name>_bucket`,
    /// `<name>_node`).
    public init(root: URL, name: String = "fake", options: Options = Options()) {
        self.root = root
        self.name = name
        self.options = options
    }

    public var kinds: [String: any ResourceKind] {
        let kinds = [
            FakeThingKind(cloud: self, type: "\(name)_thing", schema: thingSchema, billedBy: "machine_type"),
            FakeThingKind(cloud: self, type: "\(name)_network", schema: networkSchema),
            FakeThingKind(cloud: self, type: "\(name)_bucket", schema: bucketSchema, isBucket: true),
            FakeThingKind(cloud: self, type: "\(name)_node", schema: nodeSchema, billedBy: "instance_type", checksCapacity: true),
        ]
        return Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
    }

    /// What `<name>_network` takes: the generic lowering's network.
    var networkSchema: ResourceSchema {
        ResourceSchema(type: "\(name)_network", attributes: ["cidr": .input(forceNew: true, required: true), "id": .computed])
    }

    /// What `<name>_bucket` takes: the generic lowering's bucket, a directory under the cloud's
    /// root (`url` is its `file://` URL).
    var bucketSchema: ResourceSchema {
        ResourceSchema(type: "\(name)_bucket", attributes: [
            "name": .input(forceNew: true, required: true), "versioning": .input(), "id": .computed, "url": .computed,
        ])
    }

    /// What `<name>_node` takes: the generic lowering's node, placed in a zone.
    var nodeSchema: ResourceSchema {
        var attributes: [String: AttributeSchema] = [:]
        for input in ["pool", "index", "count", "checkpoint_url", "image", "command", "env", "gpus", "gpu_class", "instance_type", "cpus", "memory_gib", "network_id", "coordinator", "zone", "spot"] {
            attributes[input] = .input(forceNew: true)
        }
        attributes["labels"] = .input()
        attributes["id"] = .computed
        return ResourceSchema(type: "\(name)_node", attributes: attributes)
    }

    /// Serialises capacity checks with the creates they count (one process's concurrent creates).
    static let capacityLock = NSLock()

    /// Rules for node creates, one per line of `<root>/capacity`:
    /// `capacity TYPE ZONE [N]` (room for only N nodes of TYPE in ZONE, default none; counted
    /// over the nodes the cloud holds), `quota TYPE REGION` (the quota for
    /// TYPE in REGION is used up), `down` (every create fails for capacity). `#` starts a comment.
    public var capacityRules: URL { root.appendingPathComponent("capacity") }

    /// Writes the capacity rules (creating the cloud's directory).
    public func setCapacityRules(_ lines: [String]) throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: capacityRules, options: .atomic)
    }

    /// The error a node create of `type` in `zone` of `region` meets under the capacity rules.
    func capacityError(type: String, zone: String?, region: String, address: ResourceAddress) -> ProviderError? {
        let text = (try? String(contentsOf: capacityRules, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard let rule = words.first, !rule.hasPrefix("#") else { continue }
            switch rule {
            case "down":
                return ProviderError(.capacity, "\(name) has no capacity anywhere", address: address, scope: .cloud)
            case "capacity" where (words.count == 3 || words.count == 4) && words[1] == type && words[2] == zone:
                let room = words.count == 4 ? Int(words[3]) ?? 0 : 0
                let held = ((try? inventory()) ?? [:]).values.filter {
                    $0.address.type == "\(name)_node" && $0.attributes["instance_type"]?.stringValue == type && $0.attributes["zone"]?.stringValue == zone
                }.count
                if held < room { continue }
                return ProviderError(.capacity, "\(name) has no \(type) capacity in \(words[2])", address: address, scope: .zone(words[2]))
            case "quota" where words.count == 3 && words[1] == type && words[2] == region:
                return ProviderError(.quota, "the \(name) quota for \(type) in \(region) is used up", address: address, scope: .region(region))
            default: continue
            }
        }
        return nil
    }

    /// The fake cloud's offer catalog: two CPU types and an 8-GPU type in two regions.
    public static let catalog = ShippedCatalog(cloud: "fake", csv: catalogCSV, file: "the fake cloud's catalog")

    public static let catalogCSV = """
        # The fake cloud's offers (tests).
        instance_type,gpu,gpu_count,gpu_memory_gib,vcpus,memory_gib,gpu_link,fabric,fabric_gbps,region,zones,on_demand_hourly,spot_hourly,source,as_of
        fk.small,,0,,2,8,,ethernet,,default,default-a default-b,0.25,0.08,https://fake.invalid/prices,2026-11-01
        fk.large,,0,,16,64,,ethernet,,default,default-a,2,,https://fake.invalid/prices,2026-11-01
        fk.gpu8,H100,8,80,96,1024,nvswitch,infiniband,3200,default,default-a default-b,40,12.5,https://fake.invalid/prices,2026-11-01
        fk.gpu8,H100,8,80,96,1024,nvswitch,infiniband,3200,faraway,faraway-a,44,,https://fake.invalid/prices,2026-10-01

        """

    /// A third fake cloud's catalog (`fake3`), dearer still.
    public static let thirdCatalog = ShippedCatalog(cloud: "fake3", csv: """
        # The third fake cloud's offers (tests).
        instance_type,gpu,gpu_count,gpu_memory_gib,vcpus,memory_gib,gpu_link,fabric,fabric_gbps,region,zones,on_demand_hourly,spot_hourly,source,as_of
        f3.gpu8,H100,8,80,96,1024,nvswitch,infiniband,3200,elsewhere,elsewhere-1,60,25,https://fake3.invalid/prices,2026-11-01

        """, file: "the third fake cloud's catalog")

    /// A second fake cloud's catalog (`fake2`): its 8-GPU type costs more than the fake cloud's.
    public static let secondCatalog = ShippedCatalog(cloud: "fake2", csv: secondCatalogCSV, file: "the second fake cloud's catalog")

    public static let secondCatalogCSV = """
        # The second fake cloud's offers (tests).
        instance_type,gpu,gpu_count,gpu_memory_gib,vcpus,memory_gib,gpu_link,fabric,fabric_gbps,region,zones,on_demand_hourly,spot_hourly,source,as_of
        f2.gpu8,H100,8,80,96,1024,nvswitch,roce,1600,yonder,yonder-1 yonder-2,50,20,https://fake2.invalid/prices,2026-11-01

        """

    var thingSchema: ResourceSchema {
        ResourceSchema(type: "\(name)_thing", attributes: [
            "size": .input(forceNew: true),
            "value": .input(),
            "parent": .input(),
            "token": .input(sensitive: true),
            // A machine type and capacity, priced from `FakeCloudProvider.catalog`.
            "machine_type": .input(forceNew: true),
            "spot": .input(forceNew: true),
            "id": .computed,
        ], createBeforeDestroy: options.createBeforeDestroy)
    }

    struct Record: Codable {
        var id: String
        var address: ResourceAddress
        var token: String
        var attributes: [String: Value]
        /// Who made it, as a cloud's tags say (nil in records of older versions).
        var ownership: Ownership?
    }

    /// Every resource the cloud holds, with the ownership its create recorded.
    public func ownedResources() throws -> [OwnedResource] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: resourcesDirectory.path)) ?? []
        return try files.filter { $0.hasSuffix(".json") }.compactMap { file in
            let record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: resourcesDirectory.appendingPathComponent(file)))
            guard let ownership = record.ownership else { return nil }
            return OwnedResource(state: state(record, region: "default"), ownership: ownership)
        }
    }

    var resourcesDirectory: URL { root.appendingPathComponent("resources") }
    public var createLog: URL { root.appendingPathComponent("creates.log") }
    public var blockedMarker: URL { root.appendingPathComponent("blocked") }
    /// Written by a test to let a call held by `holdOn` go on.
    public var releaseMarker: URL { root.appendingPathComponent("release") }

    /// Writes the blocked marker a test waits for: `line` says which call stopped and how.
    func markBlocked(_ line: String) throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try Data("\(line)\n".utf8).write(to: blockedMarker)
    }

    /// Holds the call for `address` when it is `holdOn`: the fixture process polls for the
    /// release file (a test's child, which can wait on a file).
    func hold(_ address: ResourceAddress) async throws {
        guard options.holdOn == address.description else { return }
        try markBlocked("held \(address)")
        while !FileManager.default.fileExists(atPath: releaseMarker.path) { try await Task.sleep(for: .milliseconds(20)) }
    }
    /// One line per create refused for `quota`: `ADDRESS`.
    public var refusalLog: URL { root.appendingPathComponent("refusals.log") }

    /// How many creates were refused for `quota`.
    public func refusals() -> Int {
        ((try? String(contentsOf: refusalLog, encoding: .utf8)) ?? "").split(separator: "\n").count
    }
    /// Every create and delete, in order: `create ADDRESS ID` / `delete ADDRESS ID`.
    public var eventLog: URL { root.appendingPathComponent("events.log") }

    /// When each create took effect: `<seconds since 1970> ADDRESS` per line.
    public var timelineLog: URL { root.appendingPathComponent("timeline.log") }

    /// When each address was last created, in seconds since 1970.
    public func createdAt() -> [String: Double] {
        var times: [String: Double] = [:]
        for line in ((try? String(contentsOf: timelineLog, encoding: .utf8)) ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2, let time = Double(parts[0]) { times[String(parts[1])] = time }
        }
        return times
    }

    public func events() -> [String] {
        ((try? String(contentsOf: eventLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Every resource the cloud holds, by id.
    public func inventory() throws -> [String: (address: ResourceAddress, attributes: [String: Value])] {
        var result: [String: (address: ResourceAddress, attributes: [String: Value])] = [:]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: resourcesDirectory.path)) ?? []
        for file in files where file.hasSuffix(".json") {
            let record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: resourcesDirectory.appendingPathComponent(file)))
            result[record.id] = (record.address, record.attributes)
        }
        return result
    }

    /// Takes a resource back as a cloud takes back a preempted spot machine: it is gone.
    public func preempt(_ address: String) throws {
        for (id, live) in try inventory() where live.address.description == address {
            try FileManager.default.removeItem(at: resourcesDirectory.appendingPathComponent("\(id).json"))
            try appendLine("preempt \(address) \(id)\n", to: eventLog)
        }
    }

    /// Changes an attribute of a resource out of band, as someone with console access would.
    public func tamper(_ address: String, set attribute: String, to value: Value) throws {
        for (id, live) in try inventory() where live.address.description == address {
            let url = resourcesDirectory.appendingPathComponent("\(id).json")
            var record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: url))
            record.attributes[attribute] = value
            try save(record)
            try appendLine("tamper \(address) \(attribute)\n", to: eventLog)
        }
    }

    /// How many times each address was created.
    public func createCounts() -> [String: Int] {
        let text = (try? String(contentsOf: createLog, encoding: .utf8)) ?? ""
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            if let address = line.split(separator: " ").first { counts[String(address), default: 0] += 1 }
        }
        return counts
    }

    /// Half the latency before the call takes effect, half after (the response on its way
    /// back), so a process killed mid-call may leave a resource it never heard about.
    func pause() async throws {
        if options.latency > .zero { try await Task.sleep(for: options.latency / 2) }
    }

    func state(_ record: Record, region: String) -> ResourceState {
        ResourceState(address: record.address, provider: name, region: region, id: record.id, attributes: record.attributes)
    }

    func save(_ record: Record) throws {
        try FileManager.default.createDirectory(at: resourcesDirectory, withIntermediateDirectories: true)
        try JSONEncoder().encode(record).write(to: resourcesDirectory.appendingPathComponent("\(record.id).json"), options: .atomic)
    }

    func appendLine(_ line: String, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw ProviderError(.transient, "cannot open \(url.path)") }
        defer { close(fd) }
        _ = line.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
    }
}

/// The fake cloud's one resource type.
struct FakeThingKind: ResourceKind {
    let cloud: FakeCloudProvider
    let type: String
    let schema: ResourceSchema
    /// The attribute naming the machine type it is billed as; nil: not billed.
    var billedBy: String?
    /// Whether creates obey the cloud's capacity rules.
    var checksCapacity = false
    /// Whether it is a bucket: a directory under the cloud's root, not counted against its quota.
    var isBucket = false

    /// A resource with a machine type is billed as one machine of it.
    func billing(_ attributes: [String: Value], region: String) -> Billing? {
        guard let billedBy, let type = attributes[billedBy]?.stringValue else { return nil }
        return .machines(instanceType: type, region: region, spot: attributes["spot"]?.boolValue == true, count: 1)
    }

    func owned() async throws -> [OwnedResource]? {
        try cloud.ownedResources().filter { $0.state.address.type == type }
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        try await cloud.pause()
        let all = try cloud.inventory()
        return resources.map { state in
            guard let live = all[state.id] else { return nil }
            var fresh = state
            fresh.attributes = live.attributes
            return fresh
        }
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let token = context.token
        try await cloud.pause()
        let address = resource.address
        if cloud.options.failOn == address.description {
            throw ProviderError(.permanent, "the fake cloud refuses to create \(address)", address: address)
        }
        try await cloud.hold(address)
        if cloud.options.blockOn == address.description {
            try cloud.markBlocked("blocked \(address)")
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        if cloud.options.throttleRate > 0, Double.random(in: 0..<1) < cloud.options.throttleRate {
            try FileManager.default.createDirectory(at: cloud.root, withIntermediateDirectories: true)
            try cloud.appendLine("throttled \(address)\n", to: cloud.eventLog)
            throw ProviderError(.throttled, "the fake cloud throttles: rate exceeded", address: address)
        }
        // Capacity is counted over what the cloud holds: the check and the save are one step.
        enum Outcome { case refused(ProviderError), adopted(ResourceState), created(FakeCloudProvider.Record) }
        let outcome: Outcome = try FakeCloudProvider.capacityLock.withLock {
            if checksCapacity, let refusal = cloud.capacityError(
                type: resource.inputs["instance_type"]?.stringValue ?? "", zone: resource.inputs["zone"]?.stringValue, region: resource.region, address: address)
            {
                try cloud.appendLine("refused \(address) \(refusal.kind.rawValue)\n", to: cloud.eventLog)
                return .refused(refusal)
            }
            let existing = try cloud.inventory()
            // Idempotent by token: a retried create returns what the first one made.
            for (id, live) in existing where live.address == address {
                let record = try JSONDecoder().decode(FakeCloudProvider.Record.self, from: Data(contentsOf: cloud.resourcesDirectory.appendingPathComponent("\(id).json")))
                if record.token == token { return .adopted(cloud.state(record, region: resource.region)) }
            }
            if !isBucket, let quota = cloud.options.quota, existing.values.filter({ !$0.address.type.hasSuffix("_bucket") }).count >= quota {
                try FileManager.default.createDirectory(at: cloud.root, withIntermediateDirectories: true)
                try cloud.appendLine("\(address)\n", to: cloud.refusalLog)
                let message = cloud.options.exhaustion == .quota
                    ? "the fake cloud's quota of \(quota) things is used up"
                    : "the fake cloud has no capacity for more than \(quota) things"
                let scope: ProviderError.Scope = cloud.options.exhaustion == .quota ? .region(resource.region) : .zone(nil)
                throw ProviderError(cloud.options.exhaustion, message, address: address, scope: scope)
            }
            let id = "thing-" + UUID().uuidString.lowercased().prefix(12)
            var attributes = resource.inputs
            attributes["id"] = .string(id)
            if isBucket {
                let directory = cloud.root.appendingPathComponent("buckets/\(resource.inputs["name"]?.stringValue ?? id)")
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                attributes["url"] = .string(directory.absoluteString)
            }
            let record = FakeCloudProvider.Record(id: id, address: address, token: token, attributes: attributes, ownership: resource.ownership)
            try cloud.save(record)
            try cloud.appendLine("\(address) \(token) \(id)\n", to: cloud.createLog)
            try cloud.appendLine("create \(address) \(id)\n", to: cloud.eventLog)
            try cloud.appendLine("\(Date().timeIntervalSince1970) \(address)\n", to: cloud.timelineLog)
            return .created(record)
        }
        let record: FakeCloudProvider.Record
        switch outcome {
        case .refused(let refusal):
            // A refusal takes as long as a create: the cloud tried.
            try await cloud.pause()
            throw refusal
        case .adopted(let adopted):
            return adopted
        case .created(let created):
            record = created
        }
        try await cloud.pause()
        if cloud.options.blockAfterOn == address.description {
            try cloud.markBlocked("blocked after \(address)")
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        if cloud.options.loseResponseOn == address.description {
            throw ProviderError(.transient, "the connection to the fake cloud was reset", address: address)
        }
        return cloud.state(record, region: resource.region)
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await cloud.pause()
        for (id, live) in try cloud.inventory() where live.address == operation.address {
            let record = try JSONDecoder().decode(FakeCloudProvider.Record.self, from: Data(contentsOf: cloud.resourcesDirectory.appendingPathComponent("\(id).json")))
            if record.token == operation.token { return cloud.state(record, region: operation.region) }
        }
        return nil
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        try await cloud.pause()
        let file = cloud.resourcesDirectory.appendingPathComponent("\(id).json")
        guard let record = try? JSONDecoder().decode(FakeCloudProvider.Record.self, from: Data(contentsOf: file)) else { return nil }
        return ResourceState(address: address, provider: cloud.name, region: region, id: record.id, attributes: record.attributes)
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await cloud.pause()
        if cloud.options.failOn == prior.address.description {
            throw ProviderError(.permanent, "the fake cloud refuses to update \(prior.address)", address: prior.address)
        }
        let file = cloud.resourcesDirectory.appendingPathComponent("\(prior.id).json")
        guard var record = try? JSONDecoder().decode(FakeCloudProvider.Record.self, from: Data(contentsOf: file)) else {
            throw ProviderError(.notFound, "\(prior.id) does not exist", address: prior.address)
        }
        for (key, value) in desired.inputs { record.attributes[key] = value }
        try cloud.save(record)
        try await cloud.pause()
        return cloud.state(record, region: desired.region)
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await cloud.pause()
        try await cloud.hold(state.address)
        let file = cloud.resourcesDirectory.appendingPathComponent("\(state.id).json")
        if FileManager.default.fileExists(atPath: file.path) { try FileManager.default.removeItem(at: file) }
        try cloud.appendLine("delete \(state.address) \(state.id)\n", to: cloud.eventLog)
        try await cloud.pause()
    }
}
