import StratumCloud
import StratumCore

/// The files of a node's setup. Each script logs what it does (cloud-init keeps the output in
/// `/var/log/cloud-init-output.log`; the workload's goes to the journal of its unit).
enum BootScripts {
    static var env: String { NodeBootstrap.nodeEnvPath }
    static var libexec: String { NodeBootstrap.libexec }

    /// Adds what only the running machine knows to node.env, once, at first boot.
    static func bootEnv(_ atBoot: NodeBootScript.AtBoot) -> String {
        var lines = [
            "#!/bin/sh",
            "# Adds to \(env) what only the running machine knows (from the cloud's metadata service).",
            // node.env may name another metadata endpoint (a test's stand-in).
            "set -a", ". \(env)", "set +a",
        ]
        lines += atBoot.lines
        for name in atBoot.variables {
            lines.append("printf \"%s='%s'\\n\" \(name) \"${\(name):-}\" >> \(env)")
        }
        if atBoot.variables.contains(NodeContract.nodeIPName) {
            // Rank 0 is its own coordinator; so is a node told none.
            lines.append("if [ -z \"${\(NodeContract.coordinatorName):-}\" ]; then printf \"%s='%s'\\n\" \(NodeContract.coordinatorName) \"${\(NodeContract.nodeIPName):-}\" >> \(env); fi")
        }
        lines.append("echo \"stratum boot-env: \(atBoot.variables.isEmpty ? "nothing to add" : atBoot.variables.joined(separator: ", ")) in \(env)\"")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The NVIDIA driver (unless the image has a working one), the fabric manager on an
    /// NVSwitch machine, persistence mode, Docker with the NVIDIA container toolkit, and the
    /// interconnect's userspace.
    static func gpuSetup(machine: MachineProfile, containers: Bool, interconnect: String?) -> String {
        var script = """
            #!/bin/sh
            # Stratum GPU and container setup of this node; its output: /var/log/stratum-gpu-setup.log.
            set -eu
            log() { echo "stratum gpu-setup: $*"; }
            export DEBIAN_FRONTEND=noninteractive
            apt_updated=0
            apt_install() {
              if [ "$apt_updated" = 0 ]; then apt-get update -q; apt_updated=1; fi
              apt-get install -y -q "$@"
            }

            """
        if machine.gpus > 0 {
            script += """
                branch=\(NodeBootstrap.driverBranch)
                if nvidia-smi > /dev/null 2>&1; then
                  log "the image's NVIDIA driver works: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
                else
                  log "no working nvidia-smi: installing the NVIDIA driver, branch $branch"
                  apt_install "linux-headers-$(uname -r)" "nvidia-driver-$branch-server" "nvidia-utils-$branch-server"
                  modprobe nvidia || true
                  nvidia-smi > /dev/null || { log "nvidia-smi still fails after installing the driver"; exit 1; }
                fi
                driver_branch=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1 | cut -d . -f 1)

                """
            if machine.nvswitch {
                script += """
                    # An NVSwitch machine: CUDA cannot use its GPUs until the fabric manager of the
                    # driver's own branch runs.
                    if ! systemctl is-active --quiet nvidia-fabricmanager; then
                      dpkg -s "nvidia-fabricmanager-$driver_branch" > /dev/null 2>&1 || apt_install "nvidia-fabricmanager-$driver_branch"
                      systemctl enable --now nvidia-fabricmanager
                    fi
                    log "fabric manager: $(systemctl is-active nvidia-fabricmanager)"

                    """
            }
            script += """
                nvidia-smi -pm 1 > /dev/null
                log "persistence mode on for $(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l) GPU(s)"

                """
        }
        if containers {
            script += """
                command -v docker > /dev/null 2>&1 || apt_install docker.io
                systemctl enable --now docker

                """
            if machine.gpus > 0 {
                script += """
                    if ! command -v nvidia-ctk > /dev/null 2>&1; then
                      log "installing the NVIDIA container toolkit"
                      curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
                      curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \\
                        | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \\
                        > /etc/apt/sources.list.d/nvidia-container-toolkit.list
                      apt_updated=0
                      apt_install nvidia-container-toolkit
                    fi
                    nvidia-ctk runtime configure --runtime=docker
                    systemctl restart docker
                    log "containers see the GPUs through $(nvidia-ctk --version | head -n 1)"

                    """
            }
        }
        if let interconnect, !interconnect.isEmpty {
            script += "# The \(machine.interconnect.rawValue) userspace.\n" + interconnect + "\n"
        }
        script += "log done\n"
        return script
    }

    /// Defines `stratum_fetch URL FILE` (and `stratum_secret REFERENCE` where the cloud has
    /// one) with the cloud's bodies, after the helpers they share.
    static func fetch(_ flavour: BootstrapFlavour) -> String {
        func function(_ name: String, _ body: String) -> String {
            "\(name)() {\n" + body.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n") + "\n}\n"
        }
        var text = """
            # Reads what the node needs from its cloud with this machine's own identity. Sourced by
            # trainer-setup.sh and secrets.sh.

            """
        if !flavour.library.isEmpty { text += flavour.library + (flavour.library.hasSuffix("\n") ? "" : "\n") }
        text += "# stratum_fetch URL FILE: downloads an object of the cluster's bucket to FILE.\n" + function("stratum_fetch", flavour.fetch)
        if let secret = flavour.secret {
            text += "# stratum_secret REFERENCE: prints a secret of the cloud's secret store.\n" + function("stratum_secret", secret)
        }
        return text
    }

    /// Reads the node's secrets into a root-only file before every start of the workload.
    static let secrets = """
        #!/bin/sh
        # Reads the node's secrets (\(NodeBootstrap.secretsListPath): NAME REFERENCE) from the cloud's
        # secret store with this machine's identity into \(NodeBootstrap.secretsEnvPath), readable by
        # root alone. Runs before every start of stratum-workload.service, so a changed secret is
        # read at the next start.
        set -eu
        set -a
        . \(NodeBootstrap.nodeEnvPath)
        set +a
        . \(NodeBootstrap.libexec)/fetch.sh
        umask 077
        tmp=$(mktemp \(NodeBootstrap.secretsEnvPath).XXXXXX)
        trap 'rm -f "$tmp"' EXIT
        count=0
        while read -r name reference; do
          [ -n "$name" ] || continue
          value=$(stratum_secret "$reference")
          # One shell word, however the value is quoted (python3 comes with cloud-init).
          quoted=$(printf '%s' "$value" | python3 -c 'import shlex, sys; sys.stdout.write(shlex.quote(sys.stdin.read()))')
          printf "%s=%s\\n" "$name" "$quoted" >> "$tmp"
          count=$((count + 1))
        done < \(NodeBootstrap.secretsListPath)
        mv "$tmp" \(NodeBootstrap.secretsEnvPath)
        trap - EXIT
        echo "stratum secrets: $count secret(s) read into \(NodeBootstrap.secretsEnvPath)"

        """

    /// Fetches, checks, builds and installs the trainer before each start of the workload;
    /// a build of the same sources is kept.
    static let trainerSetup = """
        #!/bin/sh
        # Fetches the trainer's sources from the cluster's bucket with this machine's identity,
        # checks their SHA-256, builds them for this machine (CUDA where nvcc and a GPU are, else
        # the CPU trainer) and installs /opt/stratum/bin/stratum-trainer. Runs before every start
        # of stratum-workload.service; a build of the same sources is kept.
        set -eu
        set -a
        . \(NodeBootstrap.nodeEnvPath)
        set +a
        . \(NodeBootstrap.libexec)/fetch.sh
        log() { echo "stratum trainer-setup: $*"; }
        installed=/opt/stratum/trainer.sha256
        if [ -x /opt/stratum/bin/stratum-trainer ] && [ "$(cat "$installed" 2>/dev/null)" = "$STRATUM_TRAINER_SHA256" ]; then
          log "the trainer of $STRATUM_TRAINER_SHA256 is installed"
          exit 0
        fi
        work=$(mktemp -d /var/tmp/stratum-trainer.XXXXXX)
        trap 'rm -rf "$work"' EXIT
        log "fetching $STRATUM_TRAINER_URL"
        stratum_fetch "$STRATUM_TRAINER_URL" "$work/trainer.zip"
        got=$(sha256sum "$work/trainer.zip" | cut -d ' ' -f 1)
        if [ "$got" != "$STRATUM_TRAINER_SHA256" ]; then
          log "$STRATUM_TRAINER_URL has SHA-256 $got, not $STRATUM_TRAINER_SHA256: not building it" >&2
          exit 1
        fi
        python3 -m zipfile -e "$work/trainer.zip" "$work/src"
        PATH="$PATH:/usr/local/cuda/bin"
        if command -v nvcc > /dev/null 2>&1 && nvidia-smi > /dev/null 2>&1; then
          arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)
          log "building the CUDA trainer for sm_$arch"
          make -C "$work/src/TrainerCUDA" -j "$(nproc)" CUDA_ARCH="sm_$arch" BUILD="$work/build" "$work/build/stratum-trainer-cuda"
          built="$work/build/stratum-trainer-cuda"
        else
          log "building the CPU trainer"
          make -C "$work/src/TrainerCUDA" -j "$(nproc)" BUILD="$work/build" cpu
          built="$work/build/stratum-trainer"
        fi
        install -D -m 0755 "$built" /opt/stratum/bin/stratum-trainer
        echo "$STRATUM_TRAINER_SHA256" > "$installed"
        log "installed /opt/stratum/bin/stratum-trainer"

        """

    /// The interconnect check, once per boot, once the trainer is built (beside it, so a node
    /// replaced alone never waits on it): a ring all-reduce between the pool's nodes
    /// (`stratum-trainer allreduce-check`), its bus bandwidth (or its failure) written where the
    /// node exporter and the trainer's /metrics serve it. Ranks wait for each other up to 15
    /// minutes (their builds finish at different times). A failed check is reported.
    static let allreduceCheck = """
        #!/bin/sh
        # The interconnect check of this node's pool: a timed ring all-reduce with every other node,
        # once per boot. Its result goes to \(NodeBootstrap.allreduceMetricsPath), which the node
        # exporter and the trainer's /metrics serve (stratum_allreduce_ok,
        # stratum_allreduce_bus_bandwidth_bytes_per_second); `stratum status` shows it.
        set -u
        set -a
        . \(NodeBootstrap.nodeEnvPath)
        set +a
        done=/run/stratum/allreduce-checked
        [ -f "$done" ] && exit 0
        mkdir -p /run/stratum "$(dirname \(NodeBootstrap.allreduceMetricsPath))"
        # The trainer's build may still be running.
        tries=0
        while [ ! -x /opt/stratum/bin/stratum-trainer ] && [ "$tries" -lt 360 ]; do sleep 5; tries=$((tries + 1)); done
        # A node that joins a pool whose check is over (it was replaced, or rebooted alone) has
        # no peers to check with: rank 0's metrics already carry the pool's check.
        if [ "$STRATUM_NODE_INDEX" -gt 0 ] && curl -sf --max-time 5 "http://${STRATUM_COORDINATOR:-127.0.0.1}:$STRATUM_METRICS_PORT/metrics" \\
            | grep -q '^stratum_allreduce_check_timestamp_seconds '; then
          echo "stratum allreduce-check: the pool checked its interconnect before this node joined; skipped"
          printf '%s\\n' '# TYPE stratum_allreduce_skipped gauge' 'stratum_allreduce_skipped 1' > \(NodeBootstrap.allreduceMetricsPath)
          touch "$done"
          exit 0
        fi
        echo "stratum allreduce-check: rank $STRATUM_NODE_INDEX of $STRATUM_NODE_COUNT, coordinator ${STRATUM_COORDINATOR:-this node}"
        if /opt/stratum/bin/stratum-trainer allreduce-check --world "$STRATUM_NODE_COUNT" --rank "$STRATUM_NODE_INDEX" \\
            --coordinator "${STRATUM_COORDINATOR:-127.0.0.1}" --port \(NodeBootstrap.allreducePort) --timeout 900 \\
            --output \(NodeBootstrap.allreduceMetricsPath); then
          echo "stratum allreduce-check: passed"
        else
          echo "stratum allreduce-check: FAILED; the pool's nodes cannot all reach each other on port \(NodeBootstrap.allreducePort) (see above)" >&2
          # A trainer that never came or died before writing its result: the failure still shows.
          [ -f \(NodeBootstrap.allreduceMetricsPath) ] || printf '%s\\n' '# TYPE stratum_allreduce_ok gauge' 'stratum_allreduce_ok 0' > \(NodeBootstrap.allreduceMetricsPath)
        fi
        touch "$done"
        exit 0

        """

    /// Runs the interconnect check once per boot, after the workload has started.
    static let allreduceCheckUnit = """
        [Unit]
        Description=Stratum interconnect check of this node's pool (once per boot)
        Wants=network-online.target
        After=network-online.target stratum-workload.service

        [Service]
        Type=oneshot
        ExecStart=\(libexec)/allreduce-check.sh
        RemainAfterExit=yes
        TimeoutStartSec=3000

        [Install]
        WantedBy=multi-user.target

        """

    /// The workload's command, with node.env in its environment.
    static func workload(_ workload: NodeWorkload, machine: MachineProfile, includeAllreduce: Bool = false) -> String {
        var lines = [
            "#!/bin/sh", "# The workload of this node (stratum-workload.service), with the node contract (and its secrets) in its environment.",
            "set -a", ". \(env)", "if [ -f \(NodeBootstrap.secretsEnvPath) ]; then . \(NodeBootstrap.secretsEnvPath); fi", "set +a",
        ]
        switch workload {
        case .trainer(_, _, let arguments):
            lines.append(
                (["exec", "/opt/stratum/bin/stratum-trainer", "--config", NodeBootstrap.trainerConfigPath] + arguments.map(expanding)
                    + ["--set", "metrics.port=\"$STRATUM_METRICS_PORT\""]
                    + (includeAllreduce ? ["--set", "metrics.include=\(NodeBootstrap.allreduceMetricsPath)"] : []))
                    .joined(separator: " "))
        case .container(let image, let command):
            lines.append("docker rm -f stratum-workload > /dev/null 2>&1 || true")
            // Every variable of node.env goes into the container by name.
            lines.append("passed=$(cat \(env) \(NodeBootstrap.secretsEnvPath) 2>/dev/null | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/-e \\1/p')")
            lines.append("devices=")
            lines.append("if [ -d /dev/infiniband ]; then devices=\"--device /dev/infiniband\"; fi")
            var run = ["exec", "docker", "run", "--rm", "--name", "stratum-workload"]
            if machine.gpus > 0 { run += ["--gpus", "all"] }
            run += ["--network", "host", "--ipc", "host", "--ulimit", "memlock=-1:-1", "$devices", "$passed", NodeBootScript.quote(image)]
            run += command.map(NodeBootScript.quote)
            lines.append("# shellcheck disable=SC2086")
            lines.append(run.joined(separator: " "))
        case .command(let command):
            lines.append((["exec"] + command.map(NodeBootScript.quote)).joined(separator: " "))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `text` as one double-quoted shell word in which `$NAME` and `${NAME}` expand and nothing
    /// else does (no command substitution, no escapes).
    static func expanding(_ text: String) -> String {
        var out = "\""
        for character in text {
            switch character {
            case "\\", "\"", "`": out += "\\" + String(character)
            default: out.append(character)
            }
        }
        // "$(" would substitute a command: the dollar is taken literally there.
        return out.replacingOccurrences(of: "$(", with: "\\$(") + "\""
    }

    /// The workload's unit: restarted whenever it stops, however often. With a `link`, it needs
    /// stratum-link.service: a node whose link could not be shaped does not run as if it were.
    static func workloadUnit(_ workload: NodeWorkload, secrets: Bool = false, link: Bool = false) -> String {
        var after = "network-online.target"
        if link { after += " stratum-link.service" }
        var pre: [String] = secrets ? ["ExecStartPre=\(libexec)/secrets.sh"] : []
        switch workload {
        case .trainer: pre.append("ExecStartPre=\(libexec)/trainer-setup.sh")
        case .container: after += " docker.service"
        case .command: break
        }
        return ([
            "[Unit]",
            "Description=Stratum workload of this node",
            "Wants=network-online.target",
        ] + (link ? ["Requires=stratum-link.service"] : []) + [
            "After=\(after)",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            "Type=simple",
        ] + pre + [
            "ExecStart=\(libexec)/workload.sh",
            "Restart=always",
            "RestartSec=5",
            // Building the trainer takes minutes on a fresh machine.
            "TimeoutStartSec=1800",
            "KillMode=mixed",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]).joined(separator: "\n") + "\n"
    }

    /// Holds the node's primary interface to `profile` with exactly the `tc` lines of
    /// `LinkProfile.tcCommands` (so a cloud node and a Local one are shaped alike), after
    /// clearing what an earlier run left. A failure clears it all again and exits non-zero:
    /// an interface is shaped wholly or not at all.
    static func link(_ profile: LinkProfile) -> String {
        let needsNetem = profile.netemArguments != nil
        let capped = profile.tbfArguments != nil
        let modules = (needsNetem ? ["sch_netem"] : []) + (capped ? ["sch_tbf", "ifb", "act_mirred", "cls_u32"] : [])
        // The device names are shell variables; every other word is a literal.
        func word(_ word: String) -> String {
            if word == "$dev" || word == "$ifb" { return "\"\(word)\"" }
            return word.allSatisfy { $0.isLetter || $0.isNumber || ".:%_/-".contains($0) } ? word : NodeBootScript.quote(word)
        }
        let commands = profile.tcCommands(interface: "$dev", ifb: "$ifb").map { "run " + $0.map(word).joined(separator: " ") }
        // ASCII only: the document stays readable YAML.
        let summary = profile.summary.replacingOccurrences(of: "±", with: "+/-")
        var script = """
            #!/bin/sh
            # Holds this node's link to: \(summary).
            # What it sends goes through netem (delay, jitter, loss, reordering) and then tbf (the
            # rate); what it receives is redirected through the IFB device \(NodeBootstrap.linkIFB) and
            # capped there. Run by stratum-link.service at every boot, before the workload, on the
            # interface of the default route (STRATUM_LINK_DEVICE: another).
            set -u
            ifb=\(NodeBootstrap.linkIFB)
            log() { echo "stratum link: $*"; }
            fail() { echo "stratum link: $*" >&2; exit 1; }
            dev=${STRATUM_LINK_DEVICE:-}
            if [ -z "$dev" ]; then
              dev=$(ip route show default 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1)
              [ -n "$dev" ] || dev=$(ip -6 route show default 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1)
            fi
            [ -n "$dev" ] || fail "no default route to find the primary interface by; set STRATUM_LINK_DEVICE to name it"
            ip link show dev "$dev" > /dev/null 2>&1 || fail "there is no interface $dev"

            # Traffic control's modules; one built into the kernel needs no loading.
            note=
            for module in \(modules.joined(separator: " ")); do
              modprobe -q "$module" 2>/dev/null && continue
              if [ "$module" = sch_netem ]; then
                if [ -d "/lib/modules/$(uname -r)" ] && command -v apt-get > /dev/null 2>&1; then
                  # Ubuntu's cloud kernels ship sch_netem in linux-modules-extra.
                  log "sch_netem is not loadable: installing linux-modules-extra-$(uname -r)"
                  export DEBIAN_FRONTEND=noninteractive
                  apt-get install -y -q "linux-modules-extra-$(uname -r)" || { apt-get update -q && apt-get install -y -q "linux-modules-extra-$(uname -r)"; } \\
                    || log "could not install linux-modules-extra-$(uname -r)"
                  modprobe -q sch_netem 2>/dev/null && continue
                fi
                note="; sch_netem could not be loaded, and delay, jitter, loss and reordering need it"
              fi
              log "$module could not be loaded; going on, in case the kernel has it built in"
            done

            # Back to the interface as it came: an earlier run's qdiscs and IFB device go.
            unshape() {
              tc qdisc del dev "$dev" root > /dev/null 2>&1
              tc qdisc del dev "$dev" ingress > /dev/null 2>&1
              if ip link show dev "$ifb" > /dev/null 2>&1; then ip link del dev "$ifb"; fi
            }
            run() {
              log "tc $*"
              if ! out=$(tc "$@" 2>&1); then
                unshape
                fail "tc $* failed: $out$note; $dev is left unshaped"
              fi
            }
            unshape

            """
        if capped {
            script += """
                if ! out=$(ip link add "$ifb" type ifb 2>&1 && ip link set dev "$ifb" up 2>&1); then
                  unshape
                  fail "could not make the IFB device $ifb for what $dev receives: $out; $dev is left unshaped"
                fi

                """
        }
        script += commands.joined(separator: "\n") + "\n"
        script += "log \"$dev held to \(summary)\"\n"
        return script
    }

    /// Applies the link profile once per boot, before the workload starts.
    static let linkUnit = """
        [Unit]
        Description=Stratum link conditions of this node (tc on the primary interface)
        Wants=network-online.target
        After=network-online.target
        Before=stratum-workload.service

        [Service]
        Type=oneshot
        ExecStart=\(libexec)/link.sh
        RemainAfterExit=yes

        [Install]
        WantedBy=multi-user.target

        """

    /// NVIDIA's DCGM exporter as a container: GPU metrics on :9400.
    static let dcgmExporterUnit = """
        [Unit]
        Description=NVIDIA DCGM exporter (GPU metrics on :9400)
        After=docker.service
        Requires=docker.service
        StartLimitIntervalSec=0

        [Service]
        ExecStartPre=-/usr/bin/docker rm -f stratum-dcgm-exporter
        ExecStart=/usr/bin/docker run --rm --name stratum-dcgm-exporter --gpus all --network host --cap-add SYS_ADMIN \(NodeBootstrap.dcgmExporterImage)
        Restart=always
        RestartSec=10

        [Install]
        WantedBy=multi-user.target

        """
}
