import Crypto
import Foundation
import StratumCloud
import StratumCore

/// `gcp_service_account`: how a node reaches its cluster's bucket with no key in its user data.
/// One resource, two IAM objects: a service account the instances run as (`email`, for
/// `gcp_instance`'s `service_account`), and its binding to `roles/storage.objectAdmin` on the
/// bucket (list, read, write and delete its objects; nothing else). The trainer and the node
/// setup take the account's tokens from the metadata server.
///
/// An account id is unique in its project and a create carries no request id: a retried create
/// that IAM refuses with 409 adopts the account when its description carries this create's
/// token. The bucket's policy is read, changed and written back under its etag; a write that
/// loses a race (412) is tried again. IAM is eventually consistent, so a binding refused
/// because the new account is not visible yet is a transient error the engine retries.
/// Refresh lists the project's accounts once and reads each bucket's policy once; an account
/// missing from its bucket's policy shows as a change of `bucket`, and apply binds it again.
struct GCPServiceAccountKind: ResourceKind {
    static let typeName = "gcp_service_account"
    static let role = "roles/storage.objectAdmin"
    let type = Self.typeName
    let client: GCPClient

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "id": .computed,
        "stratum_lineage": .computed,
        "project": .input(forceNew: true),
        "account_id": AttributeSchema(role: .optionalComputed, forceNew: true),
        "display_name": .input(plainText: true),
        // The bucket the account may use; a change moves the binding in place.
        "bucket": .input(),
        "email": .computed,
        "unique_id": .computed,
    ])

    func project(_ attributes: [String: Value]) -> String { attributes["project"]?.stringValue ?? client.project }

    func batchKey(_ state: ResourceState) -> String { "projects/\(project(state.attributes))" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        guard let id = resource.inputs["account_id"]?.stringValue, !Self.isValid(accountID: id) else { return [] }
        return [
            Diagnostic(
                address: resource.address, message: "account_id '\(id)' must be 6-30 of a-z, 0-9 and '-', starting with a letter and not ending with '-'",
                location: resource.location)
        ]
    }

    static func isValid(accountID id: String) -> Bool {
        id.range(of: "^[a-z][-a-z0-9]{4,28}[a-z0-9]$", options: .regularExpression) != nil
    }

    /// The account id: the input, else `stratum-<address>-<hash of lineage and address>` within 30 characters.
    static func accountID(of resource: ResolvedResource) -> String {
        if let id = resource.inputs["account_id"]?.stringValue, !id.isEmpty { return id }
        let digest = SHA256.hash(data: Data("\(resource.ownership.lineage)/\(resource.address)".utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
        let readable = String(resource.address.name.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" }.prefix(12))
        return "stratum-\(readable)-\(digest)".replacingOccurrences(of: "--", with: "-")
    }

    static func email(_ accountID: String, project: String) -> String { "\(accountID)@\(project).iam.gserviceaccount.com" }

    static func path(_ email: String, project: String) -> String { "v1/projects/\(project)/serviceAccounts/\(GCPBucketKind.segment(email))" }

    static func member(_ email: String) -> String { "serviceAccount:\(email)" }

    /// IAM's limit on a description, in UTF-8 bytes.
    static let maxDescription = 256

    /// The ownership the account's description carries (accounts have no labels): Stratum's
    /// record (`GCPOwnership`), as Compute resources carry it; without the owner when that is
    /// too long for IAM (sweeping needs the stack, lineage and address). One still too long
    /// gives way to the readable form accounts had before, which keeps only the stack, the
    /// address and the token (enough to recover a create, not to be listed by `owned`).
    static func description(for resource: ResolvedResource, token: String) -> String {
        var ownerless = resource
        ownerless.ownership.owner = nil
        for record in [GCPOwnership.description(for: resource, token: token), GCPOwnership.description(for: ownerless, token: token)]
        where record.utf8.count <= maxDescription {
            return record
        }
        let stack = resource.ownership.stack.isEmpty ? "" : "\(resource.ownership.stack) "
        return String("Stratum node identity of \(stack)\(resource.address) [\(GCPLabels.token)=\(GCPLabels.value(token))]".suffix(maxDescription))
    }

    /// Whether the account's description carries `token`, in either form.
    static func carries(token: String, _ account: GCPJSON) -> Bool {
        let description = account["description"]?.string
        return GCPOwnership.token(in: description) == token || description?.hasSuffix("[\(GCPLabels.token)=\(GCPLabels.value(token))]") == true
    }

    /// Every account of the client's project whose description is Stratum's record naming this
    /// type, as imported (global: its region is `global`), found by one paginated
    /// `serviceAccounts.list`. Accounts with the older readable description (no lineage) are not
    /// listed. A listed state names no bucket, so deleting it leaves the account's binding on
    /// its bucket, which IAM then shows as a deleted member.
    func owned() async throws -> [OwnedResource]? {
        let project = client.project
        let pages = try await client.pages("v1/projects/\(project)/serviceAccounts", query: [("pageSize", "100")], api: .iam, action: "serviceAccounts.list")
        return pages.flatMap { $0["accounts"]?.array ?? [] }.compactMap { account in
            guard let (address, ownership) = GCPOwnership.owned(in: account["description"]?.string), address.type == type,
                var state = imported(account, project: project, region: "global", address: address)
            else { return nil }
            state.attributes["stratum_lineage"] = .string(ownership.lineage)
            return OwnedResource(state: state, ownership: ownership)
        }
    }

    // MARK: calls

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let project = project(resource.inputs)
        let id = Self.accountID(of: resource)
        let body: GCPJSON = [
            "accountId": .string(id),
            "serviceAccount": [
                "displayName": .string(resource.inputs["display_name"]?.stringValue ?? "Stratum \(resource.address.name)"),
                "description": .string(Self.description(for: resource, token: context.token)),
            ],
        ]
        var (status, account) = try await client.call(
            .iam, "POST", "v1/projects/\(project)/serviceAccounts", body: body, action: "serviceAccounts.create", project: project, address: resource.address,
            accepting: [409])
        if status == 409 {
            account = try await self.account(Self.email(id, project: project), project: project, address: resource.address)
            guard let existing = account, Self.carries(token: context.token, existing) else {
                throw ProviderError(
                    .permanent, "service account '\(id)' already exists in project \(project) and was not made by this create; import it or set another account_id",
                    address: resource.address)
            }
        }
        guard let account, let email = account["email"]?.string else {
            throw ProviderError(.transient, "GCP serviceAccounts.create answered no account", address: resource.address)
        }
        if let bucket = resource.inputs["bucket"]?.stringValue {
            try await bind(Self.member(email), to: bucket, project: project, address: resource.address)
        }
        return state(of: resource, from: account)
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let first = resources.first else { return [] }
        let project = project(first.attributes)
        let pages = try await client.pages("v1/projects/\(project)/serviceAccounts", query: [("pageSize", "100")], api: .iam, action: "serviceAccounts.list")
        var accounts: [String: GCPJSON] = [:]
        for page in pages {
            for account in page["accounts"]?.array ?? [] { if let email = account["email"]?.string { accounts[email] = account } }
        }
        var members: [String: Set<String>?] = [:]
        for bucket in Set(resources.compactMap { $0.attributes["bucket"]?.stringValue }) {
            members[bucket] = try await policy(of: bucket, project: project, address: nil).map { Self.members(of: $0, role: Self.role) }
        }
        return resources.map { state in
            guard let account = accounts[state.id] else { return nil }
            var refreshed = state
            refreshed.attributes["unique_id"] = account["uniqueId"]?.string.map(Value.string)
            if let bucket = state.attributes["bucket"]?.stringValue, members[bucket]??.contains(Self.member(state.id)) != true {
                // The binding is gone (or the bucket is): the stack's bucket is a change to make.
                refreshed.attributes["bucket"] = nil
            }
            return refreshed
        }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let project = project(prior.attributes)
        let member = Self.member(prior.id)
        let (before, after) = (prior.attributes["bucket"]?.stringValue, desired.inputs["bucket"]?.stringValue)
        if let before, before != after { try await unbind(member, from: before, project: project, address: prior.address) }
        if let after { try await bind(member, to: after, project: project, address: prior.address) }
        if desired.inputs["display_name"] != prior.attributes["display_name"], let name = desired.inputs["display_name"]?.stringValue {
            _ = try await client.call(
                .iam, "PATCH", Self.path(prior.id, project: project), body: ["serviceAccount": ["displayName": .string(name)], "updateMask": "displayName"],
                action: "serviceAccounts.patch", project: project, address: prior.address)
        }
        var state = prior
        state.attributes["bucket"] = desired.inputs["bucket"]
        state.attributes["display_name"] = desired.inputs["display_name"]
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let project = project(state.attributes)
        if let bucket = state.attributes["bucket"]?.stringValue {
            try await unbind(Self.member(state.id), from: bucket, project: project, address: state.address)
        }
        _ = try await client.call(
            .iam, "DELETE", Self.path(state.id, project: project), action: "serviceAccounts.delete", project: project, address: state.address, accepting: [404])
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let project = project(resource.inputs)
        guard let account = try await account(Self.email(Self.accountID(of: resource), project: project), project: project, address: resource.address),
            Self.carries(token: operation.token, account)
        else { return nil }
        // The create may have stopped before the binding: make sure of it.
        if let bucket = resource.inputs["bucket"]?.stringValue, let email = account["email"]?.string {
            try await bind(Self.member(email), to: bucket, project: project, address: resource.address)
        }
        return state(of: resource, from: account)
    }

    /// An account by its email.
    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        let project = id.split(separator: "@").last.flatMap { $0.hasSuffix(".iam.gserviceaccount.com") ? String($0.dropLast(".iam.gserviceaccount.com".count)) : nil }
            ?? client.project
        guard let account = try await account(id, project: project, address: address) else { return nil }
        return imported(account, project: project, region: region, address: address)
    }

    /// The state of a live account adopted as it is (no bucket); nil when it has no email.
    func imported(_ account: GCPJSON, project: String, region: String, address: ResourceAddress) -> ResourceState? {
        guard let email = account["email"]?.string else { return nil }
        let attributes: [String: Value] = [
            "id": .string(email), "project": .string(project), "account_id": .string(String(email.prefix { $0 != "@" })), "email": .string(email),
            "unique_id": account["uniqueId"]?.string.map(Value.string) ?? .null, "display_name": account["displayName"]?.string.map(Value.string) ?? .null,
        ]
        return ResourceState(address: address, provider: "gcp", region: region, id: email, attributes: attributes.filter { $0.value != .null }, dependencies: [])
    }

    // MARK: helpers

    func account(_ email: String, project: String, address: ResourceAddress) async throws -> GCPJSON? {
        let (status, account) = try await client.call(
            .iam, "GET", Self.path(email, project: project), action: "serviceAccounts.get", project: project, address: address, accepting: [404])
        return status == 404 ? nil : account
    }

    /// The bucket's IAM policy; nil when the bucket is gone.
    func policy(of bucket: String, project: String, address: ResourceAddress?) async throws -> GCPJSON? {
        // Version 3: a binding with a condition comes back as it is, and is left as it is.
        let (status, policy) = try await client.storage(
            "GET", "b/\(GCPBucketKind.segment(bucket))/iam", query: [("optionsRequestedPolicyVersion", "3")], action: "buckets.getIamPolicy",
            project: project, address: address, accepting: [404])
        return status == 404 ? nil : policy
    }

    /// The members of the role's binding without a condition (the one Stratum manages).
    static func members(of policy: GCPJSON, role: String) -> Set<String> {
        Set((policy["bindings"]?.array ?? []).filter { isManaged($0, role: role) }.flatMap { $0["members"]?.array ?? [] }.compactMap(\.string))
    }

    static func isManaged(_ binding: GCPJSON, role: String) -> Bool { binding["role"]?.string == role && binding["condition"] == nil }

    /// Adds `member` to the role's binding on `bucket`.
    func bind(_ member: String, to bucket: String, project: String, address: ResourceAddress) async throws {
        try await changePolicy(of: bucket, project: project, address: address, missingBucket: .permanent) { members in members.insert(member).inserted }
    }

    /// Takes `member` out of the role's binding on `bucket`; a bucket that is gone has none.
    func unbind(_ member: String, from bucket: String, project: String, address: ResourceAddress) async throws {
        try await changePolicy(of: bucket, project: project, address: address, missingBucket: nil) { members in members.remove(member) != nil }
    }

    /// Reads the policy, changes the role's members, writes it back under the etag read; a
    /// write that lost a race to another writer (412) reads and tries again, three times.
    /// `change` answers whether it changed anything (nothing to write when not).
    func changePolicy(
        of bucket: String, project: String, address: ResourceAddress, missingBucket: ProviderError.Kind?, _ change: (inout Set<String>) -> Bool
    ) async throws {
        for _ in 0..<3 {
            guard var policy = try await policy(of: bucket, project: project, address: address)?.object else {
                guard let missingBucket else { return }
                throw ProviderError(missingBucket, "bucket '\(bucket)' does not exist, so the service account cannot be given access to it", address: address)
            }
            var bindings = policy["bindings"]?.array ?? []
            var members = Self.members(of: .object(policy), role: Self.role)
            guard change(&members) else { return }
            bindings.removeAll { Self.isManaged($0, role: Self.role) }
            if !members.isEmpty { bindings.append(["role": .string(Self.role), "members": .array(members.sorted().map(GCPJSON.string))]) }
            policy["bindings"] = .array(bindings)
            do {
                let (status, _) = try await client.storage(
                    "PUT", "b/\(GCPBucketKind.segment(bucket))/iam", body: .object(policy), action: "buckets.setIamPolicy", project: project, address: address,
                    accepting: [412])
                if status != 412 { return }
            } catch let error as ProviderError where error.kind == .permanent && error.message.contains("does not exist") {
                // IAM has not made the new account visible to Storage yet.
                throw ProviderError(.transient, error.message, address: address)
            }
        }
        throw ProviderError(.transient, "bucket '\(bucket)''s IAM policy kept changing while Stratum wrote it; the change can be tried again", address: address)
    }

    func state(of resource: ResolvedResource, from account: GCPJSON) -> ResourceState {
        let email = account["email"]?.string ?? ""
        var attributes = resource.inputs
        attributes["id"] = .string(email)
        attributes["stratum_lineage"] = .string(resource.ownership.lineage)
        attributes["account_id"] = .string(String(email.prefix { $0 != "@" }))
        attributes["email"] = .string(email)
        attributes["unique_id"] = account["uniqueId"]?.string.map(Value.string)
        return ResourceState(address: resource.address, provider: "gcp", region: resource.region, id: email, attributes: attributes, dependencies: resource.dependencies)
    }
}
