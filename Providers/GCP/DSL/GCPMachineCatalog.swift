import Stratum
import StratumCore

/// A Compute machine type and the GPUs a node of it has: accelerator-optimized types (A3, A2,
/// G2) carry their GPUs; an N1 type gets them attached as `guestAccelerators`.
public struct GCPMachine: Sendable, Hashable {
    /// The Compute machine type (`a3-highgpu-8g`).
    public var machineType: String
    /// The accelerator to attach (`nvidia-tesla-t4`), only for N1 types; nil when the type carries its GPUs or has none.
    public var acceleratorType: String?
    /// GPUs per node: those the type carries, or the attached ones.
    public var gpus: Int
    /// `H100`, `A100-80GB`, `L4`, `T4`, …; nil without GPUs.
    public var gpuClass: String?

    public init(machineType: String, acceleratorType: String? = nil, gpus: Int = 0, gpuClass: String? = nil) {
        self.machineType = machineType
        self.acceleratorType = acceleratorType
        self.gpus = gpus
        self.gpuClass = gpuClass
    }
}

/// The Compute machine type for a GPU class and count, where there is one obvious choice, and
/// the GPUs a machine type carries.
public enum GCPMachineCatalog {
    /// Machine types that carry their GPUs, by GPU class (normalised: upper case, letters and
    /// digits only) and count.
    static let acceleratorOptimized: [String: [Int: String]] = [
        "H100": [1: "a3-highgpu-1g", 2: "a3-highgpu-2g", 4: "a3-highgpu-4g", 8: "a3-highgpu-8g"],
        "H200": [8: "a3-ultragpu-8g"],
        "A100": [1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g", 16: "a2-megagpu-16g"],
        "A10080GB": [1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g", 8: "a2-ultragpu-8g"],
        "L4": [2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"],
    ]

    /// G2 types with one L4, smallest first: (vCPUs, memory GiB, type).
    static let singleL4: [(cpus: Int, memoryGiB: Int, type: String)] = [
        (4, 16, "g2-standard-4"), (8, 32, "g2-standard-8"), (12, 48, "g2-standard-12"), (16, 64, "g2-standard-16"), (32, 128, "g2-standard-32"),
    ]

    /// GPUs attached to N1 types: the accelerator type and the N1 type for each count.
    static let attached: [String: (accelerator: String, types: [Int: String])] = [
        "T4": ("nvidia-tesla-t4", [1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"]),
        "V100": ("nvidia-tesla-v100", [1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32", 8: "n1-standard-64"]),
        "P100": ("nvidia-tesla-p100", [1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"]),
    ]

    /// General-purpose types for CPU-only nodes, smallest first: (vCPUs, memory GiB, type).
    static let cpuTypes: [(cpus: Int, memoryGiB: Int, type: String)] = [
        (2, 8, "e2-standard-2"), (4, 16, "e2-standard-4"), (8, 32, "e2-standard-8"), (16, 64, "e2-standard-16"), (32, 128, "e2-standard-32"),
        (48, 192, "n2-standard-48"), (64, 256, "n2-standard-64"), (96, 384, "n2-standard-96"), (128, 512, "n2-standard-128"),
    ]

    /// The machine for a node request, or nil when none is known. `machine.instanceType`, when
    /// set, is taken as the machine type (with an accelerator attached for an N1 type and a
    /// known GPU class).
    public static func machine(for request: MachineRequest) -> GCPMachine? {
        if let named = request.instanceType {
            if let carried = gpus(ofMachineType: named) { return carried }
            if named.hasPrefix("n1-"), request.gpus > 0, let gpuClass = request.gpuClass, let attached = attached[normalisedGPU(gpuClass)] {
                return GCPMachine(machineType: named, acceleratorType: attached.accelerator, gpus: request.gpus, gpuClass: gpuClass)
            }
            return GCPMachine(machineType: named, gpus: request.gpus, gpuClass: request.gpuClass)
        }
        if request.gpus == 0 {
            return cpuTypes.first { $0.cpus >= request.cpus && $0.memoryGiB >= request.memoryGiB }.map { GCPMachine(machineType: $0.type) }
        }
        guard let gpuClass = request.gpuClass else { return nil }
        let key = normalisedGPU(gpuClass)
        if key == "L4", request.gpus == 1 {
            return singleL4.first { $0.cpus >= request.cpus && $0.memoryGiB >= request.memoryGiB }
                .map { GCPMachine(machineType: $0.type, gpus: 1, gpuClass: gpuClass) }
        }
        if let type = acceleratorOptimized[key]?[request.gpus] {
            return GCPMachine(machineType: type, gpus: request.gpus, gpuClass: gpuClass)
        }
        if let attached = attached[key], let type = attached.types[request.gpus] {
            return GCPMachine(machineType: type, acceleratorType: attached.accelerator, gpus: request.gpus, gpuClass: gpuClass)
        }
        return nil
    }

    /// The GPUs an accelerator-optimized machine type carries (`a3-highgpu-8g` → 8 × H100);
    /// nil for types that carry none (N1, E2, N2, …).
    public static func gpus(ofMachineType type: String) -> GCPMachine? {
        if type == "a3-megagpu-8g" { return GCPMachine(machineType: type, gpus: 8, gpuClass: "H100") }
        for (gpuClass, types) in acceleratorOptimized {
            if let count = types.first(where: { $0.value == type })?.key {
                return GCPMachine(machineType: type, gpus: count, gpuClass: gpuClass == "A10080GB" ? "A100-80GB" : gpuClass)
            }
        }
        if singleL4.contains(where: { $0.type == type }) { return GCPMachine(machineType: type, gpus: 1, gpuClass: "L4") }
        return nil
    }

    /// The GPU class of an accelerator type (`nvidia-tesla-t4` → `T4`); the type itself when unknown.
    public static func gpuClass(ofAccelerator type: String) -> String {
        attached.first { $0.value.accelerator == type }?.key ?? type
    }

    /// Whether a machine type carries its GPUs, so an accelerator must not be attached to it.
    public static func carriesGPUs(_ type: String) -> Bool {
        ["a2-", "a3-", "a4-", "g2-"].contains { type.hasPrefix($0) }
    }
}
