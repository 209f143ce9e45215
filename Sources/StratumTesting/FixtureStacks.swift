import Stratum

/// A stack on the fake cloud: a root thing and `count` children that refer to it.
public struct FakeFanStack: Stack {
    public static let name = "fake-fan"
    public static let summary = "A root fake_thing and children referring to it (tests)"

    public struct Config: StackConfiguration {
        public var count = 5
        public var value = "v1"
        public var size = 1
        /// A secret given to the root (sealed in state, hidden in output).
        public var token: Secret?
        public init() {}
    }

    public init() {}

    static func rootInputs(_ config: Config) -> [String: any ValueExpression] {
        var inputs: [String: any ValueExpression] = ["size": config.size, "value": config.value]
        if let token = config.token { inputs["token"] = token }
        return inputs
    }

    public func body(config: Config) -> StackContent {
        let root = CustomResource("fake_thing", "root", provider: "fake", inputs: Self.rootInputs(config))
        root
        for index in 0..<config.count {
            CustomResource("fake_thing", "child", index: index, provider: "fake", inputs: ["parent": root["id"], "value": config.value])
        }
        Output("root_id", root["id"])
        if config.token != nil { Output("root_token", root["token"]) }
    }
}

/// Machines of the fake cloud, priced from its catalog, under an optional budget (tests of
/// plan costs and budgets).
public struct FakeFleetStack: Stack {
    public static let name = "fake-fleet"
    public static let summary = "Priced fake_thing machines under an optional budget (tests)"

    public struct Config: StackConfiguration {
        public var machines = 2
        public var machineType = "fk.small"
        public var spot = false
        /// The stack's own cap, USD an hour; nil: none.
        public var budget: Double?
        public init() {}
    }

    public init() {}

    public func body(config: Config) -> StackContent {
        for index in 0..<config.machines {
            CustomResource(
                "fake_thing", "machine", index: index, provider: "fake",
                inputs: ["machine_type": config.machineType, "spot": config.spot, "value": "m\(index)"])
        }
        if let budget = config.budget { Budget(hourly: budget) }
    }
}

/// A GPU cluster of 16 H100s that may land on the fake cloud (zones default-a, default-b; the
/// faraway region) or the second fake cloud (tests of placement and failover).
public struct FakeClusterStack: Stack {
    public static let name = "fake-cluster"
    public static let summary = "A GPU cluster placed across two fake clouds (tests)"

    public struct Config: StackConfiguration {
        public var gpus = 16
        public var spot = false
        public var maxHourlyPrice: Double?
        /// Sites in order: `fake:default`, `fake:faraway`, `fake2:yonder`.
        public var sites = ["fake:default", "fake:faraway", "fake2:yonder"]
        public init() {}
    }

    public init() {}

    static let zones = ["fake:default": ["default-a", "default-b"], "fake2:yonder": ["yonder-1", "yonder-2"], "fake3:elsewhere": ["elsewhere-1"]]

    public func body(config: Config) -> StackContent {
        GPUCluster(
            "train", gpu: .h100, count: config.gpus,
            clouds: config.sites.map { site in
                let parts = site.split(separator: ":").map(String.init)
                return Placement(provider: parts[0], region: parts.count > 1 ? parts[1] : "default", zones: Self.zones[site] ?? [])
            },
            spot: config.spot, maxHourlyPrice: config.maxHourlyPrice, command: ["/bin/sh", "-c", "echo training"])
    }
}
