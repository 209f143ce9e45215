import Foundation
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension TrainerSuite {
    /// The gs:// storage backend against gcp-storage-emulator on loopback (see GCSEndpoint).
    @Suite struct GCSTests {
        /// Store primitives with each token source: a static token, the metadata server, a
        /// service-account key (RS256 JWT verified by the token endpoint) and an authorized_user
        /// refresh token; fetched tokens are cached, and a refused request reports the status
        /// without the token.
        @Test(.timeLimit(.minutes(3))) func storePrimitivesWithEachTokenSource() async throws {
            let gcs = try await GCSEndpoint(bucket: "stratum-gs-\(UInt32.random(in: 0...UInt32.max))")
            defer { gcs.stop() }
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let sources: [(GCSEndpoint.Auth, String, Int)] = [
                (.staticToken, "static", 0), (.metadataServer, "metadata", 1), (.serviceAccount, "key", 1), (.authorizedUser, "user", 1),
            ]
            var tokensBefore = try gcs.stats().tokens
            for (auth, name, fetches) in sources {
                gcs.use(auth)
                let store = try #require(tc_store_open("gs://\(gcs.bucket)/\(name)/", nil, nil, &err, err.count), "\(errorText(err))")
                defer { tc_store_free(store) }
                let blob = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                try #require(tc_store_put(store, "step-1/weights.bin", blob, blob.count, &err, err.count) == 0, "\(name): \(errorText(err))")
                var data: UnsafeMutablePointer<UInt8>?
                var len = 0
                #expect(tc_store_get(store, "step-1/weights.bin", &data, &len, &err, err.count) == 1, "\(errorText(err))")
                let same = len == blob.count && Array(UnsafeBufferPointer(start: data, count: len)) == blob
                #expect(same, "\(name): round trip")
                free(data)
                #expect(tc_store_get(store, "absent.bin", &data, &len, &err, err.count) == 0)
                #expect(tc_store_put_if_absent(store, "once", "a", 1, &err, err.count) == 1, "\(errorText(err))")
                #expect(tc_store_put_if_absent(store, "once", "b", 1, &err, err.count) == 0, "\(errorText(err))")
                #expect(tc_store_get(store, "once", &data, &len, &err, err.count) == 1)
                #expect(len == 1 && data?[0] == UInt8(ascii: "a"), "the first writer wins")
                free(data)
                try #require(tc_store_put(store, "step-1/DONE", "", 0, &err, err.count) == 0, "\(errorText(err))")
                var keys: UnsafeMutablePointer<CChar>?
                let pagesBefore = try gcs.stats().pages
                #expect(tc_store_list(store, "", &keys, &err, err.count) == 0, "\(errorText(err))")
                #expect(String(cString: try #require(keys)) == "once\nstep-1/DONE\nstep-1/weights.bin\n", "\(name): keys relative to the prefix")
                free(keys)
                #expect(try gcs.stats().pages - pagesBefore == 2, "three names in pages of two")
                #expect(tc_store_list(store, "step-", &keys, &err, err.count) == 0)
                #expect(String(cString: try #require(keys)) == "step-1/DONE\nstep-1/weights.bin\n")
                free(keys)
                #expect(tc_store_delete(store, "step-1/DONE", &err, err.count) == 0, "\(errorText(err))")
                #expect(tc_store_delete(store, "step-1/DONE", &err, err.count) == 0, "deleting an absent key succeeds")
                #expect(tc_store_get(store, "step-1/DONE", &data, &len, &err, err.count) == 0)
                #expect(tc_store_bytes(store) >= UInt64(2 * blob.count))
                let tokens = try gcs.stats().tokens
                #expect(tokens - tokensBefore == fetches, "\(name): one token fetch for all requests, got \(tokens - tokensBefore)")
                tokensBefore = tokens
            }
            #expect(try gcs.stats().refused == 0)

            // A wrong static token: the status is reported, the token is not.
            setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.wrong-token-value", 1)
            let wrong = try #require(tc_store_open("gs://\(gcs.bucket)/static", nil, nil, &err, err.count))
            defer { tc_store_free(wrong) }
            #expect(tc_store_put(wrong, "x", "x", 1, &err, err.count) == -1)
            let message = errorText(err)
            #expect(message.contains("401") && message.contains("Invalid Credentials") && !message.contains("wrong-token"), "\(message)")
            #expect(try gcs.stats().refused == 1)

            // A service-account key the token endpoint cannot verify: refused, key not echoed.
            gcs.use(.serviceAccount)
            let otherKey = try makeTempDir("gcs-key")
            defer { try? FileManager.default.removeItem(at: otherKey) }
            var sa = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: gcs.serviceAccountFile)) as? [String: String])
            sa["client_email"] = "intruder@stratum-test.iam.gserviceaccount.com"
            let forged = otherKey.appendingPathComponent("sa.json")
            try JSONSerialization.data(withJSONObject: sa).write(to: forged)
            setenv("GOOGLE_APPLICATION_CREDENTIALS", forged.path, 1)
            let refused = try #require(tc_store_open("gs://\(gcs.bucket)/key", nil, nil, &err, err.count))
            defer { tc_store_free(refused) }
            var data: UnsafeMutablePointer<UInt8>?
            var len = 0
            #expect(tc_store_get(refused, "once", &data, &len, &err, err.count) == -1)
            #expect(errorText(err).contains("token request") && errorText(err).contains("400") && !errorText(err).contains("PRIVATE KEY"),
                    "\(errorText(err))")
        }

        /// A fetched token is reused until a minute before it expires, and a 401 (a revoked
        /// token) fetches a new one once and repeats the request.
        @Test(.timeLimit(.minutes(3))) func fetchedTokensAreRenewedOnExpiryAnd401() async throws {
            let gcs = try await GCSEndpoint(bucket: "stratum-tok-\(UInt32.random(in: 0...UInt32.max))")
            defer { gcs.stop() }
            gcs.use(.serviceAccount)
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let store = try #require(tc_store_open("gs://\(gcs.bucket)/t", nil, nil, &err, err.count), "\(errorText(err))")
            defer { tc_store_free(store) }
            var data: UnsafeMutablePointer<UInt8>?
            var len = 0
            func get() -> Int32 {
                let rc = tc_store_get(store, "k", &data, &len, &err, err.count)
                free(data)
                data = nil
                return rc
            }
            try #require(tc_store_put(store, "k", "v", 1, &err, err.count) == 0, "\(errorText(err))")
            #expect(get() == 1 && get() == 1)
            #expect(try gcs.stats() == (tokens: 1, refused: 0, pages: 0), "one fetch, then the cached token")

            // Revoked: the next request is refused once, a new token is fetched, the request repeated.
            try gcs.rotateToken(expiresIn: 60)
            #expect(get() == 1, "\(errorText(err))")
            #expect(try gcs.stats() == (tokens: 2, refused: 1, pages: 0))
            // That token expires within the minute of margin: every request fetches again.
            #expect(get() == 1 && get() == 1, "\(errorText(err))")
            #expect(try gcs.stats() == (tokens: 4, refused: 1, pages: 0))
        }

        /// Checkpoint to gs:// and resume in a fresh trainer with identical weights, training data
        /// streamed from gs:// with Range requests, then two DiLoCo workers (separate processes,
        /// metadata-server tokens) averaging through the bucket.
        @Test(.timeLimit(.minutes(3))) func checkpointDataAndDiLoCoRoundThroughGCS() async throws {
            let gcs = try await GCSEndpoint(bucket: "stratum-ckpt-\(UInt32.random(in: 0...UInt32.max))")
            defer { gcs.stop() }
            gcs.use(.serviceAccount)
            try expectCheckpointRoundTrip(["checkpoint.dir": "gs://\(gcs.bucket)/run1"])
            // Training data streamed from the bucket with Range requests.
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let objects = try #require(tc_store_open("gs://\(gcs.bucket)/corpus", nil, nil, &err, err.count), "\(errorText(err))")
            defer { tc_store_free(objects) }
            let corpus = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 / 977) }
            try #require(tc_store_put(objects, "bytes.bin", corpus, corpus.count, &err, err.count) == 0, "\(errorText(err))")
            var dataCfg = try makeConfig(["data.source": "gs://\(gcs.bucket)/corpus/bytes.bin", "data.chunk_bytes": "65536"])
            let d = try #require(tc_data_open(&dataCfg, 1, 2, &err, err.count), "\(errorText(err))")
            defer { tc_data_free(d) }
            var inputs = [UInt8](repeating: 0, count: 100_000), targets = inputs
            try #require(tc_data_next_batch(d, &inputs, &targets, 1, 100_000, &err, err.count) == 0, "\(errorText(err))")
            let sameBytes = inputs == Array(corpus[150_000..<250_000])
            #expect(sameBytes, "shard 1 of 2 starts in the middle of the object")
            #expect(tc_data_bytes_fetched(d) <= 3 * 65_536, "ranges, never the whole object")
            var missing = try makeConfig(["data.source": "gs://\(gcs.bucket)/corpus/absent.bin"])
            #expect(tc_data_open(&missing, 0, 1, &err, err.count) == nil)
            #expect(errorText(err).contains("gs://\(gcs.bucket)/corpus/absent.bin") && errorText(err).contains("404"), "\(errorText(err))")

            gcs.use(.metadataServer)
            try await expectTwoWorkerDiLoCo(store: "gs://\(gcs.bucket)/diloco")
            #expect(try gcs.stats().refused == 0)
        }
    }
}
