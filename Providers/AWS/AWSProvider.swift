import Foundation
import StratumCloud
import StratumCore

/// Amazon Web Services: VPC networking, GPU instances and S3 buckets, over the EC2 Query API
/// and S3's REST API. Everything it creates carries ownership tags (`stratum:stack`,
/// `stratum:lineage`, `stratum:address`, `stratum:token`): refresh finds a stack's resources
/// with one tag-filtered Describe per type and region, and recovery finds what an
/// interrupted create left by its token.
public struct AWSProvider: Provider {
    public let name = "aws"
    public let client: AWSClient
    public let options: Options
    public let kinds: [String: any ResourceKind]

    /// Choices that depend on what is behind the endpoint.
    public struct Options: Sendable {
        /// Find the instance of an interrupted or retried create with DescribeInstances'
        /// `client-token` filter. Emulators without that filter (moto) need false: instances
        /// are then found by their `stratum:token` tag, written by the same RunInstances call.
        public var clientTokenFilter: Bool
        /// Items per Describe page during refresh (5…1000).
        public var describePageSize: Int
        /// The region for calls that name none (DescribeRegions, ListBuckets).
        public var homeRegion: String
        /// The regions `stratum sweep` searches for resources with Stratum's tags; nil: every
        /// region the account has enabled (DescribeRegions).
        public var searchRegions: [String]?

        public init(clientTokenFilter: Bool = true, describePageSize: Int = 1000, homeRegion: String = "us-east-1", searchRegions: [String]? = nil) {
            self.clientTokenFilter = clientTokenFilter
            self.describePageSize = min(max(describePageSize, 5), 1000)
            self.homeRegion = homeRegion
            self.searchRegions = searchRegions.map { Array(Set($0)).sorted() }
        }
    }

    /// The regions `stratum sweep` searches: `options.searchRegions`, else every region the
    /// account has enabled (DescribeRegions, asked once).
    public func regionsToSearch() async throws -> [String] { try await regions.regions() }

    let regions: AWSRegionList

    public init(client: AWSClient, options: Options = Options()) {
        self.client = client
        self.options = options
        let ledger = TokenLedger()
        let regions = AWSRegionList(client: client, home: options.homeRegion, fixed: options.searchRegions)
        self.regions = regions
        let home = options.homeRegion
        let ec2: [any EC2ResourceKind] = [
            VPCKind(), SubnetKind(), InternetGatewayKind(), RouteTableKind(), SecurityGroupKind(), PlacementGroupKind(), KeyPairKind(),
            InstanceKind(),
        ]
        var kinds: [any ResourceKind] = ec2.map { EC2Kind(ec2Type: $0, client: client, options: options, ledger: ledger, regions: regions) }
        let buckets = S3BucketKind(client: client, ledger: ledger, home: home)
        kinds.append(buckets)
        kinds.append(InstanceRoleKind(client: client, home: home))
        kinds.append(OIDCProviderKind(client: client, home: home))
        kinds.append(S3ObjectKind(client: client, buckets: buckets))
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
    }

    /// A provider using the standard credential chain and `AWS_ENDPOINT_URL` overrides; the
    /// home region is the default region (`AWS_REGION`, …), and `STRATUM_AWS_SEARCH_REGIONS`
    /// (comma-separated) limits the regions `stratum sweep` searches.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> AWSProvider {
        let transport = AsyncHTTPTransport()
        let configuration = AWSClient.Configuration.fromEnvironment(environment)
        // An overridden EC2 endpoint is almost always an emulator; those lack the client-token filter.
        let emulated = configuration.endpointOverride != nil || configuration.serviceEndpoints["ec2"] != nil
        return AWSProvider(
            client: AWSClient(
                configuration: configuration, credentials: AWSCredentialChain.standard(environment: environment, transport: transport),
                transport: transport),
            options: Options(
                clientTokenFilter: !emulated, homeRegion: AWSCredentialChain.defaultRegion(environment) ?? "us-east-1",
                searchRegions: environment["STRATUM_AWS_SEARCH_REGIONS"].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
                    .flatMap { $0.isEmpty ? nil : $0 }))
    }
}

/// Checks every AWS resource gets before its kind's own.
enum AWSValidation {
    static func region(_ resource: DesiredResource) -> [Diagnostic] {
        guard !AWSRegions.looksValid(resource.region) else { return [] }
        return [Diagnostic(address: resource.address, message: "'\(resource.region)' is not an AWS region name (e.g. us-east-1)", location: resource.location)]
    }

    static func cidr(_ resource: DesiredResource) -> [Diagnostic] {
        guard let cidr = resource.inputs["cidr"]?.stringValue, !cidr.contains("/") else { return [] }
        return [problem(resource, "cidr must be ADDRESS/PREFIX")]
    }

    static func problem(_ resource: DesiredResource, _ message: String) -> Diagnostic {
        Diagnostic(address: resource.address, message: message, location: resource.location)
    }
}

/// An EC2 resource type as the engine sees it: refresh, recovery and import through one
/// tag-filtered Describe (`EC2Describe`), create/update/delete by the type.
struct EC2Kind: ResourceKind {
    let ec2Type: any EC2ResourceKind
    let client: AWSClient
    let options: AWSProvider.Options
    let ledger: TokenLedger
    let regions: AWSRegionList
    let schema: ResourceSchema

    init(ec2Type: any EC2ResourceKind, client: AWSClient, options: AWSProvider.Options, ledger: TokenLedger, regions: AWSRegionList) {
        self.ec2Type = ec2Type
        self.client = client
        self.options = options
        self.ledger = ledger
        self.regions = regions
        // Built once: the planner asks for a schema per resource.
        self.schema = ec2Type.schema
    }

    var type: String { ec2Type.type }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        AWSValidation.region(resource) + ec2Type.validate(resource)
    }

    func review(_ prior: ResourceState, desired: [String: Value]) -> PlanReview {
        ec2Type.review(prior, desired: desired)
    }

    func api(_ region: String, _ address: ResourceAddress?) -> EC2API {
        EC2API(client: client, region: region, address: address)
    }

    /// One batch is one region (the default batch key).
    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        guard let region = resources.first?.region else { return [] }
        let describe = EC2Describe(kind: ec2Type, ec2: api(region, nil), pageSize: options.describePageSize)
        return try await describe.refresh(resources)
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        // A token seen before means a caller is retrying a create whose outcome it does not
        // know: look first. AWS's ClientToken makes RunInstances safe by itself; the other
        // Create calls have no such token, and emulators honour none.
        // What an earlier attempt made may lack what its follow-up calls (tags, attributes,
        // rules) would have set before that attempt failed: bring it to what was asked.
        if await ledger.markSent(context.token), let existing = try await find(resource, token: context.token) {
            return try await update(existing, to: resource)
        }
        let tags = OwnershipTags.tags(for: resource, token: context.token)
        return try await ec2Type.create(resource, token: context.token, tags: tags, ec2: api(resource.region, resource.address))
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        try await ec2Type.update(prior, to: desired, ec2: api(prior.region, prior.address))
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        try await ec2Type.delete(state, ec2: api(state.region, state.address))
    }

    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        try await find(operation.resolved, token: operation.token)
    }

    /// What a create with `token` left, by its client token (instances) or ownership tags.
    func find(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        let describe = EC2Describe(kind: ec2Type, ec2: api(resource.region, resource.address))
        let found: XMLTree?
        if ec2Type.type == InstanceKind.typeName, options.clientTokenFilter {
            found = try await describe.findInstance(clientToken: token, subnets: resource.strings("subnet_ids").count)
        } else {
            found = try await describe.find(token: token, address: resource.address, lineage: resource.ownership.lineage)
        }
        guard let item = found else { return nil }
        var state = ec2Type.adopted(item, address: resource.address, region: resource.region, inputs: resource.inputs)
        state.dependencies = resource.dependencies
        return state
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        let describe = EC2Describe(kind: ec2Type, ec2: api(region, address))
        guard let item = try await describe.find(id: id) else { return nil }
        return ec2Type.adopted(item, address: address, region: region, inputs: [:])
    }
}

/// Tokens this process has already sent a create with.
actor TokenLedger {
    private var sent = Set<String>()

    /// Records `token`; true when it had been sent before (this is a retry).
    func markSent(_ token: String) -> Bool {
        !sent.insert(token).inserted
    }
}

/// Shape checks for names AWS would reject, caught before any call.
enum AWSRegions {
    static func looksValid(_ region: String) -> Bool {
        let parts = region.split(separator: "-")
        return parts.count >= 3 && parts.last.map { $0.allSatisfy(\.isNumber) } == true && region.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }
    }
}

enum AWSInstanceTypes {
    static func looksValid(_ type: String) -> Bool {
        let parts = type.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let family = parts.first, let size = parts.last, !family.isEmpty, !size.isEmpty else { return false }
        return type.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "." || $0 == "-" } && family.first?.isLetter == true
    }
}

enum S3BucketNames {
    static func problem(_ name: String) -> String? {
        guard (3...63).contains(name.count) else { return "must be 3 to 63 characters long" }
        guard name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }), name.allSatisfy(\.isASCII) else {
            return "use lowercase letters, digits, '-' and '.'"
        }
        guard let first = name.first, let last = name.last, first.isLetter || first.isNumber, last.isLetter || last.isNumber else {
            return "must begin and end with a letter or digit"
        }
        return nil
    }
}
