import Foundation
import StratumCore
import Testing
@testable import StratumGCP

/// Google's error bodies, in the shape Compute documents, mapped onto the taxonomy.
@Suite struct GCPErrorClassifierTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var status: Int
        var body: GCPJSON
        var kind: ProviderError.Kind
        var scope: ProviderError.Scope?
        var testDescription: String { name }
    }

    static func body(_ status: Int, _ reason: String, _ message: String, domain: String = "global") -> GCPJSON {
        ["error": ["code": .number(Double(status)), "message": .string(message), "errors": [["domain": .string(domain), "reason": .string(reason), "message": .string(message)]]]]
    }

    static let callCases: [Case] = [
        Case(
            name: "regional GPU quota", status: 403,
            body: body(403, "quotaExceeded", "Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 0.0 in region us-central1.", domain: "usageLimits"),
            kind: .quota, scope: .region("us-central1")),
        Case(
            name: "project-wide GPU quota", status: 403,
            body: body(403, "quotaExceeded", "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 8.0 globally.", domain: "usageLimits"),
            kind: .quota, scope: .cloud),
        Case(name: "429", status: 429, body: body(429, "rateLimitExceeded", "Rate Limit Exceeded", domain: "usageLimits"), kind: .throttled),
        Case(name: "403 rate limit", status: 403, body: body(403, "rateLimitExceeded", "Rate Limit Exceeded", domain: "usageLimits"), kind: .throttled),
        Case(
            name: "API rate quota", status: 429,
            body: body(429, "quotaExceeded", "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service 'compute.googleapis.com' for consumer 'project_number:123'.", domain: "usageLimits"),
            kind: .throttled),
        Case(
            name: "API rate quota as 403", status: 403,
            body: body(403, "quotaExceeded", "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.", domain: "usageLimits"),
            kind: .throttled),
        Case(name: "503", status: 503, body: body(503, "backendError", "Backend Error"), kind: .transient),
        Case(name: "500 without a JSON body", status: 500, body: "Internal Server Error", kind: .transient),
        Case(name: "401", status: 401, body: body(401, "authError", "Invalid Credentials"), kind: .auth),
        Case(name: "403 forbidden", status: 403, body: body(403, "forbidden", "Required 'compute.instances.create' permission"), kind: .auth),
        Case(name: "404", status: 404, body: body(404, "notFound", "The resource 'projects/p/zones/us-central1-a/instances/x' was not found"), kind: .notFound),
        Case(name: "not ready", status: 400, body: body(400, "resourceNotReady", "The resource 'projects/p/global/networks/n' is not ready"), kind: .transient),
        Case(name: "invalid field", status: 400, body: body(400, "invalid", "Invalid value for field 'resource.machineType': 'a9-none'."), kind: .permanent),
        Case(name: "already exists", status: 409, body: body(409, "alreadyExists", "The resource 'projects/p/global/networks/n' already exists"), kind: .permanent),
    ]

    @Test(arguments: callCases) func failedCall(_ example: Case) {
        let error = GCPServiceError.parse(status: example.status, body: example.body.data)
        let mapped = GCPErrorClassifier.providerError(error, action: "instances.insert", address: nil, zone: "us-central1-a", region: "us-central1")
        #expect(mapped.kind == example.kind)
        #expect(mapped.scope == example.scope)
    }

    /// `error.errors[]` of a finished operation, as `operations.get` returns it.
    static func operation(_ errors: [GCPJSON], status: Int = 400, zone: String? = "us-central1-a") -> GCPJSON {
        var fields: [String: GCPJSON] = [
            "kind": "compute#operation", "name": "operation-1", "status": "DONE", "httpErrorStatusCode": .number(Double(status)),
            "httpErrorMessage": "BAD REQUEST", "error": ["errors": .array(errors)],
        ]
        if let zone { fields["zone"] = .string("https://compute.googleapis.com/compute/v1/projects/p/zones/\(zone)") }
        return .object(fields)
    }

    static let operationCases: [Case] = [
        Case(
            name: "stockout", status: 0,
            body: operation([[
                "code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                "message": "The zone 'projects/p/zones/us-central1-a' does not have enough resources available to fulfill the request.",
            ]], status: 503),
            kind: .capacity, scope: .zone("us-central1-a")),
        Case(
            name: "stockout with details", status: 0,
            body: operation([["code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "message": "The zone 'projects/p/zones/europe-west4-b' does not have enough resources."]], zone: "europe-west4-b"),
            kind: .capacity, scope: .zone("europe-west4-b")),
        Case(
            name: "resource pool exhausted", status: 0,
            body: operation([["code": "RESOURCE_POOL_EXHAUSTED", "message": "There are not enough resources available."]], zone: "asia-east1-c"),
            kind: .capacity, scope: .zone("asia-east1-c")),
        Case(
            name: "quota with quotaInfo", status: 0,
            body: operation([[
                "code": "QUOTA_EXCEEDED", "message": "Quota 'NVIDIA_A100_GPUS' exceeded.  Limit: 16.0 in region us-east4.",
                "errorDetails": [["quotaInfo": ["metricName": "compute.googleapis.com/nvidia_a100_gpus", "limitName": "NVIDIA-A100-GPUS-per-project-region", "dimensions": ["region": "us-east4"], "limit": 16]]],
            ]], status: 403, zone: "us-east4-c"),
            kind: .quota, scope: .region("us-east4")),
        Case(
            name: "all-regions quota", status: 0,
            body: operation([["code": "QUOTA_EXCEEDED", "message": "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally."]], status: 403),
            kind: .quota, scope: .cloud),
        Case(
            name: "all-regions metric in quotaInfo", status: 0,
            body: operation([[
                "code": "QUOTA_EXCEEDED", "message": "Quota exceeded for quota metric 'GPUs (all regions)'.",
                "errorDetails": [["quotaInfo": ["metricName": "compute.googleapis.com/gpus_all_regions", "limitName": "GPUS-ALL-REGIONS-per-project", "limit": 8]]],
            ]], status: 403),
            kind: .quota, scope: .cloud),
        Case(
            name: "unsupported machine type", status: 0,
            body: operation([["code": "UNSUPPORTED_OPERATION", "message": "Machine type a3-highgpu-8g is not available in zone us-west1-a."]]),
            kind: .permanent),
    ]

    @Test(arguments: operationCases) func failedOperation(_ example: Case) throws {
        let operation = try #require(GCPOperation(json: example.body))
        let error = try #require(operation.error)
        guard case .zone(let zone) = operation.reference.scope else { Issue.record("not a zonal operation"); return }
        let mapped = GCPErrorClassifier.providerError(error, action: "instances.insert", address: nil, zone: zone, region: GCPErrorClassifier.regionOf(zone: zone))
        #expect(mapped.kind == example.kind)
        #expect(mapped.scope == example.scope)
    }

    @Test func permanentErrorsKeepGooglesMessageAndTheAddress() {
        let address = ResourceAddress(type: "gcp_instance", name: "trainer")
        let error = GCPServiceError.parse(status: 400, body: Self.body(400, "invalid", "Invalid value for field 'resource.machineType': 'a9-none'.").data)
        let mapped = GCPErrorClassifier.providerError(error, action: "instances.insert", address: address)
        #expect(mapped.kind == .permanent)
        #expect(mapped.address == address)
        #expect(mapped.description.contains("Invalid value for field 'resource.machineType': 'a9-none'."))
        #expect(mapped.description.contains("instances.insert"))
    }

    @Test func quotaMetricIsNamedInTheMessage() {
        let error = GCPServiceError.parse(status: 403, body: Self.body(403, "quotaExceeded", "Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 0.0 in region us-central1.").data)
        #expect(GCPErrorClassifier.quotaMetric(of: error) == "NVIDIA_H100_GPUS")
        #expect(GCPErrorClassifier.providerError(error, action: "instances.insert", address: nil).message.contains("NVIDIA_H100_GPUS"))
    }
}
