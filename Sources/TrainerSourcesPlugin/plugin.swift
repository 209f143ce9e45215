import Foundation
import PackagePlugin

/// Embeds the trainer's C and CUDA sources in the target that uses it, so any binary built
/// with Stratum carries the trainer it delivers to nodes: `stratum-trainer-sources` writes
/// them into a generated Swift file, rebuilt whenever one of them changes.
@main
struct TrainerSourcesPlugin: BuildToolPlugin {
    /// The folders under Sources/ that make up the trainer, as a node builds it.
    static let folders = ["TrainerCore", "stratum-trainer", "TrainerCUDA"]

    func createBuildCommands(context: PluginContext, target: Target) async throws -> [Command] {
        let sources = context.package.directoryURL.appendingPathComponent("Sources")
        var inputs: [URL] = []
        for folder in Self.folders {
            let root = sources.appendingPathComponent(folder)
            let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])
            while let file = walker?.nextObject() as? URL {
                if (try? file.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true { inputs.append(file) }
            }
        }
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("TrainerSources.generated.swift")
        return [
            .buildCommand(
                displayName: "Embedding the trainer's sources (\(inputs.count) files)",
                executable: try context.tool(named: "stratum-trainer-sources").url,
                arguments: [sources.path, output.path] + Self.folders,
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
