import Foundation
import StratumCore

/// A loopback fake of the Compute Engine v1 REST API for networks (custom subnet mode),
/// subnetworks, firewalls, resource policies and instances (insert, bulkInsert, setLabels;
/// machines with GPUs must stop for host maintenance; machine types a zone does not offer), with zonal, regional and global operations that finish
/// asynchronously, `requestId` idempotency, and stockouts, quota errors and throttling on
/// demand. Every request is checked against Google's discovery document first; what is wrong
/// with it is recorded in `violations` (tests assert there are none) and the request is then
/// served as far as the fake can. Errors use Google's body shape:
/// `{"error": {"code", "message", "errors": [{"reason", "domain", "message"}]}}`.
public actor GCPComputeFake {
    /// When an operation reports DONE.
    public enum OperationPace: Sendable {
        /// On the n-th look at it (GET or wait); 0 answers the mutating call itself with DONE.
        case afterPolls(Int)
        /// Only once a test calls `finishOperations()`.
        case onDemand
    }

    /// A fault injected into the next call of a method.
    public enum Fault: Sendable, Hashable {
        /// HTTP 429, reason `rateLimitExceeded`.
        case throttled
        /// HTTP 503, reason `backendError`.
        case serverError
        /// The call takes effect but its answer is lost: HTTP 503 instead of the operation.
        case lostResponse
        /// An insert's (or bulkInsert's) operation fails with `QUOTA_EXCEEDED` naming `metric`
        /// (e.g. `NVIDIA_H100_GPUS`, `GPUS_ALL_REGIONS`) and the region, if the quota is regional.
        case quotaExceeded(metric: String, region: String?)
    }

    public let project: String
    public let validator: DiscoveryValidator
    /// How new operations progress.
    public private(set) var pace: OperationPace
    /// Share of calls answered with 429, 0…1, drawn from a seeded generator.
    public private(set) var throttleShare: Double = 0
    /// Zones where instance creation fails with a stockout in the operation.
    public private(set) var zonesWithoutCapacity: Set<String> = []
    /// The stockout's error code: `ZONE_RESOURCE_POOL_EXHAUSTED`, `…_WITH_DETAILS` or `RESOURCE_POOL_EXHAUSTED`.
    public private(set) var stockoutCode = "ZONE_RESOURCE_POOL_EXHAUSTED"

    /// What was wrong with received requests, as `METHOD path: violation`.
    public private(set) var violations: [String] = []
    /// Mutating calls sent without a `requestId`, as `METHOD path`.
    public private(set) var mutatingCallsWithoutRequestID: [String] = []
    /// Calls received per discovery method id (`compute.instances.insert`), faults included.
    public private(set) var calls: [String: Int] = [:]
    /// Faults injected per kind (`throttled`, `stockout`, `quota`, `lostResponse`, `serverError`,
    /// `replayedRequestID`).
    public private(set) var injected: [String: Int] = [:]

    private var random: UInt64
    private var faults: [String: [Fault]] = [:]
    /// Resources by path below the API root: `projects/p/zones/z/instances/name`.
    private var resources: [String: Value] = [:]
    private var operations: [String: PendingOperation] = [:]
    private var operationsByRequestID: [String: String] = [:]
    private var nextID: UInt64 = 1_000_000

    static let apiRoot = "https://www.googleapis.com/compute/v1/"
    /// The discovery resources the fake answers for.
    static let served: Set<String> = [
        "networks", "subnetworks", "firewalls", "resourcePolicies", "instances", "zoneOperations", "regionOperations", "globalOperations",
    ]

    public init(project: String = "stratum-test", pace: OperationPace = .afterPolls(2), seed: UInt64 = 0x5eed) throws {
        self.project = project
        self.pace = pace
        self.random = seed
        self.validator = try DiscoveryValidator.computeV1()
    }

    /// The bodies of the bulkInsert requests served, in order.
    public private(set) var bulkInsertBodies: [Value] = []
    /// Machine types (by name) each zone does not offer: an instance insert or bulkInsert of one
    /// there is refused as Compute refuses it.
    public private(set) var unofferedMachineTypes: [String: Set<String>] = [:]

    /// The most items a list page holds, whatever `maxResults` asks for (Compute may answer fewer
    /// than asked and go on with `nextPageToken`).
    public private(set) var maxPageSize = 500

    public func set(pace: OperationPace) { self.pace = pace }
    public func set(maxPageSize: Int) { self.maxPageSize = max(1, maxPageSize) }
    public func set(unofferedMachineTypes: [String: Set<String>]) { self.unofferedMachineTypes = unofferedMachineTypes }
    public func set(throttleShare: Double) { self.throttleShare = throttleShare }
    public func set(zonesWithoutCapacity: Set<String>, code: String = "ZONE_RESOURCE_POOL_EXHAUSTED") {
        self.zonesWithoutCapacity = zonesWithoutCapacity
        self.stockoutCode = code
    }

    /// Queues `fault` for the next `times` calls of `methodID` (e.g. `compute.instances.insert`).
    public func inject(_ fault: Fault, into methodID: String, times: Int = 1) {
        faults[methodID, default: []] += Array(repeating: fault, count: times)
    }

    /// Serves the fake on 127.0.0.1; point a client's Compute endpoint at `url` + `/compute/v1/`.
    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    /// Finishes every running operation now (for `.onDemand`); returns how many finished.
    @discardableResult
    public func finishOperations() -> Int {
        let running = operations.filter { $0.value.status != "DONE" }.keys.sorted()
        for key in running { complete(key) }
        return running.count
    }

    /// A resource as the API would return it, by its path below the API root.
    public func resource(_ path: String) -> Value? { resources[path] }

    /// Paths of the stored resources of a kind (`instances`, `networks`, …), sorted.
    public func paths(of kind: String) -> [String] {
        resources.keys.filter { Self.kind(ofPath: $0) == kind }.sorted()
    }

    /// Removes a resource at once, as someone acting outside Stratum would.
    public func deleteOutOfBand(_ path: String) { resources[path] = nil }

    /// The operations made so far, by path, with their status.
    public func operationStatuses() -> [String: String] { operations.mapValues(\.status) }

    // MARK: Requests

    public func handle(_ request: ProxyRequest) -> ProxyResponse {
        let outcome = validator.validate(method: request.method, uri: request.uri, body: request.body)
        for violation in outcome.violations { violations.append("\(request.method) \(request.uri): \(violation)") }
        guard let match = outcome.match else {
            return Self.error(404, reason: "notFound", message: "The requested URL \(request.uri) was not found on this server.")
        }
        calls[match.methodID, default: 0] += 1
        let mutating = request.method != "GET" && !match.methodID.hasSuffix("Operations.wait")
        let requestID = match.query["requestId"]?.first
        if mutating {
            if requestID == nil { mutatingCallsWithoutRequestID.append("\(request.method) \(request.uri)") }
            if let requestID, UUID(uuidString: requestID) == nil || requestID == "00000000-0000-0000-0000-000000000000" {
                violations.append("\(request.method) \(request.uri): requestId '\(requestID)' is not a non-zero UUID")
                return Self.error(400, reason: "invalid", message: "Invalid value for field 'requestId': '\(requestID)'. The request ID must be a valid UUID.")
            }
        }
        var fault = faults[match.methodID]?.first
        if fault != nil { faults[match.methodID]?.removeFirst() }
        if fault == nil, throttleShare > 0, nextUniform() < throttleShare { fault = .throttled }
        switch fault {
        case .throttled:
            count("throttled")
            return Self.error(429, reason: "rateLimitExceeded", message: "Rate Limit Exceeded", domain: "usageLimits")
        case .serverError:
            count("serverError")
            return Self.error(503, reason: "backendError", message: "Internal error. Please try again or contact Google Support.")
        default:
            break
        }
        if mutating, let requestID, let earlier = operationsByRequestID[requestID], let operation = operations[earlier] {
            count("replayedRequestID")
            return Self.json(200, operation.json)
        }
        let path = Self.split(uri: request.uri).path.dropFirst(validator.basePath.count)
        var response = route(match: match, path: String(path), request: request, quota: fault)
        if mutating, response.status == 200, let requestID, let operation = response.operationKey {
            operationsByRequestID[requestID] = operation
        }
        if fault == .lostResponse, response.status == 200 {
            count("lostResponse")
            response.http = Self.error(503, reason: "backendError", message: "The service is currently unavailable.")
        }
        return response.http
    }

    private struct Routed {
        var http: ProxyResponse
        var operationKey: String?
        var status: Int { http.status }
    }

    private func route(match: DiscoveryValidator.Match, path: String, request: ProxyRequest, quota: Fault?) -> Routed {
        let verb = match.methodID.split(separator: ".").last.map(String.init) ?? ""
        let body = (try? JSONDecoder().decode(Value.self, from: request.body))?.mapValue ?? [:]
        let collection = match.methodID.split(separator: ".").dropFirst().first.map(String.init) ?? ""
        guard Self.served.contains(collection) else {
            return Routed(http: Self.error(501, reason: "notImplemented", message: "\(match.methodID) is not implemented by the Compute fake"))
        }
        switch (match.methodID, verb) {
        case ("compute.zoneOperations.get", _), ("compute.regionOperations.get", _), ("compute.globalOperations.get", _),
            ("compute.zoneOperations.wait", _), ("compute.regionOperations.wait", _), ("compute.globalOperations.wait", _):
            let key = verb == "wait" ? String(path.dropLast("/wait".count)) : path
            return Routed(http: look(at: key))
        case ("compute.instances.setLabels", _):
            return setLabels(String(path.dropLast("/setLabels".count)), body: body)
        case ("compute.instances.bulkInsert", _):
            return bulkInsert(collection: String(path.dropLast("/bulkInsert".count)), body: body, zone: match.pathParameters["zone"] ?? "", quota: quota)
        case (_, "insert"):
            return insert(collection: path, body: body, quota: quota)
        case (_, "get"):
            guard let resource = resources[path] else { return Routed(http: Self.notFound(path)) }
            return Routed(http: Self.json(200, resource))
        case (_, "delete"):
            return delete(path)
        case (_, "list"):
            return Routed(http: list(match: match, collection: path, aggregated: false))
        case (_, "aggregatedList"):
            return Routed(http: list(match: match, collection: path, aggregated: true))
        default:
            return Routed(http: Self.error(501, reason: "notImplemented", message: "\(match.methodID) is not implemented by the Compute fake"))
        }
    }

    // MARK: Mutations

    private func insert(collection: String, body: [String: Value], quota: Fault?) -> Routed {
        guard let name = body["name"]?.stringValue else {
            return Routed(http: Self.error(400, reason: "required", message: "Invalid value for field 'resource.name': ''. Must be a match of regex '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'"))
        }
        let key = "\(collection)/\(name)"
        if resources[key] != nil || operations.values.contains(where: { $0.status != "DONE" && $0.creates.keys.contains(key) }) {
            return Routed(http: Self.error(409, reason: "alreadyExists", message: "The resource '\(key)' already exists"))
        }
        let kind = Self.kind(ofPath: key)
        if kind == "instances", let refusal = Self.acceleratorRefusal(body) ?? unoffered(body, zone: Self.scopeName(of: key)) { return Routed(http: refusal) }
        let resource = stamp(body, path: key, kind: kind)
        if kind != "instances", let missing = missingParent(of: resource) {
            return Routed(http: Self.error(404, reason: "notFound", message: "The resource '\(missing)' was not found"))
        }
        let failure = capacityFailure(zone: kind == "instances" ? Self.scopeName(of: key) : nil, quota: quota)
        return startOperation(type: "insert", target: key, creates: [key: resource], deletes: [], failure: failure)
    }

    private func bulkInsert(collection: String, body: [String: Value], zone: String, quota: Fault?) -> Routed {
        bulkInsertBodies.append(.map(body))
        let count = body["count"]?.intValue ?? Int(body["count"]?.stringValue ?? "") ?? 0
        var names = (body["perInstanceProperties"]?.mapValue ?? [:]).keys.sorted()
        if let pattern = body["namePattern"]?.stringValue, let hashes = pattern.range(of: "#+", options: .regularExpression) {
            var n = 1
            while names.count < count {
                let digits = String(n)
                let width = pattern.distance(from: hashes.lowerBound, to: hashes.upperBound)
                let candidate = pattern.replacingCharacters(in: hashes, with: String(repeating: "0", count: max(0, width - digits.count)) + digits)
                if !names.contains(candidate) && resources["\(collection)/\(candidate)"] == nil { names.append(candidate) }
                n += 1
            }
        }
        guard count > 0, names.count == count else {
            return Routed(http: Self.error(400, reason: "invalid", message: "Invalid value for field 'resource.count': '\(count)'. The names given do not cover the count."))
        }
        let properties = body["instanceProperties"]?.mapValue ?? [:]
        if let refusal = Self.acceleratorRefusal(properties) ?? unoffered(properties, zone: zone) { return Routed(http: refusal) }
        if let minCount = body["minCount"].flatMap({ $0.intValue ?? Int($0.stringValue ?? "") }), minCount > count {
            return Routed(http: Self.error(400, reason: "invalid", message: "Invalid value for field 'resource.minCount': '\(minCount)'. Must be at most count."))
        }
        var creates: [String: Value] = [:]
        for name in names {
            let key = "\(collection)/\(name)"
            if resources[key] != nil { return Routed(http: Self.error(409, reason: "alreadyExists", message: "The resource '\(key)' already exists")) }
            var instance = properties
            instance["name"] = .string(name)
            if let machineType = properties["machineType"]?.stringValue, !machineType.contains("/") {
                instance["machineType"] = .string("zones/\(zone)/machineTypes/\(machineType)")
            }
            creates[key] = stamp(instance, path: key, kind: "instances")
        }
        // All or nothing: a stockout or a quota error creates none of the gang.
        let failure = capacityFailure(zone: zone, quota: quota)
        return startOperation(type: "bulkInsert", target: collection, creates: creates, deletes: [], failure: failure)
    }

    private func delete(_ key: String) -> Routed {
        guard resources[key] != nil else { return Routed(http: Self.notFound(key)) }
        var failure: [Value]?
        if let user = users(of: key).first {
            failure = [Self.operationError("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "The \(Self.singular(Self.kind(ofPath: key))) resource '\(key)' is already being used by '\(user)'")]
        }
        if failure == nil, Self.kind(ofPath: key) == "instances" { resources[key]?.set("status", "STOPPING") }
        return startOperation(type: "delete", target: key, creates: [:], deletes: [key], failure: failure)
    }

    /// The operation error an insert meets: an injected quota error, or a stockout in `zone`.
    private func capacityFailure(zone: String?, quota: Fault?) -> [Value]? {
        if case .quotaExceeded(let metric, let region) = quota {
            count("quota")
            let scope = region.map { "in region \($0)" } ?? "globally"
            var details: [String: Value] = ["metricName": .string("compute.googleapis.com/\(metric.lowercased())"), "limitName": .string("\(metric)-per-project"), "limit": .double(0)]
            if let region { details["dimensions"] = ["region": .string(region)] }
            return [Self.operationError("QUOTA_EXCEEDED", "Quota '\(metric)' exceeded.  Limit: 0.0 \(scope).", details: ["quotaInfo": .map(details)])]
        }
        if let zone, zonesWithoutCapacity.contains(zone) {
            count("stockout")
            return [Self.operationError(stockoutCode, "The zone 'projects/\(project)/zones/\(zone)' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.")]
        }
        return nil
    }

    /// Sets an instance's labels when the request carries its current `labelFingerprint`.
    private func setLabels(_ key: String, body: [String: Value]) -> Routed {
        guard var instance = resources[key] else { return Routed(http: Self.notFound(key)) }
        let current = instance.mapValue?["labelFingerprint"]?.stringValue
        guard body["labelFingerprint"]?.stringValue == current else {
            return Routed(http: Self.error(412, reason: "conditionNotMet", message: "Labels fingerprint either invalid or resource labels have changed"))
        }
        let labels = body["labels"] ?? .map([:])
        instance.set("labels", labels)
        instance.set("labelFingerprint", .string(Self.fingerprint(labels)))
        resources[key] = instance
        return startOperation(type: "setLabels", target: key, creates: [:], deletes: [], failure: nil)
    }

    /// What Compute refuses about GPUs: a machine with GPUs (attached, or those of an A2, A3,
    /// G2, … machine type) that would be live-migrated for host maintenance.
    public static func acceleratorRefusal(_ instance: [String: Value]) -> ProxyResponse? {
        let machineType = instance["machineType"]?.stringValue?.split(separator: "/").last.map(String.init) ?? ""
        let family = String(machineType.prefix { $0 != "-" })
        let attached = !(instance["guestAccelerators"]?.listValue ?? []).isEmpty
        let builtIn = ["a2", "a3", "a4", "a4x", "g2", "g4"].contains(family)
        let maintenance = instance["scheduling"]?.mapValue?["onHostMaintenance"]?.stringValue
        if attached || builtIn, maintenance != "TERMINATE" {
            return error(400, reason: "invalid", message: "Instances with guest accelerators do not support live migration.")
        }
        return nil
    }

    /// Compute's refusal of a machine type the zone does not offer.
    private func unoffered(_ instance: [String: Value], zone: String) -> ProxyResponse? {
        let given = instance["machineType"]?.stringValue ?? ""
        let name = given.split(separator: "/").last.map(String.init) ?? ""
        guard unofferedMachineTypes[zone]?.contains(name) == true else { return nil }
        return Self.error(
            400, reason: "invalid",
            message: "Invalid value for field 'resource.machineType': '\(given)'. Machine type with name '\(name)' does not exist in zone '\(zone)'.")
    }

    static func fingerprint(_ labels: Value?) -> String {
        let text = (labels?.mapValue ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.stringValue ?? "")" }.joined(separator: ",")
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return withUnsafeBytes(of: hash) { Data($0) }.base64EncodedString()
    }

    /// Resources whose fields point at `key`: a network's subnetworks, firewalls and instances.
    private func users(of key: String) -> [String] {
        let link = Self.apiRoot + key
        return resources.filter { path, resource in
            path != key && Self.references(resource, link: link, short: key)
        }.keys.sorted()
    }

    private static func references(_ value: Value, link: String, short: String) -> Bool {
        switch value {
        case .string(let text): return text == link || text == short || text.hasSuffix("/" + short)
        case .list(let items): return items.contains { references($0, link: link, short: short) }
        case .map(let fields): return fields.contains { $0.key != "selfLink" && references($0.value, link: link, short: short) }
        default: return false
        }
    }

    /// A subnetwork's or firewall's network that does not exist.
    private func missingParent(of resource: Value) -> String? {
        guard let network = resource.mapValue?["network"]?.stringValue else { return nil }
        let short = network.hasPrefix(Self.apiRoot) ? String(network.dropFirst(Self.apiRoot.count)) : network
        let key = short.hasPrefix("projects/") ? short : "projects/\(project)/\(short)"
        return resources[key] == nil ? key : nil
    }

    /// Adds what the server sets: id, selfLink, kind, timestamps, scope links, status.
    private func stamp(_ body: [String: Value], path: String, kind: String) -> Value {
        var resource = body
        nextID += 1
        resource["id"] = .string(String(nextID))
        resource["kind"] = .string("compute#\(Self.singular(kind))")
        resource["selfLink"] = .string(Self.apiRoot + path)
        resource["creationTimestamp"] = .string("2026-01-01T00:00:00.000-08:00")
        let parts = path.split(separator: "/").map(String.init)
        if parts.count > 3, parts[2] == "zones" { resource["zone"] = .string(Self.apiRoot + parts[0..<4].joined(separator: "/")) }
        if parts.count > 3, parts[2] == "regions" { resource["region"] = .string(Self.apiRoot + parts[0..<4].joined(separator: "/")) }
        for field in ["network", "subnetwork", "machineType"] {
            if let link = resource[field]?.stringValue, !link.hasPrefix("https://") {
                resource[field] = .string(Self.apiRoot + (link.hasPrefix("projects/") ? link : "projects/\(project)/\(link)"))
            }
        }
        if kind == "instances" {
            resource["status"] = "PROVISIONING"
            let interfaces = (resource["networkInterfaces"]?.listValue ?? [[:]]).enumerated().map { index, interface -> Value in
                var fields = interface.mapValue ?? [:]
                fields["networkIP"] = fields["networkIP"] ?? .string("10.0.\(nextID % 250).\(index + 2)")
                fields["name"] = .string("nic\(index)")
                if let configs = fields["accessConfigs"]?.listValue {
                    fields["accessConfigs"] = .list(configs.map { config in
                        var config = config
                        config.set("natIP", .string("34.\(nextID % 200).\(index).\(nextID % 250 + 1)"))
                        return config
                    })
                }
                return .map(fields)
            }
            resource["networkInterfaces"] = .list(interfaces)
            resource["labelFingerprint"] = .string(Self.fingerprint(resource["labels"]))
        }
        if kind == "subnetworks", let range = resource["ipCidrRange"]?.stringValue, let slash = range.firstIndex(of: "/") {
            let base = range[..<slash].split(separator: ".")
            if base.count == 4, let last = Int(base[3]) { resource["gatewayAddress"] = .string("\(base[0]).\(base[1]).\(base[2]).\(last + 1)") }
        }
        return .map(resource)
    }

    // MARK: Operations

    private struct PendingOperation {
        var json: Value
        var status: String
        var pollsLeft: Int?
        var creates: [String: Value]
        var deletes: [String]
        var failure: [Value]?
    }

    private func startOperation(type: String, target: String, creates: [String: Value], deletes: [String], failure: [Value]?) -> Routed {
        let parts = target.split(separator: "/").map(String.init)
        let scope = parts.count > 3 && (parts[2] == "zones" || parts[2] == "regions") ? parts[0..<4].joined(separator: "/") : "projects/\(parts[1])/global"
        nextID += 1
        let name = "operation-\(nextID)-\(UUID().uuidString.lowercased().prefix(8))"
        let key = "\(scope)/operations/\(name)"
        var json: [String: Value] = [
            "kind": "compute#operation", "id": .string(String(nextID)), "name": .string(name), "operationType": .string(type),
            "targetLink": .string(Self.apiRoot + target), "status": "RUNNING", "progress": 0,
            "insertTime": "2026-01-01T00:00:00.000-08:00", "startTime": "2026-01-01T00:00:00.000-08:00",
            "selfLink": .string(Self.apiRoot + key), "user": .string("stratum-test@\(project).iam.gserviceaccount.com"),
        ]
        if parts.count > 3, parts[2] == "zones" { json["zone"] = .string(Self.apiRoot + scope) }
        if parts.count > 3, parts[2] == "regions" { json["region"] = .string(Self.apiRoot + scope) }
        if let id = creates.count == 1 ? creates.values.first?.mapValue?["id"] : resources[target]?.mapValue?["id"] { json["targetId"] = id }
        // Instances are visible while they are made, as on Compute Engine; the rest appear when done.
        for (path, resource) in creates where Self.kind(ofPath: path) == "instances" { resources[path] = resource }
        var polls: Int?
        if case .afterPolls(let n) = pace { polls = n }
        operations[key] = PendingOperation(json: .map(json), status: "RUNNING", pollsLeft: polls, creates: creates, deletes: deletes, failure: failure)
        if polls == 0 { complete(key) }
        return Routed(http: Self.json(200, operations[key]?.json ?? .null), operationKey: key)
    }

    private func look(at key: String) -> ProxyResponse {
        guard var operation = operations[key] else { return Self.notFound(key) }
        if operation.status != "DONE", let left = operation.pollsLeft {
            operation.pollsLeft = left - 1
            operations[key] = operation
            if left <= 1 { complete(key) }
        }
        return Self.json(200, operations[key]?.json ?? .null)
    }

    private func complete(_ key: String) {
        guard var operation = operations[key], operation.status != "DONE" else { return }
        var json = operation.json.mapValue ?? [:]
        if let failure = operation.failure {
            for path in operation.creates.keys { resources[path] = nil }
            for path in operation.deletes { if Self.kind(ofPath: path) == "instances" { resources[path]?.set("status", "RUNNING") } }
            json["error"] = ["errors": .list(failure)]
            let code = failure.first?.mapValue?["code"]?.stringValue ?? ""
            json["httpErrorStatusCode"] = .int(code == "QUOTA_EXCEEDED" ? 403 : code.contains("RESOURCE_POOL_EXHAUSTED") ? 503 : 400)
            json["httpErrorMessage"] = .string(code == "QUOTA_EXCEEDED" ? "FORBIDDEN" : code.contains("RESOURCE_POOL_EXHAUSTED") ? "SERVICE UNAVAILABLE" : "BAD REQUEST")
        } else {
            for (path, resource) in operation.creates {
                var made = resource
                if Self.kind(ofPath: path) == "instances" { made.set("status", "RUNNING") }
                resources[path] = made
            }
            for path in operation.deletes { resources[path] = nil }
        }
        if json["operationType"] == "bulkInsert", let zone = json["zone"]?.stringValue?.split(separator: "/").last {
            let made = operation.failure == nil ? operation.creates.count : 0
            json["instancesBulkInsertOperationMetadata"] = [
                "perLocationStatus": .map(["zones/\(zone)": .map([
                    "status": operation.failure == nil ? "DONE" : "FAILED", "targetVmCount": .int(operation.creates.count),
                    "createdVmCount": .int(made), "failedToCreateVmCount": .int(operation.creates.count - made), "deletedVmCount": 0,
                ])]),
            ]
        }
        json["status"] = "DONE"
        json["progress"] = 100
        json["endTime"] = "2026-01-01T00:00:01.000-08:00"
        operation.json = .map(json)
        operation.status = "DONE"
        operations[key] = operation
    }

    // MARK: Lists

    private func list(match: DiscoveryValidator.Match, collection: String, aggregated: Bool) -> ProxyResponse {
        let kind = Self.kind(ofPath: collection)
        let filter: ComputeFilter
        do {
            filter = try ComputeFilter(match.query["filter"]?.first ?? "")
        } catch {
            return Self.error(400, reason: "invalid", message: "Invalid list filter expression '\(match.query["filter"]?.first ?? "")'.")
        }
        let prefix = aggregated ? "projects/\(match.pathParameters["project"] ?? project)/" : collection + "/"
        let matching = resources.filter { path, resource in
            path.hasPrefix(prefix) && Self.kind(ofPath: path) == kind && filter.matches(resource)
                && (aggregated || path.dropFirst(prefix.count).split(separator: "/").count == 1)
        }.sorted { $0.key < $1.key }
        let pageSize = Int(match.query["maxResults"]?.first ?? "") ?? 500
        guard pageSize <= 500 else {
            return Self.error(400, reason: "invalid", message: "Invalid value for field 'maxResults': '\(pageSize)'. Must be less than or equal to 500")
        }
        let start = match.query["pageToken"]?.first.map { Int($0.dropFirst("page-".count)) ?? -1 } ?? 0
        guard start >= 0, start <= matching.count else {
            return Self.error(400, reason: "invalid", message: "Invalid value for field 'pageToken'.")
        }
        let end = min(matching.count, start + max(min(pageSize, maxPageSize), 1))
        let page = matching[start..<end]
        var answer: [String: Value] = [
            "kind": .string("compute#\(Self.singular(kind))\(aggregated ? "AggregatedList" : "List")"),
            "id": .string(collection), "selfLink": .string(Self.apiRoot + collection),
        ]
        if aggregated {
            var scoped: [String: [Value]] = [:]
            for (path, resource) in page {
                let parts = path.split(separator: "/")
                scoped["\(parts[2])/\(parts[3])", default: []].append(resource)
            }
            answer["items"] = .map(scoped.mapValues { [kind: .list($0)] })
        } else {
            answer["items"] = .list(page.map(\.value))
        }
        if end < matching.count { answer["nextPageToken"] = .string("page-\(end)") }
        return Self.json(200, .map(answer))
    }

    // MARK: Helpers

    private func count(_ kind: String) { injected[kind, default: 0] += 1 }

    private func nextUniform() -> Double {
        random = random &* 6364136223846793005 &+ 1442695040888963407
        return Double(random >> 11) / Double(1 << 53)
    }

    /// `instances` for `projects/p/zones/z/instances/name` and `projects/p/zones/z/instances`.
    static func kind(ofPath path: String) -> String {
        let parts = path.split(separator: "/").map(String.init)
        let known = ["instances", "networks", "subnetworks", "firewalls", "resourcePolicies", "operations"]
        return parts.last(where: { known.contains($0) }) ?? ""
    }

    /// The zone or region of a zonal or regional path.
    static func scopeName(of path: String) -> String {
        let parts = path.split(separator: "/").map(String.init)
        return parts.count > 3 ? parts[3] : ""
    }

    static func singular(_ kind: String) -> String {
        if kind.hasSuffix("ies") { return kind.dropLast(3) + "y" }
        return kind.hasSuffix("s") ? String(kind.dropLast()) : kind
    }

    static func split(uri: String) -> (path: String, query: String) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
    }

    static func operationError(_ code: String, _ message: String, details: [String: Value]? = nil) -> Value {
        var error: [String: Value] = ["code": .string(code), "message": .string(message)]
        if let details { error["errorDetails"] = [.map(details)] }
        return .map(error)
    }

    static func notFound(_ path: String) -> ProxyResponse {
        error(404, reason: "notFound", message: "The resource '\(path)' was not found")
    }

    /// An error in Google's JSON error shape.
    public static func error(_ code: Int, reason: String, message: String, domain: String = "global") -> ProxyResponse {
        let status: String
        switch code {
        case 400: status = "INVALID_ARGUMENT"
        case 401: status = "UNAUTHENTICATED"
        case 403: status = "PERMISSION_DENIED"
        case 404: status = "NOT_FOUND"
        case 409: status = "ALREADY_EXISTS"
        case 429: status = "RESOURCE_EXHAUSTED"
        case 501: status = "UNIMPLEMENTED"
        default: status = "UNAVAILABLE"
        }
        let body: Value = [
            "error": [
                "code": .int(code), "message": .string(message), "status": .string(status),
                "errors": [["message": .string(message), "domain": .string(domain), "reason": .string(reason)]],
            ],
        ]
        return json(code, body)
    }

    static func json(_ status: Int, _ value: Value) -> ProxyResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = (try? encoder.encode(value)) ?? Data()
        return ProxyResponse(status: status, headers: [("Content-Type", "application/json; charset=UTF-8")], body: body)
    }
}

extension Value {
    /// Sets a field of a map value; other values are left as they are.
    mutating func set(_ field: String, _ value: Value) {
        guard case .map(var fields) = self else { return }
        fields[field] = value
        self = .map(fields)
    }
}
