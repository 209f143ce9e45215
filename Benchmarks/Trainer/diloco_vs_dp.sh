#!/usr/bin/env bash
# DiLoCo against data-parallel training of the same model for the same number of steps.
#
# DiLoCo: W worker processes, H inner AdamW steps per round, int8 pseudo-gradients through a
# directory store; bytes are what each worker wrote to and read from the store.
# Data-parallel: synchronous W-way training is one process with batch W*B (the averaged
# gradient is the same); its traffic is a ring all-reduce of fp32 gradients every step,
# 2 (W-1)/W * 4P bytes per worker per step. Both are scored by the eval loss on the same
# held-out stream.
#
#   Benchmarks/Trainer/diloco_vs_dp.sh          # W=2, H=100, 5 rounds
#   W=3 H=50 ROUNDS=10 Benchmarks/Trainer/diloco_vs_dp.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
W=${W:-2} H=${H:-100} ROUNDS=${ROUNDS:-5} THREADS=${THREADS:-1}
LAYERS=${LAYERS:-2} WIDTH=${WIDTH:-64} HEADS=${HEADS:-2} CONTEXT=${CONTEXT:-64} BATCH=${BATCH:-8}
bin="$("$here/build_trainer.sh")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
steps=$((H * ROUNDS))
common="model: {layers: $LAYERS, width: $WIDTH, heads: $HEADS, context: $CONTEXT}
data: {source: synthetic, branching: 4}"
cat > "$work/diloco.yaml" <<YAML
$common
train: {batch_size: $BATCH, seq_len: $CONTEXT, lr: 3e-3, warmup_steps: 20, threads: $THREADS, log_every: 0, eval_batches: 32}
diloco: {workers: $W, inner_steps: $H, rounds: $ROUNDS, round_timeout_s: 600, store: $work/store}
YAML
cat > "$work/dp.yaml" <<YAML
$common
train: {batch_size: $((BATCH * W)), seq_len: $CONTEXT, steps: $steps, lr: 3e-3, warmup_steps: 20, threads: $THREADS, log_every: 0, eval_batches: 32}
YAML
start=$(date +%s)
pids=()
for r in $(seq 0 $((W - 1))); do
  "$bin" --config "$work/diloco.yaml" --set diloco.rank=$r > "$work/worker-$r.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
diloco_s=$(( $(date +%s) - start ))
"$bin" --config "$work/dp.yaml" --no-resume --set train.log_every=$steps > "$work/dp.log" 2>&1
params=$(awk '/parameters/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^parameters/) print $i}' "$work/dp.log")
dp_loss=$(awk '/^eval loss/ {print $3}' "$work/dp.log")
diloco_bytes=$(cat "$work"/worker-*.log | awk '/bytes exchanged/ {s += $NF} END {print s}')
diloco_loss=$(awk '/eval loss/ {print $5; exit}' "$work/worker-0.log" | tr -d ',')
echo "workers $W, inner steps $H, rounds $ROUNDS ($steps steps per worker), model $params parameters"
echo "diloco: eval loss $diloco_loss, bytes exchanged (all workers) $diloco_bytes, ${diloco_s}s"
echo "$params $W $steps $diloco_bytes $dp_loss $diloco_loss" | awk '{dp = $3 * $2 * 2 * ($2 - 1) / $2 * 4 * $1;
  printf "data-parallel: eval loss %s, bytes (ring all-reduce, all workers) %.0f\n", $5, dp;
  printf "DiLoCo moves %.1fx fewer bytes; its eval loss is %+.2f%% relative to data-parallel\n", dp / $4, 100 * ($6 - $5) / $5}'
