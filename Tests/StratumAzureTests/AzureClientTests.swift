import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing
@testable import StratumAzure

@Suite(.timeLimit(.minutes(3))) struct AzureClientTests {
    static let vm = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-1"
    static let address = ResourceAddress(type: "azure_vm", name: "vm-1")

    static func resource(_ state: String) -> ProxyResponse {
        jsonAnswer(200, ["id": .string(vm), "name": "vm-1", "properties": ["provisioningState": .string(state)]])
    }

    @Test func callsCarryTheTokenAndThePinnedApiVersionOfTheirResourceType() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let subnet = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/virtualNetworks/vnet-1/subnets/default"
        arm.on("GET", subnet, jsonAnswer(200, ["name": "default"]))
        arm.on("GET", "/subscriptions/sub-1/resourceGroups/rg-1", jsonAnswer(200, ["name": "rg-1"]))
        let client = try arm.client(clock: VirtualClock())

        #expect(try await client.get(subnet, action: "subnets.get")["name"]?.string == "default")
        #expect(try await client.get(client.resourceGroup("rg-1"), action: "resourceGroups.get")["name"]?.string == "rg-1")
        #expect(try await client.getIfExists(Self.vm, action: "virtualMachines.get") == nil)
        let versions = arm.received.all.map { queryOf($0)["api-version"] }
        #expect(versions == ["2026-03-01", "2025-04-01", "2026-04-01"])
        #expect(AzureAPIVersions.resourceType(ofPath: subnet) == "Microsoft.Network/virtualNetworks/subnets")
        #expect(AzureAPIVersions.resourceType(ofPath: "/subscriptions/s/providers/Microsoft.Compute/locations/eastus/usages") == "Microsoft.Compute/locations/usages")

        // A type with no pinned version is refused before anything is sent.
        let error = await #expect(throws: ProviderError.self) {
            _ = try await client.get("/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Web/sites/app", action: "sites.get")
        }
        #expect(error?.kind == .permanent)
        #expect(error?.message.contains("Microsoft.Web/sites") == true)
        #expect(arm.received.all.count == 3)
    }

    @Test func listsFollowNextLinkAndNeverSendTheTokenElsewhere() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let list = "/subscriptions/sub-1/providers/Microsoft.Compute/virtualMachines"
        let page2 = "{base}/subscriptions/sub-1/providers/Microsoft.Compute/virtualMachines/page?api-version=2026-04-01&%24skiptoken=2"
        let page3 = "{base}/subscriptions/sub-1/providers/Microsoft.Compute/virtualMachines/page?api-version=2026-04-01&%24skiptoken=3"
        arm.on("GET", list, jsonAnswer(200, ["value": [["name": "a"], ["name": "b"]], "nextLink": .string(page2)]))
        arm.on(
            "GET", "/subscriptions/sub-1/providers/Microsoft.Compute/virtualMachines/page",
            jsonAnswer(200, ["value": [["name": "c"]], "nextLink": .string(page3)]), jsonAnswer(200, ["value": [["name": "d"]]]))
        let client = try arm.client(clock: VirtualClock())

        let names = try await client.list(list, query: [("$filter", "tagName eq 'stratum-stack'")], action: "virtualMachines.listAll").compactMap { $0["name"]?.string }
        #expect(names == ["a", "b", "c", "d"])
        let tokens = arm.received.all.map { queryOf($0)["$skiptoken"] }
        #expect(tokens == [nil, "2", "3"])
        #expect(queryOf(arm.received.all[0])["$filter"] == "tagName eq 'stratum-stack'")

        arm.on("GET", list, jsonAnswer(200, ["value": [], "nextLink": "https://elsewhere.example/steal?token=1"]))
        let error = await #expect(throws: ProviderError.self) { _ = try await client.list(list, action: "virtualMachines.listAll") }
        #expect(error?.message.contains("no token is sent there") == true)
        #expect(arm.received.all.count == 4)
    }

    struct ErrorCase: Sendable, CustomStringConvertible {
        var answer: ProxyResponse
        var zone: String?
        var region: String?
        var kind: ProviderError.Kind
        var scope: ProviderError.Scope?
        var mentions: [String] = []
        var description: String { "\(kind) \(answer.status)" }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(
            answer: armError(409, code: "ZonalAllocationFailed", message: "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone."),
            zone: "2", region: "eastus", kind: .capacity, scope: .zone("2")),
        ErrorCase(
            answer: armError(409, code: "AllocationFailed", message: "Allocation failed. We do not have sufficient capacity for the requested VM size in this region."),
            region: "eastus", kind: .capacity, scope: .region("eastus")),
        ErrorCase(
            answer: armError(
                409, code: "SkuNotAvailable",
                message: "The requested size for resource '\(vm)' is currently not available in location 'eastus' zones '3' for subscription 'sub-1'."),
            kind: .capacity, scope: .zone("3")),
        ErrorCase(answer: armError(409, code: "OverconstrainedAllocationRequest", message: "Allocation failed."), region: "westus3", kind: .capacity, scope: .region("westus3")),
        ErrorCase(answer: armError(409, code: "OverconstrainedZonalAllocationRequest", message: "Allocation failed."), kind: .capacity, scope: .zone(nil)),
        // The allocation failure arrives as a detail of a generic code.
        ErrorCase(
            answer: armError(400, code: "BadRequest", message: "The request failed.", details: [("ZonalAllocationFailed", "Allocation failed.")]), zone: "1",
            kind: .capacity, scope: .zone("1")),
        ErrorCase(answer: armError(409, code: "QuotaExceeded", message: "Quota exceeded for this request."), region: "westus2", kind: .quota, scope: .region("westus2")),
        ErrorCase(
            answer: armError(
                409, code: "OperationNotAllowed",
                message: "Operation could not be completed as it results in exceeding approved standardNCADSH100v5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 40"),
            kind: .quota, scope: .region("eastus"), mentions: ["standardNCADSH100v5Family"]),
        ErrorCase(
            answer: armError(409, code: "OperationNotAllowed", message: "The operation is not allowed while the VM is being deallocated."), kind: .permanent,
            mentions: ["OperationNotAllowed", "deallocated"]),
        ErrorCase(
            answer: armError(429, code: "TooManyRequests", message: "Number of requests exceeded the limit.", headers: [("Retry-After", "17")]),
            kind: .throttled, mentions: ["17 s"]),
        ErrorCase(answer: armError(503, code: "ServiceUnavailable", message: "Try again later."), kind: .transient),
        ErrorCase(answer: ProxyResponse(status: 502, body: Data("Bad Gateway".utf8)), kind: .transient, mentions: ["Bad Gateway"]),
        ErrorCase(answer: armError(403, code: "AuthorizationFailed", message: "The client does not have authorization."), kind: .auth),
        ErrorCase(answer: armError(404, code: "ResourceGroupNotFound", message: "Resource group 'rg-1' could not be found."), kind: .notFound),
        ErrorCase(
            answer: armError(400, code: "InvalidParameter", message: "The value of parameter imageReference is invalid.", details: [("InvalidImage", "no such image")]),
            kind: .permanent, mentions: ["InvalidParameter", "imageReference is invalid", "InvalidImage: no such image", vm]),
    ]

    @Test(arguments: AzureClientTests.errorCases) func armErrorsMapOntoTheTaxonomyWithTheirScope(_ errorCase: ErrorCase) async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        arm.on("PUT", Self.vm, errorCase.answer)
        let client = try arm.client(clock: VirtualClock())
        let error = await #expect(throws: ProviderError.self) {
            _ = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate", address: Self.address, zone: errorCase.zone, region: errorCase.region)
        }
        #expect(error?.kind == errorCase.kind)
        #expect(error?.scope == errorCase.scope)
        #expect(error?.address == Self.address)
        for text in errorCase.mentions { #expect(error?.message.contains(text) == true, "\(text) in \(error?.message ?? "")") }
    }

    @Test func asyncOperationHeaderIsPolledHonouringRetryAfterThenTheResourceIsRead() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operations/op-1"
        arm.on(
            "PUT", Self.vm,
            jsonAnswer(201, ["properties": ["provisioningState": "Creating"]], headers: [("Azure-AsyncOperation", "{base}\(operation)?api-version=2026-04-01"), ("Retry-After", "7")]))
        arm.on(
            "GET", operation, jsonAnswer(200, ["status": "InProgress"], headers: [("Retry-After", "5")]), jsonAnswer(200, ["status": "InProgress"], headers: [("Retry-After", "20")]),
            jsonAnswer(200, ["status": "Succeeded"]))
        arm.on("GET", Self.vm, Self.resource("Succeeded"))
        let virtual = VirtualClock()
        let client = try arm.client(clock: virtual)

        let answer = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        let started = try #require(answer.operation)
        #expect(started.style == .asyncOperation)
        #expect(answer.retryAfter == .seconds(7))
        let result = try await client.finish(answer, action: "virtualMachines.createOrUpdate")
        #expect(result?["properties"]?["provisioningState"]?.string == "Succeeded")
        // The first look after the PUT's Retry-After, each next one after the last look's.
        #expect(virtual.sleeps == [.seconds(7), .seconds(5), .seconds(20)])
        #expect(arm.received.matching("GET", pathSuffix: "/op-1").count == 3)
        #expect(arm.received.matching("PUT", pathSuffix: "/vm-1").count == 1)
    }

    @Test func failedAsyncOperationCarriesItsErrorIntoTheTaxonomy() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operations/op-2"
        arm.on("PUT", Self.vm, jsonAnswer(201, [:], headers: [("Azure-AsyncOperation", "{base}\(operation)")]))
        arm.on(
            "GET", operation, jsonAnswer(200, ["status": "InProgress"]),
            jsonAnswer(200, [
                "status": "Failed",
                "error": ["code": "OverconstrainedAllocationRequest", "message": "Allocation failed.", "details": [["code": "ZonalAllocationFailed", "message": "zone 1 is out of H100"]]],
            ]))
        let virtual = VirtualClock()
        let client = try arm.client(clock: virtual)
        let answer = try await client.put(Self.vm, body: ["location": "eastus", "zones": ["1"]], action: "virtualMachines.createOrUpdate", zone: "1")
        let error = await #expect(throws: ProviderError.self) {
            _ = try await client.finish(answer, action: "virtualMachines.createOrUpdate", address: Self.address, zone: "1")
        }
        #expect(error?.kind == .capacity)
        #expect(error?.scope == .zone("1"))
        #expect(error?.message.contains("zone 1 is out of H100") == true)
        // The poller's backoff paced the looks when Azure named no wait.
        #expect(virtual.sleeps.count == 1)
    }

    @Test func locationHeaderIsPolledUntilTheAnswerIsNoLonger202() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operationResults/op-3"
        arm.on("DELETE", Self.vm, ProxyResponse(status: 202, headers: [("Location", "{base}\(operation)?api-version=2026-04-01"), ("Retry-After", "3")]))
        arm.on("GET", operation, ProxyResponse(status: 202, headers: [("Retry-After", "4")]), ProxyResponse(status: 202, headers: [("Retry-After", "4")]), ProxyResponse(status: 204))
        let virtual = VirtualClock()
        let client = try arm.client(clock: virtual)
        let answer = try await client.delete(Self.vm, action: "virtualMachines.delete")
        #expect(answer.operation?.style == .location)
        #expect(try await client.finish(answer, action: "virtualMachines.delete") == nil)
        #expect(virtual.sleeps == [.seconds(3), .seconds(4), .seconds(4)])

        // A POST's result is the last answer of its Location.
        let deallocate = Self.vm + "/deallocate"
        let result = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operationResults/op-4"
        arm.on("POST", deallocate, ProxyResponse(status: 202, headers: [("Location", "{base}\(result)")]))
        arm.on("GET", result, ProxyResponse(status: 202), jsonAnswer(200, ["done": true]))
        let posted = try await client.post(deallocate, action: "virtualMachines.deallocate")
        #expect(try await client.finish(posted, action: "virtualMachines.deallocate")?["done"] == true)

        // A failure is the Location's error status and ARM's error body.
        let failing = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operationResults/op-5"
        arm.on("DELETE", Self.vm, ProxyResponse(status: 202, headers: [("Location", "{base}\(failing)")]))
        arm.on("GET", failing, armError(409, code: "QuotaExceeded", message: "quota", headers: []))
        let failed = try await client.delete(Self.vm, action: "virtualMachines.delete", region: "eastus")
        let error = await #expect(throws: ProviderError.self) { _ = try await client.finish(failed, action: "virtualMachines.delete", region: "eastus") }
        #expect(error?.kind == .quota)
        #expect(error?.scope == .region("eastus"))
    }

    @Test func provisioningStateIsPolledOnTheResourceWhenNoHeaderNamesAnOperation() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        arm.on("PUT", Self.vm, jsonAnswer(201, ["properties": ["provisioningState": "Creating"]]))
        arm.on("GET", Self.vm, Self.resource("Creating"), Self.resource("Updating"), Self.resource("Succeeded"))
        let client = try arm.client(clock: VirtualClock())
        let answer = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        #expect(answer.operation?.style == .provisioningState)
        #expect(try await client.finish(answer, action: "virtualMachines.createOrUpdate")?["properties"]?["provisioningState"] == "Succeeded")
        #expect(arm.received.matching("GET", pathSuffix: "/vm-1").count == 3)

        // A DELETE answered 202 with no header: the resource is gone when it 404s.
        arm.on("DELETE", Self.vm, ProxyResponse(status: 202))
        arm.on("GET", Self.vm, Self.resource("Deleting"), armError(404, code: "ResourceNotFound", message: "gone"))
        let deleted = try await client.delete(Self.vm, action: "virtualMachines.delete")
        #expect(deleted.operation?.style == .provisioningState)
        #expect(try await client.finish(deleted, action: "virtualMachines.delete") == nil)

        // A terminal Failed state fails the wait.
        arm.on("PUT", Self.vm, jsonAnswer(200, ["properties": ["provisioningState": "Updating"]]))
        arm.on("GET", Self.vm, Self.resource("Failed"))
        let failing = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        let error = await #expect(throws: ProviderError.self) { _ = try await client.finish(failing, action: "virtualMachines.createOrUpdate", address: Self.address) }
        #expect(error?.kind == .permanent)
        #expect(error?.message.contains("provisioningState is Failed") == true)

        // An answer already Succeeded starts nothing.
        arm.on("PUT", Self.vm, Self.resource("Succeeded"))
        #expect(try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate").operation == nil)
    }

    @Test func throttledLookWaitsAsLongAsAzureAsks() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operations/op-6"
        arm.on("PUT", Self.vm, jsonAnswer(201, [:], headers: [("Azure-AsyncOperation", "{base}\(operation)")]))
        arm.on(
            "GET", operation, armError(429, code: "TooManyRequests", message: "slow down", headers: [("Retry-After", "30")]),
            jsonAnswer(200, ["status": "Succeeded"]))
        arm.on("GET", Self.vm, Self.resource("Succeeded"))
        let virtual = VirtualClock()
        let client = try arm.client(clock: virtual)
        let answer = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        _ = try await client.finish(answer, action: "virtualMachines.createOrUpdate")
        #expect(virtual.sleeps == [.seconds(30)])
        #expect(await client.rateLimits(.read).limiter(for: "arm/sub-1").throttleEvents == 1)
    }

    @Test func aThrottledCallIsSentAgainAfterItsRetryAfterThenHandedToTheEngine() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let slowDown = armError(429, code: "TooManyRequests", message: "slow down", headers: [("Retry-After", "7")])
        arm.on("PUT", Self.vm, slowDown, slowDown, Self.resource("Succeeded"))
        let virtual = VirtualClock()
        var client = try arm.client(clock: virtual)
        // Two refusals, then the answer: the caller sees only the answer.
        let answer = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        #expect(answer.status == 200)
        #expect(arm.received.all.filter { $0.method == "PUT" }.count == 3)
        #expect(virtual.sleeps.filter { $0 == .seconds(7) }.count == 2)
        #expect(await client.rateLimits(.write).limiter(for: "arm/sub-1").throttleEvents == 2)

        // Past `throttleRepeats`, the refusal goes to the engine, with Azure's wait on it.
        client.configuration.throttleRepeats = 2
        arm.on("PUT", Self.vm, slowDown)
        let before = arm.received.all.count
        let error = await #expect(throws: ProviderError.self) {
            _ = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        }
        #expect(error?.kind == .throttled && error?.retryAfter == .seconds(7))
        #expect(arm.received.all.count - before == 3)
    }

    @Test func aJournaledHandleIsResumedByAFreshClient() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/operations/op-7"
        arm.on("PUT", Self.vm, jsonAnswer(201, [:], headers: [("Azure-AsyncOperation", "{base}\(operation)?api-version=2026-04-01")]))
        arm.on("GET", operation, jsonAnswer(200, ["status": "InProgress"]), jsonAnswer(200, ["status": "Succeeded"]))
        arm.on("GET", Self.vm, Self.resource("Succeeded"))

        let first = try arm.client(clock: VirtualClock())
        let handle = try #require(try await first.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate").operation?.handle)
        // The process that started it ends here; another reads the handle from the journal.
        let resumed = try #require(AzureOperation(handle: handle))
        #expect(resumed.style == .asyncOperation)
        #expect(resumed.method == "PUT")
        #expect(resumed.resultURL?.path == Self.vm)
        let second = try arm.client(clock: VirtualClock())
        let result = try await second.wait(for: resumed, action: "virtualMachines.createOrUpdate")
        #expect(result?["id"]?.string == Self.vm)
        #expect(arm.received.matching("PUT", pathSuffix: "/vm-1").count == 1)
        #expect(AzureOperation(handle: "location DELETE \(arm.url)/x")?.resultURL == nil)
        #expect(AzureOperation(handle: "nonsense") == nil)
    }

    @Test func rateLimitsArePerSubscriptionAndCallClass() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        arm.on("GET", Self.vm, Self.resource("Succeeded"))
        arm.on("GET", "/subscriptions/sub-2/resourceGroups/rg-2", jsonAnswer(200, ["name": "rg-2"]))
        arm.on("PUT", Self.vm, Self.resource("Succeeded"))
        let client = try arm.client(clock: VirtualClock())
        _ = try await client.get(Self.vm, action: "virtualMachines.get")
        _ = try await client.get("/subscriptions/sub-2/resourceGroups/rg-2", action: "resourceGroups.get")
        _ = try await client.put(Self.vm, body: ["location": "eastus"], action: "virtualMachines.createOrUpdate")
        #expect(await client.rateLimits(.read).endpoints == ["arm/sub-1", "arm/sub-2"])
        #expect(await client.rateLimits(.write).endpoints == ["arm/sub-1"])
        #expect(await client.rateLimits(.write).limiter(for: "arm/sub-1").settings.maxRate == 10)
        #expect(client.metrics.byAction["virtualMachines.get"] == 1)
    }

    @Test func theStandardClientTakesItsEndpointsCredentialsAndSubscriptionFromTheEnvironment() async throws {
        let arm = try await ScriptedARM.start()
        defer { Task { await arm.shutdown() } }
        arm.on("GET", "/subscriptions/sub-env/resourceGroups/rg-1", jsonAnswer(200, ["name": "rg-1", "location": "eastus"]))
        let entra = try await LoopbackHTTPServer.start { request in
            guard pathOf(request) == "/tenant-1/oauth2/v2.0/token", request.formFields["client_secret"] == "client-secret-value" else {
                return jsonAnswer(401, ["error": "invalid_client"])
            }
            return jsonAnswer(200, ["access_token": "arm-token", "expires_in": 3599])
        }
        defer { Task { await entra.shutdown() } }
        let environment = [
            "AZURE_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "client-1", "AZURE_CLIENT_SECRET": "client-secret-value", "AZURE_SUBSCRIPTION_ID": "sub-env",
            "AZURE_AUTHORITY_HOST": entra.url.absoluteString + "/", "STRATUM_AZURE_RESOURCE_MANAGER_ENDPOINT": arm.url.absoluteString,
        ]
        let client = try AzureClient.standard(environment: environment, transport: AsyncHTTPTransport(), clock: VirtualClock().clock)
        #expect(client.subscription == "sub-env")
        #expect(try await client.get(client.resourceGroup("rg-1"), action: "resourceGroups.get")["location"] == "eastus")
        let provider = AzureProvider(client: client)
        #expect(provider.name == "azure")
        #expect(provider.kinds["azure_resource_group"] != nil && provider.kinds["azure_blob_container"] != nil && provider.kinds["azure_virtual_machine"] != nil)

        // Without a subscription anywhere the client is refused.
        var bare = environment
        bare["AZURE_SUBSCRIPTION_ID"] = nil
        let error = #expect(throws: ProviderError.self) { _ = try AzureClient.standard(environment: bare, transport: AsyncHTTPTransport()) }
        #expect(error?.message.contains("AZURE_SUBSCRIPTION_ID") == true)
    }
}

/// The pinned api-versions are the ones the installed Azure SDK packages (whose models the ARM
/// fake checks bodies against) send for the same operations: read from each package's request
/// builder (`build_virtual_machines_create_or_update_request` → `"api-version", "2026-04-01"`).
@Suite("Pinned api-versions against the Azure SDK", .timeLimit(.minutes(3)))
struct AzureAPIVersionSDKTests {
    static let builders: [String: (package: String, builder: String)] = [
        "Microsoft.Resources/resourceGroups": ("azure.mgmt.resource.resources", "build_resource_groups_create_or_update_request"),
        "Microsoft.Resources/resources": ("azure.mgmt.resource.resources", "build_resources_list_request"),
        "Microsoft.Compute/virtualMachines": ("azure.mgmt.compute", "build_virtual_machines_create_or_update_request"),
        "Microsoft.Compute/proximityPlacementGroups": ("azure.mgmt.compute", "build_proximity_placement_groups_create_or_update_request"),
        "Microsoft.Compute/locations/usages": ("azure.mgmt.compute", "build_usage_list_request"),
        "Microsoft.Compute/skus": ("azure.mgmt.compute", "build_resource_skus_list_request"),
        "Microsoft.Network/virtualNetworks": ("azure.mgmt.network", "build_virtual_networks_create_or_update_request"),
        "Microsoft.Network/virtualNetworks/subnets": ("azure.mgmt.network", "build_subnets_create_or_update_request"),
        "Microsoft.Network/networkSecurityGroups": ("azure.mgmt.network", "build_network_security_groups_create_or_update_request"),
        "Microsoft.Network/networkSecurityGroups/securityRules": ("azure.mgmt.network", "build_security_rules_create_or_update_request"),
        "Microsoft.Network/networkInterfaces": ("azure.mgmt.network", "build_network_interfaces_create_or_update_request"),
        "Microsoft.Network/publicIPAddresses": ("azure.mgmt.network", "build_public_ip_addresses_create_or_update_request"),
        "Microsoft.Storage/storageAccounts": ("azure.mgmt.storage", "build_storage_accounts_create_request"),
        "Microsoft.Storage/storageAccounts/blobServices/containers": ("azure.mgmt.storage", "build_blob_containers_create_request"),
        "Microsoft.ManagedIdentity/userAssignedIdentities": (
            "azure.mgmt.msi.v2024_11_30.operations._user_assigned_identities_operations", "build_create_or_update_request"
        ),
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials": (
            "azure.mgmt.msi.v2024_11_30.operations._federated_identity_credentials_operations", "build_create_or_update_request"
        ),
        "Microsoft.Authorization/roleAssignments": ("azure.mgmt.authorization.v2022_04_01.operations._role_assignments_operations", "build_create_request"),
        "Microsoft.KeyVault/vaults": ("azure.mgmt.keyvault", "build_vaults_create_or_update_request"),
        "Microsoft.KeyVault/vaults/secrets": ("azure.mgmt.keyvault", "build_secrets_create_or_update_request"),
        "Microsoft.KeyVault/locations/deletedVaults": ("azure.mgmt.keyvault", "build_vaults_purge_deleted_request"),
    ]

    /// Prints `builder version` for each `package:builder` argument, from the builder's source
    /// (`package` is a package whose builders are in `operations._operations`, or the module of them).
    static let script = """
        import importlib, inspect, re, sys
        for argument in sys.argv[1:]:
            package, builder = argument.split(":")
            module = importlib.import_module(package if package.endswith("_operations") else package + ".operations._operations")
            source = inspect.getsource(getattr(module, builder))
            found = re.search(r'"api-version", "([^"]+)"', source)
            print(builder, found.group(1) if found else "-")
        """

    @Test func everyPinnedVersionIsTheOneTheSDKSends() throws {
        #expect(Set(Self.builders.keys) == Set(AzureAPIVersions.pinned.keys), "every pinned type is checked")
        let arguments = Self.builders.values.map { "\($0.package):\($0.builder)" }
        let output = String(decoding: try run(["python3", "-c", Self.script] + arguments, in: NSTemporaryDirectory()), as: UTF8.self)
        let sent = Dictionary(output.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }) { $1 }
        for (type, source) in Self.builders.sorted(by: { $0.key < $1.key }) {
            #expect(AzureAPIVersions.pinned[type] == sent[source.builder], "\(type): pinned \(AzureAPIVersions.pinned[type] ?? "-"), the SDK sends \(sent[source.builder] ?? "nothing")")
        }
    }
}
