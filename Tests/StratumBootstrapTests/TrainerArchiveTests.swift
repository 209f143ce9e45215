import Foundation
import StratumTrainerArtifact
import StratumTesting
import Testing

@Suite("The bundled trainer as a content-addressed archive", .timeLimit(.minutes(3)))
struct TrainerArchiveTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources").standardized

    @Test func theArchiveCarriesTheTrainerAsItIsInTheSourceTree() async throws {
        let archive = TrainerArchive.bundled
        #expect(archive.paths.contains("TrainerCUDA/Makefile") && archive.paths.contains("stratum-trainer/main.c"))
        #expect(archive.paths.contains("TrainerCore/include/trainer.h") && archive.paths.contains("TrainerCUDA/model.cu"))
        // Every file of the three folders, byte for byte: the binary carries today's trainer.
        let extracted = try TestSupport.temporaryDirectory("trainer-archive")
        let zip = extracted.appendingPathComponent("trainer.zip")
        try archive.data.write(to: zip)
        let unzip = try await NodeBootstrapTests.run(["python3", "-m", "zipfile", "-e", zip.path, extracted.appendingPathComponent("src").path])
        #expect(unzip.status == 0, "\(unzip.output)")
        for path in archive.paths {
            let shipped = try Data(contentsOf: extracted.appendingPathComponent("src/\(path)"))
            let tree = try Data(contentsOf: Self.sources.appendingPathComponent(path))
            #expect(shipped == tree, "\(path) differs from the source tree")
        }
        #expect(archive.objectKey == "stratum/trainer/\(archive.sha256).zip" && archive.sha256.count == 64)
    }

    @Test func theSameSourcesAlwaysMakeTheSameArchiveAndAnyChangeANewOne() throws {
        let files: [(path: String, contents: Data)] = [("b/two.c", Data("int two;\n".utf8)), ("a/one.c", Data("int one;\n".utf8))]
        let first = try TrainerArchive(files: files)
        let again = try TrainerArchive(files: files.reversed())
        #expect(first.data == again.data && first.sha256 == again.sha256)
        let changed = try TrainerArchive(files: [files[0], ("a/one.c", Data("int one = 1;\n".utf8))])
        #expect(changed.sha256 != first.sha256)
    }

    /// What a node without nvcc does with the archive: unzip it with python3, `make cpu`, and
    /// train; the trainer it builds answers /healthz.
    @Test func aNodeBuildsTheCPUTrainerFromTheArchiveAndItTrains() async throws {
        let work = try TestSupport.temporaryDirectory("trainer-build")
        let zip = work.appendingPathComponent("trainer.zip")
        try TrainerArchive.bundled.data.write(to: zip)
        let src = work.appendingPathComponent("src"), build = work.appendingPathComponent("build")
        await #expect(try NodeBootstrapTests.run(["python3", "-m", "zipfile", "-e", zip.path, src.path]).status == 0)
        let make = try await NodeBootstrapTests.run(["make", "-C", src.appendingPathComponent("TrainerCUDA").path, "-j", "2", "BUILD=\(build.path)", "cpu"])
        #expect(make.status == 0, "\(make.output.suffix(2000))")
        let trainer = build.appendingPathComponent("stratum-trainer")
        let config = work.appendingPathComponent("trainer.yaml")
        try """
            model: {layers: 1, width: 32, heads: 2, context: 32}
            train: {batch_size: 4, seq_len: 32, steps: 5, threads: 1, log_every: 1}
            data: {source: synthetic}
            checkpoint: {dir: \(work.appendingPathComponent("ckpt").path)}
            """.write(to: config, atomically: true, encoding: .utf8)
        let run = try await NodeBootstrapTests.run([trainer.path, "--config", config.path])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("done at step 5"), "\(run.output)")
        #expect(FileManager.default.fileExists(atPath: work.appendingPathComponent("ckpt").path))
    }
}
