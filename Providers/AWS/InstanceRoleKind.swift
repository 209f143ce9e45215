import Crypto
import Foundation
import StratumCloud
import StratumCore

/// `aws_instance_role`: how a node reaches its cluster's bucket with no key in its user data.
/// One resource, three IAM objects under the path `/stratum/`: a role EC2 may assume, its
/// inline policy `stratum-bucket` (list the bucket; get, put and delete its objects; nothing
/// else), and an instance profile of the same name holding the role, for `aws_instance`'s
/// `iam_instance_profile`. The trainer and the node setup take the role's keys from IMDSv2.
///
/// With `web_identities` the role is for nodes on another cloud instead: its trust lets only
/// those identities assume it (STS AssumeRoleWithWebIdentity), each pinned by issuer, subject
/// and audience — a GCP service account's Google ID token (`accounts.google.com`, subject the
/// account's unique id), or any OIDC issuer registered in the account (`provider_arn`). A change
/// of them rewrites the trust in place; refresh compares the trust IAM holds with them, so a
/// trust edited out of band is drift.
///
/// IAM is global: the batch is the account. Refresh is one paginated ListRoles and one
/// ListInstanceProfiles under `/stratum/`, whatever the number of roles.
struct InstanceRoleKind: ResourceKind {
    static let typeName = "aws_instance_role"
    static let path = "/stratum/"
    static let policyName = "stratum-bucket"
    let type = Self.typeName
    let client: AWSClient
    /// The region recorded for this global resource.
    let home: String

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "id": .computed,
        "stratum_lineage": .computed,
        "name": AttributeSchema(role: .optionalComputed, forceNew: true),
        // The bucket the role may use; a change rewrites the policy in place.
        "bucket": .input(required: true),
        // Who else may assume the role: a list of {issuer, subject, audience[, provider_arn]}.
        "web_identities": .input(),
        "role_arn": .computed,
        "instance_profile": .computed,
        "instance_profile_arn": .computed,
    ])

    func batchKey(_ state: ResourceState) -> String { "account" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if case .list(let items)? = resource.inputs["web_identities"] {
            for item in items {
                guard case .map(let fields) = item else { continue }
                for key in ["issuer", "subject", "audience"] where fields[key] == nil {
                    problems.append(Diagnostic(address: resource.address, message: "each of web_identities needs \(key)", location: resource.location))
                }
                if let issuer = fields["issuer"]?.stringValue, issuer != WebIdentity.google, fields["provider_arn"] == nil {
                    problems.append(Diagnostic(
                        address: resource.address, message: "web identity issuer '\(issuer)' needs provider_arn (the account's OIDC provider for it)",
                        location: resource.location))
                }
            }
        }
        if let name = resource.inputs["name"]?.stringValue, name.range(of: "^[A-Za-z0-9+=,.@_-]{1,64}$", options: .regularExpression) == nil {
            problems.append(Diagnostic(address: resource.address, message: "name '\(name)' must be 1-64 of letters, digits and + = , . @ _ -", location: resource.location))
        }
        return problems
    }

    /// The name: the `name` input, else `stratum-<address>-<hash of lineage and address>`.
    static func name(of resource: ResolvedResource) -> String {
        if let name = resource.inputs["name"]?.stringValue, !name.isEmpty { return name }
        let digest = SHA256.hash(data: Data("\(resource.ownership.lineage)/\(resource.address)".utf8)).prefix(5).map { String(format: "%02x", $0) }.joined()
        let readable = resource.address.description.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }
        return "stratum-\(String(readable.prefix(42)))-\(digest)"
    }

    static let trustPolicy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#

    /// One identity of another cloud the role trusts.
    struct WebIdentity: Equatable {
        var issuer: String
        var subject: String
        var audience: String
        var providerARN: String?

        /// Google's issuer, which IAM knows without a registered provider.
        static let google = "accounts.google.com"

        /// The condition keys' prefix: the issuer without its scheme.
        var conditionPrefix: String {
            var host = issuer
            for scheme in ["https://", "http://"] where host.hasPrefix(scheme) { host.removeFirst(scheme.count) }
            return host
        }

        /// The trust statement: the issuer may present this subject's tokens for this audience.
        /// For Google, `aud` is matched against the token's `azp` (the account's unique id) and
        /// `oaud` against its `aud`.
        var statement: [String: Any] {
            let prefix = conditionPrefix
            let conditions: [String: String] =
                prefix == Self.google
                ? ["\(prefix):sub": subject, "\(prefix):aud": subject, "\(prefix):oaud": audience]
                : ["\(prefix):sub": subject, "\(prefix):aud": audience]
            return [
                "Effect": "Allow", "Principal": ["Federated": prefix == Self.google ? Self.google : providerARN ?? ""],
                "Action": "sts:AssumeRoleWithWebIdentity", "Condition": ["StringEquals": conditions],
            ]
        }
    }

    /// The `web_identities` input; empty for a role of EC2 instances.
    static func webIdentities(_ value: Value?) -> [WebIdentity] {
        guard case .list(let items)? = value else { return [] }
        return items.compactMap { item in
            guard case .map(let fields) = item, let issuer = fields["issuer"]?.stringValue, let subject = fields["subject"]?.stringValue,
                let audience = fields["audience"]?.stringValue
            else { return nil }
            return WebIdentity(issuer: issuer, subject: subject, audience: audience, providerARN: fields["provider_arn"]?.stringValue)
        }
    }

    /// The role's trust: EC2, or only the given web identities.
    static func trustPolicy(_ identities: [WebIdentity]) -> String {
        guard !identities.isEmpty else { return trustPolicy }
        let document: [String: Any] = ["Version": "2012-10-17", "Statement": identities.map(\.statement)]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Whether two policy documents say the same (IAM gives its copy back URL-encoded, with its
    /// own spacing and key order).
    static func sameDocument(_ held: String, _ wanted: String) -> Bool {
        let decoded = held.removingPercentEncoding ?? held
        guard let a = try? JSONSerialization.jsonObject(with: Data(decoded.utf8)) as? NSDictionary,
            let b = try? JSONSerialization.jsonObject(with: Data(wanted.utf8)) as? NSDictionary
        else { return false }
        return a.isEqual(b)
    }

    /// The bucket, and the node secrets Stratum keeps for instances of this role's profile
    /// (`/stratum/<name>/…` in SSM Parameter Store).
    static func bucketPolicy(_ bucket: String, role name: String) -> String {
        #"{"Version":"2012-10-17","Statement":["#
            + #"{"Effect":"Allow","Action":["ssm:GetParameter"],"Resource":"arn:aws:ssm:*:*:parameter/stratum/\#(name)/*"},"#
            + #"{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::\#(bucket)"},"#
            + #"{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload"],"Resource":"arn:aws:s3:::\#(bucket)/*"}]}"#
    }

    static func tagParameters(_ tags: [String: String]) -> [(String, String)] {
        tags.keys.sorted().enumerated().flatMap { i, key in [("Tags.member.\(i + 1).Key", key), ("Tags.member.\(i + 1).Value", tags[key] ?? "")] }
    }

    // MARK: create

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let name = Self.name(of: resource)
        let bucket = try resource.requireString("bucket")
        let address = resource.address
        var tags = OwnershipTags.tags(for: resource, token: context.token)
        tags["Name"] = nil
        do {
            _ = try await client.iam(
                "CreateRole",
                [("RoleName", name), ("Path", Self.path), ("AssumeRolePolicyDocument", Self.trustPolicy(Self.webIdentities(resource.inputs["web_identities"]))),
                 ("Description", "Stratum node role of \(resource.ownership.stack.isEmpty ? "" : resource.ownership.stack + " ")\(address)")]
                    + Self.tagParameters(tags),
                idempotent: false, address: address)
        } catch let error as ProviderError where error.message.contains("EntityAlreadyExists") {
            // A retry of this create goes on; a role made by anyone else is theirs.
            guard try await roleToken(name, address: address) == context.token else {
                throw ProviderError(.permanent, "an IAM role named \(name) already exists and this create did not make it; name another", address: address)
            }
        }
        try await complete(name: name, bucket: bucket, tags: tags, address: address)
        return try await state(of: resource, name: name)
    }

    /// The policy, the instance profile and the role in it: each step a no-op when done.
    func complete(name: String, bucket: String, tags: [String: String], address: ResourceAddress) async throws {
        _ = try await client.iam(
            "PutRolePolicy", [("RoleName", name), ("PolicyName", Self.policyName), ("PolicyDocument", Self.bucketPolicy(bucket, role: name))], idempotent: true,
            address: address)
        do {
            _ = try await client.iam(
                "CreateInstanceProfile", [("InstanceProfileName", name), ("Path", Self.path)] + Self.tagParameters(tags), idempotent: false, address: address)
        } catch let error as ProviderError where error.message.contains("EntityAlreadyExists") {
            // Made by an earlier attempt of this create (its role is checked above).
        }
        let profile = try await client.iam("GetInstanceProfile", [("InstanceProfileName", name)], idempotent: true, address: address)
        let roles = profile["GetInstanceProfileResult"]?["InstanceProfile"]?["Roles"]?.all("member").compactMap { $0.string("RoleName") } ?? []
        if !roles.contains(name) {
            _ = try await client.iam("AddRoleToInstanceProfile", [("InstanceProfileName", name), ("RoleName", name)], idempotent: false, address: address)
        }
    }

    /// The `stratum:token` tag of a role, or nil when it has none or does not exist.
    func roleToken(_ name: String, address: ResourceAddress) async throws -> String? {
        do {
            let role = try await client.iam("GetRole", [("RoleName", name)], idempotent: true, address: address)
            let tags = role["GetRoleResult"]?["Role"]?["Tags"]?.all("member") ?? []
            return tags.first { $0.string("Key") == OwnershipTags.token }?.string("Value")
        } catch let error as ProviderError where error.kind == .notFound {
            return nil
        }
    }

    func state(of resource: ResolvedResource, name: String) async throws -> ResourceState {
        let role = try await client.iam("GetRole", [("RoleName", name)], idempotent: true, address: resource.address)
        let profile = try await client.iam("GetInstanceProfile", [("InstanceProfileName", name)], idempotent: true, address: resource.address)
        var attributes: [String: Value] = ["name": .string(name), "instance_profile": .string(name)]
        attributes["role_arn"] = role["GetRoleResult"]?["Role"]?.string("Arn").map(Value.string)
        attributes["instance_profile_arn"] = profile["GetInstanceProfileResult"]?["InstanceProfile"]?.string("Arn").map(Value.string)
        return resource.state(id: name, computed: attributes)
    }

    // MARK: read, update, delete, recover

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        let roles = try await listed("ListRoles", result: "ListRolesResult", collection: "Roles", name: "RoleName")
        let profiles = try await listed("ListInstanceProfiles", result: "ListInstanceProfilesResult", collection: "InstanceProfiles", name: "InstanceProfileName")
        return resources.map { state in
            // A role or profile deleted out of band: the node role is gone, and is made again.
            guard let role = roles[state.id], let profile = profiles[state.id] else { return nil }
            var refreshed = state
            refreshed.attributes["role_arn"] = role.string("Arn").map(Value.string)
            // A trust that is not the one stated: the next apply writes it back.
            if let held = role.string("AssumeRolePolicyDocument"), !Self.sameDocument(held, Self.trustPolicy(Self.webIdentities(state.attributes["web_identities"]))) {
                refreshed.attributes["web_identities"] = .list([.string("(changed outside Stratum)")])
            }
            refreshed.attributes["instance_profile_arn"] = profile.string("Arn").map(Value.string)
            let members = profile["Roles"]?.all("member").compactMap { $0.string("RoleName") } ?? []
            // A profile that lost its role no longer gives a node any keys.
            return members.contains(state.id) ? refreshed : nil
        }
    }

    /// Every item of a paginated IAM list under `/stratum/`, by name.
    func listed(_ action: String, result: String, collection: String, name: String) async throws -> [String: XMLTree] {
        var items: [String: XMLTree] = [:]
        var marker: String?
        repeat {
            var parameters = [("PathPrefix", Self.path), ("MaxItems", "1000")]
            if let marker { parameters.append(("Marker", marker)) }
            let page = try await client.iam(action, parameters, idempotent: true)
            let body = page[result]
            for item in body?[collection]?.all("member") ?? [] {
                if let key = item.string(name) { items[key] = item }
            }
            marker = body?.string("IsTruncated") == "true" ? body?.string("Marker") : nil
        } while marker != nil
        return items
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        let bucket = try desired.requireString("bucket")
        if bucket != prior.attributes["bucket"]?.stringValue {
            _ = try await client.iam(
                "PutRolePolicy", [("RoleName", prior.id), ("PolicyName", Self.policyName), ("PolicyDocument", Self.bucketPolicy(bucket, role: prior.id))], idempotent: true,
                address: prior.address)
        }
        let identities = Self.webIdentities(desired.inputs["web_identities"])
        if desired.inputs["web_identities"] != prior.attributes["web_identities"] {
            _ = try await client.iam(
                "UpdateAssumeRolePolicy", [("RoleName", prior.id), ("PolicyDocument", Self.trustPolicy(identities))], idempotent: true, address: prior.address)
        }
        var state = prior
        state.attributes["bucket"] = .string(bucket)
        state.attributes["web_identities"] = desired.inputs["web_identities"]
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        let name = state.id
        for (action, parameters) in [
            ("RemoveRoleFromInstanceProfile", [("InstanceProfileName", name), ("RoleName", name)]),
            ("DeleteInstanceProfile", [("InstanceProfileName", name)]),
            ("DeleteRolePolicy", [("RoleName", name), ("PolicyName", Self.policyName)]),
            ("DeleteRole", [("RoleName", name)]),
        ] {
            do {
                _ = try await client.iam(action, parameters, idempotent: true, address: state.address)
            } catch let error as ProviderError where error.kind == .notFound {
                // Already gone.
            }
        }
    }

    /// A create whose answer was lost: the role carries the token, and the rest is completed.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        let name = Self.name(of: resource)
        guard try await roleToken(name, address: operation.address) == operation.token else { return nil }
        var tags = OwnershipTags.tags(for: resource, token: operation.token)
        tags["Name"] = nil
        try await complete(name: name, bucket: try resource.requireString("bucket"), tags: tags, address: operation.address)
        return try await state(of: resource, name: name)
    }
}
