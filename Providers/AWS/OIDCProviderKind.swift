import Foundation
import StratumCloud
import StratumCore

/// `aws_oidc_provider`: an IAM OpenID Connect identity provider, so that roles may trust the
/// tokens of an issuer IAM does not know by itself — an Entra tenant's managed identities, for a
/// `GPUCluster`'s nodes that landed on Azure and keep their checkpoints in S3. `url` is the
/// issuer (`https://login.microsoftonline.com/<tenant>/v2.0`), `client_ids` the audiences
/// its tokens may carry; `thumbprints` is optional (IAM then fetches the issuer's certificate
/// itself).
///
/// IAM keeps one provider per URL in an account, and its ARN is the URL under the account: a
/// create refused with EntityAlreadyExists adopts the provider when its `stratum:token` tag is
/// this create's (a retry), and otherwise names it, for `stratum import`. Refresh is one
/// ListOpenIDConnectProviders for the account.
struct OIDCProviderKind: ResourceKind {
    static let typeName = "aws_oidc_provider"
    let type = Self.typeName
    let client: AWSClient
    /// The region recorded for this global resource.
    let home: String

    let schema = ResourceSchema(type: Self.typeName, attributes: [
        "id": .computed,
        "stratum_lineage": .computed,
        "url": .input(forceNew: true, required: true),
        "client_ids": .input(forceNew: true, required: true),
        "thumbprints": .input(forceNew: true),
        "arn": .computed,
    ])

    func batchKey(_ state: ResourceState) -> String { "account" }

    func validate(_ resource: DesiredResource) -> [Diagnostic] {
        guard let url = resource.inputs["url"]?.stringValue, !url.hasPrefix("https://") else { return [] }
        return [Diagnostic(address: resource.address, message: "url '\(url)' must be an https:// issuer URL", location: resource.location)]
    }

    static func strings(_ value: Value?) -> [String] {
        guard case .list(let items)? = value else { return [] }
        return items.compactMap(\.stringValue)
    }

    /// The issuer as IAM names its provider (the URL without `https://`), which ends its ARN.
    static func issuerPath(_ url: String) -> String {
        var path = url.hasPrefix("https://") ? String(url.dropFirst("https://".count)) : url
        while path.hasSuffix("/") { path.removeLast() }
        return path
    }

    func create(_ resource: ResolvedResource, context: OperationContext) async throws -> ResourceState {
        let url = try resource.requireString("url")
        var tags = OwnershipTags.tags(for: resource, token: context.token)
        tags["Name"] = nil
        var parameters: [(String, String)] = [("Url", url)]
        for (i, id) in Self.strings(resource.inputs["client_ids"]).enumerated() { parameters.append(("ClientIDList.member.\(i + 1)", id)) }
        for (i, print) in Self.strings(resource.inputs["thumbprints"]).enumerated() { parameters.append(("ThumbprintList.member.\(i + 1)", print)) }
        parameters += InstanceRoleKind.tagParameters(tags)
        do {
            let answer = try await client.iam("CreateOpenIDConnectProvider", parameters, idempotent: false, address: resource.address)
            let arn = try answer["CreateOpenIDConnectProviderResult"]?.string("OpenIDConnectProviderArn")
                ?? { throw ProviderError(.transient, "CreateOpenIDConnectProvider answered without an ARN", address: resource.address) }()
            return resource.state(id: arn, computed: ["arn": .string(arn)])
        } catch let error as ProviderError where error.message.contains("EntityAlreadyExists") {
            // A retry of this create goes on; a provider made by anyone else is theirs.
            guard let arn = try await provider(for: url), try await token(of: arn, address: resource.address) == context.token else {
                throw ProviderError(
                    .permanent,
                    "the account already has an OIDC provider for \(url), which this create did not make; "
                        + "import it (stratum import \(resource.address) <its ARN>) to use it from this stack",
                    address: resource.address)
            }
            return resource.state(id: arn, computed: ["arn": .string(arn)])
        }
    }

    /// The ARN of the account's provider for `url`, or nil.
    func provider(for url: String) async throws -> String? {
        let suffix = ":oidc-provider/" + Self.issuerPath(url)
        return try await listed().first { $0.hasSuffix(suffix) }
    }

    /// Every provider's ARN in the account.
    func listed() async throws -> [String] {
        let answer = try await client.iam("ListOpenIDConnectProviders", [], idempotent: true)
        let list = answer["ListOpenIDConnectProvidersResult"]?["OpenIDConnectProviderList"]?.all("member") ?? []
        return list.compactMap { $0.string("Arn") }
    }

    /// The `stratum:token` tag of a provider, or nil.
    func token(of arn: String, address: ResourceAddress) async throws -> String? {
        let answer = try await client.iam("ListOpenIDConnectProviderTags", [("OpenIDConnectProviderArn", arn)], idempotent: true, address: address)
        let tags = answer["ListOpenIDConnectProviderTagsResult"]?["Tags"]?.all("member") ?? []
        return tags.first { $0.string("Key") == OwnershipTags.token }?.string("Value")
    }

    func read(_ resources: [ResourceState]) async throws -> [ResourceState?] {
        let arns = Set(try await listed())
        return resources.map { arns.contains($0.id) ? $0 : nil }
    }

    func update(_ prior: ResourceState, to desired: ResolvedResource) async throws -> ResourceState {
        var state = prior
        state.dependencies = desired.dependencies
        return state
    }

    func delete(_ state: ResourceState, context: OperationContext) async throws {
        do {
            _ = try await client.iam("DeleteOpenIDConnectProvider", [("OpenIDConnectProviderArn", state.id)], idempotent: true, address: state.address)
        } catch let error as ProviderError where error.kind == .notFound {
            // Already gone.
        }
    }

    func importResource(region: String, id: String, address: ResourceAddress) async throws -> ResourceState? {
        guard try await listed().contains(id) else { return nil }
        let answer = try await client.iam("GetOpenIDConnectProvider", [("OpenIDConnectProviderArn", id)], idempotent: true, address: address)
        let result = answer["GetOpenIDConnectProviderResult"]
        var attributes: [String: Value] = ["arn": .string(id)]
        if let url = result?.string("Url") { attributes["url"] = .string(url.hasPrefix("https://") ? url : "https://" + url) }
        attributes["client_ids"] = .list((result?["ClientIDList"]?.all("member") ?? []).map { Value.string($0.text.trimmingCharacters(in: .whitespacesAndNewlines)) })
        return ResourceState(address: address, provider: "aws", region: region, id: id, attributes: attributes)
    }

    /// A create whose answer was lost: the provider for the URL carries the token.
    func recover(_ operation: PendingOperation) async throws -> ResourceState? {
        let resource = operation.resolved
        guard let arn = try await provider(for: try resource.requireString("url")),
            try await token(of: arn, address: operation.address) == operation.token
        else { return nil }
        return resource.state(id: arn, computed: ["arn": .string(arn)])
    }
}
