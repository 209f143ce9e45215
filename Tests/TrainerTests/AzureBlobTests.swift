import Foundation
import StratumTesting
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension TrainerSuite {
    /// The az:// storage backend against AzureBlobFake on loopback, and the fake itself checked
    /// with Microsoft's azure-storage-blob Python client.
    @Suite struct AzureBlobTests {
        static let account = "stratumtest"

        /// The official Python client drives every operation the fake serves and accepts its
        /// answers: small and multi-block uploads, ranged downloads, properties, pages of a
        /// listing, conditional uploads refused, deletes; a wrong account key is refused.
        @Test(.timeLimit(.minutes(3))) func fakeAcceptsTheAzureSDK() async throws {
            let fake = AzureBlobFake(account: Self.account)
            let server = try await fake.serve()
            defer { Task { await server.shutdown() } }
            let dir = try makeTempDir("azure-sdk")
            defer { try? FileManager.default.removeItem(at: dir) }
            let script = dir.appendingPathComponent("sdk.py")
            try Self.sdkScript.write(to: script, atomically: true, encoding: .utf8)
            let child = try Child(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script.path], log: dir.appendingPathComponent("sdk.log"),
                                  environment: ["STRATUM_TEST_AZURE_CONNECTION": fake.connectionString(server)])
            let deadline = ContinuousClock.now + .seconds(50)
            while child.process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if child.process.isRunning { child.kill() }
            child.process.waitUntilExit()
            #expect(child.process.terminationStatus == 0 && child.output.contains("SDK OK"), "\(child.output)")
            let calls = await fake.calls
            // 20,000 bytes in blocks of 4,096, then 9,000 bytes whose block list is refused.
            #expect(calls["PutBlock"] == 5 + 3 && calls["PutBlockList"] == 2, "\(calls)")
            #expect(calls["ListBlobs", default: 0] >= 3 && calls["GetBlobProperties", default: 0] >= 1, "\(calls)")
            #expect(await fake.refused == 1, "only the client with the wrong key is refused")
            let large = try #require(await fake.blob("sdk", "a/large.bin"))
            #expect(large == Data((0..<20_000).map { UInt8(($0 * 7) % 251) }))
            #expect(await fake.blobNames("sdk") == ["a/empty.bin", "a/large.bin", "a/small.bin", "b/1", "b/2", "b/3", "b/4"])
        }

        /// A GCP node of a cluster whose container is on Azure: no key and no IMDS of Azure; the
        /// trainer asks the GCE metadata server (a loopback fake) for its account's ID token for
        /// api://AzureADTokenExchange, presents it to Entra's token endpoint (the same fake) as
        /// the client assertion of the managed identity AZURE_CLIENT_ID, and checkpoints to the
        /// container with the token it gets.
        @Test(.timeLimit(.minutes(3))) func aGCPNodeCheckpointsWithAFederatedEntraToken() async throws {
            let fake = AzureBlobFake(account: Self.account, containers: ["ckpt"])
            let server = try await fake.serve()
            defer { Task { await server.shutdown() } }
            let identity = try await IdentityTokenFake.start { await fake.token }
            defer { Task { await identity.server.shutdown() } }
            let dir = try makeTempDir("azure-federated")
            defer { try? FileManager.default.removeItem(at: dir) }
            let yaml = """
                model: {layers: 1, width: 32, heads: 2, context: 32}
                train: {batch_size: 4, seq_len: 32, steps: 3, threads: 1, log_every: 1}
                data: {source: synthetic}
                checkpoint: {dir: "az://\(Self.account)/ckpt/federated"}
                """
            let path = try writeYAML(yaml, in: dir)
            let client = "6f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b", tenant = "00000000-0000-4000-8000-00000000feed"
            let (status, output) = try await runTrainer(["--config", path], in: dir, name: "federated", environment: [
                "AZURE_STORAGE_CONNECTION_STRING": fake.connectionString(server, withKey: false), "AZURE_STORAGE_KEY": "", "AZURE_STORAGE_ACCESS_TOKEN": "",
                "AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_AUTHORITY_HOST": identity.url.absoluteString,
                "STRATUM_WEB_IDENTITY": "gcp", "GCE_METADATA_HOST": identity.hostAndPort,
                // Azure IMDS is not there: a fall back to it would fail.
                "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:\(freeLoopbackPort())",
            ])
            #expect(status == 0, "\(output)")
            #expect(output.contains("checkpoint written at step 3"), "\(output)")
            #expect(await fake.blobNames("ckpt").contains { $0.hasPrefix("federated/") }, "nothing was written under federated/")
            #expect(identity.requests.get() == [
                IdentityTokenFake.Request(cloud: "gcp", audience: "api://AzureADTokenExchange", clientID: nil),
                IdentityTokenFake.Request(cloud: "entra", audience: "https://storage.azure.com/.default", clientID: client),
            ])
            #expect(identity.refused.get() == 0)
            #expect(!output.contains(IdentityTokenFake.token))
        }

        /// Store primitives with each credential: SharedKey from a connection string, SharedKey
        /// from AZURE_STORAGE_KEY, a static bearer token and a managed-identity token from IMDS
        /// (fetched once, renewed after a revocation); blobs above the threshold go up in blocks,
        /// the https:// form names the same container, and a refused request reports the status
        /// without the key.
        @Test(.timeLimit(.minutes(3))) func storePrimitivesWithEachCredential() async throws {
            let fake = AzureBlobFake(account: Self.account, containers: ["ckpt"])
            let server = try await fake.serve()
            defer {
                Self.use(nil)
                Task { await server.shutdown() }
            }
            await fake.set(maxPageSize: 2)
            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let endpointOnly = fake.connectionString(server, withKey: false)
            let credentials: [(String, [String: String])] = [
                ("connection", ["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString(server)]),
                ("key", ["AZURE_STORAGE_CONNECTION_STRING": endpointOnly, "AZURE_STORAGE_KEY": fake.accountKey]),
                ("static", ["AZURE_STORAGE_CONNECTION_STRING": endpointOnly, "AZURE_STORAGE_ACCESS_TOKEN": await fake.token]),
                ("imds", ["AZURE_STORAGE_CONNECTION_STRING": endpointOnly, "AZURE_POD_IDENTITY_AUTHORITY_HOST": server.url.absoluteString]),
            ]
            for (name, env) in credentials {
                Self.use(env)
                let before = await fake.calls
                let store = try #require(tc_store_open("az://\(Self.account)/ckpt/\(name)/", nil, nil, &err, err.count), "\(errorText(err))")
                defer { tc_store_free(store) }
                tc_store_set_multipart(store, 32_768, 32_768)
                let blob = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                try #require(tc_store_put(store, "step-1/weights.bin", blob, blob.count, &err, err.count) == 0, "\(name): \(errorText(err))")
                #expect(await fake.blob("ckpt", "\(name)/step-1/weights.bin") == Data(blob), "\(name): four blocks committed in order")
                var data: UnsafeMutablePointer<UInt8>?
                var len = 0
                #expect(tc_store_get(store, "step-1/weights.bin", &data, &len, &err, err.count) == 1, "\(errorText(err))")
                let same = len == blob.count && Array(UnsafeBufferPointer(start: data, count: len)) == blob
                #expect(same, "\(name): round trip")
                free(data)
                #expect(tc_store_get(store, "absent.bin", &data, &len, &err, err.count) == 0)
                #expect(tc_store_put_if_absent(store, "once", "a", 1, &err, err.count) == 1, "\(errorText(err))")
                #expect(tc_store_put_if_absent(store, "once", "b", 1, &err, err.count) == 0, "\(errorText(err))")
                #expect(await fake.blob("ckpt", "\(name)/once") == Data("a".utf8), "the first writer wins")
                try #require(tc_store_put(store, "step-1/DONE", "", 0, &err, err.count) == 0, "\(errorText(err))")
                var keys: UnsafeMutablePointer<CChar>?
                let listsBefore = await fake.calls["ListBlobs", default: 0]
                #expect(tc_store_list(store, "", &keys, &err, err.count) == 0, "\(errorText(err))")
                #expect(String(cString: try #require(keys)) == "once\nstep-1/DONE\nstep-1/weights.bin\n", "\(name): keys relative to the prefix")
                free(keys)
                #expect(await fake.calls["ListBlobs", default: 0] - listsBefore == 2, "three names in pages of two")
                #expect(tc_store_list(store, "step-", &keys, &err, err.count) == 0)
                #expect(String(cString: try #require(keys)) == "step-1/DONE\nstep-1/weights.bin\n")
                free(keys)
                #expect(tc_store_delete(store, "step-1/DONE", &err, err.count) == 0, "\(errorText(err))")
                #expect(tc_store_delete(store, "step-1/DONE", &err, err.count) == 0, "deleting an absent key succeeds")
                #expect(tc_store_get(store, "step-1/DONE", &data, &len, &err, err.count) == 0)
                #expect(tc_store_bytes(store) >= UInt64(2 * blob.count))
                let after = await fake.calls
                #expect(after["PutBlock", default: 0] - before["PutBlock", default: 0] == 4, "\(name): 100,000 bytes in blocks of 32,768")
                #expect(after["PutBlockList", default: 0] - before["PutBlockList", default: 0] == 1)
                #expect(after["Token", default: 0] - before["Token", default: 0] == (name == "imds" ? 1 : 0), "\(name): one token for all requests")
            }
            #expect(await fake.refused == 0)

            // A revoked managed-identity token: refused once, a new one fetched, the request repeated.
            let tokensBefore = await fake.calls["Token", default: 0]
            let store = try #require(tc_store_open("az://\(Self.account)/ckpt/imds", nil, nil, &err, err.count))
            defer { tc_store_free(store) }
            var data: UnsafeMutablePointer<UInt8>?
            var len = 0
            #expect(tc_store_get(store, "once", &data, &len, &err, err.count) == 1)
            free(data)
            await fake.rotateToken()
            #expect(tc_store_get(store, "once", &data, &len, &err, err.count) == 1, "\(errorText(err))")
            free(data)
            #expect(await fake.calls["Token", default: 0] - tokensBefore == 2)
            #expect(await fake.refused == 1)

            // The https:// form of the same location.
            Self.use(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString(server)])
            let https = try #require(tc_store_open("https://\(Self.account).blob.core.windows.net/ckpt/connection", nil, nil, &err, err.count),
                                     "\(errorText(err))")
            defer { tc_store_free(https) }
            #expect(tc_store_get(https, "once", &data, &len, &err, err.count) == 1 && len == 1, "\(errorText(err))")
            free(data)

            // A wrong key: the status and Blob Storage's code are reported, the key is not.
            let wrongKey = Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            Self.use(["AZURE_STORAGE_CONNECTION_STRING": endpointOnly, "AZURE_STORAGE_KEY": wrongKey])
            let wrong = try #require(tc_store_open("az://\(Self.account)/ckpt/key", nil, nil, &err, err.count))
            defer { tc_store_free(wrong) }
            #expect(tc_store_put(wrong, "x", "x", 1, &err, err.count) == -1)
            let message = errorText(err)
            #expect(message.contains("403 AuthenticationFailed") && !message.contains(wrongKey), "\(message)")
            // A connection string for another account is refused at open.
            Self.use(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString(server)])
            #expect(tc_store_open("az://otheraccount/ckpt", nil, nil, &err, err.count) == nil)
            #expect(errorText(err).contains("otheraccount") && !errorText(err).contains(fake.accountKey), "\(errorText(err))")
        }

        /// Checkpoint to az:// and resume in a fresh trainer with identical weights, training
        /// data streamed from az:// with ranged reads, then two DiLoCo workers (separate
        /// processes, managed-identity tokens) averaging through the container.
        @Test(.timeLimit(.minutes(3))) func checkpointDataAndDiLoCoRoundThroughAzureBlob() async throws {
            let fake = AzureBlobFake(account: Self.account, containers: ["ckpt", "corpus", "diloco"])
            let server = try await fake.serve()
            defer {
                Self.use(nil)
                Task { await server.shutdown() }
            }
            Self.use(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString(server)])
            try expectCheckpointRoundTrip(["checkpoint.dir": "az://\(Self.account)/ckpt/run1"])
            #expect(await fake.blobNames("ckpt").contains { $0.hasPrefix("run1/") })

            var err = [CChar](repeating: 0, count: Int(TC_ERR_MAX))
            let objects = try #require(tc_store_open("az://\(Self.account)/corpus", nil, nil, &err, err.count), "\(errorText(err))")
            defer { tc_store_free(objects) }
            let corpus = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 / 977) }
            try #require(tc_store_put(objects, "bytes.bin", corpus, corpus.count, &err, err.count) == 0, "\(errorText(err))")
            var dataCfg = try makeConfig(["data.source": "https://\(Self.account).blob.core.windows.net/corpus/bytes.bin", "data.chunk_bytes": "65536"])
            let d = try #require(tc_data_open(&dataCfg, 1, 2, &err, err.count), "\(errorText(err))")
            defer { tc_data_free(d) }
            var inputs = [UInt8](repeating: 0, count: 100_000), targets = inputs
            try #require(tc_data_next_batch(d, &inputs, &targets, 1, 100_000, &err, err.count) == 0, "\(errorText(err))")
            let sameBytes = inputs == Array(corpus[150_000..<250_000])
            #expect(sameBytes, "shard 1 of 2 starts in the middle of the blob")
            #expect(tc_data_bytes_fetched(d) <= 3 * 65_536, "ranges, never the whole blob")
            var missing = try makeConfig(["data.source": "az://\(Self.account)/corpus/absent.bin"])
            #expect(tc_data_open(&missing, 0, 1, &err, err.count) == nil)
            #expect(errorText(err).contains("absent.bin") && errorText(err).contains("404"), "\(errorText(err))")

            Self.use(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString(server, withKey: false),
                      "AZURE_POD_IDENTITY_AUTHORITY_HOST": server.url.absoluteString])
            try await expectTwoWorkerDiLoCo(store: "az://\(Self.account)/diloco/run")
            #expect(await fake.refused == 0)
            #expect(await fake.calls["Token", default: 0] >= 2, "each worker process fetched its own token")
        }

        /// Sets the Azure storage variables to `env` (children inherit them), unsetting the others.
        static func use(_ env: [String: String]?) {
            for name in ["AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCESS_TOKEN", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                         "AZURE_CLIENT_ID"] {
                if let value = env?[name] { setenv(name, value, 1) } else { unsetenv(name) }
            }
        }

        static let sdkScript = #"""
            import os
            from azure.core import MatchConditions
            from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceExistsError,
                                               ResourceModifiedError, ResourceNotFoundError)
            from azure.storage.blob import BlobServiceClient

            conn = os.environ["STRATUM_TEST_AZURE_CONNECTION"]
            service = BlobServiceClient.from_connection_string(conn, max_single_put_size=4096, max_block_size=4096)
            container = service.create_container("sdk")
            try:
                service.create_container("sdk")
                raise SystemExit("a second create_container succeeded")
            except ResourceExistsError:
                pass

            small, large = b"small blob", bytes((i * 7) % 251 for i in range(20000))
            container.upload_blob("a/small.bin", small)
            container.upload_blob("a/large.bin", large)  # above max_single_put_size: Put Block x5 + Put Block List
            container.upload_blob("a/empty.bin", b"")
            assert container.download_blob("a/large.bin").readall() == large
            assert container.download_blob("a/large.bin", offset=5000, length=3000).readall() == large[5000:8000]
            assert container.download_blob("a/empty.bin").readall() == b""
            props = container.get_blob_client("a/large.bin").get_blob_properties()
            assert props.size == 20000 and props.blob_type == "BlockBlob", props

            # Conditional uploads: refused when the blob exists, or when the ETag does not match.
            try:
                container.upload_blob("a/small.bin", b"other")
                raise SystemExit("upload over an existing blob without overwrite succeeded")
            except ResourceExistsError:
                pass
            try:
                container.upload_blob("a/large.bin", large[:9000])
                raise SystemExit("a block upload over an existing blob without overwrite succeeded")
            except ResourceExistsError:
                pass
            small_client = container.get_blob_client("a/small.bin")
            etag = small_client.get_blob_properties().etag
            try:
                small_client.upload_blob(b"other", overwrite=True, etag='"0x8DC0000DEADBEEF"', match_condition=MatchConditions.IfNotModified)
                raise SystemExit("an upload with a stale ETag succeeded")
            except ResourceModifiedError:
                pass
            small_client.upload_blob(b"replaced", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
            assert small_client.download_blob().readall() == b"replaced"

            for i in range(5):
                container.upload_blob(f"b/{i}", str(i).encode())
            pages = [[b.name for b in page] for page in container.list_blobs(name_starts_with="b/", results_per_page=2).by_page()]
            assert pages == [["b/0", "b/1"], ["b/2", "b/3"], ["b/4"]], pages
            container.delete_blob("b/0")
            for call in (lambda: container.delete_blob("b/0"), lambda: container.download_blob("b/0").readall()):
                try:
                    call()
                    raise SystemExit("an absent blob was found")
                except ResourceNotFoundError:
                    pass

            wrong = BlobServiceClient.from_connection_string(conn.replace("AccountKey=", "AccountKey=AAAA"))
            try:
                wrong.get_container_client("sdk").get_blob_client("a/small.bin").download_blob().readall()
                raise SystemExit("a wrong key was accepted")
            except (ClientAuthenticationError, HttpResponseError) as e:
                assert e.status_code == 403, e
            print("SDK OK")
            """#
    }
}
