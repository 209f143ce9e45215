import Crypto
import Foundation
import StratumCore

/// A loopback fake of the Cloud Storage JSON API v1 for buckets: `buckets.insert`, `get`,
/// `list` (by project, with `prefix` and pagination), `patch` and `delete`, their IAM policies
/// (`getIamPolicy`, `setIamPolicy` under the etag read, 412 otherwise; a service account
/// member must exist in the linked `GCPIAMFake`), and `objects.insert` (simple media uploads,
/// with `ifGenerationMatch`), `objects.get` (metadata, or the bytes with `alt=media`),
/// `objects.list` and `objects.delete` (with generations, for versioned buckets). Every request
/// is checked against Google's storage v1 discovery document first; what is wrong with it is
/// recorded in `violations` (tests assert there are none). Bucket names are global: a name
/// taken by another project (`takeName`) answers 409 to an insert and 403 to a get, as Cloud
/// Storage does to credentials without access to it. Once `require(bearer:)` names a token,
/// a request without `Authorization: Bearer <token>` is refused with 401 (`refused` counts
/// them), as Cloud Storage refuses another identity's. Errors use Google's body shape:
/// `{"error": {"code", "message", "errors": [{"reason", "domain", "message"}]}}`.
public actor GCSBucketFake {
    /// A fault injected into the next call of a method.
    public enum Fault: Sendable, Hashable {
        /// HTTP 429, reason `rateLimitExceeded`.
        case throttled
        /// HTTP 503, reason `backendError`.
        case serverError
        /// The call takes effect but its answer is lost: HTTP 503 instead of the answer.
        case lostResponse
    }

    /// One stored object generation.
    public struct StoredObject: Sendable, Hashable {
        public var name: String
        public var generation: Int
        /// Whether it is the live version (false: a noncurrent version in a versioned bucket).
        public var live: Bool
        public var data = Data()
        /// What the upload set of the resource (`contentType`, custom `metadata`).
        public var resource: [String: Value] = [:]
    }

    /// The caller's project (buckets go there when a test names none).
    public let project: String
    /// The projects the caller's credentials may act in: `project` and those `allow(project:)` adds.
    public private(set) var accessible: Set<String>
    public let validator: DiscoveryValidator

    /// What was wrong with received requests, as `METHOD uri: violation`.
    public private(set) var violations: [String] = []
    /// Calls received per discovery method id (`storage.buckets.insert`), faults included.
    public private(set) var calls: [String: Int] = [:]
    /// Headers of every request, in order (to check what the client sends).
    public private(set) var requestHeaders: [[(String, String)]] = []

    /// The most items a list page holds, whatever `maxResults` asks for (Storage's own cap is 1000).
    public private(set) var maxPageSize = 1000

    /// Requests refused for their `Authorization` (see `require(bearer:)`).
    public private(set) var refused = 0

    private var requiredBearer: String?
    private var faults: [String: [Fault]] = [:]
    /// Buckets by name, with the project that owns them.
    private var buckets: [String: (project: String, resource: Value)] = [:]
    private var objects: [String: [StoredObject]] = [:]
    /// IAM policies by bucket: role → members; a bucket without an entry has the default one.
    private var policies: [String: (bindings: [String: Set<String>], version: Int)] = [:]
    private var iam: GCPIAMFake?
    private var nextGeneration = 1_700_000_000_000_000

    static let apiRoot = "https://www.googleapis.com/storage/v1/"

    public init(project: String = "stratum-test") throws {
        self.project = project
        self.accessible = [project]
        self.validator = try DiscoveryValidator.storageV1()
    }

    /// Lets the caller act in `project` too.
    public func allow(project: String) { accessible.insert(project) }

    /// Checks the service accounts a policy names against `iam`'s accounts.
    public func link(iam: GCPIAMFake) { self.iam = iam }

    /// The members of `role` on `bucket`.
    public func members(of role: String, on bucket: String) -> Set<String> { bindings(of: bucket)[role] ?? [] }

    /// Takes `member` out of every binding on `bucket`, as someone acting outside Stratum would.
    public func removeOutOfBand(member: String, from bucket: String) {
        var bindings = bindings(of: bucket)
        for role in bindings.keys { bindings[role]?.remove(member) }
        policies[bucket] = (bindings.filter { !$0.value.isEmpty }, (policies[bucket]?.version ?? 1) + 1)
    }

    public func set(maxPageSize: Int) { self.maxPageSize = max(1, maxPageSize) }

    /// From now on, serves only requests with `Authorization: Bearer <token>` (nil: any).
    public func require(bearer token: String?) { requiredBearer = token }

    /// Queues `fault` for the next `times` calls of `methodID` (e.g. `storage.buckets.insert`).
    public func inject(_ fault: Fault, into methodID: String, times: Int = 1) {
        faults[methodID, default: []] += Array(repeating: fault, count: times)
    }

    /// Serves the fake on 127.0.0.1; point a client's Storage endpoint at `url` + `/storage/v1`.
    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    /// A bucket as the API would return it.
    public func bucket(_ name: String) -> Value? { buckets[name]?.resource }

    /// Names of the buckets `project` owns, sorted.
    public func bucketNames(in project: String? = nil) -> [String] {
        buckets.filter { $0.value.project == (project ?? self.project) }.keys.sorted()
    }

    /// Makes a bucket owned by another project, as someone else holding the name would.
    public func takeName(_ name: String, by owner: String = "someone-else") {
        buckets[name] = (owner, stamp(["name": .string(name)], project: owner))
    }

    /// Stores an object in a bucket (its uploads are not part of what the fake serves); in a
    /// versioned bucket the object's live version becomes noncurrent.
    public func putObject(_ name: String, in bucket: String, data: Data = Data()) {
        nextGeneration += 1
        let versioned = buckets[bucket]?.resource.mapValue?["versioning"]?.mapValue?["enabled"] == .bool(true)
        var stored = objects[bucket, default: []]
        if versioned {
            stored = stored.map { var object = $0; if object.name == name { object.live = false }; return object }
        } else {
            stored.removeAll { $0.name == name }
        }
        stored.append(StoredObject(name: name, generation: nextGeneration, live: true, data: data))
        objects[bucket] = stored
    }

    /// The bytes of an object's live version.
    public func objectData(_ name: String, in bucket: String) -> Data? {
        objects[bucket]?.last { $0.name == name && $0.live }?.data
    }

    /// Every object generation in a bucket.
    public func storedObjects(in bucket: String) -> [StoredObject] { objects[bucket] ?? [] }

    /// Removes a bucket at once, as someone acting outside Stratum would.
    public func deleteOutOfBand(_ name: String) {
        buckets[name] = nil
        objects[name] = nil
        policies[name] = nil
    }

    // MARK: Requests

    public func handle(_ request: ProxyRequest) async -> ProxyResponse {
        requestHeaders.append(request.headers)
        if let requiredBearer, request.header("Authorization") != "Bearer \(requiredBearer)" {
            refused += 1
            return GCPComputeFake.error(401, reason: "authError", message: "Invalid Credentials")
        }
        let outcome = validator.validate(method: request.method, uri: request.uri, body: request.body)
        for violation in outcome.violations { violations.append("\(request.method) \(request.uri): \(violation)") }
        guard let match = outcome.match else {
            return GCPComputeFake.error(404, reason: "notFound", message: "Not Found")
        }
        calls[match.methodID, default: 0] += 1
        let fault = faults[match.methodID]?.first
        if fault != nil { faults[match.methodID]?.removeFirst() }
        switch fault {
        case .throttled:
            return GCPComputeFake.error(
                429, reason: "rateLimitExceeded", message: "The project exceeded the rate limit for CreateBucket and DeleteBucket operations.",
                domain: "usageLimits")
        case .serverError:
            return GCPComputeFake.error(503, reason: "backendError", message: "Backend Error")
        default:
            break
        }
        let body = (try? JSONDecoder().decode(Value.self, from: request.body))?.mapValue ?? [:]
        let bucket = match.pathParameters["bucket"] ?? ""
        let response: ProxyResponse
        switch match.methodID {
        case "storage.buckets.insert": response = insert(body, project: match.query["project"]?.first ?? "")
        case "storage.buckets.get": response = access(bucket) ?? GCPComputeFake.json(200, buckets[bucket]?.resource ?? .null)
        case "storage.buckets.list": response = list(match.query)
        case "storage.buckets.patch": response = access(bucket) ?? patch(bucket, body)
        case "storage.buckets.delete": response = access(bucket) ?? delete(bucket)
        case "storage.buckets.getIamPolicy": response = access(bucket) ?? GCPComputeFake.json(200, policy(of: bucket))
        case "storage.buckets.setIamPolicy":
            if let refused = access(bucket) {
                response = refused
            } else {
                response = await setPolicy(of: bucket, body)
            }
        case "storage.objects.insert": response = access(bucket) ?? insertObject(request.body, in: bucket, query: match.query, contentType: request.header("Content-Type"))
        case "storage.objects.get":
            response = access(bucket) ?? getObject(match.pathParameters["object"] ?? "", in: bucket, media: match.query["alt"]?.first == "media")
        case "storage.objects.list": response = access(bucket) ?? listObjects(bucket, query: match.query)
        case "storage.objects.delete":
            let generation = match.query["generation"]?.first.flatMap { Int($0) }
            response = access(bucket) ?? deleteObject(match.pathParameters["object"] ?? "", generation: generation, in: bucket)
        default:
            response = GCPComputeFake.error(501, reason: "notImplemented", message: "\(match.methodID) is not implemented by the Storage fake")
        }
        if fault == .lostResponse, (200..<300).contains(response.status) {
            return GCPComputeFake.error(503, reason: "backendError", message: "The service is currently unavailable.")
        }
        return response
    }

    /// 404 for a bucket that does not exist, 403 for one of another project; nil when the caller may use it.
    private func access(_ name: String) -> ProxyResponse? {
        guard let owner = buckets[name]?.project else { return GCPComputeFake.error(404, reason: "notFound", message: "The specified bucket does not exist.") }
        guard accessible.contains(owner) else {
            return GCPComputeFake.error(
                403, reason: "forbidden",
                message: "stratum-test@\(project).iam.gserviceaccount.com does not have storage.buckets.get access to the Google Cloud Storage bucket. "
                    + "Permission 'storage.buckets.get' denied on resource (or it may not exist).")
        }
        return nil
    }

    private func insert(_ body: [String: Value], project: String) -> ProxyResponse {
        guard let name = body["name"]?.stringValue, name.range(of: "^[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]$", options: .regularExpression) != nil else {
            return GCPComputeFake.error(400, reason: "invalid", message: "Invalid bucket name: '\(body["name"]?.stringValue ?? "")'")
        }
        if let labels = body["labels"]?.mapValue, let bad = invalidLabel(labels) { return bad }
        if let existing = buckets[name] {
            let message = accessible.contains(existing.project)
                ? "Your previous request to create the named bucket succeeded and you already own it."
                : "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            return GCPComputeFake.error(409, reason: "conflict", message: message)
        }
        guard accessible.contains(project) else {
            return GCPComputeFake.error(403, reason: "forbidden", message: "The caller does not have storage.buckets.create access to project \(project).")
        }
        let resource = stamp(body, project: project)
        buckets[name] = (project, resource)
        return GCPComputeFake.json(200, resource)
    }

    /// Adds what the server sets; fills defaults (location US, STANDARD, uniform access off).
    private func stamp(_ body: [String: Value], project: String) -> Value {
        var resource = body
        let name = body["name"]?.stringValue ?? ""
        let location = (body["location"]?.stringValue ?? "US").uppercased()
        resource["kind"] = "storage#bucket"
        resource["id"] = .string(name)
        resource["selfLink"] = .string(Self.apiRoot + "b/" + name)
        resource["projectNumber"] = .string(String(100_000_000_000 + project.utf8.reduce(0) { ($0 * 31 + Int($1)) % 899_999_999_999 }))
        resource["metageneration"] = "1"
        resource["location"] = .string(location)
        resource["locationType"] = .string(location.contains("-") ? "region" : "multi-region")
        resource["storageClass"] = .string(body["storageClass"]?.stringValue ?? "STANDARD")
        resource["timeCreated"] = "2026-01-01T00:00:00.000Z"
        resource["updated"] = "2026-01-01T00:00:00.000Z"
        resource["etag"] = "CAE="
        let uniform = body["iamConfiguration"]?.mapValue?["uniformBucketLevelAccess"]?.mapValue?["enabled"]?.boolValue ?? false
        resource["iamConfiguration"] = [
            "uniformBucketLevelAccess": ["enabled": .bool(uniform)], "bucketPolicyOnly": ["enabled": .bool(uniform)],
            "publicAccessPrevention": "inherited",
        ]
        return .map(resource)
    }

    private func patch(_ name: String, _ body: [String: Value]) -> ProxyResponse {
        guard var resource = buckets[name]?.resource.mapValue else { return GCPComputeFake.error(404, reason: "notFound", message: "The specified bucket does not exist.") }
        for (key, value) in body {
            switch key {
            case "labels":
                // Labels merge: a key set to null is removed.
                var labels = resource["labels"]?.mapValue ?? [:]
                for (label, entry) in value.mapValue ?? [:] {
                    if entry == .null { labels.removeValue(forKey: label) } else { labels[label] = entry }
                }
                if let bad = invalidLabel(labels) { return bad }
                if labels.isEmpty { resource.removeValue(forKey: "labels") } else { resource["labels"] = .map(labels) }
            case "iamConfiguration":
                let uniform = value.mapValue?["uniformBucketLevelAccess"]?.mapValue?["enabled"]?.boolValue ?? false
                var iam = resource["iamConfiguration"]?.mapValue ?? [:]
                iam["uniformBucketLevelAccess"] = ["enabled": .bool(uniform)]
                iam["bucketPolicyOnly"] = ["enabled": .bool(uniform)]
                resource["iamConfiguration"] = .map(iam)
            case "name", "location":
                if value != resource[key] { return GCPComputeFake.error(400, reason: "invalid", message: "The \(key) of a bucket cannot be changed.") }
            default:
                if value == .null { resource.removeValue(forKey: key) } else { resource[key] = value }
            }
        }
        resource["metageneration"] = .string(String((Int(resource["metageneration"]?.stringValue ?? "1") ?? 1) + 1))
        buckets[name]?.resource = .map(resource)
        return GCPComputeFake.json(200, .map(resource))
    }

    private func delete(_ name: String) -> ProxyResponse {
        if !(objects[name] ?? []).isEmpty {
            return GCPComputeFake.error(409, reason: "conflict", message: "The bucket you tried to delete is not empty.")
        }
        buckets[name] = nil
        policies[name] = nil
        return ProxyResponse(status: 204)
    }

    private func list(_ query: [String: [String]]) -> ProxyResponse {
        let owner = query["project"]?.first ?? ""
        let prefix = query["prefix"]?.first ?? ""
        let names = buckets.filter { $0.value.project == owner && $0.key.hasPrefix(prefix) }.keys.sorted()
        return page(names.compactMap { buckets[$0]?.resource }, kind: "storage#buckets", query: query)
    }

    private func listObjects(_ bucket: String, query: [String: [String]]) -> ProxyResponse {
        let versions = query["versions"]?.first == "true"
        let prefix = query["prefix"]?.first ?? ""
        let stored = (objects[bucket] ?? []).filter { (versions || $0.live) && $0.name.hasPrefix(prefix) }.sorted { ($0.name, $0.generation) < ($1.name, $1.generation) }
        return page(stored.map { metadata(of: $0, in: bucket) }, kind: "storage#objects", query: query)
    }

    /// An object as the API describes it.
    private func metadata(of object: StoredObject, in bucket: String) -> Value {
        let described: [String: Value] = [
            "kind": "storage#object", "bucket": .string(bucket), "name": .string(object.name), "generation": .string(String(object.generation)),
            "id": .string("\(bucket)/\(object.name)/\(object.generation)"), "size": .string(String(object.data.count)),
            "md5Hash": .string(Data(Insecure.MD5.hash(data: object.data)).base64EncodedString()), "metageneration": "1",
            "contentType": "application/octet-stream",
        ]
        return .map(described.merging(object.resource) { $1 })
    }

    /// An upload: simple media (the body is the bytes, `name` in the query) or multipart (the
    /// object resource, then the bytes); `ifGenerationMatch=0` only if there is no live version.
    private func insertObject(_ body: Data, in bucket: String, query: [String: [String]], contentType: String?) -> ProxyResponse {
        var (name, data, resource) = (query["name"]?.first, body, [String: Value]())
        switch query["uploadType"]?.first {
        case "media": break
        case "multipart":
            guard contentType?.hasPrefix("multipart/related") == true, let parts = DiscoveryValidator.multipartParts(body), parts.count == 2,
                let metadata = (try? JSONDecoder().decode(Value.self, from: parts[0].body))?.mapValue
            else {
                return GCPComputeFake.error(400, reason: "invalid", message: "Invalid multipart request: expected the object resource, then its data.")
            }
            resource = metadata
            name = name ?? metadata["name"]?.stringValue
            data = parts[1].body
        default:
            return GCPComputeFake.error(400, reason: "invalid", message: "The fake takes media and multipart uploads only.")
        }
        guard let name, !name.isEmpty else {
            return GCPComputeFake.error(400, reason: "required", message: "Required parameter: name")
        }
        let live = objects[bucket]?.last { $0.name == name && $0.live }
        if let wanted = query["ifGenerationMatch"]?.first.flatMap({ Int($0) }), wanted != (live?.generation ?? 0) {
            return GCPComputeFake.error(412, reason: "conditionNotMet", message: "At least one of the pre-conditions you specified did not hold.")
        }
        putObject(name, in: bucket, data: data)
        guard var stored = objects[bucket]?.popLast() else { return GCPComputeFake.error(500, reason: "backendError", message: "Backend Error") }
        stored.resource = resource.filter { ["contentType", "metadata", "cacheControl", "contentEncoding"].contains($0.key) }
        objects[bucket]?.append(stored)
        return GCPComputeFake.json(200, metadata(of: stored, in: bucket))
    }

    private func getObject(_ name: String, in bucket: String, media: Bool) -> ProxyResponse {
        guard let object = objects[bucket]?.last(where: { $0.name == name && $0.live }) else {
            return GCPComputeFake.error(404, reason: "notFound", message: "No such object: \(bucket)/\(name)")
        }
        if media { return ProxyResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: object.data) }
        return GCPComputeFake.json(200, metadata(of: object, in: bucket))
    }

    // MARK: IAM

    /// A bucket's bindings: those set, else the default a new bucket has (its project's owners
    /// and editors own it, its viewers read it).
    private func bindings(of bucket: String) -> [String: Set<String>] {
        if let set = policies[bucket] { return set.bindings }
        let project = buckets[bucket]?.project ?? self.project
        let number = buckets[bucket]?.resource.mapValue?["projectNumber"]?.stringValue ?? project
        return [
            "roles/storage.legacyBucketOwner": ["projectEditor:\(number)", "projectOwner:\(number)"],
            "roles/storage.legacyBucketReader": ["projectViewer:\(number)"],
        ]
    }

    private func etag(of bucket: String) -> String { Data("policy-\(policies[bucket]?.version ?? 1)".utf8).base64EncodedString() }

    private func policy(of bucket: String) -> Value {
        let bindings = bindings(of: bucket)
        let listed: [Value] = bindings.keys.sorted().map { role in
            ["role": .string(role), "members": .list((bindings[role] ?? []).sorted().map(Value.string))]
        }
        return [
            "kind": "storage#policy", "resourceId": .string("projects/_/buckets/\(bucket)"), "version": 1, "etag": .string(etag(of: bucket)),
            "bindings": .list(listed),
        ]
    }

    private func setPolicy(of bucket: String, _ body: [String: Value]) async -> ProxyResponse {
        if let etag = body["etag"]?.stringValue, etag != self.etag(of: bucket) {
            return GCPComputeFake.error(412, reason: "conditionNotMet", message: "At least one of the pre-conditions you specified did not hold.")
        }
        var bindings: [String: Set<String>] = [:]
        for binding in body["bindings"]?.listValue ?? [] {
            guard let role = binding.mapValue?["role"]?.stringValue, role.hasPrefix("roles/") else {
                return GCPComputeFake.error(400, reason: "invalid", message: "Invalid argument: a binding names no role.")
            }
            if binding.mapValue?["condition"] != nil {
                return GCPComputeFake.error(501, reason: "notImplemented", message: "The Storage fake keeps no conditional bindings.")
            }
            for member in binding.mapValue?["members"]?.listValue?.compactMap(\.stringValue) ?? [] {
                if member.hasPrefix("serviceAccount:"), let iam, await !iam.exists(String(member.dropFirst("serviceAccount:".count))) {
                    return GCPComputeFake.error(400, reason: "invalid", message: "Service account \(member.dropFirst("serviceAccount:".count)) does not exist.")
                }
                bindings[role, default: []].insert(member)
            }
        }
        // The etag read may be stale by now: another request may have written while this one waited on IAM.
        if let etag = body["etag"]?.stringValue, etag != self.etag(of: bucket) {
            return GCPComputeFake.error(412, reason: "conditionNotMet", message: "At least one of the pre-conditions you specified did not hold.")
        }
        policies[bucket] = (bindings, (policies[bucket]?.version ?? 1) + 1)
        return GCPComputeFake.json(200, policy(of: bucket))
    }

    /// One page of a list: `maxResults` (at most `maxPageSize`) from `pageToken` on.
    private func page(_ items: [Value], kind: String, query: [String: [String]]) -> ProxyResponse {
        let size = min(maxPageSize, max(1, Int(query["maxResults"]?.first ?? "") ?? maxPageSize))
        let start = query["pageToken"]?.first.map { Int($0.dropFirst("page-".count)) ?? -1 } ?? 0
        guard start >= 0, start <= items.count else { return GCPComputeFake.error(400, reason: "invalid", message: "Invalid page token.") }
        let end = min(items.count, start + size)
        var answer: [String: Value] = ["kind": .string(kind), "items": .list(Array(items[start..<end]))]
        if end < items.count { answer["nextPageToken"] = .string("page-\(end)") }
        return GCPComputeFake.json(200, .map(answer))
    }

    private func deleteObject(_ name: String, generation: Int?, in bucket: String) -> ProxyResponse {
        var stored = objects[bucket] ?? []
        let versioned = buckets[bucket]?.resource.mapValue?["versioning"]?.mapValue?["enabled"] == .bool(true)
        if let generation {
            guard stored.contains(where: { $0.name == name && $0.generation == generation }) else {
                return GCPComputeFake.error(404, reason: "notFound", message: "No such object: \(bucket)/\(name)")
            }
            stored.removeAll { $0.name == name && $0.generation == generation }
        } else {
            guard stored.contains(where: { $0.name == name && $0.live }) else {
                return GCPComputeFake.error(404, reason: "notFound", message: "No such object: \(bucket)/\(name)")
            }
            // Versioned: the live version becomes noncurrent; otherwise it is gone.
            stored = versioned ? stored.map { var object = $0; if object.name == name { object.live = false }; return object } : stored.filter { $0.name != name }
        }
        objects[bucket] = stored
        return ProxyResponse(status: 204)
    }

    /// 400 for labels Cloud Storage refuses: keys 1-63 of [a-z0-9_-] starting with a letter, values 0-63 of the same.
    private func invalidLabel(_ labels: [String: Value]) -> ProxyResponse? {
        for (key, value) in labels {
            let text = value.stringValue ?? ""
            if key.range(of: "^[a-z][a-z0-9_-]{0,62}$", options: .regularExpression) == nil || text.range(of: "^[a-z0-9_-]{0,63}$", options: .regularExpression) == nil {
                return GCPComputeFake.error(400, reason: "invalid", message: "Invalid argument: label '\(key)': '\(text)'.")
            }
        }
        if labels.count > 64 { return GCPComputeFake.error(400, reason: "invalid", message: "At most 64 labels are allowed.") }
        return nil
    }
}
