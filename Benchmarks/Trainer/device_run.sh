#!/usr/bin/env bash
# One GPU machine, one go: probes the machine, builds the CUDA trainer, runs its check against
# the CPU reference, benchmarks it next to PyTorch, and profiles one training step's kernels.
# Every stage has its own time limit and writes its log under $OUT; a stage that fails or runs
# out of time is reported and the next one still runs. The last thing printed is a summary.
#
#   OUT=/tmp/gpu-run Benchmarks/Trainer/device_run.sh                 # every stage
#   OUT=/tmp/gpu-run Benchmarks/Trainer/device_run.sh probe build     # some of them
#
# Stages: probe (nvidia-smi, nvcc, driver, copy and matmul ceilings through PyTorch),
# deps (headers and libraries the trainer links, see below), build (make, CUDA_ARCH sm_90),
# check (make check: check-cuda), profile (ncu: two steps' kernels), bench (gpu_bench.sh),
# and, not among the defaults, emulated (make emulated-check: no GPU needed).
#
# Build dependencies: the trainer links libyaml, libcurl and OpenSSL. A machine without their
# headers or libraries can be given Debian packages of them in DEBS (a folder of .deb files:
# libyaml-dev, libyaml-0-2, libcurl4-openssl-dev, libssl-dev, libssl3): they are unpacked
# under a private prefix (never into /), and only what the system lacks is taken from there;
# headers come after the system's (-idirafter). Where no usable libcurl exists at all, a
# stand-in library whose transfers all fail is linked instead: the synthetic data source that
# the check and the benchmark use never calls it, and http(s) and s3 data sources then fail
# with "libcurl is not available on this machine".
#
# Limits (seconds): T_BUILD, T_CHECK, T_BENCH_STRATUM, T_TORCH (each eager PyTorch run),
# T_COMPILE (each torch.compile run, compilation included), T_PROFILE.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
OUT=${OUT:?set OUT to a folder for the logs}
DEBS=${DEBS:-}
CUDA_ARCH=${CUDA_ARCH:-sm_90}
T_BUILD=${T_BUILD:-240} T_CHECK=${T_CHECK:-180} T_BENCH_STRATUM=${T_BENCH_STRATUM:-90}
T_TORCH=${T_TORCH:-60} T_COMPILE=${T_COMPILE:-150} T_PROFILE=${T_PROFILE:-120}
PY=${TORCH_PYTHON:-python3}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
build="$repo/Sources/TrainerCUDA/build"
prefix=${DEPS_PREFIX:-/tmp/stratum-deps}
note() { echo "$*" | tee -a "$summary"; }
stamp() { date -u +%H:%M:%S; }

# stage NAME LIMIT [LOG]: runs the function NAME in a child of this script with a time limit,
# its output to $OUT/LOG.log (LOG defaults to NAME).
stage() {
  local name=$1 limit=$2 log="$OUT/${3:-$1}.log" t0 rc
  t0=$(date +%s)
  echo "== $(stamp) $name (limit ${limit}s)" | tee -a "$log"
  timeout --kill-after=10 "$limit" bash "$here/device_run.sh" _stage "$name" >> "$log" 2>&1
  rc=$?
  local verdict=ok
  [[ $rc -eq 124 || $rc -eq 137 ]] && verdict="TIMED OUT"
  [[ $rc -ne 0 && $verdict == ok ]] && verdict="FAILED (exit $rc)"
  note "stage $name: $verdict after $(( $(date +%s) - t0 ))s"
  return $rc
}

probe() {
  uname -a
  grep PRETTY_NAME /etc/os-release || true
  nproc
  nvidia-smi || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
  nvcc --version || echo "nvcc: not on PATH"
  gcc --version | head -1
  for h in yaml.h curl/curl.h openssl/evp.h; do
    if echo "#include <$h>" | gcc -E -x c - > /dev/null 2>&1; then echo "header $h: system"; else echo "header $h: missing"; fi
  done
  ldconfig -p | grep -E 'libyaml|libcurl|libssl\.|libcrypto\.|libcublas\.' || true
  command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null || echo "ncu: not found"
  "$PY" - <<'PY' || echo "torch: not usable"
import torch, time
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
p = torch.cuda.get_device_properties(0)
print("multiprocessors", p.multi_processor_count, "memory GiB", round(p.total_memory / 2**30, 1))
def bench(f, n=10):
    for _ in range(3): f()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(); s.record()
    for _ in range(n): f()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / n / 1e3
x = torch.randn(2**30 // 4, device="cuda"); y = torch.empty_like(x)
t = bench(lambda: y.copy_(x))
print(f"ceiling: device copy {2 * x.numel() * 4 / t / 1e12:.2f} TB/s (read + write)")
del x, y
n = 8192
for name, dt, tf32 in (("bf16", torch.bfloat16, False), ("tf32", torch.float32, True), ("fp32", torch.float32, False)):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = torch.randn(n, n, device="cuda", dtype=dt), torch.randn(n, n, device="cuda", dtype=dt)
    t = bench(lambda: a @ b, 5 if name == "fp32" else 10)
    print(f"ceiling: {name} matmul {n}^3 {2 * n**3 / t / 1e12:.0f} TFLOP/s (random data)")
PY
}

# Makes HOST_CFLAGS / HOST_LDFLAGS / LD_LIBRARY_PATH cover what the system lacks.
deps() {
  rm -rf "$prefix"
  mkdir -p "$prefix/root" "$prefix/lib"
  local d h lib so cand missing_headers=0
  if [[ -n "$DEBS" ]]; then
    for d in "$DEBS"/*.deb; do [[ -e "$d" ]] && dpkg -x "$d" "$prefix/root" && echo "unpacked $(basename "$d")"; done
  fi
  for h in yaml.h curl/curl.h openssl/evp.h openssl/hmac.h; do
    if echo "#include <$h>" | gcc -E -x c - > /dev/null 2>&1; then
      echo "header $h: system"
    else
      echo "header $h: from the packages"
      missing_headers=1
    fi
  done
  local flags=""
  if [[ $missing_headers == 1 ]]; then
    flags="-idirafter $prefix/root/usr/include -idirafter $prefix/root/usr/include/x86_64-linux-gnu"
  fi
  local multiarch="$prefix/root/usr/lib/x86_64-linux-gnu"
  for lib in yaml:libyaml-0.so.2 crypto:libcrypto.so.3 ssl:libssl.so.3 curl:libcurl.so.4; do
    so=${lib#*:}
    lib=${lib%%:*}
    if echo 'int main(void) { return 0; }' | gcc -x c - -o /dev/null "-l$lib" > /dev/null 2>&1; then
      echo "library -l$lib: system"
      continue
    fi
    cand=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF; exit}')
    if [[ -n "$cand" ]]; then
      ln -sf "$cand" "$prefix/lib/lib$lib.so"
      echo "library -l$lib: system $cand (no development link)"
      continue
    fi
    cand="$multiarch/$so"
    if [[ -e "$cand" ]] && ! LD_LIBRARY_PATH="$prefix/lib" ldd "$cand" | grep -q "not found"; then
      cp -L "$cand" "$prefix/lib/$so"
      ln -sf "$so" "$prefix/lib/lib$lib.so"
      echo "library -l$lib: from the packages"
      continue
    fi
    if [[ $lib == curl ]]; then
      curl_stand_in "$prefix/lib"
      echo "library -l$lib: stand-in (no usable libcurl; http(s) and s3 data sources fail)"
      continue
    fi
    echo "library -l$lib: MISSING"
  done
  {
    echo "export HOST_CFLAGS='$flags'"
    echo "export HOST_LDFLAGS='-L$prefix/lib'"
    echo "export LD_LIBRARY_PATH='$prefix/lib'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
  } > "$prefix/env.sh"
  cat "$prefix/env.sh"
}

curl_stand_in() {
  cat > "$1/curl_stand_in.c" <<'C'
/* libcurl's easy interface as the trainer calls it, every transfer failing (CURLE_FAILED_INIT). */
#include <stddef.h>
void *curl_easy_init(void) { return NULL; }
int curl_global_init(long flags) { (void)flags; return 2; }
int curl_easy_setopt(void *h, int option, ...) { (void)h; (void)option; return 2; }
int curl_easy_perform(void *h) { (void)h; return 2; }
int curl_easy_getinfo(void *h, int info, ...) { (void)h; (void)info; return 2; }
void curl_easy_cleanup(void *h) { (void)h; }
const char *curl_easy_strerror(int code) { (void)code; return "libcurl is not available on this machine"; }
void *curl_slist_append(void *list, const char *s) { (void)list; (void)s; return NULL; }
void curl_slist_free_all(void *list) { (void)list; }
C
  gcc -shared -fPIC -O2 -Wl,-soname,libcurl.so.4 -o "$1/libcurl.so.4" "$1/curl_stand_in.c" && ln -sf libcurl.so.4 "$1/libcurl.so"
}

build() {
  nvcc --version | tail -2
  make -C "$repo/Sources/TrainerCUDA" -j"$(nproc)" CUDA_ARCH="$CUDA_ARCH" all
  local ok=$?
  # Registers, shared memory and spills of every kernel (cuBLAS aside), and whether the
  # binary holds sm_90 machine code.
  cuobjdump --list-elf "$build/stratum-trainer-cuda" 2>&1 | head -5
  return $ok
}

check() {
  cd "$repo/Sources/TrainerCUDA" && "$build/check-cuda"
}

# The check against the emulated backend (no GPU, no nvcc): tests this script's deps and the
# check's logic on any machine.
emulated() {
  make -C "$repo/Sources/TrainerCUDA" -j"$(nproc)" emulated-check
}

bench() {
  STRATUM_TRAINER_CUDA_BIN="$build/stratum-trainer-cuda" T_STRATUM="$T_BENCH_STRATUM" T_TORCH="$T_TORCH" \
    T_COMPILE="$T_COMPILE" TORCH_PYTHON="$PY" TORCH_LOG="$OUT/bench.log" "$here/gpu_bench.sh"
}

# Training steps' kernels at the benchmark's shape under Nsight Compute (kernel durations
# only, clocks and caches left alone): two steps with TF32 and then bf16 matmuls, summed by
# kernel name, per step. The CSVs go to $OUT/ncu-tf32.csv and $OUT/ncu-bf16.csv.
profile() {
  local ncu_bin kind rc=0
  ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  [[ -n "$ncu_bin" ]] || { echo "ncu not found"; return 1; }
  local work
  work=$(mktemp -d)
  cat > "$work/p.yaml" <<YAML
model: {layers: 12, width: 768, heads: 12, context: 1024}
train: {batch_size: ${BATCH:-16}, seq_len: 1024, steps: 2, warmup_steps: 1, log_every: 0, eval_batches: 0}
data: {source: synthetic}
YAML
  for kind in ${PROFILE_MATMULS:-tf32 bf16}; do
    echo "== $(stamp) ncu, --matmul $kind"
    "$ncu_bin" --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base \
      --log-file "$OUT/ncu-$kind.csv" "$build/stratum-trainer-cuda" --config "$work/p.yaml" --no-resume --quiet \
      --matmul "$kind" || rc=$?
    echo "kernel time, --matmul $kind:"
    "$PY" "$here/kernel_summary.py" "$OUT/ncu-$kind.csv" --steps 2 --top 25 || rc=$?
  done
  return $rc
}

if [[ ${1:-} == _stage ]]; then
  [[ -f "$prefix/env.sh" ]] && source "$prefix/env.sh"
  "$2"
  exit $?
fi
: > "$summary"
stages=("$@")
[[ ${#stages[@]} -eq 0 ]] && stages=(probe deps build check profile bench)
for s in "${stages[@]}"; do
  case $s in
    probe) stage probe 120 ;;
    deps) stage deps 60 build ;;
    build) stage build "$T_BUILD" ;;
    check) stage check "$T_CHECK" ;;
    bench) stage bench "$((T_BENCH_STRATUM * 2 + 2 * T_TORCH + 2 * T_COMPILE + 30))" ;;
    profile) stage profile "$T_PROFILE" ;;
    emulated) stage emulated "$T_CHECK" ;;
    *) echo "unknown stage $s"; exit 2 ;;
  esac
done

echo
echo "== summary"
grep -E '^ceiling|^torch |driver|CUDA Version' "$OUT/probe.log" 2>/dev/null | head -8
grep -E 'PASS|FAIL' "$OUT/check.log" 2>/dev/null | tail -60
[[ -f "$OUT/bench.log" ]] && sed -n '/^model:/,$p' "$OUT/bench.log"
[[ -f "$OUT/profile.log" ]] && grep -A16 '^kernel time' "$OUT/profile.log"
cat "$summary"
