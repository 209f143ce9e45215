import Foundation
import Testing
import TrainerCore

extension TrainerSuite {
    @Suite struct DataTests {
        /// Streaming in 4 KiB chunks returns exactly the file's bytes, row after row, wrapping at the end.
        @Test func fileStreamsInChunksAndWraps() async throws {
            let dir = try makeTempDir("data")
            defer { try? FileManager.default.removeItem(at: dir) }
            let corpus = dir.appendingPathComponent("corpus.bin")
            var rng = tc_rng()
            tc_rng_seed(&rng, 5)
            let bytes = (0..<10_000).map { _ in UInt8(tc_rng_u64(&rng) % 256) }
            try Data(bytes).write(to: corpus)
            var cfg = try makeConfig(["data.source": corpus.path, "data.chunk_bytes": "4096"])
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let d = try #require(tc_data_open(&cfg, 0, 1, &err, err.count), "\(errorText(err))")
            defer { tc_data_free(d) }
            #expect(tc_data_entropy_floor(d) < 0)
            let B = 3, T = 500
            var inputs = [UInt8](repeating: 0, count: B * T), targets = inputs
            var pos = 0
            for _ in 0..<10 {  // 15,000 bytes: crosses chunk boundaries and the end of the file
                try #require(tc_data_next_batch(d, &inputs, &targets, Int32(B), Int32(T), &err, err.count) == 0)
                for b in 0..<B {
                    for t in 0..<T {
                        #expect(inputs[b * T + t] == bytes[(pos + b * T + t) % bytes.count])
                        #expect(targets[b * T + t] == bytes[(pos + b * T + t + 1) % bytes.count])
                    }
                }
                pos = (pos + B * T) % bytes.count
            }
            // Shards start at disjoint offsets.
            let d2 = try #require(tc_data_open(&cfg, 1, 2, &err, err.count))
            defer { tc_data_free(d2) }
            try #require(tc_data_next_batch(d2, &inputs, &targets, 1, 8, &err, err.count) == 0)
            #expect(Array(inputs[0..<8]) == Array(bytes[5000..<5008]))
        }

        /// The synthetic stream's empirical conditional entropy matches the computed floor.
        @Test func syntheticStreamMatchesItsEntropyRate() async throws {
            var cfg = try makeConfig(["data.source": "synthetic", "data.branching": "3", "data.markov_seed": "11"])
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let d = try #require(tc_data_open(&cfg, 0, 1, &err, err.count))
            defer { tc_data_free(d) }
            let T = 100_000
            var inputs = [UInt8](repeating: 0, count: T), targets = inputs
            var counts = [[Int]](repeating: [Int](repeating: 0, count: 256), count: 256)
            for _ in 0..<10 {
                try #require(tc_data_next_batch(d, &inputs, &targets, 1, Int32(T), &err, err.count) == 0)
                for i in 0..<T { counts[Int(inputs[i])][Int(targets[i])] += 1 }
            }
            var h = 0.0
            let total = Double(10 * T)
            for row in counts {
                let n = Double(row.reduce(0, +))
                guard n > 0 else { continue }
                for c in row where c > 0 { h -= Double(c) / total * log(Double(c) / n) }
                #expect(row.filter { $0 > 0 }.count <= 3)
            }
            let floor = tc_data_entropy_floor(d)
            #expect(abs(h - floor) < 0.02, "empirical \(h) vs computed \(floor)")
        }
    }
}
