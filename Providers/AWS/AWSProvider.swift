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
    let ledger = TokenLedger()
    let ec2Kinds: [String: any EC2ResourceKind]
    public let schemas: [String: ResourceSchema]

    /// Choices that depend on what is behind the endpoint.
    public struct Options: Sendable {
        /// Find the instance of an interrupted or retried create with DescribeInstances'
        /// `client-token` filter. Emulators without that filter (moto) need false: instances
        /// are then found by their `stratum:token` tag, written by the same RunInstances call.
        public var clientTokenFilter: Bool
        /// Items per Describe page during refresh (5…1000).
        public var describePageSize: Int

        public init(clientTokenFilter: Bool = true, describePageSize: Int = 1000) {
            self.clientTokenFilter = clientTokenFilter
            self.describePageSize = min(max(describePageSize, 5), 1000)
        }
    }

    public init(client: AWSClient, options: Options = Options()) {
        self.client = client
        self.options = options
        let kinds: [any EC2ResourceKind] = [
            VPCKind(), SubnetKind(), InternetGatewayKind(), RouteTableKind(), SecurityGroupKind(), PlacementGroupKind(), KeyPairKind(),
            InstanceKind(),
        ]
        self.ec2Kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.type, $0) })
        // Built once: the planner asks for a schema per resource.
        var schemas = ec2Kinds.mapValues(\.schema)
        let bucket = S3BucketKind(client: client)
        schemas[bucket.type] = bucket.schema
        self.schemas = schemas
    }

    /// A provider using the standard credential chain and `AWS_ENDPOINT_URL` overrides.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> AWSProvider {
        let transport = AsyncHTTPTransport()
        let configuration = AWSClient.Configuration.fromEnvironment(environment)
        // An overridden EC2 endpoint is almost always an emulator; those lack the client-token filter.
        let emulated = configuration.endpointOverride != nil || configuration.serviceEndpoints["ec2"] != nil
        return AWSProvider(
            client: AWSClient(
                configuration: configuration, credentials: AWSCredentialChain.standard(environment: environment, transport: transport),
                transport: transport),
            options: Options(clientTokenFilter: !emulated))
    }

    var bucketKind: S3BucketKind { S3BucketKind(client: client) }

    public func validate(_ resource: DesiredResource) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        func problem(_ message: String) { problems.append(Diagnostic(address: resource.address, message: message, location: resource.location)) }
        if !AWSRegions.looksValid(resource.region) {
            problem("'\(resource.region)' is not an AWS region name (e.g. us-east-1)")
        }
        switch resource.address.type {
        case "aws_instance":
            if let type = resource.inputs["instance_type"]?.stringValue, !AWSInstanceTypes.looksValid(type) {
                problem("'\(type)' is not an EC2 instance type (expected FAMILY.SIZE, e.g. p5.48xlarge)")
            }
            if case .list(let subnets)? = resource.inputs["subnet_ids"], subnets.isEmpty {
                problem("subnet_ids must list at least one subnet")
            }
        case "aws_s3_bucket":
            if let name = resource.inputs["name"]?.stringValue, let why = S3BucketNames.problem(name) {
                problem("invalid S3 bucket name '\(name)': \(why)")
            }
        case "aws_vpc", "aws_subnet":
            if let cidr = resource.inputs["cidr"]?.stringValue, !cidr.contains("/") { problem("cidr must be ADDRESS/PREFIX") }
        default:
            break
        }
        return problems
    }

    // MARK: read

    public func read(type: String, region: String, resources: [ResourceState]) async throws -> [ResourceState?] {
        guard !resources.isEmpty else { return [] }
        if type == bucketKind.type { return try await bucketKind.read(resources, region: region) }
        guard let kind = ec2Kinds[type] else { throw unknownType(type, address: nil) }
        let describe = EC2Describe(kind: kind, ec2: EC2API(client: client, region: region, address: nil), pageSize: options.describePageSize)
        return try await describe.refresh(resources)
    }

    // MARK: create / update / delete

    public func create(_ resource: ResolvedResource, token: String) async throws -> ResourceState {
        let tags = OwnershipTags.tags(for: resource, token: token)
        // A token seen before means the engine is retrying a create whose outcome it does not
        // know: look first. AWS's ClientToken makes RunInstances safe by itself; the other
        // Create calls have no such token, and emulators honour none.
        let retry = await ledger.markSent(token)
        // What an earlier attempt made may lack what its follow-up calls (tags, attributes,
        // rules) would have set before that attempt failed: bring it to what was asked.
        if retry, let existing = try await recover(resource, token: token) { return try await update(existing, to: resource) }
        if resource.address.type == bucketKind.type { return try await bucketKind.create(resource, token: token, tags: tags) }
        guard let kind = ec2Kinds[resource.address.type] else { throw unknownType(resource.address.type, address: resource.address) }
        return try await kind.create(resource, token: token, tags: tags, ec2: EC2API(client: client, region: resource.region, address: resource.address))
    }

    public func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        if prior.type == bucketKind.type { return try await bucketKind.update(prior, to: desired, token: "") }
        guard let kind = ec2Kinds[prior.type] else { throw unknownType(prior.type, address: prior.address) }
        return try await kind.update(prior, to: desired, ec2: EC2API(client: client, region: prior.region, address: prior.address))
    }

    public func delete(_ state: ResourceState) async throws {
        if state.type == bucketKind.type { return try await bucketKind.delete(state) }
        guard let kind = ec2Kinds[state.type] else { throw unknownType(state.type, address: state.address) }
        try await kind.delete(state, ec2: EC2API(client: client, region: state.region, address: state.address))
    }

    // MARK: recovery and import

    public func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        if operation.type == bucketKind.type { return try await bucketKind.recover(operation) }
        return try await recover(operation.resolved, token: operation.token)
    }

    func recover(_ resource: ResolvedResource, token: String) async throws -> ResourceState? {
        if resource.address.type == bucketKind.type {
            let operation = PendingOperation(
                address: resource.address, action: .create, provider: name, region: resource.region, token: token, startedAt: Date(),
                ownership: resource.ownership, inputs: resource.inputs, dependencies: resource.dependencies)
            return try await bucketKind.recover(operation)
        }
        guard let kind = ec2Kinds[resource.address.type] else { throw unknownType(resource.address.type, address: resource.address) }
        let describe = EC2Describe(kind: kind, ec2: EC2API(client: client, region: resource.region, address: resource.address))
        let found: XMLTree?
        if kind.type == "aws_instance", options.clientTokenFilter {
            found = try await describe.findInstance(clientToken: token, subnets: resource.strings("subnet_ids").count)
        } else {
            found = try await describe.find(token: token, address: resource.address, lineage: resource.ownership.lineage)
        }
        guard let item = found else { return nil }
        var state = kind.adopted(item, address: resource.address, region: resource.region, inputs: resource.inputs)
        state.dependencies = resource.dependencies
        return state
    }

    public func importResource(type: String, region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        if type == bucketKind.type {
            guard let versioning = try await bucketKind.versioning(of: id, region: region, address: address) else { return nil }
            var attributes = bucketKind.computed(id)
            attributes["name"] = .string(id)
            attributes["versioning"] = .bool(versioning)
            attributes["id"] = .string(id)
            return ResourceState(address: address, provider: name, region: region, id: id, attributes: attributes)
        }
        guard let kind = ec2Kinds[type] else { throw unknownType(type, address: address) }
        let describe = EC2Describe(kind: kind, ec2: EC2API(client: client, region: region, address: address))
        guard let item = try await describe.find(id: id) else { return nil }
        return kind.adopted(item, address: address, region: region, inputs: [:])
    }

    func unknownType(_ type: String, address: ResourceAddress?) -> ProviderError {
        ProviderError(.permanent, "the aws provider has no resource type '\(type)'", address: address)
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
