import Foundation
import PackagePlugin

/// Embeds a cloud's offer catalog (`Catalog/offers.csv` in its provider folder) in the
/// provider's module, so every binary that links the cloud carries its shipped prices:
/// `stratum-catalog-embed` writes the file into a generated Swift file, rebuilt when it changes.
@main
struct CatalogDataPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) async throws -> [Command] {
        // A cloud's module is Stratum<Cloud>, in Providers/<Cloud>.
        let cloud = target.name.hasPrefix("Stratum") ? String(target.name.dropFirst("Stratum".count)) : target.name
        let relative = "Providers/\(cloud)/Catalog/offers.csv"
        let input = context.package.directoryURL.appendingPathComponent(relative)
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("ShippedCatalog.generated.swift")
        return [
            .buildCommand(
                displayName: "Embedding the offer catalog \(relative)",
                executable: try context.tool(named: "stratum-catalog-embed").url,
                arguments: [input.path, relative, output.path],
                inputFiles: [input],
                outputFiles: [output])
        ]
    }
}
