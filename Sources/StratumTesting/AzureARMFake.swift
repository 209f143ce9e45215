import Foundation
import StratumCore

/// A loopback fake of Azure Resource Manager for what a GPU cluster uses: resource groups,
/// virtual networks, subnets, network security groups and their rules, network interfaces,
/// public IP addresses, proximity placement groups, virtual machines, storage accounts (and
/// their `listKeys`), blob containers, user-assigned managed identities (each with a principal
/// and client id of its own) and role assignments at any resource's scope, which name a
/// principal that must exist (400 `PrincipalNotFound` otherwise, as for a deleted identity),
/// and key vaults with their secrets: a secret's `value` is kept apart and never answered (ARM
/// does not return it; `AzureKeyVaultFake` serves it on the data plane), a deleted vault is kept
/// soft-deleted (its name refused to a new vault, 409) until it is purged
/// (`…/locations/{l}/deletedVaults/{name}` GET and `/purge` POST), and vault names are unique
/// across resource groups.
///
/// PUT is idempotent by name (the same body again answers the resource as it is); changed
/// bodies update it. Creates, updates and deletes run as asynchronous operations in the three
/// styles ARM uses (an `Azure-AsyncOperation` URL, a `Location` URL, or `provisioningState` on
/// the resource itself), finishing after N polls or when a test says so, with `Retry-After`.
/// Allocation failures per zone, quota errors and throttling come on demand. Lists, per resource
/// group and per subscription, take `$filter` on tags or resource type (role assignments: on
/// the principal) and are paged with `nextLink` (`set(pageSize:)`); the `resources` list
/// filtered by a tag's name and value leaves the tags out, as ARM's does. Every PUT and PATCH body is checked against the Azure SDK's model for it
/// (`AzureModelValidator`); what is wrong is recorded in `violations` (tests assert there are
/// none). Errors use ARM's body shape: `{"error": {"code", "message", "details": [...]}}`.
public actor AzureARMFake {
    /// How an asynchronous operation is reported to the caller.
    public enum AsyncStyle: String, Sendable, CaseIterable {
        /// `Azure-AsyncOperation` header: poll the URL for `{"status": ...}`.
        case azureAsyncOperation
        /// `Location` header: poll the URL, 202 while running, then the result.
        case location
        /// No header: GET the resource until `properties.provisioningState` is terminal.
        case provisioningState
        /// The call completes before it answers.
        case synchronous
    }

    /// When an operation finishes.
    public enum OperationPace: Sendable, Hashable {
        /// On the n-th poll (of the operation URL, or of the resource for `provisioningState`);
        /// 0 finishes it before the call answers.
        case afterPolls(Int)
        /// Only once a test calls `finishOperations()`.
        case onDemand
    }

    /// A fault injected into the next call of an operation such as `PUT Microsoft.Compute/virtualMachines`.
    public enum Fault: Sendable, Hashable {
        /// HTTP 429 `TooManyRequests` with `Retry-After: seconds`.
        case throttled(retryAfter: Int)
        /// HTTP 500 `InternalServerError`.
        case serverError
        /// The call takes effect but its answer is lost: HTTP 504 `GatewayTimeout` instead.
        case lostResponse
        /// HTTP 409 `QuotaExceeded` for the VM family's cores in the VM's region.
        case quotaExceeded(family: String)
    }

    public let subscription: String
    public let validator: AzureModelValidator
    public private(set) var pace: OperationPace
    /// The `Retry-After` (seconds) sent with operations that are still running.
    public private(set) var retryAfter: Int = 1
    /// Items per list page.
    public private(set) var pageSize: Int = 100
    /// Style overrides by resource type (`Microsoft.Compute/virtualMachines`); others use `defaultStyles`.
    public private(set) var styles: [String: AsyncStyle] = [:]
    /// VM creation in a zone (`"1"`; `""` for VMs without zones) fails with the code:
    /// `ZonalAllocationFailed`, `AllocationFailed`, `OverconstrainedAllocationRequest`,
    /// `OverconstrainedZonalAllocationRequest` fail the operation; `SkuNotAvailable` refuses the PUT.
    public private(set) var allocationFailures: [String: String] = [:]

    /// The customData last sent for each VM (by lowercased id), base64 as sent.
    private var sentCustomData: [String: String] = [:]

    /// The customData a VM was last created or updated with (ARM itself never returns it).
    public func customData(of id: String) -> String? { sentCustomData[id.lowercased()] }

    /// What was wrong with received requests, as `METHOD path: violation`.
    public private(set) var violations: [String] = []
    /// Calls by operation (`PUT Microsoft.Compute/virtualMachines`, `GET operation`), faults included.
    public private(set) var calls: [String: Int] = [:]
    /// The api-versions received per resource type.
    public private(set) var apiVersions: [String: Set<String>] = [:]
    /// Faults and failures injected per kind (`throttled`, `serverError`, `lostResponse`, `quota`, `allocation`, `sku`).
    public private(set) var injected: [String: Int] = [:]

    /// Share of calls answered with 429 (`Retry-After: retryAfter`), 0…1, drawn from a seeded generator.
    public private(set) var throttleShare: Double = 0
    private var random: UInt64

    private var faults: [String: [Fault]] = [:]
    /// Resources by lower-cased id.
    private var resources: [String: Stored] = [:]
    private var operations: [String: Operation] = [:]
    private var nextID = 1
    /// Storage account keys by lower-cased account name (base64), made at the first `listKeys`.
    private var storageKeys: [String: String] = [:]
    /// Vault secrets' values and current versions by lower-cased secret id: never in what ARM answers.
    private var secretValues: [String: (value: String, version: String)] = [:]
    /// Deleted (soft-deleted) vaults by lower-cased name, until purged.
    private var deletedVaults: [String: DeletedVault] = [:]

    private struct DeletedVault {
        var id: String
        var location: String
        var tags: [String: String]
    }

    /// How ARM answers each type by default.
    public static let defaultStyles: [String: AsyncStyle] = [
        "Microsoft.Resources/resourceGroups": .synchronous,
        "Microsoft.Network/virtualNetworks": .azureAsyncOperation,
        "Microsoft.Network/virtualNetworks/subnets": .azureAsyncOperation,
        "Microsoft.Network/networkSecurityGroups": .azureAsyncOperation,
        "Microsoft.Network/networkSecurityGroups/securityRules": .azureAsyncOperation,
        "Microsoft.Network/networkInterfaces": .azureAsyncOperation,
        "Microsoft.Network/publicIPAddresses": .azureAsyncOperation,
        "Microsoft.Compute/proximityPlacementGroups": .synchronous,
        "Microsoft.Compute/virtualMachines": .azureAsyncOperation,
        "Microsoft.Storage/storageAccounts": .location,
        "Microsoft.Storage/storageAccounts/blobServices/containers": .synchronous,
        "Microsoft.ManagedIdentity/userAssignedIdentities": .synchronous,
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials": .synchronous,
        "Microsoft.Authorization/roleAssignments": .synchronous,
        "Microsoft.KeyVault/vaults": .synchronous,
        "Microsoft.KeyVault/vaults/secrets": .synchronous,
    ]

    /// The SDK model for PUT and PATCH bodies of each type.
    static let bodyModels: [String: (put: String, patch: String)] = [
        "Microsoft.Resources/resourceGroups": ("ResourceGroup", "ResourceGroupPatchable"),
        "Microsoft.Network/virtualNetworks": ("VirtualNetwork", "TagsObject"),
        "Microsoft.Network/virtualNetworks/subnets": ("Subnet", "Subnet"),
        "Microsoft.Network/networkSecurityGroups": ("NetworkSecurityGroup", "TagsObject"),
        "Microsoft.Network/networkSecurityGroups/securityRules": ("SecurityRule", "SecurityRule"),
        "Microsoft.Network/networkInterfaces": ("NetworkInterface", "TagsObject"),
        "Microsoft.Network/publicIPAddresses": ("PublicIPAddress", "TagsObject"),
        "Microsoft.Compute/proximityPlacementGroups": ("ProximityPlacementGroup", "ProximityPlacementGroupUpdate"),
        "Microsoft.Compute/virtualMachines": ("VirtualMachine", "VirtualMachineUpdate"),
        "Microsoft.Storage/storageAccounts": ("StorageAccountCreateParameters", "StorageAccountUpdateParameters"),
        "Microsoft.Storage/storageAccounts/blobServices/containers": ("BlobContainer", "BlobContainer"),
        "Microsoft.ManagedIdentity/userAssignedIdentities": ("Identity", "IdentityUpdate"),
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials": ("FederatedIdentityCredential", "FederatedIdentityCredential"),
        "Microsoft.Authorization/roleAssignments": ("RoleAssignmentCreateParameters", "RoleAssignmentCreateParameters"),
        "Microsoft.KeyVault/vaults": ("VaultCreateOrUpdateParameters", "VaultPatchParameters"),
        "Microsoft.KeyVault/vaults/secrets": ("SecretCreateOrUpdateParameters", "SecretPatchParameters"),
    ]

    /// The SDK model of what a GET answers for each type, where it is not the PUT body's.
    static let responseModels: [String: String] = [
        "Microsoft.Storage/storageAccounts": "StorageAccount", "Microsoft.Authorization/roleAssignments": "RoleAssignment",
        "Microsoft.KeyVault/vaults": "Vault", "Microsoft.KeyVault/vaults/secrets": "Secret",
    ]

    /// The tenant of every principal the fake makes.
    public static let tenant = "00000000-0000-4000-8000-00000000feed"

    /// Codes that fail a VM's create operation (the rest of `allocationFailures` refuse the PUT).
    static let operationAllocationCodes: Set<String> = [
        "ZonalAllocationFailed", "AllocationFailed", "OverconstrainedAllocationRequest", "OverconstrainedZonalAllocationRequest",
    ]

    public init(subscription: String = "00000000-0000-4000-8000-000000000001", pace: OperationPace = .afterPolls(2), seed: UInt64 = 0x5eed) throws {
        self.subscription = subscription
        self.pace = pace
        self.random = seed
        self.validator = try AzureModelValidator.installedSDK()
    }

    public func set(pace: OperationPace) { self.pace = pace }
    public func set(retryAfter: Int) { self.retryAfter = retryAfter }
    public func set(pageSize: Int) { self.pageSize = max(1, pageSize) }
    public func set(throttleShare: Double) { self.throttleShare = throttleShare }
    public func set(style: AsyncStyle?, for type: String) { styles[type] = style }
    public func set(allocationFailures: [String: String]) { self.allocationFailures = allocationFailures }
    /// The key `listKeys` answers for a storage account (a blob fake's, so its uploads are checked for real).
    public func set(storageKey: String, forAccount account: String) { storageKeys[account.lowercased()] = storageKey }

    /// Queues `fault` for the next `times` calls of `operation` (`PUT Microsoft.Compute/virtualMachines`).
    public func inject(_ fault: Fault, into operation: String, times: Int = 1) {
        faults[operation, default: []] += Array(repeating: fault, count: times)
    }

    /// Serves the fake on 127.0.0.1; point a client's ARM endpoint at `url`.
    public nonisolated func serve() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { [self] request in await self.handle(request) }
    }

    /// Finishes every running operation now; returns how many finished.
    @discardableResult
    public func finishOperations() -> Int {
        let running = operations.filter { $0.value.status == "InProgress" }.keys.sorted()
        for id in running { complete(id) }
        return running.count
    }

    /// A resource as a GET would answer it, by id (any case).
    public func resource(_ id: String) -> Value? { resources[id.lowercased()].map { render($0) } }

    /// Ids of the stored resources of a type (`Microsoft.Compute/virtualMachines`), sorted.
    public func ids(ofType type: String) -> [String] {
        resources.values.filter { $0.type.lowercased() == type.lowercased() }.map(\.id).sorted()
    }

    /// Ids of every stored resource, of any type, sorted.
    public var allIDs: [String] { resources.values.map(\.id).sorted() }

    /// Removes a resource (and what is below it) at once, as someone acting outside Stratum would.
    public func deleteOutOfBand(_ id: String) { removeTree(id.lowercased()) }

    /// Operation statuses (`InProgress`, `Succeeded`, `Failed`) by operation id.
    public func operationStatuses() -> [String: String] { operations.mapValues(\.status) }

    // MARK: Requests

    public func handle(_ request: ProxyRequest) -> ProxyResponse {
        let base = "http://" + (request.header("host") ?? "127.0.0.1")
        let (path, query) = DiscoveryValidator.split(uri: request.uri)
        let segments = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard let route = Route(segments: segments, subscription: subscription) else {
            violations.append("\(request.method) \(path): no ARM operation of the fake answers this path")
            return Self.error(404, "InvalidResourceType", "The resource type could not be found for the path '\(path)'.")
        }
        let operationName = "\(request.method) \(route.operationType)"
        calls[operationName, default: 0] += 1
        guard let apiVersion = query["api-version"]?.first, !apiVersion.isEmpty else {
            violations.append("\(request.method) \(path): no api-version")
            return Self.error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        }
        apiVersions[route.operationType, default: []].insert(apiVersion)
        var loseAnswer = false
        var next = faults[operationName]?.first ?? faults["*"]?.first
        if next != nil {
            if faults[operationName]?.isEmpty == false { faults[operationName]?.removeFirst() } else { faults["*"]?.removeFirst() }
        } else if throttleShare > 0, nextUniform() < throttleShare {
            next = .throttled(retryAfter: retryAfter)
        }
        if let fault = next {
            switch fault {
            case .throttled(let seconds):
                count("throttled")
                var response = Self.error(429, "TooManyRequests", "The request is being throttled as the limit has been reached for operation type '\(operationName)'. Retry after \(seconds) seconds.")
                response.headers.append(("Retry-After", String(seconds)))
                return response
            case .serverError:
                count("serverError")
                return Self.error(500, "InternalServerError", "An internal server error occurred. Please retry the request.")
            case .lostResponse:
                loseAnswer = true
            case .quotaExceeded(let family):
                count("quota")
                let location = (try? JSONDecoder().decode(Value.self, from: request.body))?.mapValue?["location"]?.stringValue ?? ""
                return Self.error(
                    409, "QuotaExceeded",
                    "Operation could not be completed as it results in exceeding approved \(family) Cores quota. Additional details - Deployment Model: Resource Manager, Location: \(location), Current Limit: 0, Current Usage: 0, Additional Required: 96.",
                    details: [["code": "QuotaExceeded", "target": .string(family), "message": .string("Quota exceeded for \(family) in \(location).")]])
            }
        }
        let response: ProxyResponse
        switch (route.kind, request.method) {
        case (.asyncOperation(let id), "GET"): response = pollAsyncOperation(id)
        case (.operationResult(let id), "GET"): response = pollOperationResult(id, base: base, apiVersion: apiVersion)
        case (.resource, "GET"): response = get(route)
        case (.resource, "PUT"): response = put(route, request: request, base: base, apiVersion: apiVersion)
        case (.resource, "PATCH"): response = patch(route, request: request, base: base, apiVersion: apiVersion)
        case (.resource, "DELETE"): response = delete(route, base: base, apiVersion: apiVersion)
        case (.list(let generic), "GET"): response = list(route, generic: generic, query: query, base: base, path: path)
        case (.action("listKeys"), "POST"): response = listKeys(route)
        case (.deletedVault(let location, let name, purge: false), "GET"): response = deletedVault(location: location, name: name)
        case (.deletedVault(let location, let name, purge: true), "POST"): response = purgeDeletedVault(location: location, name: name)
        default:
            violations.append("\(request.method) \(path): method not allowed")
            return Self.error(405, "MethodNotAllowed", "The requested resource does not support http method '\(request.method)'.")
        }
        if loseAnswer, response.status < 300 {
            count("lostResponse")
            return Self.error(504, "GatewayTimeout", "The gateway did not receive a response from 'Microsoft.Network' within the specified time period.")
        }
        return response
    }

    // MARK: Reads

    private func get(_ route: Route) -> ProxyResponse {
        guard let stored = resources[route.key] else { return notFound(route) }
        if stored.style == .provisioningState, let operation = stored.operation { poll(operation) }
        guard let current = resources[route.key] else { return notFound(route) }
        return Self.json(200, render(current))
    }

    private func list(_ route: Route, generic: Bool, query: [String: [String]], base: String, path: String) -> ProxyResponse {
        if let group = route.resourceGroup, resources[Route.groupKey(subscription, group)] == nil {
            return Self.error(404, "ResourceGroupNotFound", "Resource group '\(group)' could not be found.")
        }
        let filter: ListFilter
        do {
            filter = try ListFilter(query["$filter"]?.first ?? "", roleAssignments: route.type == "Microsoft.Authorization/roleAssignments")
        } catch {
            return Self.error(400, "InvalidFilterInQueryString", "Invalid $filter '\(query["$filter"]?.first ?? "")' specified in the query string.")
        }
        let matching = resources.values.filter { stored in
            guard stored.key.hasPrefix(route.scopeKey + "/") else { return false }
            if generic {
                // Top-level resources only, or resource groups for the group list.
                // Role assignments are extensions of their scope, not resources of the group.
                return stored.type != "Microsoft.Resources/resourceGroups" && stored.type != "Microsoft.Authorization/roleAssignments"
                    && stored.type.split(separator: "/").count == 2
            }
            return stored.type.lowercased() == route.type.lowercased() && (route.parentKey.map { stored.key.hasPrefix($0 + "/") } ?? true)
        }.filter { filter.matches(type: $0.type, tags: $0.tags, principal: $0.json.mapValue?["properties"]?.mapValue?["principalId"]?.stringValue) }
            .sorted { $0.key < $1.key }
        let top = query["$top"]?.first.flatMap { Int($0) }
        let size = min(pageSize, top ?? pageSize)
        let start = Int(query["$skiptoken"]?.first ?? "0") ?? -1
        guard start >= 0, start <= matching.count else {
            return Self.error(400, "InvalidSkipToken", "The $skiptoken in the query string is not valid.")
        }
        let end = min(matching.count, start + size)
        var answer: [String: Value] = [
            "value": .list(matching[start..<end].map { stored in
                guard generic && stored.type != "Microsoft.Resources/resourceGroups" else { return render(stored) }
                // Filtered by a tag's name and value, the resources list leaves every resource's tags out.
                return genericView(stored, tags: filter.tagValue == nil)
            })
        ]
        if end < matching.count {
            var items = query.filter { $0.key != "$skiptoken" }.flatMap { entry in entry.value.map { (entry.key, $0) } }
            items.append(("$skiptoken", String(end)))
            answer["nextLink"] = .string(base + path + "?" + items.sorted { $0.0 < $1.0 }.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&"))
        }
        return Self.json(200, .map(answer))
    }

    /// A resource as the generic `resources` list shows it.
    private func genericView(_ stored: Stored, tags: Bool) -> Value {
        var view: [String: Value] = ["id": .string(stored.id), "name": .string(stored.name), "type": .string(stored.type)]
        let body = stored.json.mapValue ?? [:]
        for key in ["location", "tags", "zones", "kind", "sku", "identity"] where tags || key != "tags" { if let value = body[key] { view[key] = value } }
        return .map(view)
    }

    // MARK: Writes

    private func put(_ route: Route, request: ProxyRequest, base: String, apiVersion: String) -> ProxyResponse {
        guard let models = Self.bodyModels[route.type] else { return notFound(route) }
        let body: Value
        do {
            body = try JSONDecoder().decode(Value.self, from: request.body)
        } catch {
            violations.append("PUT \(route.path): body is not JSON")
            return Self.error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        }
        for violation in validator.validate(body, as: models.put) { violations.append("PUT \(route.path): \(violation)") }
        if let missing = missingParent(route) { return missing }
        if let existing = resources[route.key] {
            if existing.provisioningState == "Deleting" {
                return Self.error(409, "Conflict", "The resource '\(existing.id)' is being deleted; operation 'PUT' cannot be performed.")
            }
            if existing.requestBody == body, existing.provisioningState != "Failed" {
                // The same body again: the resource as it is, and the operation still running, if any.
                var response = Self.json(200, render(existing))
                if let operation = existing.operation, operations[operation]?.status == "InProgress" {
                    response.headers += operationHeaders(operation, style: existing.style, base: base, apiVersion: apiVersion)
                }
                return response
            }
            if let refusal = immutableChange(existing, body) { return refusal }
        }
        if let dangling = danglingReference(in: body, route: route) { return dangling }
        if let refusal = roleAssignmentRefusal(route, body) ?? identityRefusal(route, body) ?? vaultRefusal(route) { return refusal }
        var fields = body.mapValue ?? [:]
        keepSecretValue(route, &fields)
        let location = route.type == "Microsoft.Authorization/roleAssignments" ? "" : fields["location"]?.stringValue ?? parentLocation(route) ?? ""
        var allocationFailure: String?
        if route.type == "Microsoft.Compute/virtualMachines" {
            let zone = fields["zones"]?.listValue?.first?.stringValue ?? ""
            let size = fields["properties"]?.mapValue?["hardwareProfile"]?.mapValue?["vmSize"]?.stringValue ?? ""
            if let code = allocationFailures[zone] {
                if Self.operationAllocationCodes.contains(code) {
                    allocationFailure = code
                } else {
                    count("sku")
                    let zones = zone.isEmpty ? "" : " zones '\(zone)'"
                    return Self.error(
                        409, code,
                        "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: \(size)' is currently not available in location '\(location)'\(zones). Please try another size or deploy to a different location or different zone.")
                }
            }
        }
        let creating = resources[route.key] == nil
        let style = styles[route.type] ?? Self.defaultStyles[route.type] ?? .synchronous
        if !location.isEmpty, route.type != "Microsoft.Storage/storageAccounts/blobServices/containers", route.depth == 1 || fields["location"] != nil {
            fields["location"] = .string(location)
        }
        var stored = Stored(
            id: route.id, type: route.type, json: .map(fields), requestBody: body,
            provisioningState: creating ? "Creating" : "Updating", style: style, operation: nil, serial: resources[route.key]?.serial ?? nextSerial())
        stored.json = stamp(stored, base: fields)
        resources[route.key] = stored
        materializeChildren(of: route, body: fields)
        let failure = allocationFailure.map { code -> Value in
            count("allocation")
            let zone = fields["zones"]?.listValue?.first?.stringValue
            let message = zone.map { "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone (\($0)). Read more about improving likelihood of allocation success at https://aka.ms/allocation-guidance" }
                ?? "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at https://aka.ms/allocation-guidance"
            return ["code": .string(code), "message": .string(message)]
        }
        return startOperation(route: route, kind: creating ? .create : .update, style: style, location: location, failure: failure, base: base, apiVersion: apiVersion, created: creating)
    }

    private func patch(_ route: Route, request: ProxyRequest, base: String, apiVersion: String) -> ProxyResponse {
        guard let models = Self.bodyModels[route.type] else { return notFound(route) }
        guard let body = try? JSONDecoder().decode(Value.self, from: request.body), let changes = body.mapValue else {
            violations.append("PATCH \(route.path): body is not a JSON object")
            return Self.error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        }
        for violation in validator.validate(body, as: models.patch) { violations.append("PATCH \(route.path): \(violation)") }
        guard var stored = resources[route.key] else { return notFound(route) }
        if let dangling = danglingReference(in: body, route: route) { return dangling }
        // JSON merge patch, except that `tags` replace the whole tag set, as ARM does.
        var fields = stored.json.mapValue ?? [:]
        var request = stored.requestBody.mapValue ?? [:]
        for (key, value) in changes {
            fields[key] = key == "tags" ? value : Self.merge(fields[key], value)
            request[key] = key == "tags" ? value : Self.merge(request[key], value)
        }
        keepSecretValue(route, &fields)
        stored.json = .map(fields)
        stored.requestBody = .map(request)
        resources[route.key] = stored
        return Self.json(200, render(stored))
    }

    private func delete(_ route: Route, base: String, apiVersion: String) -> ProxyResponse {
        guard var stored = resources[route.key] else {
            // ARM answers a DELETE of what is not there with 204.
            return ProxyResponse(status: 204)
        }
        if let user = user(of: route.key) {
            let code: String
            switch route.type {
            case "Microsoft.Network/virtualNetworks/subnets": code = "InUseSubnetCannotBeDeleted"
            case "Microsoft.Network/networkInterfaces": code = "NicInUse"
            case "Microsoft.Network/publicIPAddresses": code = "PublicIPAddressInUse"
            case "Microsoft.Network/networkSecurityGroups": code = "InUseNetworkSecurityGroupCannotBeDeleted"
            default: code = "InUseResourceCannotBeDeleted"
            }
            return Self.error(400, code, "Resource \(stored.id) is in use by \(user) and cannot be deleted.")
        }
        if stored.provisioningState == "Deleting", let operation = stored.operation {
            var response = ProxyResponse(status: 202)
            response.headers = operationHeaders(operation, style: stored.style, base: base, apiVersion: apiVersion, deleting: true)
            return response
        }
        let style = styles[route.type] ?? Self.defaultStyles[route.type] ?? .synchronous
        // Resource groups are deleted asynchronously even where their PUT is synchronous.
        let deleteStyle = route.type == "Microsoft.Resources/resourceGroups" && style == .synchronous ? AsyncStyle.location : style
        stored.provisioningState = "Deleting"
        stored.style = deleteStyle
        stored.json = stamp(stored, base: stored.json.mapValue ?? [:])
        resources[route.key] = stored
        return startOperation(route: route, kind: .delete, style: deleteStyle, location: stored.location, failure: nil, base: base, apiVersion: apiVersion, created: false)
    }

    // MARK: Operations

    enum OperationKind: Sendable { case create, update, delete }

    private struct Operation {
        var id: String
        var key: String
        var kind: OperationKind
        var provider: String
        var location: String
        var status: String
        var pollsLeft: Int?
        var failure: Value?
    }

    private func startOperation(
        route: Route, kind: OperationKind, style: AsyncStyle, location: String, failure: Value?, base: String, apiVersion: String, created: Bool
    ) -> ProxyResponse {
        let id = UUID().uuidString.lowercased()
        var polls: Int?
        if case .afterPolls(let n) = pace { polls = n }
        if style == .synchronous { polls = 0 }
        let provider = String(route.type.split(separator: "/").first ?? "Microsoft.Resources")
        operations[id] = Operation(id: id, key: route.key, kind: kind, provider: provider, location: location.isEmpty ? "global" : location, status: "InProgress", pollsLeft: polls, failure: failure)
        resources[route.key]?.operation = id
        if polls == 0 { complete(id) }
        if kind == .delete {
            if style == .synchronous { return ProxyResponse(status: 200) }
            var response = ProxyResponse(status: 202)
            response.headers = operationHeaders(id, style: style, base: base, apiVersion: apiVersion, deleting: true)
            return response
        }
        switch style {
        case .location:
            var response = ProxyResponse(status: 202)
            response.headers = operationHeaders(id, style: style, base: base, apiVersion: apiVersion)
            return response
        case .azureAsyncOperation, .provisioningState, .synchronous:
            guard let stored = resources[route.key] else { return notFound(route) }
            var response = Self.json(created ? 201 : 200, render(stored))
            if style == .azureAsyncOperation { response.headers += operationHeaders(id, style: style, base: base, apiVersion: apiVersion) }
            if style == .provisioningState, operations[id]?.status == "InProgress" { response.headers.append(("Retry-After", String(retryAfter))) }
            return response
        }
    }

    private func operationHeaders(_ id: String, style: AsyncStyle, base: String, apiVersion: String, deleting: Bool = false) -> [(String, String)] {
        guard let operation = operations[id] else { return [] }
        let prefix = "\(base)/subscriptions/\(subscription)/providers/\(operation.provider)/locations/\(operation.location)"
        var headers: [(String, String)] = [("Retry-After", String(retryAfter))]
        switch style {
        case .azureAsyncOperation:
            headers.append(("Azure-AsyncOperation", "\(prefix)/operations/\(id)?api-version=\(apiVersion)"))
            // ARM's deletes also carry a Location for the final result.
            if deleting { headers.append(("Location", "\(prefix)/operationResults/\(id)?api-version=\(apiVersion)")) }
        case .location:
            headers.append(("Location", "\(prefix)/operationResults/\(id)?api-version=\(apiVersion)"))
        case .provisioningState, .synchronous:
            break
        }
        return headers
    }

    private func poll(_ id: String) {
        guard var operation = operations[id], operation.status == "InProgress", let left = operation.pollsLeft else { return }
        operation.pollsLeft = left - 1
        operations[id] = operation
        if left <= 1 { complete(id) }
    }

    private func pollAsyncOperation(_ id: String) -> ProxyResponse {
        guard operations[id] != nil else { return Self.error(404, "OperationNotFound", "The operation '\(id)' could not be found.") }
        poll(id)
        guard let operation = operations[id] else { return Self.error(404, "OperationNotFound", "The operation '\(id)' could not be found.") }
        var body: [String: Value] = [
            "id": .string("/subscriptions/\(subscription)/providers/\(operation.provider)/locations/\(operation.location)/operations/\(id)"),
            "name": .string(id), "status": .string(operation.status), "startTime": "2026-01-01T00:00:00.0000000+00:00",
        ]
        if operation.status != "InProgress" { body["endTime"] = "2026-01-01T00:00:01.0000000+00:00" }
        if let failure = operation.failure, operation.status == "Failed" { body["error"] = failure }
        var response = Self.json(200, .map(body))
        if operation.status == "InProgress" { response.headers.append(("Retry-After", String(retryAfter))) }
        return response
    }

    private func pollOperationResult(_ id: String, base: String, apiVersion: String) -> ProxyResponse {
        guard operations[id] != nil else { return Self.error(404, "OperationNotFound", "The operation '\(id)' could not be found.") }
        poll(id)
        guard let operation = operations[id] else { return Self.error(404, "OperationNotFound", "The operation '\(id)' could not be found.") }
        switch operation.status {
        case "InProgress":
            var response = ProxyResponse(status: 202)
            response.headers = operationHeaders(id, style: .location, base: base, apiVersion: apiVersion)
            return response
        case "Failed":
            let failure = operation.failure?.mapValue ?? [:]
            return Self.error(409, failure["code"]?.stringValue ?? "Failed", failure["message"]?.stringValue ?? "The operation failed.", details: failure["details"]?.listValue)
        default:
            if operation.kind == .delete { return ProxyResponse(status: 204) }
            guard let stored = resources[operation.key] else { return ProxyResponse(status: 204) }
            return Self.json(200, render(stored))
        }
    }

    private func complete(_ id: String) {
        guard var operation = operations[id], operation.status == "InProgress" else { return }
        operation.status = operation.failure == nil ? "Succeeded" : "Failed"
        operations[id] = operation
        switch operation.kind {
        case .delete:
            guard operation.failure == nil else { return }
            if let vault = resources[operation.key], vault.type == "Microsoft.KeyVault/vaults" {
                deletedVaults[vault.name.lowercased()] = DeletedVault(id: vault.id, location: vault.location, tags: vault.tags)
            }
            removeTree(operation.key)
        case .create, .update:
            guard var stored = resources[operation.key] else { return }
            stored.provisioningState = operation.status
            stored.json = stamp(stored, base: stored.json.mapValue ?? [:])
            resources[operation.key] = stored
        }
    }

    // MARK: Resources

    private struct Stored {
        var id: String
        var type: String
        /// The resource without what `render` adds from children.
        var json: Value
        /// The body of the last PUT (PATCHes merged in): what a repeated PUT is compared with.
        var requestBody: Value
        var provisioningState: String
        var style: AsyncStyle
        var operation: String?
        var serial: Int

        var key: String { id.lowercased() }
        var name: String { String(id.split(separator: "/").last ?? "") }
        var location: String { json.mapValue?["location"]?.stringValue ?? "" }
        var tags: [String: String] { (json.mapValue?["tags"]?.mapValue ?? [:]).compactMapValues(\.stringValue) }
    }

    private func nextSerial() -> Int {
        nextID += 1
        return nextID
    }

    /// Adds what the service sets: id, name, type, provisioning state, and per type the
    /// addresses, ids and endpoints it assigns.
    private func stamp(_ stored: Stored, base fields: [String: Value]) -> Value {
        var resource = fields
        resource["id"] = .string(stored.id)
        resource["name"] = .string(stored.name)
        resource["type"] = .string(stored.type)
        var properties = resource["properties"]?.mapValue ?? [:]
        // Proximity placement groups, blob containers, identities and role assignments have no provisioning state.
        let stateless = [
            "Microsoft.Compute/proximityPlacementGroups", "Microsoft.Storage/storageAccounts/blobServices/containers", "Microsoft.ManagedIdentity/userAssignedIdentities",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials", "Microsoft.Authorization/roleAssignments", "Microsoft.KeyVault/vaults/secrets",
        ]
        if !stateless.contains(stored.type) {
            properties["provisioningState"] = .string(stored.provisioningState)
        }
        let serial = stored.serial
        let succeeded = stored.provisioningState == "Succeeded"
        switch stored.type {
        case "Microsoft.Network/virtualNetworks", "Microsoft.Network/networkSecurityGroups", "Microsoft.Network/networkInterfaces",
            "Microsoft.Network/publicIPAddresses", "Microsoft.Network/virtualNetworks/subnets", "Microsoft.Network/networkSecurityGroups/securityRules":
            resource["etag"] = .string("W/\"\(UUID().uuidString.lowercased())\"")
            if !stored.type.hasSuffix("/subnets") && !stored.type.hasSuffix("/securityRules") {
                properties["resourceGuid"] = properties["resourceGuid"] ?? .string(Self.guid(serial))
            }
            if stored.type == "Microsoft.Network/networkInterfaces" {
                properties["macAddress"] = .string(String(format: "00-0D-3A-%02lX-%02lX-%02lX", (serial >> 16) & 0xff, (serial >> 8) & 0xff, serial & 0xff))
                properties["ipConfigurations"] = .list((properties["ipConfigurations"]?.listValue ?? []).enumerated().map { index, configuration in
                    var fields = configuration.mapValue ?? [:]
                    var inner = fields["properties"]?.mapValue ?? [:]
                    inner["privateIPAddress"] = inner["privateIPAddress"] ?? .string("10.0.\(serial % 250).\(index + 4)")
                    inner["provisioningState"] = .string(stored.provisioningState)
                    fields["properties"] = .map(inner)
                    fields["id"] = .string("\(stored.id)/ipConfigurations/\(fields["name"]?.stringValue ?? "ipconfig\(index + 1)")")
                    return .map(fields)
                })
            }
            if stored.type == "Microsoft.Network/publicIPAddresses", succeeded {
                properties["ipAddress"] = properties["ipAddress"] ?? .string("20.\(serial % 200).\((serial / 200) % 250).\(serial % 250 + 1)")
            }
        case "Microsoft.Compute/virtualMachines":
            properties["vmId"] = properties["vmId"] ?? .string(Self.guid(serial))
            properties["timeCreated"] = properties["timeCreated"] ?? "2026-01-01T00:00:00.0000000+00:00"
            if var identity = resource["identity"]?.mapValue {
                if identity["type"]?.stringValue?.contains("SystemAssigned") == true {
                    identity["principalId"] = .string(Self.guid(serial + 7))
                    identity["tenantId"] = .string(Self.tenant)
                }
                // Each user-assigned identity as ARM shows it: with its principal and client id.
                if let named = identity["userAssignedIdentities"]?.mapValue {
                    identity["userAssignedIdentities"] = .map(Dictionary(uniqueKeysWithValues: named.keys.map { id in
                        let own = resources[id.lowercased()]?.json.mapValue?["properties"]?.mapValue ?? [:]
                        return (id, Value.map(["principalId": own["principalId"] ?? .null, "clientId": own["clientId"] ?? .null]))
                    }))
                }
                resource["identity"] = .map(identity)
            }
            // customData is write-only: ARM never returns it (the fake keeps what was sent, for tests).
            if var profile = properties["osProfile"]?.mapValue {
                if let sent = profile["customData"]?.stringValue { sentCustomData[stored.id.lowercased()] = sent }
                profile["customData"] = nil
                properties["osProfile"] = .map(profile)
            }
        case "Microsoft.Storage/storageAccounts":
            let name = stored.name
            properties["primaryEndpoints"] = ["blob": .string("https://\(name).blob.core.windows.net/"), "dfs": .string("https://\(name).dfs.core.windows.net/")]
            properties["primaryLocation"] = .string(stored.location)
            properties["statusOfPrimary"] = "available"
        case "Microsoft.Storage/storageAccounts/blobServices/containers":
            resource["etag"] = .string("\"0x8DC\(String(serial, radix: 16, uppercase: true))\"")
        case "Microsoft.ManagedIdentity/userAssignedIdentities":
            properties["tenantId"] = .string(Self.tenant)
            properties["principalId"] = properties["principalId"] ?? .string(Self.guid(serial + 11))
            properties["clientId"] = properties["clientId"] ?? .string(Self.guid(serial + 13))
        case "Microsoft.KeyVault/vaults":
            properties["vaultUri"] = .string("https://\(stored.name.lowercased()).vault.azure.net/")
        case "Microsoft.KeyVault/vaults/secrets":
            let vault = stored.id.split(separator: "/").dropLast(2).last.map { String($0).lowercased() } ?? ""
            properties["secretUri"] = .string("https://\(vault).vault.azure.net/secrets/\(stored.name)")
            if let version = secretValues[stored.key]?.version {
                properties["secretUriWithVersion"] = .string("https://\(vault).vault.azure.net/secrets/\(stored.name)/\(version)")
            }
        case "Microsoft.Authorization/roleAssignments":
            properties["scope"] = properties["scope"] ?? .string(String(stored.id[..<(stored.id.range(of: "/providers/Microsoft.Authorization/", options: .caseInsensitive)?.lowerBound ?? stored.id.endIndex)]))
            properties["createdOn"] = properties["createdOn"] ?? "2026-01-01T00:00:00.0000000Z"
            properties["updatedOn"] = "2026-01-01T00:00:00.0000000Z"
        default:
            break
        }
        resource["properties"] = .map(properties)
        return .map(resource)
    }

    /// A stored resource with its child collections (a network's subnets, a group's rules) filled
    /// in; what the fake answers is itself checked against the SDK's model of the response.
    private func render(_ stored: Stored) -> Value {
        let rendered = renderUnchecked(stored)
        if let model = Self.responseModels[stored.type] ?? Self.bodyModels[stored.type]?.put {
            for violation in validator.validate(rendered, as: model, .response) { violations.append("response \(stored.id): \(violation)") }
        }
        return rendered
    }

    private func renderUnchecked(_ stored: Stored) -> Value {
        var resource = stored.json.mapValue ?? [:]
        let children: [String: String] = [
            "Microsoft.Network/virtualNetworks": "subnets", "Microsoft.Network/networkSecurityGroups": "securityRules",
        ]
        if let collection = children[stored.type] {
            let prefix = stored.key + "/\(collection.lowercased())/"
            let items = resources.values.filter { $0.key.hasPrefix(prefix) && !$0.key.dropFirst(prefix.count).contains("/") }
                .sorted { $0.key < $1.key }.map { renderUnchecked($0) }
            var properties = resource["properties"]?.mapValue ?? [:]
            properties[collection] = .list(items)
            resource["properties"] = .map(properties)
        }
        return .map(resource)
    }

    /// Subnets given inside a network's body and rules inside a security group's become child resources.
    private func materializeChildren(of route: Route, body: [String: Value]) {
        let children: [String: (collection: String, type: String)] = [
            "Microsoft.Network/virtualNetworks": ("subnets", "Microsoft.Network/virtualNetworks/subnets"),
            "Microsoft.Network/networkSecurityGroups": ("securityRules", "Microsoft.Network/networkSecurityGroups/securityRules"),
        ]
        guard let child = children[route.type] else { return }
        var json = resources[route.key]?.json.mapValue ?? [:]
        var properties = json["properties"]?.mapValue ?? [:]
        let items = properties[child.collection]?.listValue ?? []
        // A body that lists the children replaces them: those it leaves out are deleted.
        if properties[child.collection] != nil {
            let kept = Set(items.compactMap { $0.mapValue?["name"]?.stringValue?.lowercased() })
            let prefix = route.key + "/\(child.collection.lowercased())/"
            for key in resources.keys where key.hasPrefix(prefix) && !kept.contains(String(key.dropFirst(prefix.count))) { removeTree(key) }
        }
        properties[child.collection] = nil
        json["properties"] = .map(properties)
        resources[route.key]?.json = .map(json)
        for item in items {
            guard let fields = item.mapValue, let name = fields["name"]?.stringValue else { continue }
            let id = "\(route.id)/\(child.collection)/\(name)"
            var stored = Stored(
                id: id, type: child.type, json: .map(fields.filter { $0.key != "name" }), requestBody: item,
                provisioningState: "Succeeded", style: .synchronous, operation: nil, serial: resources[id.lowercased()]?.serial ?? nextSerial())
            stored.json = stamp(stored, base: stored.json.mapValue ?? [:])
            resources[id.lowercased()] = stored
        }
    }

    // MARK: Identities, role assignments, keys

    /// The principals the directory knows: every managed identity's, user- or system-assigned.
    private var principals: Set<String> {
        Set(resources.values.compactMap { stored -> String? in
            let json = stored.json.mapValue ?? [:]
            if stored.type == "Microsoft.ManagedIdentity/userAssignedIdentities" { return json["properties"]?.mapValue?["principalId"]?.stringValue?.lowercased() }
            return json["identity"]?.mapValue?["principalId"]?.stringValue?.lowercased()
        })
    }

    /// Why ARM refuses a role assignment: a principal the directory does not know, a change of
    /// an existing one, or the same role for the same principal at the same scope under another name.
    private func roleAssignmentRefusal(_ route: Route, _ body: Value) -> ProxyResponse? {
        guard route.type == "Microsoft.Authorization/roleAssignments" else { return nil }
        let properties = body.mapValue?["properties"]?.mapValue ?? [:]
        let principal = properties["principalId"]?.stringValue ?? ""
        let role = properties["roleDefinitionId"]?.stringValue ?? ""
        guard principals.contains(principal.lowercased()) else {
            return Self.error(
                400, "PrincipalNotFound",
                "Principal \(principal.replacingOccurrences(of: "-", with: "")) does not exist in the directory \(Self.tenant). Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype")
        }
        if resources[route.key] != nil {
            return Self.error(400, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
        }
        let scope = route.parentKey ?? ""
        let twin = resources.values.first { stored in
            let other = stored.json.mapValue?["properties"]?.mapValue ?? [:]
            return stored.type == route.type && other["scope"]?.stringValue?.lowercased() == scope
                && other["principalId"]?.stringValue?.lowercased() == principal.lowercased() && other["roleDefinitionId"]?.stringValue?.lowercased() == role.lowercased()
        }
        if twin != nil { return Self.error(409, "RoleAssignmentExists", "The role assignment already exists.") }
        return nil
    }

    /// A VM naming a user-assigned identity that does not exist.
    private func identityRefusal(_ route: Route, _ body: Value) -> ProxyResponse? {
        guard route.type == "Microsoft.Compute/virtualMachines" else { return nil }
        let named = body.mapValue?["identity"]?.mapValue?["userAssignedIdentities"]?.mapValue?.keys.sorted() ?? []
        guard let missing = named.first(where: { resources[$0.lowercased()] == nil }) else { return nil }
        return Self.error(
            400, "FailedIdentityOperation",
            "Identity operation for resource '\(route.id)' failed with error 'Failed to perform resource identity operation. Status: 'NotFound'. Response: 'Resource \(missing) was not found.''.")
    }

    /// `POST …/storageAccounts/{name}/listKeys`: the account's two keys.
    private func listKeys(_ route: Route) -> ProxyResponse {
        guard route.type == "Microsoft.Storage/storageAccounts", let stored = resources[route.key] else { return notFound(route) }
        let name = stored.name.lowercased()
        let key = storageKeys[name] ?? Data((0..<64).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        storageKeys[name] = key
        let answer: Value = [
            "keys": [
                ["keyName": "key1", "value": .string(key), "permissions": "FULL", "creationTime": "2026-01-01T00:00:00.0000000Z"],
                ["keyName": "key2", "value": .string(String(key.reversed())), "permissions": "FULL", "creationTime": "2026-01-01T00:00:00.0000000Z"],
            ],
        ]
        for violation in validator.validate(answer, as: "StorageAccountListKeysResult", .response) { violations.append("response listKeys \(stored.id): \(violation)") }
        return Self.json(200, answer)
    }

    // MARK: Key vaults

    /// A secret's value (and a new version when it changes) kept apart from what ARM answers.
    private func keepSecretValue(_ route: Route, _ fields: inout [String: Value]) {
        guard route.type == "Microsoft.KeyVault/vaults/secrets", var properties = fields["properties"]?.mapValue else { return }
        if let value = properties["value"]?.stringValue {
            if secretValues[route.key]?.value != value { secretValues[route.key] = (value, String(format: "%032lx", nextSerial())) }
            properties["value"] = nil
            fields["properties"] = .map(properties)
        }
    }

    /// A new vault whose name another vault holds, live (anywhere: names are global) or deleted.
    private func vaultRefusal(_ route: Route) -> ProxyResponse? {
        guard route.type == "Microsoft.KeyVault/vaults", resources[route.key] == nil else { return nil }
        let name = route.name.lowercased()
        if deletedVaults[name] != nil {
            return Self.error(
                409, "ConflictError",
                "A vault with the same name already exists in deleted state. You need to either recover or purge existing key vault. Follow this link https://go.microsoft.com/fwlink/?linkid=2149745 for more information on soft delete.")
        }
        if resources.values.contains(where: { $0.type == route.type && $0.name.lowercased() == name }) {
            return Self.error(409, "VaultAlreadyExists", "The vault name '\(route.name)' is already in use. Vault names are globally unique so it is possible that the name is already taken.")
        }
        return nil
    }

    private func deletedVault(location: String, name: String) -> ProxyResponse {
        guard let deleted = deletedVaults[name.lowercased()], deleted.location.lowercased() == location.lowercased() else {
            return Self.error(404, "DeletedVaultNotFound", "The specified deleted vault '\(name)' does not exist.")
        }
        let answer: Value = [
            "id": .string("/subscriptions/\(subscription)/providers/Microsoft.KeyVault/locations/\(location)/deletedVaults/\(name)"),
            "name": .string(name), "type": "Microsoft.KeyVault/deletedVaults",
            "properties": [
                "vaultId": .string(deleted.id), "location": .string(deleted.location), "deletionDate": "2026-01-01T00:00:00Z",
                "scheduledPurgeDate": "2026-01-08T00:00:00Z", "tags": .map(deleted.tags.mapValues(Value.string)), "purgeProtectionEnabled": false,
            ],
        ]
        for violation in validator.validate(answer, as: "DeletedVault", .response) { violations.append("response deleted vault \(name): \(violation)") }
        return Self.json(200, answer)
    }

    private func purgeDeletedVault(location: String, name: String) -> ProxyResponse {
        guard let deleted = deletedVaults[name.lowercased()], deleted.location.lowercased() == location.lowercased() else {
            return Self.error(404, "DeletedVaultNotFound", "The specified deleted vault '\(name)' does not exist.")
        }
        deletedVaults[name.lowercased()] = nil
        return ProxyResponse(status: 200)
    }

    /// The names of the vaults deleted and not yet purged.
    public func deletedVaultNames() -> [String] { deletedVaults.keys.sorted() }

    /// A vault secret's value, as the vault holds it (by the secret's ARM id).
    public func secretValue(_ id: String) -> String? { secretValues[id.lowercased()]?.value }

    /// The principal of the user-assigned identity with `clientID`, as IMDS knows it.
    public func principal(ofClientID clientID: String) -> String? {
        resources.values.first { stored in
            stored.type == "Microsoft.ManagedIdentity/userAssignedIdentities"
                && stored.json.mapValue?["properties"]?.mapValue?["clientId"]?.stringValue?.lowercased() == clientID.lowercased()
        }?.json.mapValue?["properties"]?.mapValue?["principalId"]?.stringValue
    }

    /// What Key Vault's data plane answers `principal` reading secret `name` of the vault named `vault`.
    public enum VaultSecretRead: Sendable, Equatable {
        case value(String, version: String)
        case noVault, forbidden, notFound, disabled
    }

    /// Roles that may read a vault's secrets: Key Vault Secrets User, Secrets Officer, Administrator.
    static let secretReaderRoles = ["4633458b-17de-408a-b874-0445c86b69e6", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "00482a5a-887f-4fb3-b363-3b7fe8e74483"]

    /// Reads a secret as the data plane does: the vault by name, then the principal's roles on
    /// it (assigned at the vault or a scope above it, per Azure RBAC), then the secret, enabled.
    public func readSecret(vault: String, name: String, principal: String) -> VaultSecretRead {
        guard let stored = resources.values.first(where: { $0.type == "Microsoft.KeyVault/vaults" && $0.name.lowercased() == vault.lowercased() }) else {
            return .noVault
        }
        let allowed = resources.values.contains { assignment in
            let properties = assignment.json.mapValue?["properties"]?.mapValue ?? [:]
            let scope = properties["scope"]?.stringValue?.lowercased() ?? "-"
            let role = properties["roleDefinitionId"]?.stringValue?.lowercased() ?? ""
            return assignment.type == "Microsoft.Authorization/roleAssignments" && properties["principalId"]?.stringValue?.lowercased() == principal.lowercased()
                && Self.secretReaderRoles.contains { role.hasSuffix("/" + $0) } && (stored.key == scope || stored.key.hasPrefix(scope + "/"))
        }
        guard allowed else { return .forbidden }
        let key = stored.key + "/secrets/" + name.lowercased()
        guard let secret = resources[key], let value = secretValues[key] else { return .notFound }
        let enabled = secret.json.mapValue?["properties"]?.mapValue?["attributes"]?.mapValue?["enabled"]?.boolValue ?? true
        return enabled ? .value(value.value, version: value.version) : .disabled
    }

    private func removeTree(_ key: String) {
        for candidate in resources.keys where candidate == key || candidate.hasPrefix(key + "/") { resources[candidate] = nil }
        for candidate in secretValues.keys where candidate.hasPrefix(key + "/") || candidate == key { secretValues[candidate] = nil }
    }

    private func missingParent(_ route: Route) -> ProxyResponse? {
        if let group = route.resourceGroup, route.type != "Microsoft.Resources/resourceGroups", resources[Route.groupKey(subscription, group)] == nil {
            return Self.error(404, "ResourceGroupNotFound", "Resource group '\(group)' could not be found.")
        }
        if let parent = route.parentKey, route.depth > 1, resources[parent] == nil {
            return Self.error(404, "ParentResourceNotFound", "Can not perform requested operation on nested resource. Parent resource '\(parent)' not found.")
        }
        return nil
    }

    private func parentLocation(_ route: Route) -> String? {
        if let parent = route.parentKey, route.depth > 1, let stored = resources[parent] { return stored.location }
        return nil
    }

    private func immutableChange(_ existing: Stored, _ body: Value) -> ProxyResponse? {
        let fields = body.mapValue ?? [:]
        if let location = fields["location"]?.stringValue, !existing.location.isEmpty, location.lowercased() != existing.location.lowercased() {
            return Self.error(
                409, "InvalidResourceLocation",
                "The resource '\(existing.name)' already exists in location '\(existing.location)'. A resource with the same name cannot be created in location '\(location)'.")
        }
        let before = existing.json.mapValue?["zones"] ?? .null
        if existing.type == "Microsoft.Compute/virtualMachines", (fields["zones"] ?? .null) != before {
            return Self.error(409, "PropertyChangeNotAllowed", "Changing property 'zones' is not allowed.", target: "zones")
        }
        return nil
    }

    /// A `{"id": "/subscriptions/..."}` inside the body naming a resource the fake does not have.
    private func danglingReference(in body: Value, route: Route) -> ProxyResponse? {
        var missing: String?
        func walk(_ value: Value) {
            switch value {
            case .map(let fields):
                if let id = fields["id"]?.stringValue, resources[Self.referencedKey(id)] == nil, Self.served(id, subscription: subscription),
                    Self.referencedKey(id) != route.key, !Self.referencedKey(id).hasPrefix(route.key + "/")
                {
                    missing = missing ?? id
                }
                for (_, field) in fields.sorted(by: { $0.key < $1.key }) { walk(field) }
            case .list(let items):
                items.forEach(walk)
            default:
                break
            }
        }
        walk(body)
        guard let missing else { return nil }
        return Self.error(400, "InvalidResourceReference", "Resource \(missing) referenced by resource \(route.id) was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.")
    }

    /// Whether `id` names a resource of a type the fake serves (references to anything else are not checked).
    private static func served(_ id: String, subscription: String) -> Bool {
        let segments = referencedKey(id).split(separator: "/").map(String.init)
        guard let route = Route(segments: segments, subscription: subscription) else { return false }
        return route.kind == .resource
    }

    /// The stored resource an id points at: a NIC's IP configuration belongs to the NIC.
    private static func referencedKey(_ id: String) -> String {
        let key = id.lowercased()
        if let range = key.range(of: "/ipconfigurations/") { return String(key[..<range.lowerBound]) }
        return key
    }

    /// Another resource whose body points at `key` (a VM at its NIC, a NIC at its subnet).
    private func user(of key: String) -> String? {
        func points(_ value: Value) -> Bool {
            switch value {
            case .map(let fields):
                if let id = fields["id"]?.stringValue, Self.referencedKey(id) == key || Self.referencedKey(id).hasPrefix(key + "/") { return true }
                return fields.values.contains(where: points)
            case .list(let items): return items.contains(where: points)
            default: return false
            }
        }
        return resources.values.filter { !$0.key.hasPrefix(key + "/") && $0.key != key && !key.hasPrefix($0.key + "/") && points($0.requestBody) }
            .map(\.id).sorted().first
    }

    private func notFound(_ route: Route) -> ProxyResponse {
        if route.type == "Microsoft.Resources/resourceGroups" {
            return Self.error(404, "ResourceGroupNotFound", "Resource group '\(route.resourceGroup ?? "")' could not be found.")
        }
        if route.type == "Microsoft.Authorization/roleAssignments" {
            return Self.error(404, "RoleAssignmentNotFound", "The role assignment '\(route.name)' is not found.")
        }
        return Self.error(404, "ResourceNotFound", "The Resource '\(route.type)/\(route.name)' under resource group '\(route.resourceGroup ?? "")' was not found.")
    }

    private func count(_ kind: String) { injected[kind, default: 0] += 1 }

    private func nextUniform() -> Double {
        random = random &* 6364136223846793005 &+ 1442695040888963407
        return Double(random >> 11) / Double(1 << 53)
    }

    // MARK: Helpers

    static func merge(_ current: Value?, _ change: Value) -> Value {
        guard case .map(let changes) = change, case .map(var fields)? = current else { return change }
        for (key, value) in changes {
            if value == .null { fields[key] = nil } else { fields[key] = merge(fields[key], value) }
        }
        return .map(fields)
    }

    static func guid(_ serial: Int) -> String {
        String(format: "%08lx-0000-4000-8000-%012lx", serial, serial &* 2_654_435_761 & 0xffff_ffff_ffff)
    }

    static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// An error in ARM's shape: `{"error": {"code", "message", "target"?, "details"?}}`.
    public static func error(_ status: Int, _ code: String, _ message: String, target: String? = nil, details: [Value]? = nil) -> ProxyResponse {
        var error: [String: Value] = ["code": .string(code), "message": .string(message)]
        if let target { error["target"] = .string(target) }
        if let details { error["details"] = .list(details) }
        var response = json(status, ["error": .map(error)])
        response.headers.append(("x-ms-failure-cause", status >= 500 ? "service" : "gateway"))
        return response
    }

    static func json(_ status: Int, _ value: Value) -> ProxyResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = (try? encoder.encode(value)) ?? Data()
        return ProxyResponse(status: status, headers: [("Content-Type", "application/json; charset=utf-8")], body: body)
    }
}

extension AzureARMFake {
    /// What an ARM path names.
    struct Route: Sendable {
        enum Kind: Sendable, Equatable {
            case resource
            /// A list of a type; `generic` for `resources` (every type).
            case list(generic: Bool)
            case asyncOperation(String)
            case operationResult(String)
            /// A POST of an action on a resource (`listKeys`); `id` is the resource's.
            case action(String)
            /// A deleted key vault (GET), or its purge (POST `…/purge`).
            case deletedVault(location: String, name: String, purge: Bool)
        }

        var kind: Kind
        /// `Microsoft.Compute/virtualMachines`, `Microsoft.Network/virtualNetworks/subnets`.
        var type: String
        /// The resource's id (for lists: the collection's path), as sent.
        var id: String
        var resourceGroup: String?
        /// The id of the resource this one is nested in (lower-cased), if nested.
        var parentKey: String?
        /// 1 for top-level resources, 2 for their children, …
        var depth: Int
        /// The subscription's or resource group's id (lower-cased): what a list covers.
        var scopeKey: String

        var key: String { id.lowercased() }
        var path: String { id }
        var name: String { String(id.split(separator: "/").last ?? "") }
        var operationType: String {
            switch kind {
            case .asyncOperation: return "operation"
            case .operationResult: return "operationResult"
            case .list(let generic): return generic ? "resources" : type
            case .resource: return type
            case .action(let name): return "\(type)/\(name)"
            case .deletedVault(_, _, let purge): return purge ? "\(type)/purge" : type
            }
        }

        /// The subscription itself as a scope (the fake keeps nothing there).
        static func subscriptionScope(_ segments: ArraySlice<String>) -> Route? {
            guard segments.count == 2 else { return nil }
            let id = "/" + segments.joined(separator: "/")
            return Route(kind: .resource, type: "Microsoft.Resources/subscriptions", id: id, resourceGroup: nil, parentKey: nil, depth: 0, scopeKey: id.lowercased())
        }

        init(kind: Kind, type: String, id: String, resourceGroup: String?, parentKey: String?, depth: Int, scopeKey: String) {
            self.kind = kind
            self.type = type
            self.id = id
            self.resourceGroup = resourceGroup
            self.parentKey = parentKey
            self.depth = depth
            self.scopeKey = scopeKey
        }

        static func groupKey(_ subscription: String, _ group: String) -> String {
            "/subscriptions/\(subscription)/resourcegroups/\(group)".lowercased()
        }

        init?(segments: [String], subscription: String) {
            guard segments.count >= 2, segments[0].lowercased() == "subscriptions", segments[1].lowercased() == subscription.lowercased() else { return nil }
            // An extension resource at a scope: `{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`.
            if let extensionAt = segments.lastIndex(where: { $0.lowercased() == "providers" }), extensionAt + 2 < segments.count,
                segments[extensionAt + 1].lowercased() == "microsoft.authorization", segments[extensionAt + 2].lowercased() == "roleassignments",
                extensionAt + 4 >= segments.count
            {
                guard let scope = Route(segments: Array(segments[..<extensionAt]), subscription: subscription) ?? Self.subscriptionScope(segments[..<extensionAt]),
                    scope.kind == .resource
                else { return nil }
                self.type = "Microsoft.Authorization/roleAssignments"
                self.kind = extensionAt + 3 < segments.count ? .resource : .list(generic: false)
                self.id = "/" + segments.joined(separator: "/")
                self.resourceGroup = scope.resourceGroup
                self.parentKey = scope.key
                self.depth = scope.depth + 1
                self.scopeKey = scope.key
                return
            }
            // An action on a resource: `…/storageAccounts/{name}/listKeys`.
            if segments.count > 2, segments.last?.lowercased() == "listkeys", let resource = Route(segments: Array(segments.dropLast()), subscription: subscription),
                resource.kind == .resource
            {
                self = resource
                self.kind = .action("listKeys")
                return
            }
            var rest = Array(segments.dropFirst(2))
            var prefix = "/subscriptions/\(segments[1])"
            resourceGroup = nil
            parentKey = nil
            depth = 1
            scopeKey = prefix.lowercased()
            if rest.first?.lowercased() == "resourcegroups" {
                if rest.count == 1 {
                    self.kind = .list(generic: false)
                    self.type = "Microsoft.Resources/resourceGroups"
                    self.id = prefix + "/resourcegroups"
                    return
                }
                resourceGroup = rest[1]
                prefix += "/resourceGroups/\(rest[1])"
                rest.removeFirst(2)
                scopeKey = prefix.lowercased()
                if rest.isEmpty {
                    self.kind = .resource
                    self.type = "Microsoft.Resources/resourceGroups"
                    self.id = prefix
                    return
                }
            }
            if rest.count == 1, rest[0].lowercased() == "resources" {
                self.kind = .list(generic: true)
                self.type = ""
                self.id = prefix
                return
            }
            guard rest.count >= 3, rest[0].lowercased() == "providers" else { return nil }
            let namespace = rest[1]
            // `providers/Microsoft.KeyVault/locations/{l}/deletedVaults/{name}[/purge]`.
            if resourceGroup == nil, rest.count == 6 || rest.count == 7, namespace.lowercased() == "microsoft.keyvault", rest[2].lowercased() == "locations",
                rest[4].lowercased() == "deletedvaults"
            {
                guard rest.count == 6 || rest[6].lowercased() == "purge" else { return nil }
                self.kind = .deletedVault(location: rest[3], name: rest[5], purge: rest.count == 7)
                self.type = "Microsoft.KeyVault/locations/deletedVaults"
                self.id = prefix + "/" + rest[0..<6].joined(separator: "/")
                return
            }
            if resourceGroup == nil, rest.count == 6, rest[2].lowercased() == "locations" {
                let what = rest[4].lowercased()
                guard what == "operations" || what == "operationresults" else { return nil }
                self.kind = what == "operations" ? .asyncOperation(rest[5]) : .operationResult(rest[5])
                self.type = namespace
                self.id = segments.joined(separator: "/")
                return
            }
            // providers/{namespace}/{type}/{name}/{childType}/{childName}…
            let pairs = Array(rest.dropFirst(2))
            var type = namespace
            var id = prefix + "/providers/\(namespace)"
            var parent: String?
            var index = 0
            while index < pairs.count {
                let typeSegment = pairs[index]
                // Blob containers live under the storage account's single `blobServices/default`.
                type += "/" + typeSegment
                if index + 1 < pairs.count {
                    if index > 0 { parent = id.lowercased() }
                    id += "/\(typeSegment)/\(pairs[index + 1])"
                } else {
                    if index > 0 { parent = id.lowercased() }
                    id += "/\(typeSegment)"
                }
                index += 2
            }
            let canonical = Self.canonicalType(type)
            guard let canonical else { return nil }
            self.type = canonical
            let nested = pairs.count / 2 + pairs.count % 2
            let isList = pairs.count % 2 == 1
            guard isList || resourceGroup != nil else { return nil }
            self.kind = isList ? .list(generic: false) : .resource
            self.id = id
            if canonical == "Microsoft.Storage/storageAccounts/blobServices/containers" {
                guard pairs.count >= 4, pairs[3].lowercased() == "default" else { return nil }
                // The container's parent is the storage account itself.
                parentKey = (prefix + "/providers/\(namespace)/\(pairs[0])/\(pairs[1])").lowercased()
                depth = 2
            } else {
                parentKey = isList ? (nested > 1 ? parent : nil) : parent
                depth = nested
            }
        }

        /// The fake's spelling of a type sent in any case, with `blobServices/containers` for
        /// `blobServices/default/containers`; nil for types it does not serve.
        static func canonicalType(_ type: String) -> String? {
            let known = Array(AzureARMFake.bodyModels.keys)
            return known.first { $0.lowercased() == type.lowercased() }
        }
    }

    /// ARM's list `$filter`: `tagName eq 'k' [and tagValue eq 'v']` or `resourceType eq 'T'`
    /// (ARM refuses the two together), joined by `and`; for role assignments, `principalId eq
    /// '{id}'` alone (the quotes may be left out, as Azure's reference writes it).
    struct ListFilter: Sendable {
        var tagName: String?
        var tagValue: String?
        var resourceType: String?
        var principalId: String?

        struct Invalid: Error {}

        init(_ text: String, roleAssignments: Bool = false) throws {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { return }
            let clauses = trimmed.components(separatedBy: " and ")
            for clause in clauses {
                let parts = clause.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 2).map(String.init)
                guard parts.count == 3, parts[1].lowercased() == "eq" else { throw Invalid() }
                let quoted = parts[2].count >= 2 && parts[2].hasPrefix("'") && parts[2].hasSuffix("'")
                let value = quoted ? String(parts[2].dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'") : parts[2]
                switch (parts[0].lowercased(), roleAssignments) {
                case ("principalid", true): principalId = value
                case _ where !quoted || roleAssignments: throw Invalid()
                case ("tagname", _): tagName = value
                case ("tagvalue", _): tagValue = value
                case ("resourcetype", _): resourceType = value
                default: throw Invalid()
                }
            }
            if principalId != nil && clauses.count > 1 { throw Invalid() }
            if tagValue != nil && tagName == nil { throw Invalid() }
            if tagName != nil && resourceType != nil { throw Invalid() }
        }

        func matches(type: String, tags: [String: String], principal: String?) -> Bool {
            if let resourceType, resourceType.lowercased() != type.lowercased() { return false }
            if let principalId, principalId.lowercased() != principal?.lowercased() { return false }
            guard let tagName else { return true }
            guard let (_, value) = tags.first(where: { $0.key.lowercased() == tagName.lowercased() }) else { return false }
            return tagValue.map { $0 == value } ?? true
        }
    }
}
