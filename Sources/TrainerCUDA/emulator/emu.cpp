// The emulator's runtime (see include/emu.h).
#include "emu.h"

#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim

namespace emu {
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// ---- fibers: entered once through a ucontext, then switched with _setjmp/_longjmp, which
// (unlike swapcontext) costs no system call.
struct Fiber {
    ucontext_t uc;
    jmp_buf env;
    bool started, done;
    uint3 tid;
    char *stack;
};
static const size_t STACK = 64 * 1024;
static std::vector<Fiber> fibers;
static Fiber *current;
static jmp_buf scheduler;
static const std::function<void()> *body;
static bool cooperative_now;
static long progress;  // barrier releases and finished fibers, for deadlock detection

static void yield() {
    if (!_setjmp(current->env)) _longjmp(scheduler, 1);
}

static void trampoline() {
    (*body)();
    current->done = true;
    progress++;
    _longjmp(scheduler, 1);
}

struct Barrier {
    int count = 0;
    long generation = 0;
};
static Barrier block_barrier;
static std::vector<Barrier> warp_barriers;
static std::vector<float> warp_slots;

static void arrive_and_wait(Barrier &b, int expected) {
    long g = b.generation;
    if (++b.count == expected) {
        b.count = 0;
        b.generation++;
        progress++;
        return;
    }
    while (b.generation == g) yield();
}

void syncthreads() {
    if (!cooperative_now) {
        fprintf(stderr, "emu: __syncthreads in a kernel launched without fibers\n");
        abort();
    }
    arrive_and_wait(block_barrier, (int)(blockDim.x * blockDim.y * blockDim.z));
}

float shfl_xor(float v, int offset) {
    if (!cooperative_now) {
        fprintf(stderr, "emu: warp shuffle in a kernel launched without fibers\n");
        abort();
    }
    int linear = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    int warp = linear / 32, lane = linear % 32;
    warp_slots[(size_t)warp * 32 + lane] = v;
    arrive_and_wait(warp_barriers[warp], 32);
    float r = warp_slots[(size_t)warp * 32 + (lane ^ offset)];
    arrive_and_wait(warp_barriers[warp], 32);
    return r;
}

// Runs fiber f until it yields or finishes. A function of its own so that no local variable
// of the caller lives across the _setjmp.
static void __attribute__((noinline)) resume(Fiber &f) {
    current = &f;
    threadIdx = f.tid;
    if (!_setjmp(scheduler)) {
        if (!f.started) {
            f.started = true;
            setcontext(&f.uc);
        }
        _longjmp(f.env, 1);
    }
}

void launch(dim3 grid, dim3 block, bool cooperative, const std::function<void()> &fn, cudaStream_t) {
    gridDim = grid;
    blockDim = block;
    int nthreads = (int)(block.x * block.y * block.z);
    if (cooperative && nthreads % 32 != 0) {
        fprintf(stderr, "emu: cooperative block of %d threads is not whole warps\n", nthreads);
        abort();
    }
    body = &fn;
    cooperative_now = cooperative;
    if (cooperative && fibers.size() < (size_t)nthreads) {
        size_t old = fibers.size();
        fibers.resize((size_t)nthreads);
        for (size_t i = old; i < fibers.size(); i++) fibers[i].stack = (char *)malloc(STACK);
    }
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = {bx, by, bz};
                if (!cooperative) {
                    for (unsigned tz = 0; tz < block.z; tz++)
                        for (unsigned ty = 0; ty < block.y; ty++)
                            for (unsigned tx = 0; tx < block.x; tx++) {
                                threadIdx = {tx, ty, tz};
                                fn();
                            }
                    continue;
                }
                block_barrier = Barrier();
                warp_barriers.assign((size_t)nthreads / 32, Barrier());
                warp_slots.assign((size_t)nthreads, NAN);
                for (int t = 0; t < nthreads; t++) {
                    Fiber &f = fibers[(size_t)t];
                    f.started = f.done = false;
                    f.tid = {(unsigned)t % block.x, ((unsigned)t / block.x) % block.y, (unsigned)t / (block.x * block.y)};
                    getcontext(&f.uc);
                    f.uc.uc_stack.ss_sp = f.stack;
                    f.uc.uc_stack.ss_size = STACK;
                    f.uc.uc_link = NULL;
                    makecontext(&f.uc, trampoline, 0);
                }
                for (;;) {
                    long before = progress;
                    int alive = 0;
                    for (int t = 0; t < nthreads; t++)
                        if (!fibers[(size_t)t].done) {
                            alive++;
                            resume(fibers[(size_t)t]);
                        }
                    if (!alive) break;
                    if (progress == before) {
                        fprintf(stderr, "emu: deadlock in block (%u,%u,%u): threads wait at a barrier others never reach\n",
                                bx, by, bz);
                        abort();
                    }
                }
            }
}
}  // namespace emu

// ---- runtime
static int current_device = 0;

static int emulated_gpus() {
    const char *e = getenv("EMU_GPUS");
    int n = e ? atoi(e) : 1;
    return n < 1 ? 1 : n;
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = emulated_gpus();
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    if (d < 0 || d >= emulated_gpus()) {
        fprintf(stderr, "emu: cudaSetDevice(%d) with %d emulated GPUs\n", d, emulated_gpus());
        abort();
    }
    current_device = d;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    snprintf(p->name, sizeof p->name, "emulated GPU");
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xFF, n);  // NaN in every float: reading what nobody wrote poisons the results
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) { return cudaFree(p); }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(dst, src, n, k);
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { return cudaMemset(p, v, n); }
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    *s = (cudaStream_t)malloc(1);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    free(s);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated error" : "no error"; }

// ---- cuBLAS
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)malloc(1);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

// TF32 keeps 10 of float32's 23 mantissa bits; truncating the other 13 is the pessimistic
// reading of what the tensor cores do with float32 operands.
static float tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u &= 0xFFFFE000u;
    memcpy(&x, &u, 4);
    return x;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda, long long sA,
                                          const void *B, cudaDataType bt, int ldb, long long sB, const void *beta, void *C,
                                          cudaDataType ct, int ldc, long long sC, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t) {
    float al = *(const float *)alpha, be = *(const float *)beta;
    bool round = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    // cuBLAS's argument checks: a leading dimension shorter than the stored rows is an error.
    if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) ||
        ldc < std::max(1, m)) {
        fprintf(stderr, "emu: cublasGemm: bad leading dimension (m %d n %d k %d lda %d ldb %d ldc %d)\n", m, n, k, lda,
                ldb, ldc);
        abort();
    }
    if (ct != CUDA_R_32F || (compute == CUBLAS_COMPUTE_32F_FAST_TF32 && (at != CUDA_R_32F || bt != CUDA_R_32F))) {
        fprintf(stderr, "emu: cublasGemm: unsupported type combination\n");
        abort();
    }
    for (int b = 0; b < batch; b++) {
        // An operand element as float32, whatever its storage type.
        auto load = [](const void *base, cudaDataType t, size_t i) {
            return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)base)[i]) : ((const float *)base)[i];
        };
        size_t offA = (size_t)b * sA, offB = (size_t)b * sB;
        float *c = (float *)C + b * sC;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float acc = 0.0f;
                for (int p = 0; p < k; p++) {
                    float x = load(A, at, offA + (ta == CUBLAS_OP_N ? i + (size_t)p * lda : p + (size_t)i * lda));
                    float y = load(B, bt, offB + (tb == CUBLAS_OP_N ? p + (size_t)j * ldb : j + (size_t)p * ldb));
                    acc += round ? tf32(x) * tf32(y) : x * y;
                }
                float *out = &c[i + (size_t)j * ldc];
                *out = be == 0.0f ? al * acc : al * acc + be * *out;  // beta 0: C is not read
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1,
                                      compute, algo);
}

// ---- NCCL: collectives of a group run at ncclGroupEnd, when every rank has posted its part.
struct emu_comm {
    int rank, size;
};
struct Posted {
    bool reduce;
    const float *send;
    float *recv;
    size_t count;
    int root, rank;
};
static std::vector<Posted> posted;
static int group_depth = 0;

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int n, const int *) {
    for (int r = 0; r < n; r++) comms[r] = new emu_comm{r, n};
    return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t c) {
    delete c;
    return ncclSuccess;
}
ncclResult_t ncclGroupStart() {
    group_depth++;
    return ncclSuccess;
}
static ncclResult_t run_posted() {
    std::vector<Posted> ops;
    ops.swap(posted);
    if (ops.empty()) return ncclSuccess;
    const Posted *root = NULL;
    for (const Posted &p : ops)
        if (p.rank == p.root) root = &p;
    if (!root || ops.size() < 2) {
        fprintf(stderr, "emu: NCCL group without its root or with one rank\n");
        abort();
    }
    if (root->reduce) {
        std::vector<float> sum(root->count, 0.0f);
        for (const Posted &p : ops)  // rank order: ops were posted in rank order
            for (size_t i = 0; i < p.count; i++) sum[i] += p.send[i];
        memcpy(root->recv, sum.data(), root->count * sizeof(float));
    } else {
        for (const Posted &p : ops)
            if (p.recv != root->send) memcpy(p.recv, root->send, root->count * sizeof(float));
    }
    return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
    if (--group_depth > 0) return ncclSuccess;
    return run_posted();
}
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t, ncclRedOp_t, int root,
                        ncclComm_t c, cudaStream_t) {
    posted.push_back({true, (const float *)send, (float *)recv, count, root, c->rank});
    if (!group_depth) return run_posted();
    return ncclSuccess;
}
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t, int root, ncclComm_t c,
                           cudaStream_t) {
    posted.push_back({false, (const float *)send, (float *)recv, count, root, c->rank});
    if (!group_depth) return run_posted();
    return ncclSuccess;
}
const char *ncclGetErrorString(ncclResult_t) { return "emulated NCCL error"; }
