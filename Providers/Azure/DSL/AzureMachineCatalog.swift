import Stratum
import StratumCore

/// An Azure VM size and the GPUs a VM of it has.
public struct AzureMachine: Sendable, Hashable {
    /// The VM size (`Standard_ND96isr_H100_v5`).
    public var size: String
    /// GPUs per VM.
    public var gpus: Int
    /// `H100`, `H200`, `A100`, `A100-80GB`, `T4`; nil without GPUs.
    public var gpuClass: String?

    public init(size: String, gpus: Int = 0, gpuClass: String? = nil) {
        self.size = size
        self.gpus = gpus
        self.gpuClass = gpuClass
    }
}

/// The VM size for a GPU class and count, where there is one obvious choice, and the GPUs a
/// size carries.
public enum AzureMachineCatalog {
    /// GPU sizes by GPU class (normalised: upper case, letters and digits only) and count.
    static let gpuSizes: [String: [Int: String]] = [
        "H100": [1: "Standard_NC40ads_H100_v5", 2: "Standard_NC80adis_H100_v5", 8: "Standard_ND96isr_H100_v5"],
        "H200": [8: "Standard_ND96isr_H200_v5"],
        "A100": [1: "Standard_NC24ads_A100_v4", 2: "Standard_NC48ads_A100_v4", 4: "Standard_NC96ads_A100_v4", 8: "Standard_ND96asr_v4"],
        "A10080GB": [
            1: "Standard_NC24ads_A100_v4", 2: "Standard_NC48ads_A100_v4", 4: "Standard_NC96ads_A100_v4", 8: "Standard_ND96amsr_A100_v4",
        ],
        "T4": [4: "Standard_NC64as_T4_v3"],
    ]

    /// The sizes with one T4, smallest first: (vCPUs, memory GiB, size).
    static let singleT4: [(cpus: Int, memoryGiB: Int, size: String)] = [
        (4, 28, "Standard_NC4as_T4_v3"), (8, 56, "Standard_NC8as_T4_v3"), (16, 110, "Standard_NC16as_T4_v3"),
    ]

    /// General-purpose D-series sizes for CPU-only nodes, smallest first: (vCPUs, memory GiB, size).
    static let cpuSizes: [(cpus: Int, memoryGiB: Int, size: String)] = [
        (2, 8, "Standard_D2s_v5"), (4, 16, "Standard_D4s_v5"), (8, 32, "Standard_D8s_v5"), (16, 64, "Standard_D16s_v5"),
        (32, 128, "Standard_D32s_v5"), (48, 192, "Standard_D48s_v5"), (64, 256, "Standard_D64s_v5"), (96, 384, "Standard_D96s_v5"),
    ]

    /// The size for a node request, or nil when none is known. `machine.instanceType`, when
    /// set, is taken as the size, with the GPUs the catalog knows it carries.
    public static func machine(for request: MachineRequest) -> AzureMachine? {
        if let named = request.instanceType {
            return gpus(ofSize: named) ?? AzureMachine(size: named, gpus: request.gpus, gpuClass: request.gpuClass)
        }
        if request.gpus == 0 {
            return cpuSizes.first { $0.cpus >= request.cpus && $0.memoryGiB >= request.memoryGiB }.map { AzureMachine(size: $0.size) }
        }
        guard let gpuClass = request.gpuClass else { return nil }
        let key = normalisedGPU(gpuClass)
        if key == "T4", request.gpus == 1 {
            return singleT4.first { $0.cpus >= request.cpus && $0.memoryGiB >= request.memoryGiB }
                .map { AzureMachine(size: $0.size, gpus: 1, gpuClass: "T4") }
        }
        guard let size = gpuSizes[key]?[request.gpus] else { return nil }
        return AzureMachine(size: size, gpus: request.gpus, gpuClass: key == "A10080GB" ? "A100-80GB" : key)
    }

    /// The GPUs a size carries (`Standard_ND96isr_H100_v5` → 8 × H100); nil for a size the
    /// catalog does not know to carry GPUs. Sizes are matched without regard to case.
    public static func gpus(ofSize size: String) -> AzureMachine? {
        let wanted = size.lowercased()
        if let single = singleT4.first(where: { $0.size.lowercased() == wanted }) { return AzureMachine(size: single.size, gpus: 1, gpuClass: "T4") }
        // The A100 v4 NC sizes are listed under both A100 classes; they carry the 80 GB part.
        for key in ["H100", "H200", "A10080GB", "A100", "T4"] {
            if let count = gpuSizes[key]?.first(where: { $0.value.lowercased() == wanted })?.key, let named = gpuSizes[key]?[count] {
                return AzureMachine(size: named, gpus: count, gpuClass: key == "A10080GB" ? "A100-80GB" : key)
            }
        }
        return nil
    }
}
