import StratumBootstrap
import StratumCloud
import StratumCore

extension BootstrapFlavour {
    /// Compute Engine: the zone (and a gang member's rank) from the metadata server; objects
    /// fetched, and secrets read from Secret Manager, with the instance's service account token;
    /// no InfiniBand or EFA on GCP (A3's GPUDirect networking comes with its images). User data
    /// is a metadata value: 256 KB of text, so never gzipped.
    public static let gcp = BootstrapFlavour(
        cloud: "gcp", atBoot: .gcpInstance,
        library: #"""
            # stratum_gcp_token: the instance's service account token, as a curl config for curl's
            # standard input (never its command line).
            stratum_gcp_token() {
              metadata=${GCE_METADATA_HOST:-metadata.google.internal}
              token=$(curl -sfS -H 'Metadata-Flavor: Google' "http://$metadata/computeMetadata/v1/instance/service-accounts/default/token" \
                | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') || return 1
              printf 'header = "Authorization: Bearer %s"\n' "$token"
            }
            """#,
        fetch: #"""
            url=$1 out=$2
            path=${url#gs://} bucket=${url#gs://}
            bucket=${bucket%%/*} key=${path#*/}
            object=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$key")
            stratum_gcp_token | curl -sfS --retry 5 -K - -o "$out" "${STORAGE_EMULATOR_HOST:-https://storage.googleapis.com}/storage/v1/b/$bucket/o/$object?alt=media"
            """#,
        secret: #"""
            stratum_gcp_token | curl -sfS --retry 5 -K - "${STRATUM_SECRETMANAGER_ENDPOINT:-https://secretmanager.googleapis.com}/v1/$1/versions/latest:access" \
              | python3 -c 'import base64, json, sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["payload"]["data"]))'
            """#,
        userData: UserDataLimit(name: "a GCE metadata value", bytes: 256 * 1024, gzip: false))

    /// A member of a `gcp_instance_gang`: also its rank and name, from its instance name.
    public static func gcpGangMember(cluster: String) -> BootstrapFlavour {
        var flavour = gcp
        flavour.atBoot = .gcpGangMember(cluster: cluster)
        return flavour
    }
}

extension GCPMachineCatalog {
    /// What the node setup needs of a machine type: A2 and A3 machines with 8 or 16 GPUs join
    /// them by NVSwitch.
    /// `gpus` and `gpuClass` default to what the catalog knows of the machine type (an N1's
    /// attached accelerators are the caller's to name).
    public static func bootstrapMachine(machineType: String, gpus: Int? = nil, gpuClass: String? = nil) -> MachineProfile {
        let known = GCPMachineCatalog.gpus(ofMachineType: machineType)
        let gpus = gpus ?? known?.gpus ?? 0
        let gpuClass = gpuClass ?? known?.gpuClass
        let family = machineType.split(separator: "-").first.map(String.init) ?? machineType
        return MachineProfile(gpus: gpus, gpuClass: gpuClass, nvswitch: ["a2", "a3"].contains(family) && gpus >= 8, interconnect: .none)
    }
}
