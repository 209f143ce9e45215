import Stratum
import StratumCore
import StratumTrainerArtifact

extension Azure {
    /// `azure_node_identity`: the identity a VM reads and writes its cluster's container with —
    /// a user-assigned managed identity, and its Storage Blob Data Contributor role on that one
    /// container, made before the VMs; pass it as the nodes' `VMSpec.identity`.
    public struct NodeIdentity: Resource {
        public let name: String
        public var resourceGroup: any StringExpression
        /// What the nodes may use: a container's (or storage account's) ARM id; nil for nodes
        /// whose bucket is on another cloud, which trusts the identity's tokens.
        public var scope: (any StringExpression)?
        /// The identity's Azure name; nil: derived from the address and the state's lineage.
        public var identityName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        /// The identity of the nodes that use `bucket` (a `Bucket` placed on Azure: its container).
        public init(
            _ name: String, bucket: Bucket, resourceGroup: any StringExpression, identityName: String? = nil, subscription: String? = nil, location: String,
            fileID: String = #fileID, line: Int = #line
        ) {
            self.init(
                name, scope: bucket.id, resourceGroup: resourceGroup, identityName: identityName, subscription: subscription, location: location, fileID: fileID,
                line: line)
        }

        public init(
            _ name: String, scope: (any StringExpression)?, resourceGroup: any StringExpression, identityName: String? = nil, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.scope = scope
            self.resourceGroup = resourceGroup
            self.identityName = identityName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_node_identity", name: name) }
        /// The identity's ARM id, for a VM's `userAssignedIdentities`.
        public var id: Ref<String> { Ref(address, "id") }
        /// The identity's client id: what a node asks IMDS for tokens of (`AZURE_CLIENT_ID`).
        public var clientID: Ref<String> { Ref(address, "client_id") }
        public var principalID: Ref<String> { Ref(address, "principal_id") }
        /// The directory the identity belongs to (a key vault's `tenantId`).
        public var tenantID: Ref<String> { Ref(address, "tenant_id") }
        /// The issuer of the identity's Entra tokens (`https://login.microsoftonline.com/<tenant>/v2.0`).
        public var issuer: Ref<String> { Ref(address, "issuer") }

        public func declare(into content: inout StackContent) {
            AzureDeclaration.declare(
                "azure_node_identity", name, subscription: subscription, region: location, resourceGroup: resourceGroup, inputs: scope.map { ["scope": $0.value] } ?? [:],
                azureName: identityName, nameCheck: { AzureNaming.problem(resourceName: $0, limit: 128) }, dependsOn: explicitDependencies,
                location: sourceLocation, into: &content)
        }
    }

    /// `azure_federated_credential`: lets tokens of another issuer (`issuer`, for `subject` and
    /// `audience`) be exchanged at Entra for `identity`'s own — how a GCP service account's
    /// nodes reach a container that identity may use.
    public struct FederatedCredential: Resource {
        public let name: String
        public var identity: NodeIdentity
        public var issuer: String
        public var subject: any StringExpression
        public var audience: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, identity: NodeIdentity, issuer: String, subject: any StringExpression, audience: String = "api://AzureADTokenExchange",
            fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.identity = identity
            self.issuer = issuer
            self.subject = subject
            self.audience = audience
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_federated_credential", name: name) }

        public func declare(into content: inout StackContent) {
            AzureDeclaration.declare(
                "azure_federated_credential", name, subscription: identity.subscription, region: identity.location, resourceGroup: nil,
                inputs: ["identity": identity.id.value, "issuer": .string(issuer), "subject": subject.value, "audiences": .list([.string(audience)])],
                dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_key_vault`: the vault of the nodes' secrets — a `Secret` in the env of a VM whose
    /// spec names it (`VMSpec.keyVault`) is kept here, not in the VM's customData — with RBAC
    /// authorization, and Key Vault Secrets User on this vault alone for `reader`'s principal.
    /// Destroy deletes and purges it (see `AzureKeyVaultKind`).
    public struct KeyVault: Resource {
        public let name: String
        public var reader: NodeIdentity
        public var resourceGroup: any StringExpression
        /// The vault's Azure name (3-24 letters, digits and '-', unique across Azure); nil:
        /// derived from the address and the state's lineage.
        public var vaultName: String?
        public var subscription: String?
        public var location: String
        public var explicitDependencies: [ResourceAddress] = []
        public let sourceLocation: SourceLocation

        public init(
            _ name: String, reader: NodeIdentity, resourceGroup: any StringExpression, vaultName: String? = nil, subscription: String? = nil,
            location: String, fileID: String = #fileID, line: Int = #line
        ) {
            self.name = name
            self.reader = reader
            self.resourceGroup = resourceGroup
            self.vaultName = vaultName
            self.subscription = subscription
            self.location = location
            self.sourceLocation = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_key_vault", name: name) }
        /// The vault's ARM id, for a VM's `key_vault`.
        public var id: Ref<String> { Ref(address, "id") }
        /// `https://{name}.vault.azure.net/`.
        public var uri: Ref<String> { Ref(address, "uri") }

        public func declare(into content: inout StackContent) {
            AzureDeclaration.declare(
                "azure_key_vault", name, subscription: subscription, region: location, resourceGroup: resourceGroup,
                inputs: ["tenant_id": reader.tenantID.value, "reader": reader.principalID.value], azureName: vaultName,
                nameCheck: { AzureKeyVaultKind.problem(name: $0) }, dependsOn: explicitDependencies, location: sourceLocation, into: &content)
        }
    }

    /// `azure_blob`: the trainer this binary carries, as a zip archive named by its SHA-256 in
    /// `bucket`'s container (`stratum/trainer/<sha256>.zip`), for nodes to fetch and build at boot.
    public struct TrainerArchive: Resource {
        public let name: String
        public var bucket: Bucket
        public var explicitDependencies: [ResourceAddress] = []
        public let location: SourceLocation

        public init(_ name: String = "trainer", in bucket: Bucket, fileID: String = #fileID, line: Int = #line) {
            self.name = name
            self.bucket = bucket
            self.location = SourceLocation(file: fileID, line: line)
        }

        public var address: ResourceAddress { ResourceAddress(type: "azure_blob", name: name) }
        /// `az://{account}/{container}/stratum/trainer/<sha256>.zip`.
        public var url: Ref<String> { Ref(address, "url") }

        /// `run` on nodes that fetch this archive.
        public func workload(_ run: TrainerRun = TrainerRun()) -> TrainerWorkload {
            TrainerWorkload(run: run, url: url, sha256: StratumTrainerArtifact.TrainerArchive.bundled.sha256)
        }

        public func declare(into content: inout StackContent) {
            if bucket.placement.provider != "azure" {
                content.diagnostics.append(Diagnostic(address: address, message: "the bucket '\(bucket.name)' is not on Azure", location: location))
            }
            var inputs = StratumTrainerArtifact.TrainerArchive.bundled.objectInputs.mapValues(Value.string)
            inputs["container"] = bucket.id.value
            content.resources.append(DesiredResource(
                address: address, provider: "azure", region: bucket.placement.region, inputs: inputs, dependsOn: explicitDependencies, location: location))
        }
    }
}
