import Foundation
import StratumCloud
import StratumCore
import Yams

/// What a node runs once it is set up, as the systemd unit `stratum-workload.service`.
public enum NodeWorkload: Sendable, Hashable {
    /// The bundled trainer, delivered without a registry: its source archive is fetched from
    /// the cluster's bucket with the machine's own identity, checked against its SHA-256, and
    /// built for the machine (the CUDA trainer where the GPUs and `nvcc` are, the CPU trainer
    /// elsewhere). `config` is its YAML configuration (written to /etc/stratum/trainer.yaml);
    /// `arguments` follow it, and may name the node's variables as `$NAME`
    /// (`--set diloco.rank=$STRATUM_NODE_INDEX`).
    case trainer(TrainerArtifact, config: String, arguments: [String])
    /// A container image, run through the NVIDIA container toolkit with every GPU, the host's
    /// network and IPC namespace, and the InfiniBand devices where the machine has them.
    case container(image: String, command: [String])
    /// A command run on the machine itself.
    case command([String])
}

/// Where a node finds the trainer's sources: an object of the cluster's bucket, named by its
/// content, and the SHA-256 the node checks before building it.
public struct TrainerArtifact: Sendable, Hashable {
    /// `s3://…`, `gs://…` or `az://…`.
    public var url: String
    public var sha256: String

    public init(url: String, sha256: String) {
        self.url = url
        self.sha256 = sha256
    }
}

/// The fabric between a machine's GPUs and its peers', beyond plain Ethernet.
public enum Interconnect: String, Sendable, Hashable, CaseIterable {
    case none
    /// AWS Elastic Fabric Adapter (p4d, p5): libfabric with the EFA provider.
    case efa
    /// InfiniBand (Azure ND v4/v5): rdma-core's verbs.
    case infiniband
}

/// What the node setup needs to know of the machine, from the provider's machine catalog.
public struct MachineProfile: Sendable, Hashable {
    public var gpus: Int
    /// The GPU model (`H100`, `A100`, `T4`), for the comments and the node's environment.
    public var gpuClass: String?
    /// The GPUs are joined by NVSwitch (p4d/p5, a2-ultra/a3, ND A100 v4 / H100 v5 / H200 v5):
    /// CUDA cannot use them until the fabric manager runs.
    public var nvswitch: Bool
    public var interconnect: Interconnect

    public init(gpus: Int, gpuClass: String? = nil, nvswitch: Bool = false, interconnect: Interconnect = .none) {
        self.gpus = gpus
        self.gpuClass = gpuClass
        self.nvswitch = nvswitch
        self.interconnect = interconnect
    }

    public static let cpu = MachineProfile(gpus: 0)
}

/// A node's first-boot setup as a `#cloud-config` document: the node contract in
/// `/etc/stratum/node.env`, GPU setup (driver, fabric manager, persistence mode, container
/// toolkit, the interconnect's userspace), the workload as a supervised systemd unit, and the
/// Prometheus node exporter and NVIDIA DCGM exporter. Each cloud supplies its flavour
/// (`BootstrapFlavour`): how the machine learns where it runs, how it fetches from the
/// cluster's bucket with its own identity, how large its user data may be.
///
/// Nothing secret goes in: the environment is the node contract and the stack's plain `env`
/// (a `Secret` there is refused before anything is rendered), and credentials come from the
/// machine's identity at boot.
public struct NodeBootstrap: Sendable {
    /// The pinned NVIDIA driver branch installed where the image has no working `nvidia-smi`.
    public static let driverBranch = "570"
    /// The DCGM exporter image (NVIDIA's, on nvcr.io), pinned.
    public static let dcgmExporterImage = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04"
    /// Where the trainer's `/metrics` and `/healthz` answer.
    public static let defaultMetricsPort = 9464
    public static let nodeEnvPath = "/etc/stratum/node.env"
    public static let libexec = "/usr/local/lib/stratum"
    public static let trainerConfigPath = "/etc/stratum/trainer.yaml"
    public static let secretsListPath = "/etc/stratum/secrets.list"
    public static let secretsEnvPath = "/etc/stratum/secrets.env"
    /// The interconnect check's result, where Debian's node exporter reads text files (and the
    /// trainer serves it with its own metrics).
    public static let allreduceMetricsPath = "/var/lib/prometheus/node-exporter/stratum-allreduce.prom"
    /// The port rank 0 meets the others on for the interconnect check.
    public static let allreducePort = 29510
    /// The script that shapes the node's link, and its unit.
    public static let linkScriptPath = "\(libexec)/link.sh"
    public static let linkUnitPath = "/etc/systemd/system/stratum-link.service"
    /// The IFB device what the node receives is redirected through, to be capped.
    public static let linkIFB = "stratum-ifb0"

    /// The node's address in the stack, for the document's header and error messages.
    public var address: String
    /// The node's environment: the node contract over the stack's `env`.
    public var environment: [String: String]
    public var workload: NodeWorkload
    public var machine: MachineProfile
    public var flavour: BootstrapFlavour
    public var metricsPort: Int
    /// Secrets by environment name, each a reference into the cloud's secret store (never a
    /// value): read at every start of the workload into a root-only file.
    public var secrets: [String: String]
    /// The link conditions the node's primary interface is held to (`stratum-link.service`,
    /// before the workload); nil: the cloud's network as it is.
    public var link: LinkProfile?

    public init(
        address: String, environment: [String: String], workload: NodeWorkload, machine: MachineProfile, flavour: BootstrapFlavour,
        metricsPort: Int = NodeBootstrap.defaultMetricsPort, secrets: [String: String] = [:], link: LinkProfile? = nil
    ) {
        self.link = link
        self.secrets = secrets
        self.address = address
        self.environment = environment
        self.workload = workload
        self.machine = machine
        self.flavour = flavour
        self.metricsPort = metricsPort
    }

    /// The profile the node is shaped to: nil when it has none, or an unimpaired one.
    var shaping: LinkProfile? { link?.isUnimpaired == false ? link : nil }

    /// Whether the node checks its interconnect at boot: a trainer node of a pool of more than one.
    var checksInterconnect: Bool {
        guard case .trainer = workload, let count = environment[NodeContract.nodeCount].flatMap(Int.init) else { return false }
        return count > 1
    }

    /// Whether the node runs containers: a container workload, or a GPU node's DCGM exporter.
    var usesContainers: Bool {
        if case .container = workload { return true }
        return machine.gpus > 0
    }

    // MARK: the document

    /// The `#cloud-config` document.
    public func cloudConfig() throws -> String {
        if !secrets.isEmpty, flavour.secret == nil {
            throw ProviderError(.permanent, "\(address): secrets are not delivered on \(flavour.cloud) yet; pass a reference the workload resolves")
        }
        if let problem = shaping?.problems.first { throw ProviderError(.permanent, "\(address): \(problem)") }
        let config = CloudConfig(
            package_update: true, packages: packages, write_files: files, runcmd: commands)
        let encoder = YAMLEncoder()
        encoder.options = YAMLEncoder.Options(width: -1, sortKeys: false, newLineScalarStyle: .literal)
        let body = try encoder.encode(config)
        return "#cloud-config\n# Stratum node \(address) on \(flavour.cloud): written by Stratum, read by cloud-init at first boot.\n" + body
    }

    /// The document as the cloud takes it: as is, or gzipped where it is over the cloud's limit
    /// and the cloud allows it. Over the limit either way: an error naming the node, both sizes
    /// and the limit.
    public func userData() throws -> UserData {
        let text = try cloudConfig()
        return try flavour.userData.fit(Data(text.utf8), address: address)
    }

    var packages: [String] {
        var packages = ["curl", "ca-certificates", "prometheus-node-exporter"]
        if case .trainer = workload { packages += ["build-essential", "libyaml-dev", "libcurl4-openssl-dev", "libssl-dev", "python3"] }
        // tc and ip, which minimal images may lack.
        if shaping != nil { packages.append("iproute2") }
        return packages
    }

    var files: [CloudConfig.File] {
        var files = [
            CloudConfig.File(path: Self.nodeEnvPath, permissions: "0644", content: nodeEnv),
            CloudConfig.File(path: "\(Self.libexec)/boot-env.sh", permissions: "0755", content: BootScripts.bootEnv(flavour.atBoot)),
        ]
        if machine.gpus > 0 || usesContainers {
            files.append(
                CloudConfig.File(
                    path: "\(Self.libexec)/gpu-setup.sh", permissions: "0755",
                    content: BootScripts.gpuSetup(machine: machine, containers: usesContainers, interconnect: flavour.interconnectSetup[machine.interconnect])))
        }
        var fetches = false
        if case .trainer(_, let config, _) = workload {
            files.append(CloudConfig.File(path: Self.trainerConfigPath, permissions: "0644", content: config.hasSuffix("\n") || config.isEmpty ? config : config + "\n"))
            files.append(CloudConfig.File(path: "\(Self.libexec)/trainer-setup.sh", permissions: "0755", content: BootScripts.trainerSetup))
            if checksInterconnect {
                files.append(CloudConfig.File(path: "\(Self.libexec)/allreduce-check.sh", permissions: "0755", content: BootScripts.allreduceCheck))
            }
            fetches = true
        }
        if !secrets.isEmpty {
            // Names and references only: the values are read at boot with the machine's identity.
            let list = secrets.keys.sorted().map { "\($0) \(secrets[$0] ?? "")" }.joined(separator: "\n") + "\n"
            files.append(CloudConfig.File(path: Self.secretsListPath, permissions: "0644", content: list))
            files.append(CloudConfig.File(path: "\(Self.libexec)/secrets.sh", permissions: "0755", content: BootScripts.secrets))
            fetches = true
        }
        if fetches { files.append(CloudConfig.File(path: "\(Self.libexec)/fetch.sh", permissions: "0644", content: BootScripts.fetch(flavour))) }
        if let link = shaping {
            files.append(CloudConfig.File(path: Self.linkScriptPath, permissions: "0755", content: BootScripts.link(link)))
            files.append(CloudConfig.File(path: Self.linkUnitPath, permissions: "0644", content: BootScripts.linkUnit))
        }
        files.append(
            CloudConfig.File(
                path: "\(Self.libexec)/workload.sh", permissions: "0755",
                content: BootScripts.workload(workload, machine: machine, includeAllreduce: checksInterconnect)))
        files.append(
            CloudConfig.File(
                path: "/etc/systemd/system/stratum-workload.service", permissions: "0644",
                content: BootScripts.workloadUnit(workload, secrets: !secrets.isEmpty, link: shaping != nil)))
        if checksInterconnect {
            files.append(CloudConfig.File(path: "/etc/systemd/system/stratum-allreduce-check.service", permissions: "0644", content: BootScripts.allreduceCheckUnit))
        }
        if machine.gpus > 0 {
            files.append(
                CloudConfig.File(
                    path: "/etc/systemd/system/stratum-dcgm-exporter.service", permissions: "0644", content: BootScripts.dcgmExporterUnit))
        }
        return files
    }

    var commands: [[String]] {
        var commands: [[String]] = [["\(Self.libexec)/boot-env.sh"]]
        if machine.gpus > 0 || usesContainers { commands.append(["sh", "-c", "\(Self.libexec)/gpu-setup.sh 2>&1 | tee /var/log/stratum-gpu-setup.log"]) }
        commands.append(["systemctl", "daemon-reload"])
        commands.append(["systemctl", "enable", "--now", "prometheus-node-exporter.service"])
        if machine.gpus > 0 { commands.append(["systemctl", "enable", "--now", "stratum-dcgm-exporter.service"]) }
        if shaping != nil { commands.append(["systemctl", "enable", "--now", "stratum-link.service"]) }
        commands.append(["systemctl", "enable", "--now", "stratum-workload.service"])
        // Beside the trainer, not before it: a node replaced alone would wait for peers in vain.
        if checksInterconnect { commands.append(["systemctl", "enable", "--now", "stratum-allreduce-check.service", "--no-block"]) }
        return commands
    }

    /// `/etc/stratum/node.env`: one `KEY='value'` a line, read by the workload script with
    /// `set -a; . node.env` (the contract reaches the workload, and a container through `-e`).
    var nodeEnv: String {
        var env = environment
        env["STRATUM_NODE_ADDRESS"] = address
        env["STRATUM_METRICS_PORT"] = String(metricsPort)
        env["STRATUM_HEALTH_URL"] = "http://127.0.0.1:\(metricsPort)/healthz"
        if machine.gpus > 0 { env["STRATUM_GPUS"] = String(machine.gpus) }
        if case .trainer(let artifact, _, _) = workload {
            env["STRATUM_TRAINER_URL"] = artifact.url
            env["STRATUM_TRAINER_SHA256"] = artifact.sha256
        }
        for name in flavour.atBoot.variables { env[name] = nil }
        let lines = env.keys.sorted().map { "\($0)=\(NodeBootScript.quote(env[$0] ?? ""))" }
        return (["# The node contract of \(address); the variables only the running machine knows are added at first boot."] + lines)
            .joined(separator: "\n") + "\n"
    }
}

/// The keys of a `#cloud-config` document Stratum writes, in the order it writes them.
struct CloudConfig: Encodable {
    struct File: Encodable {
        var path: String
        var owner = "root:root"
        var permissions: String
        var content: String

        init(path: String, permissions: String, content: String) {
            self.path = path
            self.permissions = permissions
            self.content = content
        }
    }

    // cloud-init's own key names.
    var package_update: Bool
    var packages: [String]
    var write_files: [File]
    var runcmd: [[String]]
}

/// The user data of a cloud node resource, from its inputs: `user_data` as the stack gave it,
/// else the node setup (`NodeBootstrap`) of its `command` or `container_image` with the node
/// contract over its `env` and its `link`; nil when it has none of them. Either way within the
/// cloud's limit.
public enum NodeUserData {
    public static func render(
        _ resource: ResolvedResource, flavour: BootstrapFlavour, machine: MachineProfile, secrets: [String: String] = [:]
    ) throws -> UserData? {
        let address = resource.address.description
        if let raw = resource.inputs["user_data"]?.stringValue, !raw.isEmpty {
            // The link is shaped by Stratum's node setup, which the stack's own user data replaces.
            if try link(of: resource) != nil {
                throw ProviderError(.permanent, "a link is applied by Stratum's node setup, which user_data replaces: drop one of them", address: resource.address)
            }
            return try flavour.userData.fit(Data(raw.utf8), address: address)
        }
        guard var bootstrap = try bootstrap(resource, flavour: flavour, machine: machine) else { return nil }
        bootstrap.secrets = secrets
        return try bootstrap.userData()
    }

    /// The inputs a node resource kind takes for its workload (beside `command`, `env`,
    /// `container_image`, `user_data`): the trainer's artifact, configuration and arguments.
    public static let trainerInputs = ["trainer_url", "trainer_sha256", "trainer_config", "trainer_arguments"]

    /// The node's `link` input as a profile; nil when it has none or an unimpaired one. A value
    /// no profile writes, or a profile that cannot be applied, is an error naming the node.
    public static func link(of resource: ResolvedResource) throws -> LinkProfile? {
        let profile: LinkProfile?
        do {
            profile = try LinkProfile(value: resource.inputs["link"])
        } catch let error as LinkProfileError {
            throw ProviderError(.permanent, error.description, address: resource.address)
        }
        guard let profile, !profile.isUnimpaired else { return nil }
        if let problem = profile.problems.first { throw ProviderError(.permanent, problem, address: resource.address) }
        return profile
    }

    /// The node setup of a node resource, or nil when it runs nothing (no trainer, no
    /// `command`, no `container_image`).
    public static func bootstrap(_ resource: ResolvedResource, flavour: BootstrapFlavour, machine: MachineProfile) throws -> NodeBootstrap? {
        let command = (resource.inputs["command"]?.listValue ?? []).compactMap(\.stringValue)
        let image = resource.inputs["container_image"]?.stringValue ?? ""
        let trainerURL = resource.inputs["trainer_url"]?.stringValue ?? ""
        let workload: NodeWorkload
        if !trainerURL.isEmpty {
            workload = .trainer(
                TrainerArtifact(url: trainerURL, sha256: resource.inputs["trainer_sha256"]?.stringValue ?? ""),
                config: resource.inputs["trainer_config"]?.stringValue ?? "",
                arguments: (resource.inputs["trainer_arguments"]?.listValue ?? []).compactMap(\.stringValue))
        } else if !image.isEmpty {
            workload = .container(image: image, command: command)
        } else if !command.isEmpty {
            workload = .command(command)
        } else {
            return nil
        }
        // A secret's value never goes in the document: the node reads it (see `secrets`).
        var plain = resource
        if case .map(let env)? = resource.inputs["env"] { plain.inputs["env"] = .map(env.filter { !$0.value.containsSensitive }) }
        let environment = NodeContract(node: plain, cloud: flavour.cloud, zone: nil).environment(over: NodeContract.stackEnvironment(of: plain))
        return NodeBootstrap(
            address: resource.address.description, environment: environment, workload: workload, machine: machine, flavour: flavour,
            link: try link(of: resource))
    }
}
