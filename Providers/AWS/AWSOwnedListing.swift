import Foundation
import StratumCloud
import StratumCore

/// What `stratum sweep` searches on AWS for resources carrying Stratum's ownership tags:
/// EC2 types in every region the account has enabled (one `tag-key`-filtered Describe per type
/// and region), S3 buckets (global list, then each bucket's tags), and the IAM node roles and
/// OIDC providers (global, by their tags).
enum AWSOwnership {
    /// Ownership from a resource's tags; nil when it does not carry Stratum's lineage tag.
    static func ownership(_ tags: [String: String]) -> Ownership? {
        guard let lineage = tags[OwnershipTags.lineage], !lineage.isEmpty else { return nil }
        let expires = tags[OwnershipTags.expires].flatMap(TimeInterval.init).map { Date(timeIntervalSince1970: $0) }
        return Ownership(stack: tags[OwnershipTags.stack] ?? "", lineage: lineage, owner: tags[OwnershipTags.owner], expires: expires)
    }

    /// Tags as IAM answers them (`<member><Key/><Value/></member>`).
    static func iamTags(_ members: [XMLTree]) -> [String: String] {
        var tags: [String: String] = [:]
        for member in members { if let key = member.string("Key") { tags[key] = member.string("Value") ?? "" } }
        return tags
    }

    /// The answer of a call about one listed item, or nil when the item is gone by now.
    static func unlessGone<T>(_ call: () async throws -> T) async throws -> T? {
        do {
            return try await call()
        } catch let error as ProviderError where error.kind == .notFound {
            return nil
        }
    }

    /// The address a resource's tags name, or nil.
    static func address(_ tags: [String: String]) -> ResourceAddress? {
        tags[OwnershipTags.address].flatMap(ResourceAddress.init(parsing:))
    }
}

/// The regions to search, asked of EC2 once per provider (DescribeRegions: the regions the
/// account has enabled) unless the provider was given a list.
actor AWSRegionList {
    private let client: AWSClient
    private let home: String
    private var known: [String]?

    init(client: AWSClient, home: String, fixed: [String]?) {
        self.client = client
        self.home = home
        self.known = fixed
    }

    func regions() async throws -> [String] {
        if let known { return known }
        let answer = try await client.ec2("DescribeRegions", [], region: home, idempotent: true, address: nil)
        let names = answer.items("regionInfo").compactMap { $0.string("regionName") }.sorted()
        guard !names.isEmpty else { throw ProviderError(.transient, "DescribeRegions named no region") }
        known = names
        return names
    }
}

extension EC2Kind {
    /// Everything of this type carrying Stratum's lineage tag, in every region searched; a
    /// region's Describes run concurrently with the others'.
    func owned() async throws -> [OwnedResource]? {
        let regions = try await self.regions.regions()
        return try await withThrowingTaskGroup(of: [OwnedResource].self) { group in
            for region in regions {
                group.addTask {
                    let describe = EC2Describe(kind: ec2Type, ec2: api(region, nil), pageSize: options.describePageSize)
                    let items = try await describe.items(filters: [("tag-key", [OwnershipTags.lineage])])
                    return items.filter(describe.isLive).compactMap { item in
                        let tags = OwnershipTags.parse(item)
                        guard let ownership = AWSOwnership.ownership(tags), let address = AWSOwnership.address(tags) else { return nil }
                        return OwnedResource(state: ec2Type.adopted(item, address: address, region: region, inputs: [:]), ownership: ownership)
                    }
                }
            }
            var all: [OwnedResource] = []
            for try await found in group { all += found }
            return all.sorted { ($0.state.region, $0.state.id) < ($1.state.region, $1.state.id) }
        }
    }
}

extension S3BucketKind {
    /// Every bucket of the account whose tags carry Stratum's lineage, in its own region.
    func owned() async throws -> [OwnedResource]? {
        var found: [OwnedResource] = []
        for name in try await listBuckets(region: home).sorted() {
            let region = try await location(of: name)
            let tags = try await self.tags(of: name, region: region, address: nil)
            guard let ownership = AWSOwnership.ownership(tags), let address = AWSOwnership.address(tags),
                let state = try await importResource(region: region, id: name, address: address)
            else { continue }
            found.append(OwnedResource(state: state, ownership: ownership))
        }
        return found
    }

    /// A bucket's region (GetBucketLocation: empty for us-east-1).
    func location(of bucket: String) async throws -> String {
        let response = try await client.s3("GET", bucket: bucket, query: [("location", "")], region: home, action: "GetBucketLocation", expect404: true)
        guard response.status != 404, let root = XMLTree.parse(response.body) else { return home }
        let text = root.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "us-east-1" : text == "EU" ? "eu-west-1" : text
    }
}

extension S3ObjectKind {
    /// Objects under `stratum/` carrying Stratum's lineage in their metadata, in every bucket of
    /// the account: an artifact left in a bucket whose stack is gone. Objects put before the
    /// lineage was written into their metadata are not found.
    func owned() async throws -> [OwnedResource]? {
        var found: [OwnedResource] = []
        for bucket in try await buckets.listBuckets(region: buckets.home).sorted() {
            let region = try await buckets.location(of: bucket)
            for key in try await keys(in: bucket, region: region)?.sorted() ?? [] {
                let head = try await client.s3("HEAD", bucket: bucket, key: key, region: region, action: "HeadObject", expect404: true)
                guard head.status != 404 else { continue }
                var tags: [String: String] = [:]
                for (name, value) in head.headers {
                    let lower = name.lowercased()
                    if lower.hasPrefix("x-amz-meta-stratum-") { tags["stratum:" + lower.dropFirst("x-amz-meta-stratum-".count)] = value }
                }
                guard let ownership = AWSOwnership.ownership(tags), let address = AWSOwnership.address(tags) else { continue }
                let state = ResourceState(
                    address: address, provider: "aws", region: region, id: "\(bucket)/\(key)",
                    attributes: [
                        "id": .string("\(bucket)/\(key)"), "bucket": .string(bucket), "key": .string(key), "url": .string("s3://\(bucket)/\(key)"),
                        "stratum_lineage": .string(ownership.lineage),
                    ])
                found.append(OwnedResource(state: state, ownership: ownership))
            }
        }
        return found
    }
}

extension InstanceRoleKind {
    /// Every role under `/stratum/` whose tags carry Stratum's lineage (ListRoles leaves tags
    /// out, so each role's are read with ListRoleTags).
    func owned() async throws -> [OwnedResource]? {
        let roles = try await listed("ListRoles", result: "ListRolesResult", collection: "Roles", name: "RoleName")
        var found: [OwnedResource] = []
        for (name, role) in roles.sorted(by: { $0.key < $1.key }) {
            // A role deleted since the list was read is not there to list.
            guard let answer = try await AWSOwnership.unlessGone({ try await client.iam("ListRoleTags", [("RoleName", name)], idempotent: true) }) else { continue }
            let tags = AWSOwnership.iamTags(answer["ListRoleTagsResult"]?["Tags"]?.all("member") ?? [])
            guard let ownership = AWSOwnership.ownership(tags), let address = AWSOwnership.address(tags) else { continue }
            var attributes: [String: Value] = ["id": .string(name), "name": .string(name), "instance_profile": .string(name), "stratum_lineage": .string(ownership.lineage)]
            attributes["role_arn"] = role.string("Arn").map(Value.string)
            found.append(OwnedResource(state: ResourceState(address: address, provider: "aws", region: home, id: name, attributes: attributes), ownership: ownership))
        }
        return found
    }
}

extension OIDCProviderKind {
    /// Every OIDC provider of the account whose tags carry Stratum's lineage.
    func owned() async throws -> [OwnedResource]? {
        var found: [OwnedResource] = []
        for arn in try await listed().sorted() {
            guard let answer = try await AWSOwnership.unlessGone({ try await client.iam("ListOpenIDConnectProviderTags", [("OpenIDConnectProviderArn", arn)], idempotent: true) })
            else { continue }
            let tags = AWSOwnership.iamTags(answer["ListOpenIDConnectProviderTagsResult"]?["Tags"]?.all("member") ?? [])
            guard let ownership = AWSOwnership.ownership(tags), let address = AWSOwnership.address(tags) else { continue }
            let state = ResourceState(address: address, provider: "aws", region: home, id: arn, attributes: ["id": .string(arn), "arn": .string(arn)])
            found.append(OwnedResource(state: state, ownership: ownership))
        }
        return found
    }
}
