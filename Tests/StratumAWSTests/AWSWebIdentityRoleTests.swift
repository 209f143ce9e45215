import Foundation
import StratumAWS
import StratumCloud
import StratumCore
import StratumTesting
import Testing

/// `aws_instance_role` with `web_identities`: the role of a cluster's nodes on another cloud,
/// against moto's IAM and STS.
@Suite("AWS: a role that nodes on another cloud assume with their identity token")
struct AWSWebIdentityRoleTests {
    static let google: Value = .map(["issuer": "accounts.google.com", "subject": "104857600123456789012", "audience": "stratum-checkpoints"])

    func resource(_ world: AWSWorld, _ identities: [Value]) -> ResolvedResource {
        ResolvedResource(
            address: ResourceAddress(type: "aws_instance_role", name: "train-gcp"), region: world.region,
            inputs: ["bucket": .string(world.bucketName), "web_identities": .list(identities)], dependencies: [],
            ownership: Ownership(stack: world.workspace, lineage: "lineage-\(world.environment)", owner: "alice", expires: Date(timeIntervalSince1970: 1_800_000_000)))
    }

    /// The trust IAM holds for `role`, decoded.
    func trust(_ world: AWSWorld, _ role: String) async throws -> [String: Any] {
        let answer = try await world.direct.iam("GetRole", [("RoleName", role)], idempotent: true)
        let document = try #require(answer["GetRoleResult"]?["Role"]?.string("AssumeRolePolicyDocument"))
        let decoded = document.removingPercentEncoding ?? document
        return try #require(try JSONSerialization.jsonObject(with: Data(decoded.utf8)) as? [String: Any])
    }

    @Test func theTrustNamesOnlyTheServiceAccountAndDriftIsHealed() async throws {
        let world = try await AWSWorld.make(region: "us-east-2")
        defer { Task { await world.shutdown() } }
        let created = try await world.provider.create(resource(world, [Self.google]), token: UUID().uuidString.lowercased())
        let arn = try #require(created.attributes["role_arn"]?.stringValue)
        #expect(arn.hasSuffix(":role/stratum/\(created.id)"))

        // Only the GCP account's tokens for the audience, and no EC2 instance, may assume it.
        let held = try await trust(world, created.id)
        let statements = try #require(held["Statement"] as? [[String: Any]])
        #expect(statements.count == 1)
        let statement = try #require(statements.first)
        #expect(statement["Action"] as? String == "sts:AssumeRoleWithWebIdentity")
        #expect((statement["Principal"] as? [String: String]) == ["Federated": "accounts.google.com"])
        let conditions = try #require((statement["Condition"] as? [String: Any])?["StringEquals"] as? [String: String])
        #expect(conditions == [
            "accounts.google.com:sub": "104857600123456789012", "accounts.google.com:aud": "104857600123456789012",
            "accounts.google.com:oaud": "stratum-checkpoints",
        ])

        // An ephemeral environment's role carries its owner and expiry.
        let role = try await world.direct.iam("GetRole", [("RoleName", created.id)], idempotent: true)
        let tags = Dictionary((role["GetRoleResult"]?["Role"]?["Tags"]?.all("member") ?? []).compactMap { tag in tag.string("Key").map { ($0, tag.string("Value") ?? "") } }) { a, _ in a }
        #expect(tags["stratum:owner"] == "alice" && tags["stratum:expires"] == "1800000000", "\(tags)")

        // Refresh sees the trust as stated.
        let fresh = try #require(try await world.provider.read(type: "aws_instance_role", resources: [created]).first ?? nil)
        #expect(fresh.attributes["web_identities"] == created.attributes["web_identities"])

        // Someone widens it to EC2 out of band: refresh reports it, and an update writes it back.
        _ = try await world.direct.iam(
            "UpdateAssumeRolePolicy",
            [("RoleName", created.id), ("PolicyDocument", #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)],
            idempotent: true)
        let drifted = try #require(try await world.provider.read(type: "aws_instance_role", resources: [created]).first ?? nil)
        #expect(drifted.attributes["web_identities"] != created.attributes["web_identities"])
        let healed = try await world.provider.update(drifted, to: resource(world, [Self.google]))
        #expect(healed.attributes["web_identities"] == .list([Self.google]))
        let restored = try await trust(world, created.id)
        #expect(((restored["Statement"] as? [[String: Any]])?.first?["Principal"] as? [String: String]) == ["Federated": "accounts.google.com"])
        let clean = try #require(try await world.provider.read(type: "aws_instance_role", resources: [healed]).first ?? nil)
        #expect(clean.attributes["web_identities"] == .list([Self.google]))

        // STS hands the role's keys for an identity token (moto does not check the token).
        let moto = try #require(Moto.endpoint)
        let form = AWSPercentEncoding.formBody([
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", arn), ("RoleSessionName", "stratum-test"),
            ("WebIdentityToken", IdentityTokenFake.token),
        ])
        let answer = try await AWSWorld.transport.send(
            HTTPRequestData(method: "POST", url: moto, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Data(form.utf8)), timeout: .seconds(30))
        #expect(answer.status == 200)
        let sts = try #require(XMLTree.parse(answer.body))
        #expect(sts["AssumeRoleWithWebIdentityResult"]?["Credentials"]?.string("AccessKeyId") != nil, "\(String(decoding: answer.body, as: UTF8.self))")

        try await world.provider.delete(healed)
        let gone = try await world.provider.read(type: "aws_instance_role", resources: [healed])
        #expect(gone.first ?? nil == nil)
    }

    /// An Entra tenant's issuer registered as an OIDC provider: made once (a retry of the create
    /// adopts it by its token, anyone else's is named for import), found by refresh and import,
    /// trusted by a role for one managed identity, and deleted.
    @Test func anEntraIssuerIsRegisteredAndTrustedForOneManagedIdentity() async throws {
        let world = try await AWSWorld.make(region: "us-east-2")
        defer { Task { await world.shutdown() } }
        let tenant = UUID().uuidString.lowercased()
        let url = "https://login.microsoftonline.com/\(tenant)/v2.0"
        let provider = ResolvedResource(
            address: ResourceAddress(type: "aws_oidc_provider", name: "entra"), region: "us-east-1",
            inputs: ["url": .string(url), "client_ids": .list(["api://AzureADTokenExchange"])], dependencies: [],
            ownership: Ownership(stack: world.workspace, lineage: "lineage-\(world.environment)"))
        let token = UUID().uuidString.lowercased()
        let made = try await world.provider.create(provider, token: token)
        let arn = try #require(made.attributes["arn"]?.stringValue)
        #expect(arn.hasSuffix(":oidc-provider/login.microsoftonline.com/\(tenant)/v2.0") && made.id == arn)
        // The same create again (its answer was lost): the provider is adopted, not doubled.
        #expect(try await world.provider.create(provider, token: token).id == arn)
        // Another stack's create: refused, naming the import.
        await #expect {
            _ = try await world.provider.create(provider, token: UUID().uuidString.lowercased())
        } throws: { error in
            "\(error)".contains("already has an OIDC provider for \(url)") && "\(error)".contains("stratum import aws_oidc_provider.entra")
        }
        #expect(try await world.provider.read(type: "aws_oidc_provider", resources: [made]) == [made])
        let imported = try #require(try await world.provider.importResource(type: "aws_oidc_provider", region: "us-east-1", id: arn, address: provider.address))
        #expect(imported.attributes["url"]?.stringValue == url && imported.attributes["client_ids"] == .list(["api://AzureADTokenExchange"]))

        // The role for one managed identity of that tenant.
        let principal = UUID().uuidString.lowercased()
        let role = try await world.provider.create(resource(world, [.map([
            "issuer": .string(url), "subject": .string(principal), "audience": "api://AzureADTokenExchange", "provider_arn": .string(arn),
        ])]), token: UUID().uuidString.lowercased())
        let statement = try #require(((try await trust(world, role.id))["Statement"] as? [[String: Any]])?.first)
        #expect((statement["Principal"] as? [String: String]) == ["Federated": arn])
        let conditions = try #require((statement["Condition"] as? [String: Any])?["StringEquals"] as? [String: String])
        #expect(conditions == [
            "login.microsoftonline.com/\(tenant)/v2.0:sub": principal, "login.microsoftonline.com/\(tenant)/v2.0:aud": "api://AzureADTokenExchange",
        ])
        try await world.provider.delete(role)

        try await world.provider.delete(made)
        #expect(try await world.provider.read(type: "aws_oidc_provider", resources: [made]) == [nil])
        try await world.provider.delete(made)
    }

    @Test func anIssuerOtherThanGoogleNeedsItsProvider() throws {
        let kind = AWSProvider(
            client: AWSClient(configuration: .init(), credentials: StaticCredentials(AWSCredentials(accessKeyId: "k", secretAccessKey: "s", source: "t")), transport: AsyncHTTPTransport()))
        let desired = DesiredResource(
            address: ResourceAddress(type: "aws_instance_role", name: "x"), provider: "aws", region: "us-east-1",
            inputs: ["bucket": "b", "web_identities": .list([.map(["issuer": "https://sts.windows.net/tenant/", "subject": "s", "audience": "a"])])],
            dependsOn: [], location: SourceLocation(file: "t", line: 1))
        let problems = kind.validate(desired)
        #expect(problems.contains { $0.message.contains("needs provider_arn") }, "\(problems)")
    }
}
