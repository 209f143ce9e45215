import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing

/// A well-formed instances.insert body with every part a GPU node uses.
private func gpuInstance(_ name: String, zone: String = "us-central1-a", stack: String = "demo") -> Value {
    [
        "name": .string(name),
        "machineType": .string("zones/\(zone)/machineTypes/a2-highgpu-1g"),
        "guestAccelerators": [["acceleratorType": .string("zones/\(zone)/acceleratorTypes/nvidia-tesla-a100"), "acceleratorCount": 1]],
        "scheduling": ["onHostMaintenance": "TERMINATE", "provisioningModel": "SPOT", "instanceTerminationAction": "DELETE", "automaticRestart": false],
        "disks": [["boot": true, "autoDelete": true, "initializeParams": ["sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "200"]]],
        "metadata": ["items": [["key": "startup-script", "value": "#!/bin/sh\necho ready"]]],
        "labels": ["stratum-stack": .string(stack), "stratum-pool": "workers"],
        "serviceAccounts": [["email": "default", "scopes": ["https://www.googleapis.com/auth/cloud-platform"]]],
        "resourcePolicies": ["projects/p/regions/us-central1/resourcePolicies/compact"],
        "networkInterfaces": [["subnetwork": "projects/p/regions/us-central1/subnetworks/net-a"]],
    ]
}

private func encoded(_ value: Value) -> Data {
    (try? JSONEncoder().encode(value)) ?? Data()
}

@Suite("Compute v1 requests checked against Google's discovery document", .timeLimit(.minutes(3)))
struct DiscoveryValidatorTests {
    let validator: DiscoveryValidator

    init() throws {
        validator = try DiscoveryValidator.computeV1()
    }

    @Test func acceptsTheRequestsAGPUClusterSends() throws {
        let requestID = UUID().uuidString.lowercased()
        let good: [(String, String, Value?, String)] = [
            ("POST", "/compute/v1/projects/p/zones/us-central1-a/instances?requestId=\(requestID)", gpuInstance("node-0"), "compute.instances.insert"),
            ("POST", "/compute/v1/projects/p/zones/us-central1-a/instances/bulkInsert?requestId=\(requestID)",
                ["count": 4, "minCount": 4, "namePattern": "node-####",
                    "instanceProperties": ["machineType": "a3-highgpu-8g", "labels": ["stratum-stack": "demo"], "scheduling": ["onHostMaintenance": "TERMINATE"]]],
                "compute.instances.bulkInsert"),
            ("GET", "/compute/v1/projects/p/zones/us-central1-a/instances/node-0", nil, "compute.instances.get"),
            ("DELETE", "/compute/v1/projects/p/zones/us-central1-a/instances/node-0?requestId=\(requestID)", nil, "compute.instances.delete"),
            ("GET", "/compute/v1/projects/p/aggregated/instances?filter=labels.stratum-stack%3D%22demo%22&maxResults=500&pageToken=abc&includeAllScopes=true",
                nil, "compute.instances.aggregatedList"),
            ("POST", "/compute/v1/projects/p/global/networks", ["name": "net", "autoCreateSubnetworks": false, "routingConfig": ["routingMode": "REGIONAL"]], "compute.networks.insert"),
            ("POST", "/compute/v1/projects/p/regions/us-central1/subnetworks",
                ["name": "net-a", "network": "global/networks/net", "ipCidrRange": "10.0.0.0/20", "privateIpGoogleAccess": true], "compute.subnetworks.insert"),
            ("POST", "/compute/v1/projects/p/global/firewalls",
                ["name": "net-internal", "network": "global/networks/net", "direction": "INGRESS", "sourceRanges": ["10.0.0.0/8"],
                    "allowed": [["IPProtocol": "tcp", "ports": ["0-65535"]]], "priority": 1000], "compute.firewalls.insert"),
            ("GET", "/compute/v1/projects/p/zones/us-central1-a/operations/operation-1", nil, "compute.zoneOperations.get"),
            ("GET", "/compute/v1/projects/p/regions/us-central1/operations/operation-1", nil, "compute.regionOperations.get"),
            ("GET", "/compute/v1/projects/p/global/operations/operation-1", nil, "compute.globalOperations.get"),
        ]
        for (method, uri, body, id) in good {
            let outcome = validator.validate(method: method, uri: uri, body: body.map(encoded) ?? Data())
            #expect(outcome.violations.isEmpty, "\(method) \(uri): \(outcome.violations)")
            #expect(outcome.match?.methodID == id)
        }
        let insert = validator.validate(method: "POST", uri: "/compute/v1/projects/p/zones/us-central1-b/instances", body: encoded(gpuInstance("n")))
        #expect(insert.match?.pathParameters == ["project": "p", "zone": "us-central1-b"])
    }

    @Test func aDocumentThatIsNotADiscoveryDocumentIsRefused() {
        #expect(throws: DiscoveryDocumentError.self) { try DiscoveryValidator(document: Data(#"{"kind": "compute#instance"}"#.utf8)) }
        #expect(throws: (any Error).self) { try DiscoveryValidator(document: Data("not json".utf8)) }
    }

    @Test func rejectsEachClassOfBadRequest() throws {
        func body(_ edit: (inout [String: Value]) -> Void) -> Data {
            var fields = gpuInstance("node-0").mapValue ?? [:]
            edit(&fields)
            return encoded(.map(fields))
        }
        let insert = "/compute/v1/projects/p/zones/us-central1-a/instances"
        let list = "/compute/v1/projects/p/aggregated/instances"
        let bad: [(String, String, Data, DiscoveryValidator.Violation.Kind, String)] = [
            ("GET", "/compute/v1/projects/p/zones/us-central1-a/gizmos", Data(), .unknownMethod, "/compute/v1/projects/p/zones/us-central1-a/gizmos"),
            ("PUT", insert, Data(), .unknownMethod, insert),
            ("GET", list + "?labelFilter=x", Data(), .unknownParameter, "query.labelFilter"),
            ("GET", list + "?maxResults=many", Data(), .invalidParameter, "query.maxResults"),
            ("GET", list + "?maxResults=-1", Data(), .invalidParameter, "query.maxResults"),
            ("GET", list + "?includeAllScopes=yes", Data(), .invalidParameter, "query.includeAllScopes"),
            ("GET", "/compute/v1/projects/p/zones/US_CENTRAL/instances/n", Data(), .invalidParameter, "path.zone"),
            ("POST", "/compute/v1/projects/p/zones/us-central1-a/instances/n/detachDisk", Data(), .missingParameter, "query.deviceName"),
            ("POST", insert, body { $0["scheduling"] = ["preemptable": true] }, .unknownField, "body.scheduling.preemptable"),
            ("POST", insert, body { $0["gpus"] = 8 }, .unknownField, "body.gpus"),
            ("POST", insert, body { $0["guestAccelerators"] = [["acceleratorType": "nvidia-h100-80gb", "acceleratorCount": "8"]] }, .wrongType, "body.guestAccelerators[0].acceleratorCount"),
            ("POST", insert, body { $0["labels"] = ["size": 8] }, .wrongType, "body.labels.size"),
            ("POST", insert, body { $0["canIpForward"] = "yes" }, .wrongType, "body.canIpForward"),
            ("POST", insert, body { $0["disks"] = [["initializeParams": ["diskSizeGb": "200GB"]]] }, .wrongType, "body.disks[0].initializeParams.diskSizeGb"),
            ("POST", insert, body { $0["metadata"] = ["items": ["startup-script"]] }, .wrongType, "body.metadata.items[0]"),
            ("POST", insert, body { $0["scheduling"] = ["provisioningModel": "CHEAP"] }, .invalidEnum, "body.scheduling.provisioningModel"),
            ("POST", insert, body { $0["scheduling"] = ["onHostMaintenance": "terminate"] }, .invalidEnum, "body.scheduling.onHostMaintenance"),
            ("POST", insert, body { $0["name"] = nil }, .missingField, "body.name"),
            ("POST", insert, body { $0["id"] = "123" }, .readOnlyField, "body.id"),
            ("POST", insert, Data(), .invalidBody, "body"),
            ("POST", insert, Data("name=node-0".utf8), .invalidBody, "body"),
            ("GET", insert + "/node-0", Data("{}".utf8), .invalidBody, "body"),
        ]
        for (method, uri, data, kind, location) in bad {
            let violations = validator.validate(method: method, uri: uri, body: data).violations
            #expect(violations.map(\.kind) == [kind], "\(method) \(uri): \(violations)")
            #expect(violations.first?.location == location)
        }
    }
}

/// JSON over real loopback HTTP to the fake, as a provider's client would talk to Compute.
private struct ComputeCaller {
    let server: LoopbackHTTPServer
    let transport = AsyncHTTPTransport()

    func call(_ method: String, _ path: String, _ body: Value? = nil, requestID: String? = UUID().uuidString.lowercased()) async throws -> (status: Int, json: Value) {
        var uri = "/compute/v1/projects/p/" + path
        if method != "GET", let requestID { uri += (uri.contains("?") ? "&" : "?") + "requestId=\(requestID)" }
        let url = try #require(URL(string: server.url.absoluteString + uri))
        let response = try await transport.send(
            HTTPRequestData(method: method, url: url, headers: [("Content-Type", "application/json")], body: body.map(encoded) ?? Data()),
            timeout: .seconds(60))
        return (response.status, try JSONDecoder().decode(Value.self, from: response.body))
    }

    /// Polls an operation (at most 20 looks) until DONE.
    func wait(_ operation: Value) async throws -> Value {
        let link = try #require(operation.mapValue?["selfLink"]?.stringValue)
        let path = String(link.dropFirst("https://www.googleapis.com/compute/v1/projects/p/".count))
        for _ in 0..<20 {
            let look = try await call("GET", path)
            if look.json.mapValue?["status"] == "DONE" { return look.json }
        }
        Issue.record("operation \(link) not DONE after 20 looks")
        return operation
    }
}

private func errorReason(_ json: Value) -> String? {
    json.mapValue?["error"]?.mapValue?["errors"]?.listValue?.first?.mapValue?["reason"]?.stringValue
}

private func operationErrorCode(_ json: Value) -> String? {
    json.mapValue?["error"]?.mapValue?["errors"]?.listValue?.first?.mapValue?["code"]?.stringValue
}

@Suite("The loopback Compute Engine fake", .timeLimit(.minutes(3)))
struct GCPComputeFakeTests {
    private func withFake(_ pace: GCPComputeFake.OperationPace = .afterPolls(2), _ body: (GCPComputeFake, ComputeCaller) async throws -> Void) async throws {
        let fake = try GCPComputeFake(project: "p", pace: pace)
        let server = try await fake.serve()
        do {
            try await body(fake, ComputeCaller(server: server))
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
        #expect(await fake.violations == [])
        #expect(await fake.mutatingCallsWithoutRequestID == [])
    }

    @Test func networkSubnetFirewallAndInstanceGoThroughAsynchronousOperations() async throws {
        try await withFake { fake, compute in
            let network = try await compute.call("POST", "global/networks", ["name": "net", "autoCreateSubnetworks": false])
            #expect(network.status == 200)
            #expect(network.json.mapValue?["status"] == "RUNNING")
            #expect(network.json.mapValue?["selfLink"]?.stringValue?.contains("/global/operations/") == true)
            #expect(try await compute.call("GET", "global/networks/net").status == 404)
            _ = try await compute.wait(network.json)
            #expect(try await compute.call("GET", "global/networks/net").json.mapValue?["selfLink"] == "https://www.googleapis.com/compute/v1/projects/p/global/networks/net")

            let subnet = try await compute.call("POST", "regions/us-central1/subnetworks", ["name": "net-a", "network": "global/networks/net", "ipCidrRange": "10.0.0.0/20"])
            #expect(subnet.json.mapValue?["region"]?.stringValue?.hasSuffix("/regions/us-central1") == true)
            _ = try await compute.wait(subnet.json)
            let firewall = try await compute.call(
                "POST", "global/firewalls", ["name": "net-ssh", "network": "global/networks/net", "allowed": [["IPProtocol": "tcp", "ports": ["22"]]], "sourceRanges": ["0.0.0.0/0"]])
            _ = try await compute.wait(firewall.json)

            let insert = try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0"))
            #expect(insert.json.mapValue?["zone"]?.stringValue?.hasSuffix("/zones/us-central1-a") == true)
            // An instance is visible while it is made.
            #expect(try await compute.call("GET", "zones/us-central1-a/instances/node-0").json.mapValue?["status"] == "PROVISIONING")
            let done = try await compute.wait(insert.json)
            #expect(done.mapValue?["error"] == nil)
            #expect(try await compute.call("GET", "zones/us-central1-a/instances/node-0").json.mapValue?["status"] == "RUNNING")

            // The network cannot go while its subnetwork and firewall use it.
            let early = try await compute.wait(try await compute.call("DELETE", "global/networks/net").json)
            #expect(operationErrorCode(early) == "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE")
            for path in ["zones/us-central1-a/instances/node-0", "regions/us-central1/subnetworks/net-a", "global/firewalls/net-ssh", "global/networks/net"] {
                let deleted = try await compute.wait(try await compute.call("DELETE", path).json)
                #expect(deleted.mapValue?["error"] == nil, "\(path): \(deleted)")
                let gone = try await compute.call("GET", path)
                #expect(gone.status == 404)
                #expect(errorReason(gone.json) == "notFound")
            }
            #expect(await fake.paths(of: "instances").isEmpty)
        }
    }

    @Test func operationsOnDemandRunUntilTheTestFinishesThem() async throws {
        try await withFake(.onDemand) { fake, compute in
            let insert = try await compute.call("POST", "global/networks", ["name": "net", "autoCreateSubnetworks": false])
            let path = "global/operations/" + (insert.json.mapValue?["name"]?.stringValue ?? "")
            for _ in 0..<5 { #expect(try await compute.call("GET", path).json.mapValue?["status"] == "RUNNING") }
            #expect(await fake.finishOperations() == 1)
            #expect(try await compute.call("GET", path).json.mapValue?["status"] == "DONE")
            #expect(try await compute.call("GET", "global/networks/net").status == 200)
        }
    }

    @Test func aRepeatedRequestIDAnswersTheSameOperationAndMakesOneInstance() async throws {
        try await withFake { fake, compute in
            let token = UUID().uuidString.lowercased()
            // The first answer is lost after the instance was made; the retry carries the same token.
            await fake.inject(.lostResponse, into: "compute.instances.insert")
            let lost = try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0"), requestID: token)
            #expect(lost.status == 503)
            let first = try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0"), requestID: token)
            let second = try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0"), requestID: token)
            #expect(first.status == 200)
            #expect(first.json.mapValue?["name"] != nil)
            #expect(first.json.mapValue?["name"] == second.json.mapValue?["name"])
            _ = try await compute.wait(first.json)
            #expect(await fake.paths(of: "instances") == ["projects/p/zones/us-central1-a/instances/node-0"])
            #expect(await fake.injected["replayedRequestID"] == 2)
            // Another token for the same name is a conflict, not a second instance.
            let other = try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0"))
            #expect(other.status == 409)
            #expect(errorReason(other.json) == "alreadyExists")
            #expect(await fake.paths(of: "instances").count == 1)
        }
    }

    @Test func aStockedOutZoneFailsTheOperationAndTheNextZoneWorks() async throws {
        try await withFake { fake, compute in
            await fake.set(zonesWithoutCapacity: ["us-central1-a"])
            let failed = try await compute.wait(try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0")).json)
            #expect(operationErrorCode(failed) == "ZONE_RESOURCE_POOL_EXHAUSTED")
            #expect(failed.mapValue?["httpErrorStatusCode"] == 503)
            #expect(try await compute.call("GET", "zones/us-central1-a/instances/node-0").status == 404)
            let moved = try await compute.wait(try await compute.call("POST", "zones/us-central1-b/instances", gpuInstance("node-0", zone: "us-central1-b")).json)
            #expect(moved.mapValue?["error"] == nil)
            #expect(await fake.paths(of: "instances") == ["projects/p/zones/us-central1-b/instances/node-0"])
            #expect(await fake.injected["stockout"] == 1)
        }
    }

    @Test func quotaErrorsNameTheMetricAndRegion() async throws {
        try await withFake { fake, compute in
            await fake.inject(.quotaExceeded(metric: "NVIDIA_A100_GPUS", region: "us-central1"), into: "compute.instances.insert")
            let failed = try await compute.wait(try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0")).json)
            let error = failed.mapValue?["error"]?.mapValue?["errors"]?.listValue?.first?.mapValue
            #expect(error?["code"] == "QUOTA_EXCEEDED")
            #expect(error?["message"]?.stringValue?.contains("'NVIDIA_A100_GPUS'") == true)
            #expect(error?["message"]?.stringValue?.contains("us-central1") == true)
            let quotaInfo = error?["errorDetails"]?.listValue?.first?.mapValue?["quotaInfo"]?.mapValue
            #expect(quotaInfo?["dimensions"]?.mapValue?["region"] == "us-central1")
            #expect(failed.mapValue?["httpErrorStatusCode"] == 403)
            // Injected once: the next insert succeeds.
            let next = try await compute.wait(try await compute.call("POST", "zones/us-central1-a/instances", gpuInstance("node-0")).json)
            #expect(next.mapValue?["error"] == nil)
        }
    }

    @Test func throttlingAnswers429InGooglesErrorShape() async throws {
        try await withFake { fake, compute in
            await fake.inject(.throttled, into: "compute.instances.get", times: 2)
            for _ in 0..<2 {
                let throttled = try await compute.call("GET", "zones/us-central1-a/instances/x")
                #expect(throttled.status == 429)
                let error = throttled.json.mapValue?["error"]?.mapValue
                #expect(error?["code"] == 429)
                #expect(error?["status"] == "RESOURCE_EXHAUSTED")
                #expect(errorReason(throttled.json) == "rateLimitExceeded")
            }
            #expect(try await compute.call("GET", "zones/us-central1-a/instances/x").status == 404)

            await fake.set(throttleShare: 0.3)
            var throttled = 0
            for _ in 0..<100 {
                if try await compute.call("GET", "global/networks/net").status == 429 { throttled += 1 }
            }
            #expect(throttled > 10 && throttled < 50)
            #expect(await fake.injected["throttled"] == 2 + throttled)
        }
    }

    @Test func bulkInsertMakesTheWholeGangOrNone() async throws {
        try await withFake { fake, compute in
            let gang: Value = [
                "count": 4, "minCount": 4, "namePattern": "gang-##",
                "instanceProperties": ["machineType": "a3-highgpu-8g", "labels": ["stratum-stack": "demo"], "scheduling": ["onHostMaintenance": "TERMINATE"]],
            ]
            await fake.set(zonesWithoutCapacity: ["us-central1-a"], code: "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
            let failed = try await compute.wait(try await compute.call("POST", "zones/us-central1-a/instances/bulkInsert", gang).json)
            #expect(operationErrorCode(failed) == "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
            let failedStatus = failed.mapValue?["instancesBulkInsertOperationMetadata"]?.mapValue?["perLocationStatus"]?.mapValue?["zones/us-central1-a"]?.mapValue
            #expect(failedStatus?["failedToCreateVmCount"] == 4)
            #expect(await fake.paths(of: "instances").isEmpty)

            let made = try await compute.wait(try await compute.call("POST", "zones/us-central1-b/instances/bulkInsert", gang).json)
            #expect(made.mapValue?["error"] == nil)
            let status = made.mapValue?["instancesBulkInsertOperationMetadata"]?.mapValue?["perLocationStatus"]?.mapValue?["zones/us-central1-b"]?.mapValue
            #expect(status?["createdVmCount"] == 4)
            #expect(await fake.paths(of: "instances") == (1...4).map { "projects/p/zones/us-central1-b/instances/gang-0\($0)" })
            let node = try await compute.call("GET", "zones/us-central1-b/instances/gang-03").json.mapValue
            #expect(node?["status"] == "RUNNING")
            #expect(node?["machineType"]?.stringValue?.hasSuffix("/zones/us-central1-b/machineTypes/a3-highgpu-8g") == true)
        }
    }

    @Test func aggregatedListFiltersByLabelAndPages() async throws {
        try await withFake(.afterPolls(0)) { fake, compute in
            let zones = ["us-central1-a", "us-central1-b", "us-east5-a"]
            for index in 0..<25 {
                let zone = zones[index % 3]
                let answer = try await compute.call("POST", "zones/\(zone)/instances", gpuInstance("node-\(index)", zone: zone, stack: index < 20 ? "demo" : "other"))
                #expect(answer.json.mapValue?["status"] == "DONE")
            }
            var names: [String] = []
            var pages = 0
            var token: String?
            repeat {
                let filter = "labels.stratum-stack%20%3D%20%22demo%22"
                let page = try await compute.call("GET", "aggregated/instances?filter=\(filter)&maxResults=7" + (token.map { "&pageToken=\($0)" } ?? ""))
                #expect(page.status == 200)
                pages += 1
                for scoped in (page.json.mapValue?["items"]?.mapValue ?? [:]).values {
                    names += (scoped.mapValue?["instances"]?.listValue ?? []).compactMap { $0.mapValue?["name"]?.stringValue }
                }
                token = page.json.mapValue?["nextPageToken"]?.stringValue
            } while token != nil && pages < 10
            #expect(pages == 3)
            #expect(names.count == 20)
            #expect(Set(names) == Set((0..<20).map { "node-\($0)" }))
            #expect(await fake.calls["compute.instances.aggregatedList"] == 3)

            let other = try await compute.call("GET", "aggregated/instances?filter=(labels.stratum-stack%20%3D%20other)%20(status%20%3D%20RUNNING)")
            let zonesWithOther = other.json.mapValue?["items"]?.mapValue ?? [:]
            #expect(zonesWithOther.values.reduce(0) { $0 + ($1.mapValue?["instances"]?.listValue?.count ?? 0) } == 5)
            #expect(try await compute.call("GET", "aggregated/instances?filter=name%20%3D%20a%20OR%20name%20%3D%20b").status == 400)
            // As on Compute Engine, a page holds at most 500.
            #expect(try await compute.call("GET", "aggregated/instances?maxResults=501").status == 400)
        }
    }

    @Test func globalListsFilterAndOperationsWaitCountsAsALook() async throws {
        try await withFake(.afterPolls(2)) { fake, compute in
            var operations: [Value] = []
            for name in ["net-a", "net-b", "other"] {
                operations.append(try await compute.call("POST", "global/networks", ["name": .string(name), "autoCreateSubnetworks": false]).json)
            }
            for operation in operations {
                let name = operation.mapValue?["name"]?.stringValue ?? ""
                let first = try await compute.call("POST", "global/operations/\(name)/wait", requestID: nil)
                #expect(first.json.mapValue?["status"] == "RUNNING")
                let second = try await compute.call("POST", "global/operations/\(name)/wait", requestID: nil)
                #expect(second.json.mapValue?["status"] == "DONE")
            }
            let all = try await compute.call("GET", "global/networks?maxResults=2")
            #expect(all.json.mapValue?["items"]?.listValue?.count == 2)
            #expect(all.json.mapValue?["nextPageToken"] != nil)
            let matching = try await compute.call("GET", "global/networks?filter=name%20eq%20net-.*")
            let names = (matching.json.mapValue?["items"]?.listValue ?? []).compactMap { $0.mapValue?["name"]?.stringValue }
            #expect(names == ["net-a", "net-b"])
            #expect(matching.json.mapValue?["nextPageToken"] == nil)
            #expect(await fake.calls["compute.globalOperations.wait"] == 6)
        }
    }

    @Test func requestsThatBreakTheSchemaAreRecorded() async throws {
        let fake = try GCPComputeFake(project: "p")
        let server = try await fake.serve()
        let compute = ComputeCaller(server: server)
        var body = gpuInstance("node-0").mapValue ?? [:]
        body["scheduling"] = ["provisioningModel": "CHEAP"]
        _ = try await compute.call("POST", "zones/us-central1-a/instances", .map(body))
        _ = try await compute.call("DELETE", "zones/us-central1-a/instances/node-0", requestID: nil)
        let invalidToken = try await compute.call("DELETE", "zones/us-central1-a/instances/node-0", requestID: "not-a-uuid")
        await server.shutdown()
        #expect(invalidToken.status == 400)
        let violations = await fake.violations
        #expect(violations.count == 2)
        #expect(violations.first?.contains("invalidEnum at body.scheduling.provisioningModel") == true)
        #expect(violations.last?.contains("requestId 'not-a-uuid'") == true)
        #expect(await fake.mutatingCallsWithoutRequestID == ["DELETE /compute/v1/projects/p/zones/us-central1-a/instances/node-0"])
    }
}
