import Foundation
import StratumCloud
import StratumCore
import StratumTesting
import Testing

/// JSON over real loopback HTTP to the ARM fake, as a provider's client would talk to ARM.
private struct ARMCaller {
    let server: LoopbackHTTPServer
    let transport = AsyncHTTPTransport()

    static let apiVersions = [
        "Microsoft.Resources": "2024-03-01", "Microsoft.Network": "2024-05-01", "Microsoft.Compute": "2024-07-01", "Microsoft.Storage": "2023-05-01",
    ]

    struct Answer {
        var status: Int
        var headers: [(String, String)]
        var json: Value

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        var errorCode: String? { json.mapValue?["error"]?.mapValue?["code"]?.stringValue }
        var provisioningState: String? { json.mapValue?["properties"]?.mapValue?["provisioningState"]?.stringValue }
    }

    /// A call to `path` (below the subscription, or a full URL the fake handed out).
    func call(_ method: String, _ path: String, _ body: Value? = nil, apiVersion: String? = nil) async throws -> Answer {
        var text: String
        if path.hasPrefix("http") {
            text = path
        } else {
            text = server.url.absoluteString + "/subscriptions/\(AzureBodies.subscription)" + path
            let namespace = path.components(separatedBy: "/providers/").last?.split(separator: "/").first.map(String.init) ?? "Microsoft.Resources"
            let version = apiVersion ?? Self.apiVersions[namespace] ?? Self.apiVersions["Microsoft.Resources"] ?? ""
            if !version.isEmpty { text += (text.contains("?") ? "&" : "?") + "api-version=\(version)" }
        }
        let url = try #require(URL(string: text))
        let encoder = JSONEncoder()
        let response = try await transport.send(
            HTTPRequestData(method: method, url: url, headers: [("Content-Type", "application/json")], body: try body.map { try encoder.encode($0) } ?? Data()),
            timeout: .seconds(60))
        let json = response.body.isEmpty ? Value.null : try JSONDecoder().decode(Value.self, from: response.body)
        return Answer(status: response.status, headers: response.headers, json: json)
    }

    /// Polls an `Azure-AsyncOperation` URL (at most 20 looks) until its status is terminal.
    func waitAsync(_ url: String) async throws -> (status: Value, polls: Int) {
        for poll in 1...20 {
            let look = try await call("GET", url)
            let status = look.json.mapValue?["status"]?.stringValue
            if status != "InProgress" { return (look.json, poll) }
            #expect(look.header("Retry-After") != nil)
        }
        Issue.record("operation \(url) still running after 20 looks")
        return (.null, 20)
    }
}

private func rg(_ name: String = "rg") -> String { "/resourceGroups/\(name)" }
private func network(_ group: String = "rg", _ type: String, _ name: String) -> String { "\(rg(group))/providers/Microsoft.Network/\(type)/\(name)" }
private func compute(_ group: String = "rg", _ type: String, _ name: String) -> String { "\(rg(group))/providers/Microsoft.Compute/\(type)/\(name)" }

@Suite("The loopback ARM fake", .timeLimit(.minutes(3)))
struct AzureARMFakeTests {
    private func withFake(_ pace: AzureARMFake.OperationPace = .afterPolls(2), _ body: (AzureARMFake, ARMCaller) async throws -> Void) async throws {
        let fake = try AzureARMFake(subscription: AzureBodies.subscription, pace: pace)
        let server = try await fake.serve()
        do {
            try await body(fake, ARMCaller(server: server))
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
        #expect(await fake.violations == [])
    }

    /// The resource group, network (with a subnet), security group and placement group a VM needs, done.
    private func foundation(_ arm: ARMCaller, _ fake: AzureARMFake, group: String = "rg") async throws {
        #expect(try await arm.call("PUT", rg(group), AzureBodies.resourceGroup).status == 201)
        #expect(try await arm.call("PUT", network(group, "virtualNetworks", "net"), AzureBodies.virtualNetwork).status == 201)
        #expect(try await arm.call("PUT", network(group, "networkSecurityGroups", "nsg"), AzureBodies.securityGroup).status == 201)
        #expect(try await arm.call("PUT", compute(group, "proximityPlacementGroups", "ppg"), AzureBodies.placementGroup).status == 201)
        await fake.finishOperations()
    }

    @Test func aGPUNodeIsMadeFromItsPartsAndPutIsIdempotentByName() async throws {
        try await withFake(.afterPolls(0)) { fake, arm in
            try await foundation(arm, fake)
            let subnet = try await arm.call("GET", network("rg", "virtualNetworks", "net") + "/subnets/workers")
            #expect(subnet.status == 200 && subnet.provisioningState == "Succeeded")
            let nic = try await arm.call("PUT", network("rg", "networkInterfaces", "node-0-nic"), AzureBodies.networkInterface())
            #expect(nic.status == 201)
            let vm = try await arm.call("PUT", compute("rg", "virtualMachines", "node-0"), AzureBodies.virtualMachine())
            #expect(vm.status == 201)
            let made = try await arm.call("GET", compute("rg", "virtualMachines", "node-0"))
            let properties = made.json.mapValue?["properties"]?.mapValue ?? [:]
            #expect(made.provisioningState == "Succeeded")
            #expect(properties["hardwareProfile"]?.mapValue?["vmSize"] == "Standard_ND96isr_H100_v5")
            #expect(properties["priority"] == "Spot" && properties["evictionPolicy"] == "Delete")
            #expect(properties["osProfile"]?.mapValue?["customData"] == nil, "customData is never returned")
            #expect(made.json.mapValue?["identity"]?.mapValue?["principalId"]?.stringValue != nil)
            #expect(made.json.mapValue?["zones"] == ["1"])
            let vmID = try #require(properties["vmId"]?.stringValue)

            // The same body again: the same VM, no second operation.
            let before = await fake.operationStatuses().count
            let again = try await arm.call("PUT", compute("rg", "virtualMachines", "node-0"), AzureBodies.virtualMachine())
            #expect(again.status == 200)
            #expect(again.json.mapValue?["properties"]?.mapValue?["vmId"]?.stringValue == vmID)
            #expect(await fake.operationStatuses().count == before)
            #expect(await fake.ids(ofType: "Microsoft.Compute/virtualMachines").count == 1)

            // A changed body updates in place; a changed zone is refused.
            let retagged = try await arm.call("PUT", compute("rg", "virtualMachines", "node-0"), AzureBodies.virtualMachine(tags: ["stratum-stack": "demo", "pool": "a"]))
            #expect(retagged.status == 200)
            #expect(await fake.operationStatuses().count == before + 1)
            #expect(try await arm.call("GET", compute("rg", "virtualMachines", "node-0")).json.mapValue?["tags"]?.mapValue?["pool"] == "a")
            let moved = try await arm.call("PUT", compute("rg", "virtualMachines", "node-0"), AzureBodies.virtualMachine(zone: "2"))
            #expect(moved.status == 409 && moved.errorCode == "PropertyChangeNotAllowed")

            // PATCH replaces the tag set.
            let patched = try await arm.call("PATCH", compute("rg", "virtualMachines", "node-0"), ["tags": ["only": "this"]])
            #expect(patched.status == 200 && patched.json.mapValue?["tags"] == ["only": "this"])

            // A NIC in use by a VM cannot go; after the VM it can.
            let early = try await arm.call("DELETE", network("rg", "networkInterfaces", "node-0-nic"))
            #expect(early.status == 400 && early.errorCode == "NicInUse")
            #expect(try await arm.call("DELETE", compute("rg", "virtualMachines", "node-0")).status == 202)
            #expect(try await arm.call("GET", compute("rg", "virtualMachines", "node-0")).status == 404)
            #expect(try await arm.call("DELETE", network("rg", "networkInterfaces", "node-0-nic")).status == 202)

            // Someone deletes the network outside Stratum: it and its subnet are gone.
            let net = AzureBodies.id("rg", "Microsoft.Network/virtualNetworks", "net")
            #expect(await fake.resource(net + "/subnets/workers") != nil)
            await fake.deleteOutOfBand(net)
            #expect(await fake.resource(net) == nil)
            #expect(await fake.ids(ofType: "Microsoft.Network/virtualNetworks/subnets") == [])
            #expect(try await arm.call("GET", network("rg", "virtualNetworks", "net")).errorCode == "ResourceNotFound")
        }
    }

    @Test func eachOperationStyleRunsToCompletionWithRetryAfter() async throws {
        try await withFake(.afterPolls(3)) { fake, arm in
            await fake.set(retryAfter: 5)
            #expect(try await arm.call("PUT", rg(), AzureBodies.resourceGroup).status == 201)
            for style in [AzureARMFake.AsyncStyle.azureAsyncOperation, .location, .provisioningState] {
                await fake.set(style: style, for: "Microsoft.Network/publicIPAddresses")
                let path = network("rg", "publicIPAddresses", "ip-\(style.rawValue)")
                let put = try await arm.call("PUT", path, AzureBodies.publicIP)
                #expect(put.header("Retry-After") == "5", "\(style)")
                switch style {
                case .azureAsyncOperation:
                    #expect(put.status == 201 && put.provisioningState == "Creating")
                    let url = try #require(put.header("Azure-AsyncOperation"))
                    #expect(put.header("Location") == nil)
                    let (status, polls) = try await arm.waitAsync(url)
                    #expect(status.mapValue?["status"] == "Succeeded")
                    #expect(polls == 3)
                case .location:
                    #expect(put.status == 202 && put.json == .null)
                    let url = try #require(put.header("Location"))
                    #expect(put.header("Azure-AsyncOperation") == nil)
                    var looks = 0
                    var last = try await arm.call("GET", url)
                    looks += 1
                    while last.status == 202 && looks < 20 {
                        #expect(last.header("Retry-After") == "5")
                        last = try await arm.call("GET", last.header("Location") ?? url)
                        looks += 1
                    }
                    #expect(looks == 3)
                    #expect(last.status == 200 && last.provisioningState == "Succeeded")
                    #expect(last.json.mapValue?["properties"]?.mapValue?["ipAddress"]?.stringValue != nil)
                default:
                    #expect(put.status == 201 && put.header("Location") == nil && put.header("Azure-AsyncOperation") == nil)
                    var states: [String] = []
                    for _ in 0..<5 { states.append(try await arm.call("GET", path).provisioningState ?? "") }
                    #expect(states == ["Creating", "Creating", "Succeeded", "Succeeded", "Succeeded"])
                }
            }
            // Deletes: Azure-AsyncOperation with a Location for the result, gone when done.
            await fake.set(style: nil, for: "Microsoft.Network/publicIPAddresses")
            let delete = try await arm.call("DELETE", network("rg", "publicIPAddresses", "ip-azureAsyncOperation"))
            #expect(delete.status == 202 && delete.header("Location") != nil)
            #expect(try await arm.call("GET", network("rg", "publicIPAddresses", "ip-azureAsyncOperation")).provisioningState == "Deleting")
            let (status, _) = try await arm.waitAsync(try #require(delete.header("Azure-AsyncOperation")))
            #expect(status.mapValue?["status"] == "Succeeded")
            #expect(try await arm.call("GET", network("rg", "publicIPAddresses", "ip-azureAsyncOperation")).status == 404)
            let result = try await arm.call("GET", try #require(delete.header("Location")))
            #expect(result.status == 204)
            #expect(try await arm.call("DELETE", network("rg", "publicIPAddresses", "never-made")).status == 204)
            // A resource group's delete takes everything in it.
            let groupDelete = try await arm.call("DELETE", rg())
            #expect(groupDelete.status == 202)
            await fake.finishOperations()
            #expect(await fake.ids(ofType: "Microsoft.Network/publicIPAddresses") == [])
            #expect(try await arm.call("GET", rg()).errorCode == "ResourceGroupNotFound")
        }
    }

    @Test func onDemandOperationsWaitForTheTest() async throws {
        try await withFake(.onDemand) { fake, arm in
            #expect(try await arm.call("PUT", rg(), AzureBodies.resourceGroup).status == 201)
            let put = try await arm.call("PUT", network("rg", "virtualNetworks", "net"), AzureBodies.virtualNetwork)
            let url = try #require(put.header("Azure-AsyncOperation"))
            for _ in 0..<5 { #expect(try await arm.call("GET", url).json.mapValue?["status"] == "InProgress") }
            // The same PUT while it runs answers the same operation.
            let again = try await arm.call("PUT", network("rg", "virtualNetworks", "net"), AzureBodies.virtualNetwork)
            #expect(again.status == 200 && again.header("Azure-AsyncOperation") == url)
            #expect(await fake.finishOperations() == 1)
            #expect(try await arm.call("GET", url).json.mapValue?["status"] == "Succeeded")
        }
    }

    @Test func allocationFailsPerZoneAndQuotaAndThrottlingComeOnDemand() async throws {
        try await withFake(.afterPolls(1)) { fake, arm in
            try await foundation(arm, fake)
            await fake.set(allocationFailures: ["1": "ZonalAllocationFailed", "3": "SkuNotAvailable", "": "AllocationFailed"])
            for (index, zone) in ["1", "2", "3"].enumerated() {
                #expect(try await arm.call("PUT", network("rg", "networkInterfaces", "nic-\(index)"), AzureBodies.networkInterface()).status == 201)
                await fake.finishOperations()
                let put = try await arm.call("PUT", compute("rg", "virtualMachines", "vm-\(index)"), AzureBodies.virtualMachine(nic: "nic-\(index)", zone: zone))
                switch zone {
                case "1":
                    #expect(put.status == 201)
                    let (status, _) = try await arm.waitAsync(try #require(put.header("Azure-AsyncOperation")))
                    #expect(status.mapValue?["status"] == "Failed")
                    #expect(status.mapValue?["error"]?.mapValue?["code"] == "ZonalAllocationFailed")
                    #expect(try await arm.call("GET", compute("rg", "virtualMachines", "vm-0")).provisioningState == "Failed")
                case "2":
                    let (status, _) = try await arm.waitAsync(try #require(put.header("Azure-AsyncOperation")))
                    #expect(status.mapValue?["status"] == "Succeeded")
                default:
                    #expect(put.status == 409 && put.errorCode == "SkuNotAvailable")
                    #expect(put.json.mapValue?["error"]?.mapValue?["message"]?.stringValue?.contains("zones '3'") == true)
                }
            }
            // Without zones, the region's failure applies.
            #expect(try await arm.call("PUT", network("rg", "networkInterfaces", "nic-r"), AzureBodies.networkInterface()).status == 201)
            await fake.finishOperations()
            let regional = try await arm.call("PUT", compute("rg", "virtualMachines", "vm-r"), AzureBodies.virtualMachine(nic: "nic-r", zone: nil))
            let (status, _) = try await arm.waitAsync(try #require(regional.header("Azure-AsyncOperation")))
            #expect(status.mapValue?["error"]?.mapValue?["code"] == "AllocationFailed")
            let injected = await fake.injected
            #expect(injected["allocation"] == 2 && injected["sku"] == 1)

            await fake.inject(.quotaExceeded(family: "standardNDSH100v5Family"), into: "PUT Microsoft.Compute/virtualMachines")
            let quota = try await arm.call("PUT", compute("rg", "virtualMachines", "vm-q"), AzureBodies.virtualMachine(nic: "nic-r", zone: "2"))
            #expect(quota.status == 409 && quota.errorCode == "QuotaExceeded")
            #expect(quota.json.mapValue?["error"]?.mapValue?["details"]?.listValue?.first?.mapValue?["target"] == "standardNDSH100v5Family")

            await fake.inject(.throttled(retryAfter: 17), into: "GET Microsoft.Compute/virtualMachines", times: 2)
            for _ in 0..<2 {
                let throttled = try await arm.call("GET", compute("rg", "virtualMachines", "vm-1"))
                #expect(throttled.status == 429 && throttled.errorCode == "TooManyRequests" && throttled.header("Retry-After") == "17")
            }
            #expect(try await arm.call("GET", compute("rg", "virtualMachines", "vm-1")).status == 200)

            // A lost answer: the create took effect; the same PUT again finds the operation running.
            await fake.set(pace: .onDemand)
            await fake.inject(.lostResponse, into: "PUT Microsoft.Compute/virtualMachines")
            let lost = try await arm.call("PUT", compute("rg", "virtualMachines", "vm-l"), AzureBodies.virtualMachine(nic: "nic-r", zone: "2"))
            #expect(lost.status == 504 && lost.errorCode == "GatewayTimeout")
            let replay = try await arm.call("PUT", compute("rg", "virtualMachines", "vm-l"), AzureBodies.virtualMachine(nic: "nic-r", zone: "2"))
            #expect(replay.status == 200 && replay.provisioningState == "Creating" && replay.header("Azure-AsyncOperation") != nil)
            let counted = await fake.injected
            #expect(counted["throttled"] == 2 && counted["quota"] == 1 && counted["lostResponse"] == 1)

            // A seeded share of all calls throttled: some of 200 reads, not all.
            await fake.set(throttleShare: 0.3)
            var statuses: [Int] = []
            for _ in 0..<200 { statuses.append(try await arm.call("GET", rg()).status) }
            let throttled = statuses.filter { $0 == 429 }.count
            #expect(throttled > 20 && throttled < 100, "\(throttled) of 200")
            #expect(Set(statuses) == [200, 429])
            await fake.set(throttleShare: 0)
        }
    }

    @Test func listsArePagedWithNextLinkAndFilteredByTag() async throws {
        try await withFake(.afterPolls(0)) { fake, arm in
            await fake.set(pageSize: 2)
            for group in ["rg-a", "rg-b"] {
                let tags: Value = ["stratum-stack": .string(group == "rg-a" ? "a" : "b")]
                #expect(try await arm.call("PUT", rg(group), ["location": "eastus", "tags": tags]).status == 201)
                for index in 0..<3 {
                    var body = AzureBodies.publicIP.mapValue ?? [:]
                    body["tags"] = tags
                    #expect(try await arm.call("PUT", network(group, "publicIPAddresses", "ip-\(index)"), .map(body)).status == 201)
                }
            }
            func all(_ path: String) async throws -> (names: [String], pages: Int) {
                var names: [String] = []
                var page = try await arm.call("GET", path)
                var pages = 1
                while true {
                    #expect(page.status == 200, "\(path): \(page.json)")
                    names += (page.json.mapValue?["value"]?.listValue ?? []).compactMap { $0.mapValue?["name"]?.stringValue }
                    guard let next = page.json.mapValue?["nextLink"]?.stringValue, pages < 20 else { break }
                    page = try await arm.call("GET", next)
                    pages += 1
                }
                return (names, pages)
            }
            let everywhere = try await all("/providers/Microsoft.Network/publicIPAddresses")
            #expect(everywhere.names.count == 6 && everywhere.pages == 3)
            let inGroup = try await all("\(rg("rg-b"))/providers/Microsoft.Network/publicIPAddresses")
            #expect(inGroup.names == ["ip-0", "ip-1", "ip-2"] && inGroup.pages == 2)
            let tagged = try await all("/resources?$filter=" + "tagName eq 'stratum-stack' and tagValue eq 'a'".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            #expect(tagged.names == ["ip-0", "ip-1", "ip-2"])
            let groups = try await all("/resourcegroups?$filter=" + "tagName eq 'stratum-stack' and tagValue eq 'b'".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            #expect(groups.names == ["rg-b"])
            let typed = try await all("\(rg("rg-a"))/resources?$filter=" + "resourceType eq 'Microsoft.Network/publicIPAddresses'".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            #expect(typed.names.count == 3)
            let bad = try await arm.call("GET", "/resources?$filter=" + "location eq 'eastus'".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            #expect(bad.status == 400 && bad.errorCode == "InvalidFilterInQueryString")
        }
    }

    @Test func requestsARMWouldRefuseAreRefusedAndBadBodiesRecorded() async throws {
        let fake = try AzureARMFake(subscription: AzureBodies.subscription, pace: .afterPolls(0))
        let server = try await fake.serve()
        let arm = ARMCaller(server: server)
        let missing = try await arm.call("PUT", network("rg", "virtualNetworks", "net"), AzureBodies.virtualNetwork)
        #expect(missing.status == 404 && missing.errorCode == "ResourceGroupNotFound")
        #expect(try await arm.call("PUT", rg(), AzureBodies.resourceGroup).status == 201)
        let dangling = try await arm.call("PUT", network("rg", "networkInterfaces", "nic"), AzureBodies.networkInterface())
        #expect(dangling.status == 400 && dangling.errorCode == "InvalidResourceReference")
        let orphan = try await arm.call("PUT", network("rg", "virtualNetworks", "nope") + "/subnets/s", AzureBodies.subnet)
        #expect(orphan.status == 404 && orphan.errorCode == "ParentResourceNotFound")
        #expect(await fake.violations == [])

        let noVersion = try await arm.call("GET", rg(), apiVersion: "")
        #expect(noVersion.status == 400 && noVersion.errorCode == "MissingApiVersionParameter")
        var body = AzureBodies.publicIP.mapValue ?? [:]
        body["properties"] = ["publicIPAllocationMethod": "Static", "ipAddress": "1.2.3.4", "idleTimeoutInMinutes": "4", "resourceGuid": "mine"]
        #expect(try await arm.call("PUT", network("rg", "publicIPAddresses", "ip"), .map(body)).status == 201)
        let all = await fake.violations
        // The fake's answer echoes the bad field, and its own check of the answer records that too.
        #expect(all.contains { $0.hasPrefix("response ") && $0.contains("idleTimeoutInMinutes") })
        let recorded = all.filter { !$0.hasPrefix("response ") }
        #expect(recorded.count == 3, "\(recorded)")
        #expect(recorded.contains { $0.hasSuffix("no api-version") })
        #expect(recorded.contains { $0.contains("wrongType at body.properties.idleTimeoutInMinutes") })
        #expect(recorded.contains { $0.contains("readOnlyField at body.properties.resourceGuid") })
        #expect(await fake.apiVersions["Microsoft.Network/publicIPAddresses"] == ["2024-05-01"])
        await server.shutdown()
    }
}
