#!/usr/bin/env bash
# CPU tokens/s of Stratum's trainer next to PyTorch for the same model, batch and threads,
# alternating runs so both see the same machine load.
#
#   Benchmarks/Trainer/cpu_bench.sh            # 4 layers, width 256, 4 heads, context 256, batch 8, 2 threads
#   LAYERS=6 WIDTH=384 HEADS=6 THREADS=4 ROUNDS=5 Benchmarks/Trainer/cpu_bench.sh
#
# PyTorch comes from $TORCH_PYTHON (default: python3); install it in a virtualenv for the
# benchmark only: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LAYERS=${LAYERS:-4} WIDTH=${WIDTH:-256} HEADS=${HEADS:-4} CONTEXT=${CONTEXT:-256}
BATCH=${BATCH:-8} THREADS=${THREADS:-2} STEPS=${STEPS:-12} ROUNDS=${ROUNDS:-3}
PY=${TORCH_PYTHON:-python3}
bin="$("$here/build_trainer.sh")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/bench.yaml" <<YAML
model: {layers: $LAYERS, width: $WIDTH, heads: $HEADS, context: $CONTEXT}
train: {batch_size: $BATCH, seq_len: $CONTEXT, steps: $STEPS, warmup_steps: 2, threads: $THREADS, log_every: $((STEPS / 2))}
data: {source: synthetic}
YAML
echo "model: $LAYERS layers, width $WIDTH, $HEADS heads, context $CONTEXT; batch $BATCH; $THREADS threads"
for r in $(seq "$ROUNDS"); do
  # The second progress window excludes start-up and the first steps' page faults.
  stratum=$("$bin" --config "$work/bench.yaml" --no-resume | awk '/^step/ {v=$NF} END {print v}')
  if torch=$("$PY" "$here/torch_gpt.py" --layers "$LAYERS" --width "$WIDTH" --heads "$HEADS" --context "$CONTEXT" \
               --batch "$BATCH" --threads "$THREADS" --steps 10 2>/dev/null | awk '/^torch/ {print $3}'); then :; else torch="n/a"; fi
  echo "round $r: stratum tokens/s $stratum   pytorch tokens/s ${torch:-n/a}"
done
