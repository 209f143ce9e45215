import Foundation

/// Fault rules for a `FaultProxy` in front of an AWS emulator (moto), answering in AWS's own
/// error shapes: a share of calls throttled, zones without capacity, rejected access keys,
/// unknown instance types, RunInstances responses lost after the instance was made. It also
/// plays what moto lacks: EC2 placement groups, ClientToken idempotency of RunInstances and
/// DescribeInstances' `client-token` filter.
public actor AWSFaults {
    /// Share of calls answered with throttling (EC2 `RequestLimitExceeded`, S3 `SlowDown`), 0…1.
    public var throttleShare: Double = 0
    /// The services (signing names: `ec2`, `s3`, `iam`, …) whose calls `throttleShare` applies
    /// to; nil: every one.
    public var throttledServices: Set<String>?
    /// Zones whose RunInstances calls fail with `InsufficientInstanceCapacity`.
    public var zonesWithoutCapacity: Set<String> = []
    /// Access key ids answered with `AuthFailure` / `InvalidAccessKeyId`.
    public var rejectedAccessKeys: Set<String> = []
    /// When set, RunInstances with any other type fails with `InvalidParameterValue`.
    public var knownInstanceTypes: Set<String>?
    /// How many of the next RunInstances calls take effect but lose their response.
    public var lostRunInstancesResponses = 0
    /// How many of the next calls of each action are throttled.
    public var throttledActions: [String: Int] = [:]

    /// Calls per action that reached the emulator.
    public private(set) var forwarded: [String: Int] = [:]
    /// Faults injected per kind.
    public private(set) var injected: [String: Int] = [:]

    private var random: UInt64
    private var subnetZones: [String: String] = [:]
    /// What each ClientToken launched: AWS answers a repeated token with the same instance.
    private var launches: [String: (instance: String, response: Data)] = [:]
    private let placementGroups = PlacementGroupEmulator()

    public init(seed: UInt64 = 0x5eed) {
        self.random = seed
    }

    public func set(throttleShare: Double, services: Set<String>? = nil) {
        self.throttleShare = throttleShare
        self.throttledServices = services
    }
    public func set(zonesWithoutCapacity: Set<String>) { self.zonesWithoutCapacity = zonesWithoutCapacity }
    public func set(rejectedAccessKeys: Set<String>) { self.rejectedAccessKeys = rejectedAccessKeys }
    public func set(knownInstanceTypes: Set<String>?) { self.knownInstanceTypes = knownInstanceTypes }
    public func set(lostRunInstancesResponses: Int) { self.lostRunInstancesResponses = lostRunInstancesResponses }
    public func set(throttledActions: [String: Int]) { self.throttledActions = throttledActions }

    /// A `FaultProxy` in front of `upstream` applying these rules.
    public func proxy(upstream: @escaping @Sendable (ProxyRequest) async throws -> ProxyResponse) async throws -> FaultProxy {
        try await FaultProxy.start(
            upstream: upstream,
            decide: { [self] request in await self.decide(request) },
            observe: { [self] request, response in await self.observe(request, response) })
    }

    func nextUniform() -> Double {
        random = random &* 6364136223846793005 &+ 1442695040888963407
        return Double(random >> 11) / Double(1 << 53)
    }

    func count(_ kind: String) { injected[kind, default: 0] += 1 }

    public func decide(_ request: ProxyRequest) async -> FaultProxy.Decision {
        let fields = request.formFields
        let action = fields["Action"]
        let isEC2 = action != nil
        let accessKey = Self.accessKey(request)
        let region = Self.region(request) ?? "us-east-1"

        if let accessKey, rejectedAccessKeys.contains(accessKey) {
            count("auth")
            return .respond(isEC2
                ? Self.ec2Error(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
                : Self.s3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."))
        }
        let throttledByName = action.map { throttledActions[$0, default: 0] > 0 } ?? false
        if throttledByName, let action { throttledActions[action, default: 0] -= 1 }
        let shared = throttledServices.map { Self.service(request).map($0.contains) ?? false } ?? true
        if throttledByName || (throttleShare > 0 && shared && nextUniform() < throttleShare) {
            count("throttle")
            return .respond(isEC2 ? Self.ec2Error(503, "RequestLimitExceeded", "Request limit exceeded.") : Self.s3Error(503, "SlowDown", "Please reduce your request rate."))
        }
        if let action, let answer = placementGroups.answer(action: action, fields: fields, region: region) {
            return .respond(answer)
        }
        if action == "DescribeInstances", let rewritten = Self.translatingClientTokenFilter(request, fields: fields, launches: launches.mapValues(\.instance)) {
            return .forwardRewritten(rewritten)
        }
        if action == "RunInstances" {
            if let token = fields["ClientToken"], let earlier = launches[token] {
                count("idempotent-replay")
                return .respond(ProxyResponse(status: 200, headers: [("Content-Type", "text/xml")], body: earlier.response))
            }
            let type = fields["InstanceType"] ?? ""
            if let known = knownInstanceTypes, !known.contains(type) {
                count("invalid-type")
                return .respond(Self.ec2Error(400, "InvalidParameterValue", "Invalid value '\(type)' for InstanceType."))
            }
            if let group = fields["Placement.GroupName"], !placementGroups.exists(group, region: region) {
                return .respond(Self.ec2Error(400, "InvalidPlacementGroup.Unknown", "The Placement Group '\(group)' is unknown."))
            }
            if let subnet = fields["SubnetId"], let zone = subnetZones[subnet], zonesWithoutCapacity.contains(zone) {
                count("capacity")
                return .respond(Self.ec2Error(
                    500, "InsufficientInstanceCapacity",
                    "We currently do not have sufficient \(type) capacity in the Availability Zone you requested (\(zone)). Our system will be working on provisioning additional capacity."))
            }
            forwarded["RunInstances", default: 0] += 1
            if lostRunInstancesResponses > 0 {
                lostRunInstancesResponses -= 1
                count("lost-response")
                return .forwardThenRespond(Self.ec2Error(500, "InternalError", "An internal error has occurred."))
            }
            return .forward
        }
        forwarded[action ?? "\(request.method) S3", default: 0] += 1
        return .forward
    }

    public func observe(_ request: ProxyRequest, _ response: ProxyResponse) async {
        let fields = request.formFields
        if fields["Action"] == "RunInstances", response.status == 200, let token = fields["ClientToken"],
            let instance = Self.values(of: "instanceId", in: String(decoding: response.body, as: UTF8.self)).first
        {
            launches[token] = (instance, response.body)
        }
        guard fields["Action"] == "CreateSubnet" || fields["Action"] == "DescribeSubnets" else { return }
        let text = String(decoding: response.body, as: UTF8.self)
        // Each subnet item carries its id before its zone.
        let ids = Self.values(of: "subnetId", in: text)
        let zones = Self.values(of: "availabilityZone", in: text)
        for (id, zone) in zip(ids, zones) { subnetZones[id] = zone }
    }

    /// moto has no `client-token` filter: it becomes an `instance-id` filter over the
    /// instances those tokens launched.
    static func translatingClientTokenFilter(_ request: ProxyRequest, fields: [String: String], launches: [String: String]) -> ProxyRequest? {
        guard let (index, _) = fields.first(where: { $0.key.hasPrefix("Filter.") && $0.key.hasSuffix(".Name") && $0.value == "client-token" }) else {
            return nil
        }
        let prefix = String(index.dropLast(".Name".count))
        var rewritten = fields.filter { !$0.key.hasPrefix(prefix + ".") }
        rewritten[prefix + ".Name"] = "instance-id"
        let tokens = fields.filter { $0.key.hasPrefix(prefix + ".Value.") }.map(\.value)
        let ids = tokens.compactMap { launches[$0] }
        for (i, id) in (ids.isEmpty ? ["i-00000000000000000"] : ids).enumerated() { rewritten["\(prefix).Value.\(i + 1)"] = id }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-_.~")
        let body = rewritten.keys.sorted().map { key in
            "\(key.addingPercentEncoding(withAllowedCharacters: allowed) ?? key)=\((rewritten[key] ?? "").addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }.joined(separator: "&")
        var copy = request
        copy.body = Data(body.utf8)
        return copy
    }

    static func values(of element: String, in text: String) -> [String] {
        var found: [String] = []
        var rest = text[...]
        while let open = rest.range(of: "<\(element)>"), let close = rest.range(of: "</\(element)>", range: open.upperBound..<rest.endIndex) {
            found.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return found
    }

    /// The access key id from a SigV4 Authorization header.
    static func accessKey(_ request: ProxyRequest) -> String? {
        guard let auth = request.header("authorization"), let start = auth.range(of: "Credential=") else { return nil }
        return auth[start.upperBound...].split(separator: "/").first.map(String.init)
    }

    static func region(_ request: ProxyRequest) -> String? { scope(request, 2) }

    /// The service a request is signed for (`ec2`, `iam`, `s3`).
    static func service(_ request: ProxyRequest) -> String? { scope(request, 3) }

    /// Part `index` of the request's SigV4 credential scope (key/date/region/service/aws4_request).
    static func scope(_ request: ProxyRequest, _ index: Int) -> String? {
        guard let auth = request.header("authorization"), let start = auth.range(of: "Credential=") else { return nil }
        let scope = auth[start.upperBound...].split(separator: ",").first?.split(separator: "/") ?? []
        return scope.count > index ? String(scope[index]) : nil
    }

    static func ec2Error(_ status: Int, _ code: String, _ message: String) -> ProxyResponse {
        ProxyResponse(
            status: status,
            xml: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>\(code)</Code><Message>\(message)</Message></Error></Errors><RequestID>\(UUID().uuidString.lowercased())</RequestID></Response>")
    }

    static func s3Error(_ status: Int, _ code: String, _ message: String) -> ProxyResponse {
        ProxyResponse(
            status: status,
            xml: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>\(code)</Code><Message>\(message)</Message><RequestId>\(UUID().uuidString.prefix(16))</RequestId></Error>")
    }
}

/// EC2 placement groups in AWS's response shapes, per region (moto has none).
final class PlacementGroupEmulator {
    struct Group {
        var name: String
        var strategy: String
        var id: String
        var tags: [String: String]
    }

    // Owned by one AWSFaults actor and only used from it.
    private var groups: [String: [String: Group]] = [:]

    func exists(_ name: String, region: String) -> Bool { groups[region]?[name] != nil }

    func answer(action: String, fields: [String: String], region: String) -> ProxyResponse? {
        switch action {
        case "CreatePlacementGroup":
            let name = fields["GroupName"] ?? ""
            if groups[region]?[name] != nil {
                return AWSFaults.ec2Error(400, "InvalidPlacementGroup.Duplicate", "The placement group '\(name)' already exists.")
            }
            var tags: [String: String] = [:]
            var i = 1
            while let key = fields["TagSpecification.1.Tag.\(i).Key"] {
                tags[key] = fields["TagSpecification.1.Tag.\(i).Value"] ?? ""
                i += 1
            }
            let group = Group(name: name, strategy: fields["Strategy"] ?? "cluster", id: "pg-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(17), tags: tags)
            groups[region, default: [:]][name] = group
            return Self.ok("CreatePlacementGroup", "<placementGroup>\(Self.item(group))</placementGroup>")
        case "DescribePlacementGroups":
            var filters: [(String, [String])] = []
            var f = 1
            while let name = fields["Filter.\(f).Name"] {
                var values: [String] = []
                var v = 1
                while let value = fields["Filter.\(f).Value.\(v)"] { values.append(value); v += 1 }
                filters.append((name, values))
                f += 1
            }
            // The filters EC2 documents for DescribePlacementGroups that Stratum uses; any other
            // name is refused as EC2 refuses an unknown one.
            if let unknown = filters.first(where: { !["group-name", "tag-key"].contains($0.0) && !$0.0.hasPrefix("tag:") }) {
                return AWSFaults.ec2Error(400, "InvalidParameterValue", "The filter '\(unknown.0)' is invalid")
            }
            let matching = (groups[region] ?? [:]).values.sorted { $0.name < $1.name }.filter { group in
                filters.allSatisfy { name, values in
                    if name == "group-name" { return values.contains(group.name) }
                    if name == "tag-key" { return values.contains { group.tags[$0] != nil } }
                    return values.contains(group.tags[String(name.dropFirst(4))] ?? "\u{0}")
                }
            }
            return Self.ok("DescribePlacementGroups", "<placementGroupSet>\(matching.map { "<item>\(Self.item($0))</item>" }.joined())</placementGroupSet>")
        case "DeletePlacementGroup":
            let name = fields["GroupName"] ?? ""
            guard groups[region]?.removeValue(forKey: name) != nil else {
                return AWSFaults.ec2Error(400, "InvalidPlacementGroup.Unknown", "The Placement Group '\(name)' is unknown.")
            }
            return Self.ok("DeletePlacementGroup", "<return>true</return>")
        default:
            return nil
        }
    }

    static func item(_ group: Group) -> String {
        let tags = group.tags.keys.sorted().map { "<item><key>\($0)</key><value>\(group.tags[$0] ?? "")</value></item>" }.joined()
        return "<groupName>\(group.name)</groupName><strategy>\(group.strategy)</strategy><state>available</state><groupId>\(group.id)</groupId><tagSet>\(tags)</tagSet>"
    }

    static func ok(_ action: String, _ inner: String) -> ProxyResponse {
        ProxyResponse(
            status: 200,
            xml: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<\(action)Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>\(UUID().uuidString.lowercased())</requestId>\(inner)</\(action)Response>")
    }
}
