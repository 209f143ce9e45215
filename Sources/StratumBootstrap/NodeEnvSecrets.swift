import StratumCore

/// The `env` entries of a node that hold a `Secret`: what each cloud's provider puts in its
/// secret store (AWS SSM Parameter Store, GCP Secret Manager, …) for the node to read at boot
/// with its own identity, instead of the user data.
public enum NodeEnvSecrets {
    /// The names of the entries that hold a Secret, sorted.
    public static func names(_ inputs: [String: Value]) -> [String] {
        guard case .map(let env)? = inputs["env"] else { return [] }
        return env.keys.filter { env[$0]?.containsSensitive == true }.sorted()
    }

    /// The entries that hold a Secret, by name, revealed (for the provider's call to its store).
    public static func values(_ inputs: [String: Value]) -> [String: String] {
        guard case .map(let env)? = inputs["env"] else { return [:] }
        return env.filter { $0.value.containsSensitive }.mapValues { $0.revealed.stringValue ?? $0.revealed.description }
    }

    /// A name for the node's secrets in a store: its address with every character but letters,
    /// digits, `-`, `_` (and those in `keeping`) made `-`, and the first 8 characters of the
    /// state's lineage (so two states' nodes of one address never share them).
    public static func node(_ address: ResourceAddress, lineage: String, keeping: Set<Character> = []) -> String {
        let node = address.description.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || keeping.contains($0)) ? $0 : "-" }
        return "\(String(node))-\(lineage.prefix(8))"
    }

    /// Why a node's secrets cannot be delivered: it has none of its own identity to read them
    /// with (`hint` says how to give it one). Nil when it has no secrets or has an identity.
    public static func problem(_ inputs: [String: Value], hasIdentity: Bool, store: String, hint: String) -> String? {
        let names = names(inputs)
        guard !names.isEmpty, !hasIdentity else { return nil }
        return names.map { "env.\($0) holds a Secret" }.joined(separator: ", ")
            + ": a node's secrets reach it through \(store), read with its own identity; \(hint), since user data is plain text anyone allowed to describe the node can read"
    }
}
