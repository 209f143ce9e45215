#!/usr/bin/env bash
# Three ways to train W workers on the same model for the same number of steps, measured, not
# estimated:
#   diloco-store  DiLoCo, int8 pseudo-gradients through a directory store (diloco.exchange store)
#   diloco-p2p    DiLoCo, the same pseudo-gradients over the workers' TCP ring (diloco.exchange p2p)
#   dp            data parallel, float32 gradients ring all-reduced over TCP every step (dp.*)
# Each prints wall time, bytes moved per worker (store and TCP, as the trainer counted them) and
# the held-out loss. Both DiLoCo runs end with the same weights (the script checks).
#
#   Benchmarks/Trainer/exchange_bench.sh                 # W=2, H=50, 4 rounds, loopback
#   W=3 H=20 ROUNDS=10 Benchmarks/Trainer/exchange_bench.sh
#
# Addresses: worker r listens on ${ADDRS[r]}:$((BASE_PORT + r)) (ADDRS, space separated, default
# 127.0.0.1 for all), so the same script can run workers bound to other addresses, e.g. in
# network namespaces: WRAP="ip netns exec ns{r}" runs worker r under that prefix ({r} is replaced).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
W=${W:-2} H=${H:-50} ROUNDS=${ROUNDS:-4} THREADS=${THREADS:-1}
LAYERS=${LAYERS:-2} WIDTH=${WIDTH:-64} HEADS=${HEADS:-2} CONTEXT=${CONTEXT:-64} BATCH=${BATCH:-8}
BASE_PORT=${BASE_PORT:-29700} TIMEOUT=${TIMEOUT:-120} WRAP=${WRAP:-}
read -r -a addrs <<< "${ADDRS:-}"
bin="$("$here/build_trainer.sh")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
steps=$((H * ROUNDS))

peers=""
for r in $(seq 0 $((W - 1))); do
  peers+="${peers:+,}${addrs[$r]:-127.0.0.1}:$((BASE_PORT + r))"
done
cat > "$work/common.yaml" <<YAML
model: {layers: $LAYERS, width: $WIDTH, heads: $HEADS, context: $CONTEXT}
data: {source: synthetic, branching: 4}
train: {batch_size: $BATCH, seq_len: $CONTEXT, steps: $steps, lr: 3e-3, warmup_steps: 20, threads: $THREADS, log_every: 0, eval_batches: 32}
p2p: {peers: "$peers", timeout_s: $TIMEOUT}
YAML

# run NAME ARGS...: W workers at once, worker r with --set RANKKEY=r; logs in $work/NAME-r.log.
run() {
  local name=$1 rankkey=$2; shift 2
  local pids=() start end
  start=$(date +%s.%N)
  for r in $(seq 0 $((W - 1))); do
    local wrap=${WRAP//\{r\}/$r}
    $wrap "$bin" --config "$work/common.yaml" --no-resume --set "$rankkey=$r" \
      --set "p2p.listen=${addrs[$r]:-127.0.0.1}:$((BASE_PORT + r))" "$@" > "$work/$name-$r.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  end=$(date +%s.%N)
  if [ $failed -ne 0 ]; then
    echo "$name failed:" >&2
    tail -n 5 "$work/$name"-*.log >&2
    exit 1
  fi
  awk -v a="$start" -v b="$end" 'BEGIN {print b - a}' > "$work/$name.seconds"
}

diloco=(--set diloco.workers=$W --set diloco.inner_steps=$H --set diloco.rounds=$ROUNDS --set diloco.round_timeout_s=$TIMEOUT)
run diloco-store diloco.rank "${diloco[@]}" --set diloco.store="$work/store" --set diloco.exchange=store
run diloco-p2p diloco.rank "${diloco[@]}" --set diloco.store="$work/p2p" --set diloco.exchange=p2p
run dp dp.rank --set dp.workers=$W

# Per worker (worker 0): bytes through the store (DiLoCo store: the pseudo-gradients; p2p: the
# small records) and over TCP, and the held-out loss.
report() {
  local name=$1 log="$work/$1-0.log" loss tcp total
  if [ "$name" = dp ]; then
    loss=$(awk '/^eval loss/ {print $3}' "$log")
    tcp=$(awk '/^data parallel rank/ {for (i = 1; i <= NF; i++) if ($i == "sent" || $i == "received") s += $(i+1)} END {print s + 0}' "$log")
    total=$tcp
  else
    loss=$(awk '/eval loss/ {print $5; exit}' "$log" | tr -d ',')
    total=$(awk '/bytes exchanged/ {for (i = 1; i <= NF; i++) if ($i == "exchanged") print $(i+1)}' "$log" | tr -d ',')
    tcp=$(awk '/bytes exchanged/ {for (i = 1; i <= NF; i++) if ($i == "sent" || $i == "received") s += $(i+1)} END {print s + 0}' "$log")
  fi
  printf "%-13s %8.1f s   store %12d B   tcp %12d B   eval loss %s\n" "$name" "$(cat "$work/$name.seconds")" $((total - tcp)) "$tcp" "$loss"
}
params=$(awk '/parameters/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^parameters/) print $i}' "$work/dp-0.log")
echo "workers $W, $steps steps each (DiLoCo: $ROUNDS rounds of $H), model $params parameters, bytes per worker (worker 0)"
report diloco-store
report diloco-p2p
report dp
a=$(awk '/weights sha256/ {print $NF}' "$work"/diloco-store-*.log "$work"/diloco-p2p-*.log | sort -u | wc -l)
if [ "$a" -ne 1 ]; then
  echo "DiLoCo replicas differ between the store and p2p exchanges" >&2
  exit 1
fi
echo "all $((2 * W)) DiLoCo replicas (store and p2p) have the same weights"
