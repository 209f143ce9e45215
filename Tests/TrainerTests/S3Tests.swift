import Foundation
import StratumCore
import StratumTesting
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An S3 endpoint for the test: STRATUM_TEST_S3_ENDPOINT when set, otherwise a moto_server
/// started on a free loopback port and stopped by `stop()`.
final class S3Endpoint {
    let url: String
    private var child: Child?
    private var logDir: URL?

    init() async throws {
        // moto accepts any credentials; real ones from the environment win.
        setenv("AWS_ACCESS_KEY_ID", "stratum-test", 0)
        setenv("AWS_SECRET_ACCESS_KEY", "stratum-test-secret", 0)
        if let env = ProcessInfo.processInfo.environment["STRATUM_TEST_S3_ENDPOINT"], !env.isEmpty {
            url = env
            return
        }
        let port = freeLoopbackPort()
        let dir = try makeTempDir("moto")
        logDir = dir
        // `moto_server` when pip put it on PATH, otherwise the module through python3.
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let onPath = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/moto_server") }
        let command = onPath ? ["moto_server"] : ["python3", "-m", "moto.server"]
        let c = try Child(URL(fileURLWithPath: "/usr/bin/env"), command + ["-H", "127.0.0.1", "-p", "\(port)"],
                          log: dir.appendingPathComponent("moto.log"))
        child = c
        url = "http://127.0.0.1:\(port)"
        do {
            try await waitUntilReady(c, "moto_server on port \(port)") { loopbackAccepts(port) }
        } catch {
            stop()
            throw error
        }
    }

    func stop() {
        if let c = child { stopEmulator(c) }
        child = nil
        if let d = logDir { try? FileManager.default.removeItem(at: d) }
    }

    func makeBucket(_ name: String) throws {
        var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
        try #require(tc_s3_create_bucket(url, "us-east-1", name, &err, err.count) == 0, "\(errorText(err))")
    }
}

extension TrainerSuite {
    @Suite struct S3Tests {
        /// Published AWS SigV4 examples (test-suite "get-vanilla", "get-vanilla-query", and the
        /// S3 GetObject example with a Range header).
        @Test func sigV4MatchesPublishedVectors() {
            func sign(_ method: String, _ uri: String, _ query: String, _ headers: String, _ signed: String,
                      _ payload: String, _ date: String, _ service: String, _ key: String, _ secret: String) -> String {
                var out = [CChar](repeating: 0, count: 1024)
                let rc = tc_sigv4_authorization(method, uri, query, headers, signed, payload, date, "us-east-1", service, key, secret,
                                                &out, out.count)
                return rc == 0 ? errorText(out) : "error"
            }
            let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            var digest = [CChar](repeating: 0, count: 65)
            tc_sha256_hex("", 0, &digest)
            #expect(errorText(digest) == empty)

            let vanilla = sign("GET", "/", "", "host:example.amazonaws.com\nx-amz-date:20150830T123600Z", "host;x-amz-date", empty,
                               "20150830T123600Z", "service", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
            #expect(vanilla == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")

            let query = sign("GET", "/", "Param1=value1", "host:example.amazonaws.com\nx-amz-date:20150830T123600Z", "host;x-amz-date",
                             empty, "20150830T123600Z", "service", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
            #expect(query.hasSuffix("Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"))

            let s3 = sign("GET", "/test.txt", "",
                          "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:\(empty)\nx-amz-date:20130524T000000Z",
                          "host;range;x-amz-content-sha256;x-amz-date", empty, "20130524T000000Z", "s3", "AKIAIOSFODNN7EXAMPLE",
                          "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
            #expect(s3.hasSuffix("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"))
            // One changed byte anywhere changes the signature.
            let tampered = sign("GET", "/test.txt", "",
                                "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-8\nx-amz-content-sha256:\(empty)\nx-amz-date:20130524T000000Z",
                                "host;range;x-amz-content-sha256;x-amz-date", empty, "20130524T000000Z", "s3", "AKIAIOSFODNN7EXAMPLE",
                                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
            #expect(!tampered.hasSuffix("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"))
        }

        /// No keys in the environment: the trainer takes the instance role's keys from IMDSv2 (a
        /// loopback fake of it) and checkpoints to moto with them. Keys an hour from expiry are
        /// fetched once; keys within five minutes of it are fetched again before the next call.
        @Test(arguments: [3600, 60]) func roleCredentialsFromIMDSv2(expiresInSeconds: Int) async throws {
            let s3 = try await S3Endpoint()
            defer { s3.stop() }
            let bucket = "stratum-role-\(UInt32.random(in: 0...UInt32.max))"
            try s3.makeBucket(bucket)
            let imds = try await IMDSv2Fake.start(expiresIn: expiresInSeconds)
            defer { Task { await imds.server.shutdown() } }
            let dir = try makeTempDir("role")
            defer { try? FileManager.default.removeItem(at: dir) }
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 32}
                train: {batch_size: 4, seq_len: 32, steps: 3, threads: 1, log_every: 1}
                data: {source: synthetic}
                checkpoint: {dir: "s3://\(bucket)/role-run"}
                s3: {endpoint: "\(s3.url)"}
                """
            let path = try writeYAML(yaml, in: dir)
            let (status, output) = try await runTrainer(
                ["--config", path], in: dir, name: "role",
                environment: [
                    "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.server.url.absoluteString,
                ])
            #expect(status == 0, "\(output)")
            #expect(output.contains("checkpoint written at step 3"), "\(output)")
            // The checkpoint is in the bucket.
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let store = try #require(tc_store_open("s3://\(bucket)/role-run", s3.url, "us-east-1", &err, err.count), "\(errorText(err))")
            defer { tc_store_free(store) }
            var keys: UnsafeMutablePointer<CChar>?
            #expect(tc_store_list(store, "", &keys, &err, err.count) == 0, "\(errorText(err))")
            let listing = keys.map { String(cString: $0) } ?? ""
            free(keys)
            #expect(!listing.isEmpty, "nothing was written under role-run/")
            let fetches = imds.credentialFetches.get()
            if expiresInSeconds > 300 {
                #expect(fetches == 1, "keys an hour from expiry were fetched \(fetches) times")
            } else {
                #expect(fetches >= 2, "keys a minute from expiry were fetched only \(fetches) times")
            }
            #expect(imds.unauthorised.get() == 0, "a metadata call came without the IMDSv2 session token")
            #expect(!output.contains(IMDSv2Fake.secret))

            // No keys and no role: the error says what was looked for.
            let none = try await runTrainer(
                ["--config", path], in: dir, name: "norole",
                environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true"])
            #expect(none.0 != 0)
            #expect(none.1.contains("AWS_EC2_METADATA_DISABLED=true"), "\(none.1)")
        }

        /// No keys and no instance role: a node on GCP or Azure (or one with a token file) reaches
        /// its cluster's S3 bucket through a web identity. The trainer asks the cloud's metadata
        /// service (a loopback fake) for an identity token for the audience, exchanges it with
        /// STS AssumeRoleWithWebIdentity (moto) for the role's keys, and checkpoints with them.
        @Test(arguments: ["gcp", "azure", "file"]) func webIdentityFromAnotherCloud(source: String) async throws {
            let s3 = try await S3Endpoint()
            defer { s3.stop() }
            let bucket = "stratum-federated-\(UInt32.random(in: 0...UInt32.max))"
            try s3.makeBucket(bucket)
            let metadata = try await IdentityTokenFake.start()
            defer { Task { await metadata.server.shutdown() } }
            let dir = try makeTempDir("webid")
            defer { try? FileManager.default.removeItem(at: dir) }
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 32}
                train: {batch_size: 4, seq_len: 32, steps: 3, threads: 1, log_every: 1}
                data: {source: synthetic}
                checkpoint: {dir: "s3://\(bucket)/federated"}
                s3: {endpoint: "\(s3.url)"}
                """
            let path = try writeYAML(yaml, in: dir)
            let role = "arn:aws:iam::123456789012:role/stratum/stratum-train-gcp-0a1b2c3d4e"
            var environment: [String: String] = [
                "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ROLE_ARN": role, "AWS_ENDPOINT_URL_STS": s3.url, "STRATUM_WEB_IDENTITY_AUDIENCE": "stratum-checkpoints",
            ]
            switch source {
            case "gcp":
                environment["STRATUM_WEB_IDENTITY"] = "gcp"
                environment["GCE_METADATA_HOST"] = metadata.hostAndPort
            case "azure":
                environment["STRATUM_WEB_IDENTITY"] = "azure"
                environment["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = metadata.url.absoluteString
                environment["AZURE_CLIENT_ID"] = "0b6c3f4e-1d2a-4b5c-8d9e-0f1a2b3c4d5e"
            default:
                let file = dir.appendingPathComponent("token")
                try Data((IdentityTokenFake.token + "\n").utf8).write(to: file)
                environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = file.path
            }
            let (status, output) = try await runTrainer(["--config", path], in: dir, name: "webid-\(source)", environment: environment)
            #expect(status == 0, "\(output)")
            #expect(output.contains("checkpoint written at step 3"), "\(output)")
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let store = try #require(tc_store_open("s3://\(bucket)/federated", s3.url, "us-east-1", &err, err.count), "\(errorText(err))")
            defer { tc_store_free(store) }
            var keys: UnsafeMutablePointer<CChar>?
            #expect(tc_store_list(store, "", &keys, &err, err.count) == 0, "\(errorText(err))")
            let listing = keys.map { String(cString: $0) } ?? ""
            free(keys)
            #expect(!listing.isEmpty, "nothing was written under federated/")
            let asked = metadata.requests.get()
            switch source {
            case "gcp": #expect(asked == [IdentityTokenFake.Request(cloud: "gcp", audience: "stratum-checkpoints", clientID: nil)])
            case "azure":
                #expect(asked == [IdentityTokenFake.Request(cloud: "azure", audience: "stratum-checkpoints", clientID: "0b6c3f4e-1d2a-4b5c-8d9e-0f1a2b3c4d5e")])
            default: #expect(asked.isEmpty)
            }
            #expect(metadata.refused.get() == 0, "a metadata call came without its cloud's header")
            #expect(!output.contains(IdentityTokenFake.token), "the identity token was printed")

            // STS unreachable: the error names the role and what failed; nothing is written.
            environment["AWS_ENDPOINT_URL_STS"] = "http://127.0.0.1:\(freeLoopbackPort())"
            environment["STRATUM_WEB_IDENTITY"] = source == "file" ? "" : source
            let refused = try await runTrainer(["--config", path, "--set", "checkpoint.dir=s3://\(bucket)/refused"], in: dir, name: "webid-refused-\(source)", environment: environment)
            #expect(refused.0 != 0)
            #expect(refused.1.contains("web identity for \(role)"), "\(refused.1)")
        }

        /// Checkpoint to S3 (moto), resume in a fresh trainer: identical weights; plus multipart,
        /// listing, put-if-absent, Range-streamed training data and a two-worker DiLoCo run
        /// against the same endpoint (one emulator start for all of it).
        @Test func checkpointRoundTripThroughS3() async throws {
            let s3 = try await S3Endpoint()
            defer { s3.stop() }
            let bucket = "stratum-ckpt-\(UInt32.random(in: 0...UInt32.max))"
            try s3.makeBucket(bucket)
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))

            // Object store primitives, including a 3-part multipart upload.
            let store = try #require(tc_store_open("s3://\(bucket)/objects", s3.url, "us-east-1", &err, err.count), "\(errorText(err))")
            defer { tc_store_free(store) }
            tc_store_set_multipart(store, 5 << 20, 5 << 20)
            var rng = tc_rng()
            tc_rng_seed(&rng, 9)
            let big = (0..<(12 << 20)).map { _ in UInt8(truncatingIfNeeded: tc_rng_u64(&rng)) }
            try #require(tc_store_put(store, "big.bin", big, big.count, &err, err.count) == 0, "\(errorText(err))")
            var data: UnsafeMutablePointer<UInt8>?
            var len = 0
            #expect(tc_store_get(store, "big.bin", &data, &len, &err, err.count) == 1)
            let roundTrip = len == big.count && Array(UnsafeBufferPointer(start: data, count: len)) == big
            #expect(roundTrip)
            free(data)
            #expect(tc_store_get(store, "absent.bin", &data, &len, &err, err.count) == 0)
            #expect(tc_store_put_if_absent(store, "once", "a", 1, &err, err.count) == 1, "\(errorText(err))")
            #expect(tc_store_put_if_absent(store, "once", "b", 1, &err, err.count) == 0, "\(errorText(err))")
            var keys: UnsafeMutablePointer<CChar>?
            #expect(tc_store_list(store, "", &keys, &err, err.count) == 0)
            #expect(String(cString: try #require(keys)) == "big.bin\nonce\n")
            free(keys)

            try expectCheckpointRoundTrip(["checkpoint.dir": "s3://\(bucket)/run1", "s3.endpoint": s3.url])

            // Training data streamed from the same bucket with Range requests.
            var dataCfg = try makeConfig(["data.source": "s3://\(bucket)/objects/big.bin", "s3.endpoint": s3.url, "data.chunk_bytes": "65536"])
            let d = try #require(tc_data_open(&dataCfg, 0, 1, &err, err.count), "\(errorText(err))")
            defer { tc_data_free(d) }
            var inputs = [UInt8](repeating: 0, count: 100_000), targets = inputs
            try #require(tc_data_next_batch(d, &inputs, &targets, 1, 100_000, &err, err.count) == 0, "\(errorText(err))")
            let sameBytes = inputs == Array(big[0..<100_000])
            #expect(sameBytes)
            #expect(tc_data_bytes_fetched(d) == 131_072, "two 64 KiB ranges, never the whole object")

            // The same object over plain HTTP Range requests (the emulator serves it unsigned).
            var httpCfg = try makeConfig(["data.source": "\(s3.url)/\(bucket)/objects/big.bin", "data.chunk_bytes": "65536"])
            let h = try #require(tc_data_open(&httpCfg, 1, 2, &err, err.count), "\(errorText(err))")
            defer { tc_data_free(h) }
            try #require(tc_data_next_batch(h, &inputs, &targets, 1, 100_000, &err, err.count) == 0, "\(errorText(err))")
            let half = big.count / 2
            let sameHTTP = inputs == Array(big[half..<(half + 100_000)])
            #expect(sameHTTP, "shard 1 of 2 starts in the middle of the object")
            #expect(tc_data_bytes_fetched(h) <= 3 * 65_536)

            // Two DiLoCo workers exchanging pseudo-gradients through the bucket (list, put-if-absent).
            try await expectTwoWorkerDiLoCo(store: "s3://\(bucket)/diloco", yamlExtra: "s3: {endpoint: \"\(s3.url)\"}", s3Endpoint: s3.url)

            // A missing bucket is reported with the URL and the status.
            var missing = try makeConfig(tinyModel.merging(["data.source": "s3://no-such-bucket-stratum/corpus.txt", "s3.endpoint": s3.url]) { $1 })
            #expect(tc_trainer_create(&missing, &err, err.count) == nil)
            #expect(errorText(err).contains("s3://no-such-bucket-stratum/corpus.txt") && errorText(err).contains("404"), "\(errorText(err))")
        }
    }
}
