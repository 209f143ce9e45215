import Foundation
import StratumBootstrap
import StratumCloud
import StratumCore

/// The secrets of a node's `env`, delivered through SSM Parameter Store: each is a
/// SecureString parameter `/stratum/<instance profile>/<node>-<lineage>/<NAME>`, which only
/// the node's role may read (`aws_instance_role` allows `/stratum/<role>/*`), read at every
/// start of the workload into a root-only file. The value is in state (encrypted) and in SSM,
/// never in user data.
enum AWSNodeSecrets {
    /// The parameter of each secret (by env name), under the node's instance profile.
    static func parameters(_ inputs: [String: Value], address: ResourceAddress, lineage: String) -> [String: String] {
        guard let profile = inputs["iam_instance_profile"]?.stringValue, !profile.isEmpty else { return [:] }
        let node = address.description.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "-" }
        let prefix = "/stratum/\(profile)/\(String(node))-\(lineage.prefix(8))"
        return Dictionary(uniqueKeysWithValues: NodeUserData.secretNames(inputs).map { ($0, "\(prefix)/\($0)") })
    }

    /// Why a node with secrets cannot have them delivered (it has no role to read them with).
    static func problem(_ inputs: [String: Value]) -> String? {
        let names = NodeUserData.secretNames(inputs)
        guard !names.isEmpty, (inputs["iam_instance_profile"]?.stringValue ?? "").isEmpty else { return nil }
        return names.map { "env.\($0) holds a Secret" }.joined(separator: ", ")
            + ": a node's secrets reach it through SSM Parameter Store, read with its role; give the instance an iam_instance_profile (AWS.InstanceRole), since user data is plain text anyone allowed to describe the instance can read"
    }

    /// Puts every secret of the node as a SecureString (overwriting: a retry writes the same).
    static func put(_ resource: ResolvedResource, client: AWSClient) async throws -> [String: String] {
        let values = NodeUserData.secretValues(resource.inputs)
        let parameters = parameters(resource.inputs, address: resource.address, lineage: resource.ownership.lineage)
        for (name, parameter) in parameters.sorted(by: { $0.key < $1.key }) {
            _ = try await client.json(
                service: "ssm", target: "AmazonSSM.PutParameter",
                ["Name": parameter, "Value": values[name] ?? "", "Type": "SecureString", "Overwrite": true,
                 "Description": "Stratum: \(name) of \(resource.address)"],
                region: resource.region, idempotent: true, address: resource.address)
        }
        return parameters
    }

    /// Deletes the node's parameters (names that are already gone are fine).
    static func delete(_ state: ResourceState, client: AWSClient) async throws {
        let lineage = state.attributes["stratum_lineage"]?.stringValue ?? ""
        let names = parameters(state.attributes, address: state.address, lineage: lineage).values.sorted()
        guard !names.isEmpty else { return }
        _ = try await client.json(service: "ssm", target: "AmazonSSM.DeleteParameters", ["Names": names], region: state.region, idempotent: true, address: state.address)
    }
}
