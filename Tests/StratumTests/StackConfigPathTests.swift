import Foundation
import Stratum
import Testing

@Suite("Stack configuration path")
struct StackConfigPathTests {
    /// The conventional path is where this checkout keeps the bundled stacks' configurations.
    @Test func defaultPathIsWhereTheBundledConfigsLive() {
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = StackConfigLoader.defaultPath(stack: "local-demo", environment: "dev", root: checkout)
        #expect(path.path.hasSuffix("/Stacks/local-demo.dev.yaml"))
        #expect(FileManager.default.fileExists(atPath: path.path))
    }
}
