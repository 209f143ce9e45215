import Foundation
import StratumTesting
import Testing
import TrainerCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Cloud Storage endpoint for the trainer's gs:// tests: the PyPI gcp-storage-emulator on a
/// free loopback port, started through a small launcher that adds what the emulator leaves out
/// and Cloud Storage does: it refuses requests without `Authorization: Bearer <token>` (401),
/// answers an upload with `ifGenerationMatch=0` for an existing object with 412, stores an
/// empty media upload as an empty object (the emulator fails on it), lists objects in pages of
/// two names with `nextPageToken` (the emulator returns everything at once), and serves the
/// two token sources the trainer uses, a GCE metadata server route and an OAuth2 token endpoint
/// that verifies the RS256 JWT of a service-account key it generated (and accepts the refresh
/// token of an authorized_user file). `/stratum-test/stats` counts token grants, refusals and list
/// pages; `/stratum-test/rotate` revokes the token in use.
final class GCSEndpoint {
    let url: String
    let port: Int
    let bucket: String
    /// The access token every route hands out and the storage routes require.
    let token = "ya29.stratum-test-\(UInt32.random(in: 0...UInt32.max))"
    /// Credential files the launcher wrote: a service-account key and an authorized_user file.
    let serviceAccountFile: URL
    let authorizedUserFile: URL
    private var child: Child?
    private let dir: URL

    init(bucket: String) async throws {
        self.bucket = bucket
        dir = try makeTempDir("gcs")
        serviceAccountFile = dir.appendingPathComponent("service-account.json")
        authorizedUserFile = dir.appendingPathComponent("authorized-user.json")
        let script = dir.appendingPathComponent("launch.py")
        try Self.launcher.write(to: script, atomically: true, encoding: .utf8)
        port = freeLoopbackPort()
        url = "http://127.0.0.1:\(port)"
        let c = try Child(URL(fileURLWithPath: "/usr/bin/env"),
                          ["python3", script.path, "\(port)", bucket, dir.path],
                          log: dir.appendingPathComponent("emulator.log"),
                          environment: ["STRATUM_TEST_GCS_TOKEN": token])
        child = c
        let credentials = authorizedUserFile.path  // written last, just before the server starts
        do {
            try await waitUntilReady(c, "gcp-storage-emulator on port \(port)") {
                FileManager.default.fileExists(atPath: credentials) && loopbackAccepts(port)
            }
        } catch {
            stop()
            throw error
        }
    }

    /// Stops the emulator and clears the Google variables `use` set.
    func stop() {
        use(.none)
        unsetenv("STORAGE_EMULATOR_HOST")
        if let c = child { stopEmulator(c) }
        child = nil
        try? FileManager.default.removeItem(at: dir)
    }

    /// Revokes the current token: token sources hand out a new one that lasts `expiresIn` seconds.
    func rotateToken(expiresIn: Int = 3599) throws {
        let response = try httpGet(port: port, path: "/stratum-test/rotate?expires_in=\(expiresIn)")
        try #require(response.hasPrefix("HTTP/1.0 200"), "\(response)")
    }

    /// Token grants, 401 refusals and objects.list pages served so far.
    func stats() throws -> (tokens: Int, refused: Int, pages: Int) {
        let response = try httpGet(port: port, path: "/stratum-test/stats")
        let body = try #require(response.range(of: "\r\n\r\n").map { response[$0.upperBound...] }, "\(response)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Int], "\(response)")
        return (object["tokens"] ?? -1, object["refused"] ?? -1, object["pages"] ?? -1)
    }

    /// Environment for one way of authenticating; every other Google credential variable unset.
    enum Auth { case staticToken, metadataServer, serviceAccount, authorizedUser, none }

    func environment(_ auth: Auth) -> [String: String?] {
        var env: [String: String?] = ["STORAGE_EMULATOR_HOST": url, "GOOGLE_OAUTH_ACCESS_TOKEN": nil,
                                      "GOOGLE_APPLICATION_CREDENTIALS": nil, "GCE_METADATA_HOST": nil]
        switch auth {
        case .staticToken: env["GOOGLE_OAUTH_ACCESS_TOKEN"] = token
        case .metadataServer: env["GCE_METADATA_HOST"] = String(url.dropFirst("http://".count))
        case .serviceAccount: env["GOOGLE_APPLICATION_CREDENTIALS"] = serviceAccountFile.path
        case .authorizedUser: env["GOOGLE_APPLICATION_CREDENTIALS"] = authorizedUserFile.path
        case .none: break
        }
        return env
    }

    /// Applies `environment(auth)` to this process (children inherit it).
    func use(_ auth: Auth) {
        for (key, value) in environment(auth) {
            if let value { setenv(key, value, 1) } else { unsetenv(key) }
        }
    }

    static let launcher = #"""
        import base64, json, os, sys, threading, urllib.parse
        from http import HTTPStatus
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from gcp_storage_emulator import server
        from gcp_storage_emulator.__main__ import main

        port, bucket, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
        token = os.environ["STRATUM_TEST_GCS_TOKEN"]
        base = "http://127.0.0.1:" + port
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = "trainer@stratum-test.iam.gserviceaccount.com"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        refresh = "1//stratum-test-refresh"
        stats = {"tokens": 0, "refused": 0, "pages": 0}
        state = {"token": token, "expires_in": 3599}
        lock = threading.Lock()

        def unb64(s):
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

        def reply(h, code, body):
            data = json.dumps(body).encode()
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        def count(what):
            with lock:
                stats[what] += 1

        def grant(h):
            count("tokens")
            reply(h, 200, {"access_token": state["token"], "expires_in": state["expires_in"], "token_type": "Bearer"})

        def token_endpoint(h, form):
            if form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                header, claims, sig = form["assertion"][0].split(".")
                key.public_key().verify(unb64(sig), (header + "." + claims).encode(), padding.PKCS1v15(), hashes.SHA256())
                c = json.loads(unb64(claims))
                ok = (json.loads(unb64(header)) == {"alg": "RS256", "typ": "JWT"} and c["iss"] == email
                      and c["aud"] == base + "/token" and "devstorage" in c["scope"] and c["exp"] - c["iat"] <= 3600)
            else:
                ok = (form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [refresh]
                      and form.get("client_id") == ["stratum-test.apps"] and form.get("client_secret") == ["s3cr3t/+="])
            if ok:
                return grant(h)
            reply(h, 400, {"error": "invalid_grant", "error_description": "bad token request"})

        def list_page(h, bucket, query):
            # objects.list in pages of 2 names (the emulator never pages), nextPageToken = next offset.
            count("pages")
            try:
                files, _ = h.storage.get_file_list(bucket, query.get("prefix", [None])[0])
            except Exception:
                return reply(h, 404, {"error": {"code": 404, "message": "The specified bucket does not exist."}})
            names = sorted(f["name"] for f in files)
            start = int(query.get("pageToken", ["0"])[0])
            body = {"items": [{"name": n} for n in names[start:start + 2]]}
            if start + 2 < len(names):
                body["nextPageToken"] = str(start + 2)
            reply(h, 200, body)

        original = server.Router.handle

        def handle(self, method):
            h = self._request_handler
            url = urllib.parse.urlsplit(h.path)
            query = urllib.parse.parse_qs(url.query)
            body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if method in ("POST", "PUT") else b""
            if url.path == "/stratum-test/stats":
                return reply(h, 200, stats)
            if url.path == "/stratum-test/rotate":
                # Revokes the current token; token sources hand out the new one, lasting expires_in seconds.
                state["token"] = token + "-" + str(stats["tokens"])
                state["expires_in"] = int(query.get("expires_in", ["3599"])[0])
                return reply(h, 200, state)
            if url.path == "/computeMetadata/v1/instance/service-accounts/default/token":
                if h.headers.get("Metadata-Flavor") != "Google":
                    return reply(h, 403, {"error": "Missing Metadata-Flavor:Google header"})
                return grant(h)
            if url.path == "/token":
                try:
                    return token_endpoint(h, urllib.parse.parse_qs(body.decode()))
                except Exception as e:
                    return reply(h, 400, {"error": "invalid_grant", "error_description": type(e).__name__})
            if h.headers.get("Authorization") != "Bearer " + state["token"]:
                count("refused")
                return reply(h, 401, {"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}})
            if method == "POST" and query.get("ifGenerationMatch") == ["0"] and "name" in query:
                try:
                    h.storage.get_file_obj(url.path.split("/b/")[1].split("/")[0], query["name"][0])
                    return reply(h, 412, {"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold."}})
                except Exception:
                    pass
            parts = url.path.split("/")
            if method == "GET" and len(parts) == 6 and parts[1:4] == ["storage", "v1", "b"] and parts[5] == "o":
                return list_page(h, parts[4], query)
            # The emulator reads the body itself: hand it back what was consumed.
            h.rfile = __import__("io").BytesIO(body) if body else h.rfile
            return original(self, method)

        server.Router.handle = handle
        original_read = server._read_data

        def read_data(h, query):
            # The emulator turns an empty media upload into None and fails; Cloud Storage stores an empty object.
            data = original_read(h, query)
            return b"" if data is None and query.get("uploadType") == ["media"] else data

        server._read_data = read_data
        with open(os.path.join(outdir, "service-account.json"), "w") as f:
            json.dump({"type": "service_account", "project_id": "stratum-test", "private_key_id": "k1",
                       "private_key": pem, "client_email": email, "token_uri": base + "/token"}, f)
        with open(os.path.join(outdir, "authorized-user.json.tmp"), "w") as f:
            json.dump({"type": "authorized_user", "client_id": "stratum-test.apps", "client_secret": "s3cr3t/+=",
                       "refresh_token": refresh, "token_uri": base + "/token"}, f)
        os.rename(os.path.join(outdir, "authorized-user.json.tmp"), os.path.join(outdir, "authorized-user.json"))
        main(["start", "-H", "127.0.0.1", "--port", port, "--default-bucket", bucket, "-M", "-q"])
        """#
}
