#!/usr/bin/env bash
# GPU tokens/s and MFU of stratum-trainer-cuda next to PyTorch for a GPT-2-124M-shaped model
# (12 layers, width 768, 12 heads, context 1024; byte vocabulary, so 85 M parameters rather
# than 124 M), same batch, same optimizer, printed together in one run.
#
#   Benchmarks/Trainer/gpu_bench.sh                     # batch 16, 30 steps, sm_90, H100/H200 peak
#   BATCH=8 STEPS=50 Benchmarks/Trainer/gpu_bench.sh
#   CUDA_ARCH=sm_80 PEAK_TFLOPS=312 Benchmarks/Trainer/gpu_bench.sh    # A100
#
# MFU = tokens/s x FLOPs per token / peak, with FLOPs per token = 6 N + 12 L C T (weights
# forward and backward, plus attention scores and weighted values; PaLM's appendix B) and peak
# = PEAK_TFLOPS, default 989.4 (H100/H200 SXM dense bf16; dense TF32 is half of it). The same
# formula and peak are used for every row, so the rows compare directly.
#
# stratum-trainer-cuda is built with make in Sources/TrainerCUDA unless
# STRATUM_TRAINER_CUDA_BIN names a binary; it runs twice, with TF32 matmuls and with bf16
# linear layers (--matmul bf16). PyTorch comes from $TORCH_PYTHON (default python3) and needs a CUDA build;
# without one its rows say n/a. Each run has a time limit in seconds: T_STRATUM (default 120),
# T_TORCH (eager PyTorch, 120) and T_COMPILE (torch.compile, compilation included, 300); a run
# past its limit shows "timed out". TORCH_LOG names a file that collects PyTorch's stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
LAYERS=${LAYERS:-12} WIDTH=${WIDTH:-768} HEADS=${HEADS:-12} CONTEXT=${CONTEXT:-1024}
BATCH=${BATCH:-16} STEPS=${STEPS:-30} PEAK_TFLOPS=${PEAK_TFLOPS:-989.4} CUDA_ARCH=${CUDA_ARCH:-sm_90}
PY=${TORCH_PYTHON:-python3}
T_STRATUM=${T_STRATUM:-120} T_TORCH=${T_TORCH:-120} T_COMPILE=${T_COMPILE:-300}

if [[ -n "${STRATUM_TRAINER_CUDA_BIN:-}" ]]; then
  bin="$STRATUM_TRAINER_CUDA_BIN"
else
  make -C "$repo/Sources/TrainerCUDA" CUDA_ARCH="$CUDA_ARCH" ${NCCL:+NCCL=$NCCL} >&2
  bin="$repo/Sources/TrainerCUDA/build/stratum-trainer-cuda"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
window=$(( STEPS / 3 > 0 ? STEPS / 3 : 1 ))
cat > "$work/bench.yaml" <<YAML
model: {layers: $LAYERS, width: $WIDTH, heads: $HEADS, context: $CONTEXT}
train: {batch_size: $BATCH, seq_len: $CONTEXT, steps: $STEPS, warmup_steps: 2, log_every: $window, eval_batches: 0}
data: {source: synthetic}
YAML

# Ours: the last progress window's tok/s (the first window includes allocation and cuBLAS warm-up).
stratum_run() {  # matmul kind -> tokens/s, or n/a / timed out
  local rc=0
  timeout "$T_STRATUM" "$bin" --config "$work/bench.yaml" --no-resume --matmul "$1" > "$work/stratum-$1.log" 2>&1 || rc=$?
  cat "$work/stratum-$1.log" >&2
  if [[ $rc -eq 124 ]]; then echo "timed out"; elif [[ $rc -ne 0 ]]; then echo "n/a"; else
    awk '/^step/ {v = $NF} END {print v}' "$work/stratum-$1.log"
  fi
}
stratum_tf32=$(stratum_run tf32)
stratum_bf16=$(stratum_run bf16)
params=$(awk '/^model:/ {for (i = 1; i <= NF; i++) if ($i ~ /^parameters/) print $(i - 1)}' "$work/stratum-tf32.log")
device=$(awk -F'device: ' '/^device:/ {print $2}' "$work/stratum-tf32.log")
[[ -n "$params" ]] || { echo "stratum-trainer-cuda did not run" >&2; exit 1; }

torch_run() {  # precision, compile flag -> tokens/s or n/a / timed out
  local out rc=0 limit=$T_TORCH
  [[ -n "$2" ]] && limit=$T_COMPILE
  out=$(timeout "$limit" "$PY" "$here/torch_gpt.py" --device cuda --precision "$1" $2 --layers "$LAYERS" \
          --width "$WIDTH" --heads "$HEADS" --context "$CONTEXT" --batch "$BATCH" --steps "$STEPS" 2>"$work/torch.err") ||
    rc=$?
  if [[ -n "${TORCH_LOG:-}" ]]; then
    { echo "== torch_gpt.py --precision $1 $2: exit $rc"; echo "$out"; tail -40 "$work/torch.err"; } >> "$TORCH_LOG"
  fi
  if [[ $rc -eq 124 ]]; then
    echo "timed out"
  elif [[ $rc -ne 0 ]]; then
    echo "n/a"
  else
    echo "$out" | awk '/^torch/ {print $3, ($NF == "failed" ? "(compile failed: eager)" : "")}'
  fi
}

flops=$(( 6 * params + 12 * LAYERS * WIDTH * CONTEXT ))
mfu() { [[ ! "$1" =~ ^[0-9.]+$ ]] && echo "n/a" || awk -v t="$1" -v f="$flops" -v p="$PEAK_TFLOPS" 'BEGIN {printf "%.1f %%", 100 * t * f / (p * 1e12)}'; }
row() {  # name, arithmetic, "tokens/s [note]"
  local v="${3%% *}" note=""
  [[ "$3" == *" "* ]] && note="${3#* }"
  [[ "$v" == timed ]] && { v="timed out"; note=""; }
  printf "%-34s %-30s %12s %10s %s\n" "$1" "$2" "$v" "$(mfu "$v")" "$note"
}

echo "model: $LAYERS layers, width $WIDTH, $HEADS heads, context $CONTEXT; $params parameters; batch $BATCH x $CONTEXT"
echo "device: $device"
echo "FLOPs per token 6N + 12LCT = $flops; MFU against $PEAK_TFLOPS TFLOPS"
printf "%-34s %-30s %12s %10s\n" "trainer" "arithmetic" "tokens/s" "MFU"
row "stratum-trainer-cuda" "TF32 matmuls, float32 weights" "$stratum_tf32"
row "stratum-trainer-cuda --matmul bf16" "bf16 linear layers, TF32 attn" "$stratum_bf16"
row "pytorch eager" "TF32 matmuls, float32 weights" "$(torch_run tf32 "")"
row "pytorch eager" "bf16 autocast, float32 weights" "$(torch_run bf16 "")"
row "pytorch torch.compile" "TF32 matmuls, float32 weights" "$(torch_run tf32 --compile)"
row "pytorch torch.compile" "bf16 autocast, float32 weights" "$(torch_run bf16 --compile)"
if [[ -s "$work/torch.err" ]] && grep -q -i error "$work/torch.err"; then
  echo "(last PyTorch stderr:)"; tail -3 "$work/torch.err"
fi
