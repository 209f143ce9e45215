import StratumBootstrap
import StratumCloud
import StratumCore

extension BootstrapFlavour {
    /// EC2: the zone from IMDSv2; objects fetched, and secrets read from SSM Parameter Store,
    /// with the instance profile's role keys (IMDSv2) and curl's SigV4; the EFA userspace from
    /// AWS's installer (checked by its SHA-256); 16 KB of user data, gzip allowed (EC2 carries
    /// it base64-encoded, binary-safe).
    public static let aws = BootstrapFlavour(
        cloud: "aws", atBoot: .aws,
        library: #"""
            # stratum_aws: the region and the instance role's keys, from IMDSv2.
            stratum_aws() {
              imds=${STRATUM_AWS_METADATA:-http://169.254.169.254}
              token=$(curl -sfS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token")
              role=$(curl -sfS -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/iam/security-credentials/" | head -n 1)
              [ -n "$role" ] || { echo "stratum: the instance has no role (instance profile) to read with" >&2; return 1; }
              creds=$(curl -sfS -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/iam/security-credentials/$role")
              region=$(curl -sfS -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/placement/region")
            }
            # stratum_aws_keys: the keys as a curl config, for curl's standard input (never its command line).
            stratum_aws_keys() {
              printf '%s' "$creds" | python3 -c 'import json, sys; c = json.load(sys.stdin); print("user = \"%s:%s\"\nheader = \"x-amz-security-token: %s\"" % (c["AccessKeyId"], c["SecretAccessKey"], c["Token"]))'
            }
            """#,
        fetch: #"""
            url=$1 out=$2
            path=${url#s3://} bucket=${url#s3://}
            bucket=${bucket%%/*} key=${path#*/}
            stratum_aws || return 1
            # Virtual-hosted style on AWS; path style on an endpoint named for tests (moto).
            object="https://$bucket.s3.$region.amazonaws.com/$key"
            [ -z "${STRATUM_S3_ENDPOINT:-}" ] || object="$STRATUM_S3_ENDPOINT/$bucket/$key"
            stratum_aws_keys | curl -sfS --retry 5 -K - --aws-sigv4 "aws:amz:$region:s3" -o "$out" "$object"
            """#,
        secret: #"""
            stratum_aws || return 1
            request=$(python3 -c 'import json, sys; print(json.dumps({"Name": sys.argv[1], "WithDecryption": True}))' "$1")
            stratum_aws_keys | curl -sfS --retry 5 -K - --aws-sigv4 "aws:amz:$region:ssm" -X POST               -H 'X-Amz-Target: AmazonSSM.GetParameter' -H 'Content-Type: application/x-amz-json-1.1' --data "$request"               "${STRATUM_SSM_ENDPOINT:-https://ssm.$region.amazonaws.com}/"               | python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["Parameter"]["Value"])'
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
