import StratumBootstrap
import StratumCloud
import StratumCore

extension BootstrapFlavour {
    /// Azure: the zone from the Instance Metadata Service; blobs fetched, and secrets read from
    /// the cluster's Key Vault, with the VM's managed identity (the user-assigned one
    /// `AZURE_CLIENT_ID` names, when node.env has it); rdma-core's InfiniBand userspace where the
    /// image lacks it (Azure's HPC images have it); customData of up to 64 KB, gzip allowed
    /// (base64 in the API, binary-safe).
    public static let azure = BootstrapFlavour(
        cloud: "azure", atBoot: .azureVM,
        library: #"""
            # stratum_azure_header RESOURCE: this machine's identity's token for RESOURCE (URL-encoded), from
            # IMDS, as a curl config header for curl's standard input (never its command line).
            # AZURE_CLIENT_ID (node.env) names the VM's user-assigned identity.
            stratum_azure_header() {
              imds=${AZURE_POD_IDENTITY_AUTHORITY_HOST:-http://169.254.169.254}
              token=$(curl -sfS -H Metadata:true "$imds/metadata/identity/oauth2/token?api-version=2018-02-01&resource=$1${AZURE_CLIENT_ID:+&client_id=$AZURE_CLIENT_ID}" \
                | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') || return 1
              printf 'header = "Authorization: Bearer %s"\n' "$token"
            }
            """#,
        fetch: #"""
            url=$1 out=$2
            path=${url#az://} account=${url#az://}
            account=${account%%/*} blob=${path#*/}
            header=$(stratum_azure_header https%3A%2F%2Fstorage.azure.com%2F) || return 1
            printf '%s\n' "$header" \
              | curl -sfS --retry 5 -K - -H 'x-ms-version: 2021-12-02' -o "$out" "${STRATUM_AZURE_BLOB_ENDPOINT:-https://$account.blob.core.windows.net}/$blob"
            """#,
        secret: #"""
            # REFERENCE is VAULT/SECRET: a secret of the cluster's Key Vault.
            vault=${1%%/*} name=${1#*/}
            header=$(stratum_azure_header https%3A%2F%2Fvault.azure.net) || return 1
            printf '%s\n' "$header" \
              | curl -sfS --retry 5 -K - "${STRATUM_AZURE_KEYVAULT_ENDPOINT:-https://$vault.vault.azure.net}/secrets/$name?api-version=7.5" \
              | python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["value"])'
            """#,
        interconnectSetup: [
            .infiniband: #"""
                if ibv_devinfo > /dev/null 2>&1; then
                  log "InfiniBand: $(ibv_devinfo -l | tail -n +2 | wc -l) device(s)"
                else
                  log "installing the InfiniBand userspace"
                  apt_install rdma-core ibverbs-utils infiniband-diags
                fi
                """#,
        ],
        userData: UserDataLimit(name: "Azure customData", bytes: 64 * 1024 - 1, gzip: true))
}

extension AzureMachineCatalog {
    /// What the node setup needs of a VM size: the ND A100 v4, ND H100 v5 and ND H200 v5
    /// sizes join 8 GPUs by NVSwitch and have InfiniBand.
    /// `gpus` and `gpuClass` default to what the catalog knows of the size.
    public static func bootstrapMachine(size: String, gpus: Int? = nil, gpuClass: String? = nil) -> MachineProfile {
        let known = AzureMachineCatalog.gpus(ofSize: size)
        let gpus = gpus ?? known?.gpus ?? 0
        let gpuClass = gpuClass ?? known?.gpuClass
        let hgx = ["Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4", "Standard_ND96isr_H100_v5", "Standard_ND96isr_H200_v5"]
            .contains { $0.lowercased() == size.lowercased() }
        return MachineProfile(gpus: gpus, gpuClass: gpuClass, nvswitch: hgx, interconnect: hgx ? .infiniband : .none)
    }
}
