import StratumBootstrap
import StratumCloud
import StratumCore

extension BootstrapFlavour {
    /// EC2: the zone from IMDSv2; objects fetched with the instance profile's role credentials
    /// (IMDSv2) and curl's SigV4; the EFA userspace from AWS's installer (checked by its
    /// SHA-256); 16 KB of user data, gzip allowed (EC2 carries it base64-encoded, binary-safe).
    public static let aws = BootstrapFlavour(
        cloud: "aws", atBoot: .aws,
        fetch: #"""
            url=$1 out=$2
            path=${url#s3://} bucket=${url#s3://}
            bucket=${bucket%%/*} key=${path#*/}
            imds=${STRATUM_AWS_METADATA:-http://169.254.169.254}
            token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token")
            md() { curl -sf -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"; }
            role=$(md iam/security-credentials/ | head -n 1)
            [ -n "$role" ] || { echo "stratum_fetch: the instance has no role to read $url with" >&2; return 1; }
            creds=$(md "iam/security-credentials/$role")
            region=$(md placement/region)
            field() { printf '%s' "$creds" | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
            # Virtual-hosted style on AWS; path style on an endpoint named for tests (moto).
            object="https://$bucket.s3.$region.amazonaws.com/$key"
            [ -z "${STRATUM_S3_ENDPOINT:-}" ] || object="$STRATUM_S3_ENDPOINT/$bucket/$key"
            # The keys go to curl on its standard input, never on its command line.
            printf 'user = "%s:%s"\nheader = "x-amz-security-token: %s"\n' "$(field AccessKeyId)" "$(field SecretAccessKey)" "$(field Token)" \
              | curl -sfS --retry 5 -K - --aws-sigv4 "aws:amz:$region:s3" -o "$out" "$object"
            """#,
        interconnectSetup: [
            .efa: #"""
                if [ -x /opt/amazon/efa/bin/fi_info ] && /opt/amazon/efa/bin/fi_info -p efa > /dev/null 2>&1; then
                  log "EFA: libfabric's efa provider is there"
                else
                  log "installing the EFA userspace"
                  curl -fsSL -o /tmp/aws-efa-installer.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-1.41.0.tar.gz
                  echo "3506354cdfbe31ff552fe75f5d0d9bb7efd29cf79bd99457347d29c751c38f9f  /tmp/aws-efa-installer.tar.gz" | sha256sum -c -
                  tar -xzf /tmp/aws-efa-installer.tar.gz -C /tmp
                  (cd /tmp/aws-efa-installer && ./efa_installer.sh -y)
                fi
                """#,
        ],
        userData: UserDataLimit(name: "EC2 user data", bytes: 16 * 1024, gzip: true))
}

extension AWSInstanceCatalog {
    /// What the node setup needs of an instance type: p4d/p4de/p5/p5e/p5en at full size join
    /// 8 GPUs by NVSwitch and have EFA; other GPU types have neither.
    /// `gpus` and `gpuClass` default to what the catalog knows of the instance type.
    public static func bootstrapMachine(instanceType: String, gpus: Int? = nil, gpuClass: String? = nil) -> MachineProfile {
        let known = gpuTypes.lazy.compactMap { entry in entry.value.first { $0.value == instanceType }.map { (gpus: $0.key, gpuClass: entry.key) } }.first
        let gpus = gpus ?? known?.gpus ?? 0
        let gpuClass = gpuClass ?? known?.gpuClass
        let family = instanceType.split(separator: ".").first.map(String.init) ?? instanceType
        let hgx = ["p4d", "p4de", "p5", "p5e", "p5en"].contains(family) && gpus >= 8
        return MachineProfile(gpus: gpus, gpuClass: gpuClass, nvswitch: hgx, interconnect: hgx ? .efa : .none)
    }
}
