#!/usr/bin/env bash
# DiLoCo over peer-to-peer TCP, DiLoCo through the bucket, and data parallel over TCP, side by
# side in one run on the same links: each is the `local-lab` stack applied through the built
# `stratum` (4 Local workers, each in a network namespace on a bridge, its link held by tc or
# stratum-netem), trained to its end, measured, and destroyed.
#
# Per run it prints: wall time from apply to the last worker's eval loss, the bytes the workers'
# host-side veths carried (both ways, all workers: what really crossed the links), and the
# held-out loss of worker 0. Profiles: unimpaired (1 Gbit/s), 100 Mbit/s + 20 ms, 10 Mbit/s +
# 100 ms + 1 % loss, every worker on the profile. CHURN=1 adds runs of both DiLoCo exchanges
# under the slow profile with one worker stopped mid-run and brought back by reconcile
# (`stratum chaos churn`); data parallel has no way to go on without a replica, so it has none.
# A late or lost peer is given up after 10 s (p2p_timeout_s) and a round after 20 s.
#
#   sudo Benchmarks/Trainer/link_bench.sh                  # H=40 ROUNDS=5, all three exchanges
#   H=50 ROUNDS=10 MODES="p2p dp" PROFILES="slow" Benchmarks/Trainer/link_bench.sh
#
# Needs root (namespaces), iproute2, python3, and `swift build --product stratum --product
# stratum-trainer --product stratum-netem` (the binaries are taken from .build/debug, or BIN).
# The bucket is a directory on this machine, so DiLoCo-through-the-store moves its
# pseudo-gradients outside the emulated links: its veth bytes are only the records' traffic
# and its wall time is what the links cost the interconnect check alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
BIN=${BIN:-$root/.build/debug}
H=${H:-40} ROUNDS=${ROUNDS:-5} TIMEOUT=${TIMEOUT:-900}
MODES=${MODES:-"p2p store dp"} PROFILES=${PROFILES:-"unimpaired fast slow"} CHURN=${CHURN:-1}
for tool in stratum stratum-trainer stratum-netem; do
  [ -x "$BIN/$tool" ] || { echo "missing $BIN/$tool: swift build --product $tool" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root to make network namespaces" >&2; exit 1; }
work="$(mktemp -d /tmp/stratum-link-bench.XXXXXX)"
trap 'cd "$work" && "$BIN/stratum" destroy --stack local-lab --config "$work/lab.yaml" --auto-approve > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
cd "$work"
export STRATUM_TRAINER="$BIN/stratum-trainer" NO_COLOR=1 PATH="$BIN:$PATH"

profile() {  # the lab's link keys for a profile name
  case $1 in
    unimpaired) echo "impaired: false" ;;
    fast) printf 'impaired: true\nfast_workers: 0\nslow_rate_mbit: 100\nslow_delay_ms: 20\nslow_loss_percent: 0\n' ;;
    slow) printf 'impaired: true\nfast_workers: 0\nslow_rate_mbit: 10\nslow_delay_ms: 100\nslow_loss_percent: 1\n' ;;
    *) echo "unknown profile $1" >&2; exit 1 ;;
  esac
}

# The sum of the host-side veth counters (rx + tx) of every worker, from the node records.
veth_bytes() {
  python3 - "$work/.stratum/local/nodes" <<'PY'
import json, os, sys
total = 0
nodes = sys.argv[1]
for name in os.listdir(nodes) if os.path.isdir(nodes) else []:
    try:
        veth = json.load(open(os.path.join(nodes, name, "node.json")))["network"]["hostVeth"]
        for way in ("rx_bytes", "tx_bytes"):
            total += int(open(f"/sys/class/net/{veth}/statistics/{way}").read())
    except Exception:
        pass
print(total)
PY
}

# Worker 0's last eval loss once all four have one, else nothing.
losses() {
  python3 - "$work/.stratum/local/nodes" <<'PY'
import os, re, sys
nodes = sys.argv[1]
found = {}
for name in os.listdir(nodes) if os.path.isdir(nodes) else []:
    m = re.match(r"local_node\.worker_(\d+)_-", name)
    if not m:
        continue
    try:
        text = open(os.path.join(nodes, name, "node.log")).read()
    except OSError:
        continue
    hits = re.findall(r"eval loss ([0-9.]+)", text)
    if hits and "training finished" in text:
        found[int(m.group(1))] = hits[-1]
if len(found) == 4:
    print(found[0])
PY
}

# run NAME PROFILE MODE CHURN(0/1)
run() {
  local name=$1 prof=$2 mode=$3 churn=$4 start end loss bytes churn_pid=""
  { profile "$prof"; cat <<YAML
workers: 4
exchange: $mode
inner_steps: $H
rounds: $ROUNDS
cidr: 10.44.0.0/24
bucket_name: bench-$name
churn_every_s: 0
p2p_timeout_s: 10
round_timeout_s: 20
YAML
  } > "$work/lab.yaml"
  start=$(date +%s.%N)
  "$BIN/stratum" apply --stack local-lab --config "$work/lab.yaml" --auto-approve > "$work/$name.apply.log" 2>&1 \
    || { echo "$name: apply failed" >&2; tail -n 20 "$work/$name.apply.log" >&2; exit 1; }
  if [ "$churn" = 1 ]; then
    # Once worker 0 has finished round 2, one worker (seeded choice) is stopped for 10 s, then
    # brought back by reconcile and resumes from its checkpoint.
    (until grep -qs "round 2/" "$work"/.stratum/local/nodes/local_node.worker_0_-*/node.log; do sleep 0.2; done
     "$BIN/stratum" chaos churn --stack local-lab --config "$work/lab.yaml" --kill 1 --every 60s --down 10s --cycles 1 --seed 7) \
      > "$work/$name.churn.log" 2>&1 &
    churn_pid=$!
  fi
  loss=""
  while [ -z "$loss" ]; do
    loss=$(losses)
    if [ -z "$loss" ] && [ "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print (b - a > '"$TIMEOUT"')}')" = 1 ]; then
      echo "$name: no result within $TIMEOUT s" >&2; exit 1
    fi
    [ -n "$loss" ] || sleep 0.5
  done
  end=$(date +%s.%N)
  [ -z "$churn_pid" ] || wait "$churn_pid" || true
  bytes=$(veth_bytes)
  "$BIN/stratum" destroy --stack local-lab --config "$work/lab.yaml" --auto-approve > "$work/$name.destroy.log" 2>&1
  [ "$churn" = 0 ] || grep -h "cycle 1" "$work/$name.churn.log" | sed 's/^/    /' || true
  printf "%-24s %-11s %-6s %-5s %9.1f s %14d B   eval loss %s\n" "$name" "$prof" "$mode" "$([ "$churn" = 1 ] && echo yes || echo no)" \
    "$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" "$bytes" "$loss"
}

echo "local-lab, 4 workers, $((H * ROUNDS)) steps each (DiLoCo: $ROUNDS rounds of $H inner steps; data parallel: every step)"
printf "%-24s %-11s %-6s %-5s %11s %16s   %s\n" run profile mode churn wall "veth bytes" loss
for prof in $PROFILES; do
  for mode in $MODES; do run "$prof-$mode" "$prof" "$mode" 0; done
done
if [ "$CHURN" = 1 ]; then
  for mode in p2p store; do run "slow-$mode-churn" slow "$mode" 1; done
fi
