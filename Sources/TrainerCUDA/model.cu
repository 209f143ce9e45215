// The CUDA model backend: the GPT of Sources/TrainerCore/model.c on NVIDIA GPUs.
//
//   x   = wte[token] + wpe[position]
//   per layer:  x = x + proj(attention(LN1(x)));  x = x + fcproj(gelu(fc(LN2(x))))
//   logits = LNf(x) @ wte^T          (output projection tied to the token embedding)
//
// Same parameter layout (model_layout.h), same initialisation, same formulas as the CPU
// backend; this file reads in the same order: allocation, forward, backward, update.
//
// Numerics: everything in memory is float32 (weights, gradients, AdamW moments,
// activations). Matmuls run on the tensor cores in TF32 with float32 accumulation
// (tc_cuda_backend), in bf16 with float32 accumulation (tc_cuda_bf16_backend: cuBLAS rounds
// the float32 operands to bf16 as it loads them) or in plain float32 (tc_cuda_fp32_backend,
// for `make check`); see matmul.cuh for what that costs in accuracy. Reductions have a fixed order, so a run is
// reproducible on the same GPU model and GPU count.
//
// Several GPUs (built with NCCL=1): one process drives every GPU of the node from one thread,
// each GPU holding a full replica of the weights and a slice of the batch's sequences. The
// gradients of all GPUs are summed onto GPU 0 (ncclReduce), which clips them and runs AdamW
// (only GPU 0 keeps the moments); the new weights are broadcast back (ncclBroadcast). The loss
// and the gradient are those of the whole batch, whatever the GPU count.
//
// The trainer and checkpoints reach this file through the tc_model handle (backend.c), which
// calls download before it hands out the host arrays and upload after they were handed out.
#include "cuda_backend.h"
#include "model_layout.h"

#include "adamw.cuh"
#include "attention.cuh"
#include "classifier.cuh"
#include "elementwise.cuh"
#include "layernorm.cuh"
#include "matmul.cuh"

#include <algorithm>
#include <string.h>

#ifdef TC_NCCL
#include <nccl.h>
#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)
static void nccl_check(ncclResult_t r, const char *what, const char *file, int line) {
    if (r == ncclSuccess) return;
    fprintf(stderr, "stratum-trainer-cuda: %s failed at %s:%d: %s\n", what, file, line, ncclGetErrorString(r));
    exit(1);
}
#define MAX_GPUS 16
#else
#define MAX_GPUS 1
#endif

// Views of the 16 tensors inside one flat array (parameters or gradients).
struct tensors {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b;
    float *fcw, *fcb, *fcprojw, *fcprojb, *lnfw, *lnfb;
};

static void point_tensors(tensors *t, float *base, const size_t *sizes) {
    float **ptrs[TC_P_COUNT] = {&t->wte, &t->wpe, &t->ln1w, &t->ln1b, &t->qkvw, &t->qkvb, &t->attprojw, &t->attprojb,
                                &t->ln2w, &t->ln2b, &t->fcw, &t->fcb, &t->fcprojw, &t->fcprojb, &t->lnfw, &t->lnfb};
    for (int i = 0; i < TC_P_COUNT; i++) {
        *ptrs[i] = base;
        base += sizes[i];
    }
}

// What the forward pass keeps for the backward pass, per GPU, for its N = rows * T positions.
struct activations {
    float *encoded;                   // [N, C]
    float *ln1, *ln1_mean, *ln1_rstd; // [L, N, C], [L, N], [L, N]
    float *qkvh;                      // [L, 3, rows, NH, T, hs]: q, k, v split into heads
    float *att;                       // [L, rows, NH, T, T]: attention probabilities
    float *atty;                      // [L, N, C]
    float *residual2;                 // [L, N, C]
    float *ln2, *ln2_mean, *ln2_rstd; // [L, N, C], [L, N], [L, N]
    float *fch, *fch_gelu;            // [L, N, 4C]
    float *residual3;                 // [L, N, C]
    float *lnf, *lnf_mean, *lnf_rstd; // [N, C], [N], [N]
    float *logits, *probs, *dlogits;  // [N, V] each
    float *losses;                    // [N]
    // bf16 linear layers only (else NULL): the linear layers' inputs rounded to bf16 by the
    // forward pass, for the weight gradients: ln1, atty, ln2 [L, N, C], fch_gelu [L, N, 4C]
    __nv_bfloat16 *ln1_16, *atty_16, *ln2_16, *fchg_16;
};

// One GPU: its replica, its slice of the batch, its scratch.
struct gpu {
    int id;  // CUDA device ordinal
    cudaStream_t stream;
    Blas blas;
    float *params, *grads;  // full copies: weights everywhere; gradients summed onto GPU 0
    float *m, *v;           // AdamW moments (GPU 0 only)
    tensors p, g;
    double *norm;           // [NORM_BLOCKS + 1] gradient-norm partials and result (GPU 0 only)
    float *act_mem;
    activations a;
    // backward scratch
    float *qkv;             // [N, 3C]: the qkv matmul's output, and dqkv in the backward pass
    float *yh;              // [N, C]: attention output (then its gradient) split into heads
    float *dqkvh;           // [3, N, C]: dq, dk, dv split into heads
    float *datt;            // [rows, NH, T, T]
    float *dres, *dnc, *d4c, *partials;
    uint8_t *inputs, *targets;        // [N] on the device
    int *tok_offsets, *tok_positions; // [V + 1], [N]: rows of each byte value (embedding gradient)
    // pinned host staging for the transfers every step
    uint8_t *h_inputs, *h_targets;
    int *h_tok_offsets, *h_tok_positions;
    float *h_losses;
#ifdef TC_NCCL
    ncclComm_t comm;
#endif
};

struct cuda_model {
    int L, C, NH, maxT;
    size_t sizes[TC_P_COUNT], num_params;
    cublasComputeType_t compute;
    int bf16;                // bf16 linear layers (Blas.s16a / s16b allocated with the activations)
    int ngpu;                // GPUs holding a replica
    gpu g[MAX_GPUS];
    // the current batch shape
    int B, T, rows, active;  // rows: sequences per GPU; active: GPUs with rows (B = rows * active)
    int has_targets;
    float *host;             // params | grads | AdamW m | AdamW v in the shared layout
    float *h_logits, *h_probs;
    char device[320];
};

static void free_activations(gpu *g) {
    CUDA_CHECK(cudaSetDevice(g->id));
    cudaFree(g->act_mem);
    cudaFree(g->inputs);
    cudaFree(g->targets);
    cudaFree(g->tok_offsets);
    cudaFree(g->tok_positions);
    cudaFreeHost(g->h_inputs);
    cudaFreeHost(g->h_targets);
    cudaFreeHost(g->h_tok_offsets);
    cudaFreeHost(g->h_tok_positions);
    cudaFreeHost(g->h_losses);
    cudaFree(g->blas.s16a);
    cudaFree(g->blas.s16b);
    cudaFree(g->a.ln1_16);
    g->blas.s16a = g->blas.s16b = NULL;
    g->a.ln1_16 = g->a.atty_16 = g->a.ln2_16 = g->a.fchg_16 = NULL;
    g->act_mem = NULL;
    g->inputs = g->targets = NULL;
    g->tok_offsets = g->tok_positions = NULL;
    g->h_inputs = g->h_targets = NULL;
    g->h_tok_offsets = g->h_tok_positions = NULL;
    g->h_losses = NULL;
}

static void cuda_destroy(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    for (int d = 0; d < m->ngpu; d++) {
        gpu *g = &m->g[d];
        free_activations(g);
        cudaFree(g->params);
        cudaFree(g->grads);
        cudaFree(g->m);
        cudaFree(g->v);
        cudaFree(g->norm);
        if (g->blas.handle) cublasDestroy(g->blas.handle);
        if (g->stream) cudaStreamDestroy(g->stream);
#ifdef TC_NCCL
        if (g->comm) ncclCommDestroy(g->comm);
#endif
    }
    free(m->host);
    free(m->h_logits);
    free(m->h_probs);
    free(m);
}

// ------------------------------------------------------------------------------------------
// Moving the state between the host arrays and the GPUs

// GPU 0 -> host: parameters, gradients (already summed there) and moments.
static void cuda_download(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    gpu *g = &m->g[0];
    size_t bytes = m->num_params * sizeof(float);
    CUDA_CHECK(cudaSetDevice(g->id));
    CUDA_CHECK(cudaStreamSynchronize(g->stream));
    CUDA_CHECK(cudaMemcpy(m->host, g->params, bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(m->host + m->num_params, g->grads, bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(m->host + 2 * m->num_params, g->m, bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(m->host + 3 * m->num_params, g->v, bytes, cudaMemcpyDeviceToHost));
}

// Host -> GPUs: weights to every replica; gradients and moments to GPU 0, zero gradients on
// the others (their share was already summed onto GPU 0).
static void cuda_upload(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    size_t bytes = m->num_params * sizeof(float);
    // (d < MAX_GPUS always holds; said here so that GCC 13 sees the bound of g[].)
    for (int d = 0; d < m->ngpu && d < MAX_GPUS; d++) {
        gpu *g = &m->g[d];
        CUDA_CHECK(cudaSetDevice(g->id));
        CUDA_CHECK(cudaStreamSynchronize(g->stream));
        CUDA_CHECK(cudaMemcpy(g->params, m->host, bytes, cudaMemcpyHostToDevice));
        if (d == 0) {
            CUDA_CHECK(cudaMemcpy(g->grads, m->host + m->num_params, bytes, cudaMemcpyHostToDevice));
            CUDA_CHECK(cudaMemcpy(g->m, m->host + 2 * m->num_params, bytes, cudaMemcpyHostToDevice));
            CUDA_CHECK(cudaMemcpy(g->v, m->host + 3 * m->num_params, bytes, cudaMemcpyHostToDevice));
        } else {
            CUDA_CHECK(cudaMemset(g->grads, 0, bytes));
        }
    }
}

static float *cuda_host_state(void *impl) { return ((cuda_model *)impl)->host; }
static const char *cuda_device(void *impl) { return ((cuda_model *)impl)->device; }

// Host copy of the logits (or probabilities) of the last forward, gathered in row order.
static const float *gather_rows(cuda_model *m, float *host, int probs) {
    if (!host || !m->g[0].act_mem) return NULL;
    size_t per_gpu = (size_t)m->rows * m->T * TC_VOCAB;
    for (int d = 0; d < m->active; d++) {
        gpu *g = &m->g[d];
        CUDA_CHECK(cudaSetDevice(g->id));
        CUDA_CHECK(cudaStreamSynchronize(g->stream));
        CUDA_CHECK(cudaMemcpy(host + d * per_gpu, probs ? g->a.probs : g->a.logits, per_gpu * sizeof(float),
                              cudaMemcpyDeviceToHost));
    }
    return host;
}

static const float *cuda_logits(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    return gather_rows(m, m->h_logits, 0);
}

static const float *cuda_probs(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    return gather_rows(m, m->h_probs, 1);
}

// ------------------------------------------------------------------------------------------
// Creation

static void *create(int n_layer, int n_embd, int n_head, int context, uint64_t seed, cublasComputeType_t compute,
                    int bf16, const char *precision, char *err, size_t errlen) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) {
        snprintf(err, err ? errlen : 0, "cuda: no usable GPU (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
        return NULL;
    }
    cuda_model *m = (cuda_model *)calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err ? errlen : 0, "cuda: out of host memory");
        return NULL;
    }
    m->L = n_layer;
    m->C = n_embd;
    m->NH = n_head;
    m->maxT = context;
    m->compute = compute;
    m->bf16 = bf16;
    m->num_params = tc_param_sizes(n_layer, n_embd, context, m->sizes);
    m->ngpu = count < MAX_GPUS ? count : MAX_GPUS;
    // The same seeded weights as every other backend, then onto the GPUs.
    m->host = (float *)calloc(4 * m->num_params, sizeof(float));
    if (!m->host) {
        snprintf(err, err ? errlen : 0, "cuda: out of host memory for %zu parameters", m->num_params);
        free(m);
        return NULL;
    }
    tc_param_init(m->host, m->sizes, n_layer, seed);

    size_t bytes = m->num_params * sizeof(float);
    for (int d = 0; d < m->ngpu; d++) {
        gpu *g = &m->g[d];
        g->id = d;
        CUDA_CHECK(cudaSetDevice(d));
        CUDA_CHECK(cudaStreamCreate(&g->stream));
        CUBLAS_CHECK(cublasCreate(&g->blas.handle));
        CUBLAS_CHECK(cublasSetStream(g->blas.handle, g->stream));
        g->blas.compute = compute;
        e = cudaMalloc((void **)&g->params, bytes);
        if (e == cudaSuccess) e = cudaMalloc((void **)&g->grads, bytes);
        if (e == cudaSuccess && d == 0) e = cudaMalloc((void **)&g->m, bytes);
        if (e == cudaSuccess && d == 0) e = cudaMalloc((void **)&g->v, bytes);
        if (e == cudaSuccess && d == 0) e = cudaMalloc((void **)&g->norm, (NORM_BLOCKS + 1) * sizeof(double));
        if (e != cudaSuccess) {
            snprintf(err, err ? errlen : 0, "cuda: cannot allocate %zu parameters on GPU %d: %s", m->num_params, d,
                     cudaGetErrorString(e));
            cudaGetLastError();
            cuda_destroy(m);
            return NULL;
        }
        point_tensors(&g->p, g->params, m->sizes);
        point_tensors(&g->g, g->grads, m->sizes);
    }
    cuda_upload(m);
#ifdef TC_NCCL
    if (m->ngpu > 1) {
        ncclComm_t comms[MAX_GPUS];
        int devs[MAX_GPUS];
        for (int d = 0; d < m->ngpu; d++) devs[d] = d;
        NCCL_CHECK(ncclCommInitAll(comms, m->ngpu, devs));
        for (int d = 0; d < m->ngpu; d++) m->g[d].comm = comms[d];
    }
#endif
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    snprintf(m->device, sizeof m->device, "cuda: %d x %s (sm_%d%d), %s matmuls, float32 weights", m->ngpu, prop.name,
             prop.major, prop.minor, precision);
    return m;
}

static void *cuda_create_tf32(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads, char *err,
                              size_t errlen) {
    (void)threads;
    return create(n_layer, n_embd, n_head, context, seed, CUBLAS_COMPUTE_32F_FAST_TF32, 0, "TF32", err, errlen);
}

static void *cuda_create_bf16(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads, char *err,
                              size_t errlen) {
    (void)threads;
    return create(n_layer, n_embd, n_head, context, seed, CUBLAS_COMPUTE_32F_FAST_TF32, 1, "bf16 linear-layer", err, errlen);
}

static void *cuda_create_fp32(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads, char *err,
                              size_t errlen) {
    (void)threads;
    return create(n_layer, n_embd, n_head, context, seed, CUBLAS_COMPUTE_32F, 0, "float32", err, errlen);
}

// Round up to 64 floats so every buffer starts 256-byte aligned, as cuBLAS likes.
static size_t padded(size_t n) { return (n + 63) & ~(size_t)63; }

// (Re)allocates activations and scratch for a B x T batch; a no-op when the shape is unchanged.
// The batch's sequences are split evenly over the largest number of GPUs that divides B.
static int ensure_activations(cuda_model *m, int B, int T) {
    if (m->g[0].act_mem && m->B == B && m->T == T) return 0;
    for (int d = 0; d < m->ngpu; d++) free_activations(&m->g[d]);
    free(m->h_logits);
    free(m->h_probs);
    m->h_logits = m->h_probs = NULL;
    int active = m->ngpu;
    while (B % active != 0) active--;
    int rows = B / active;
    size_t L = (size_t)m->L, C = (size_t)m->C, N = (size_t)rows * T, V = TC_VOCAB, NH = (size_t)m->NH;
    size_t sq = (size_t)rows * NH * T * T;
    size_t sizes[] = {
        N * C,                                    // encoded
        L * N * C, L * N, L * N,                  // ln1
        L * 3 * N * C, L * sq, L * N * C,         // qkvh, att, atty
        L * N * C,                                // residual2
        L * N * C, L * N, L * N,                  // ln2
        L * N * 4 * C, L * N * 4 * C,             // fch, fch_gelu
        L * N * C,                                // residual3
        N * C, N, N,                              // lnf
        N * V, N * V, N * V, N,                   // logits, probs, dlogits, losses
        N * 3 * C, N * C, 3 * N * C, sq,          // qkv, yh, dqkvh, datt
        N * C, N * C, N * 4 * C,                  // dres, dnc, d4c
        column_partials_rows(N) * 4 * C};         // column-sum partials (widest: 4C columns)
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += padded(sizes[i]);
    for (int d = 0; d < active; d++) {
        gpu *g = &m->g[d];
        CUDA_CHECK(cudaSetDevice(g->id));
        cudaError_t e = cudaMalloc((void **)&g->act_mem, total * sizeof(float));
        if (e == cudaSuccess) e = cudaMalloc((void **)&g->inputs, N);
        if (e == cudaSuccess) e = cudaMalloc((void **)&g->targets, N);
        if (e == cudaSuccess) e = cudaMalloc((void **)&g->tok_offsets, (V + 1) * sizeof(int));
        if (e == cudaSuccess) e = cudaMalloc((void **)&g->tok_positions, N * sizeof(int));
        if (e == cudaSuccess) e = cudaMallocHost((void **)&g->h_inputs, N);
        if (e == cudaSuccess) e = cudaMallocHost((void **)&g->h_targets, N);
        if (e == cudaSuccess) e = cudaMallocHost((void **)&g->h_tok_offsets, (V + 1) * sizeof(int));
        if (e == cudaSuccess) e = cudaMallocHost((void **)&g->h_tok_positions, N * sizeof(int));
        if (e == cudaSuccess) e = cudaMallocHost((void **)&g->h_losses, N * sizeof(float));
        // bf16 operand scratch: the largest operand of a linear layer or the classifier.
        size_t n16 = std::max({N * 4 * C, N * V, 4 * C * C, V * C});
        if (e == cudaSuccess && m->bf16) e = cudaMalloc((void **)&g->blas.s16a, n16 * sizeof(__nv_bfloat16));
        if (e == cudaSuccess && m->bf16) e = cudaMalloc((void **)&g->blas.s16b, n16 * sizeof(__nv_bfloat16));
        // the forward's bf16 copies of the linear inputs: 3 [L, N, C] blocks and one [L, N, 4C]
        if (e == cudaSuccess && m->bf16) e = cudaMalloc((void **)&g->a.ln1_16, L * N * 7 * C * sizeof(__nv_bfloat16));
        if (e == cudaSuccess && m->bf16) {
            g->a.atty_16 = g->a.ln1_16 + L * N * C;
            g->a.ln2_16 = g->a.atty_16 + L * N * C;
            g->a.fchg_16 = g->a.ln2_16 + L * N * C;
        }
        if (e != cudaSuccess) {
            fprintf(stderr, "stratum-trainer-cuda: cannot allocate activations for batch %d x %d on GPU %d: %s\n", B,
                    T, d, cudaGetErrorString(e));
            cudaGetLastError();
            for (int k = 0; k <= d; k++) free_activations(&m->g[k]);
            return -1;
        }
        float **ptrs[] = {&g->a.encoded, &g->a.ln1, &g->a.ln1_mean, &g->a.ln1_rstd, &g->a.qkvh, &g->a.att,
                          &g->a.atty, &g->a.residual2, &g->a.ln2, &g->a.ln2_mean, &g->a.ln2_rstd, &g->a.fch,
                          &g->a.fch_gelu, &g->a.residual3, &g->a.lnf, &g->a.lnf_mean, &g->a.lnf_rstd, &g->a.logits,
                          &g->a.probs, &g->a.dlogits, &g->a.losses, &g->qkv, &g->yh, &g->dqkvh, &g->datt,
                          &g->dres, &g->dnc, &g->d4c, &g->partials};
        static_assert(sizeof ptrs / sizeof ptrs[0] == sizeof sizes / sizeof sizes[0], "one pointer per buffer");
        float *p = g->act_mem;
        for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
            *ptrs[i] = p;
            p += padded(sizes[i]);
        }
    }
    m->h_logits = (float *)malloc((size_t)B * T * V * sizeof(float));
    m->h_probs = (float *)malloc((size_t)B * T * V * sizeof(float));
    if (!m->h_logits || !m->h_probs) return -1;
    m->B = B;
    m->T = T;
    m->rows = rows;
    m->active = active;
    return 0;
}

// ------------------------------------------------------------------------------------------
// Forward

// Layer l's slice of a bf16 copy, or NULL when the backend keeps none.
static __nv_bfloat16 *kept16(__nv_bfloat16 *base, size_t offset) { return base ? base + offset : NULL; }

// The forward pass of one GPU over its `rows` sequences; everything is queued on its stream.
static void forward_on(cuda_model *m, gpu *g, const uint8_t *inputs, const uint8_t *targets, float inv_total) {
    int L = m->L, C = m->C, NH = m->NH, B = m->rows, T = m->T, N = B * T, V = TC_VOCAB;
    size_t NC = (size_t)N * C, sq = (size_t)B * NH * T * T;
    cudaStream_t s = g->stream;
    const Blas &blas = g->blas;
    activations *a = &g->a;
    tensors *p = &g->p;
    CUDA_CHECK(cudaSetDevice(g->id));

    // Inputs through pinned memory, plus the rows of each byte value (a counting sort) that
    // the embedding gradient walks in the backward pass.
    memcpy(g->h_inputs, inputs, (size_t)N);
    int *off = g->h_tok_offsets;
    memset(off, 0, (V + 1) * sizeof(int));
    for (int n = 0; n < N; n++) off[inputs[n] + 1]++;
    for (int v = 0; v < V; v++) off[v + 1] += off[v];
    int fill[TC_VOCAB];
    memcpy(fill, off, sizeof fill);
    for (int n = 0; n < N; n++) g->h_tok_positions[fill[inputs[n]]++] = n;
    CUDA_CHECK(cudaMemcpyAsync(g->inputs, g->h_inputs, (size_t)N, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(g->tok_offsets, off, (V + 1) * sizeof(int), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(g->tok_positions, g->h_tok_positions, N * sizeof(int), cudaMemcpyHostToDevice, s));
    if (targets) {
        memcpy(g->h_targets, targets, (size_t)N);
        CUDA_CHECK(cudaMemcpyAsync(g->targets, g->h_targets, (size_t)N, cudaMemcpyHostToDevice, s));
    }

    encoder_forward(a->encoded, g->inputs, p->wte, p->wpe, B, T, C, s);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * NC;
        float *ln1 = a->ln1 + l * NC, *qkvh = a->qkvh + 3 * l * NC, *att = a->att + l * sq, *atty = a->atty + l * NC;
        float *res2 = a->residual2 + l * NC, *ln2 = a->ln2 + l * NC;
        float *fch = a->fch + 4 * l * NC, *fchg = a->fch_gelu + 4 * l * NC, *res3 = a->residual3 + l * NC;
        size_t lc = (size_t)l * C;

        layernorm_forward(ln1, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, residual, p->ln1w + lc,
                          p->ln1b + lc, N, C, s);
        matmul_forward(blas, g->qkv, ln1, p->qkvw + 3 * lc * C, p->qkvb + 3 * lc, NULL, N, C, 3 * C, s,
                       kept16(a->ln1_16, l * NC));
        attention_forward(blas, atty, qkvh, att, g->yh, g->qkv, B, T, C, NH, s);
        matmul_forward(blas, res2, atty, p->attprojw + lc * C, p->attprojb + lc, residual, N, C, C, s,
                       kept16(a->atty_16, l * NC));

        layernorm_forward(ln2, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, res2, p->ln2w + lc,
                          p->ln2b + lc, N, C, s);
        matmul_forward(blas, fch, ln2, p->fcw + 4 * lc * C, p->fcb + 4 * lc, NULL, N, C, 4 * C, s,
                       kept16(a->ln2_16, l * NC));
        gelu_forward(fchg, fch, 4 * NC, s);
        matmul_forward(blas, res3, fchg, p->fcprojw + 4 * lc * C, p->fcprojb + lc, res2, N, 4 * C, C, s,
                       kept16(a->fchg_16, 4 * l * NC));
    }
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->residual3 + (L - 1) * NC, p->lnfw, p->lnfb, N, C, s);
    // logits = lnf @ wte^T (wte is [V, C], so it is the transposed operand)
    gemm_linear(blas, false, true, N, V, C, a->lnf, C, (size_t)N * C, p->wte, C, (size_t)V * C, 0.0f, a->logits, V, s);
    softmax_cross_entropy(a->probs, a->losses, a->dlogits, a->logits, targets ? g->targets : NULL, N, inv_total, s);
    if (targets) CUDA_CHECK(cudaMemcpyAsync(g->h_losses, a->losses, N * sizeof(float), cudaMemcpyDeviceToHost, s));
}

static float cuda_forward(void *impl, const uint8_t *inputs, const uint8_t *targets, int B, int T) {
    cuda_model *m = (cuda_model *)impl;
    if (T > m->maxT || B < 1 || T < 1 || ensure_activations(m, B, T) != 0) return -1.0f;
    size_t per_gpu = (size_t)m->rows * T;
    float inv_total = 1.0f / (float)((size_t)B * T);
    m->has_targets = targets != NULL;
    // Queue every GPU's work before waiting on any of them.
    for (int d = 0; d < m->active; d++)
        forward_on(m, &m->g[d], inputs + d * per_gpu, targets ? targets + d * per_gpu : NULL, inv_total);
    double loss = 0.0;
    for (int d = 0; d < m->active; d++) {
        CUDA_CHECK(cudaSetDevice(m->g[d].id));
        CUDA_CHECK(cudaStreamSynchronize(m->g[d].stream));
        // The mean in double over rows in order, as the CPU backend sums it.
        if (targets)
            for (size_t n = 0; n < per_gpu; n++) loss += m->g[d].h_losses[n];
    }
    return targets ? (float)(loss / (double)((size_t)B * T)) : -1.0f;
}

// ------------------------------------------------------------------------------------------
// Backward: the forward pass read in reverse.

static void backward_on(cuda_model *m, gpu *g) {
    int L = m->L, C = m->C, NH = m->NH, B = m->rows, T = m->T, N = B * T, V = TC_VOCAB;
    size_t NC = (size_t)N * C, sq = (size_t)B * NH * T * T;
    cudaStream_t s = g->stream;
    const Blas &blas = g->blas;
    activations *a = &g->a;
    tensors *p = &g->p, *gr = &g->g;
    CUDA_CHECK(cudaSetDevice(g->id));

    // dlogits came out of the forward's fused softmax + cross-entropy.
    // logits = lnf @ wte^T: dlnf = dlogits @ wte, dwte += dlogits^T @ lnf
    float *dlnf = g->dnc;
    gemm_linear(blas, false, false, N, C, V, a->dlogits, V, (size_t)N * V, p->wte, C, (size_t)V * C, 0.0f, dlnf, C, s);
    gemm_linear(blas, true, false, V, C, N, a->dlogits, V, (size_t)N * V, a->lnf, C, (size_t)N * C, 1.0f, gr->wte, C, s);

    CUDA_CHECK(cudaMemsetAsync(g->dres, 0, NC * sizeof(float), s));
    layernorm_backward(g->dres, gr->lnfw, gr->lnfb, dlnf, a->residual3 + (L - 1) * NC, p->lnfw, a->lnf_mean,
                       a->lnf_rstd, g->partials, N, C, s);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * NC;
        float *ln1 = a->ln1 + l * NC, *qkvh = a->qkvh + 3 * l * NC, *att = a->att + l * sq, *atty = a->atty + l * NC;
        float *res2 = a->residual2 + l * NC, *ln2 = a->ln2 + l * NC;
        float *fch = a->fch + 4 * l * NC, *fchg = a->fch_gelu + 4 * l * NC;
        size_t lc = (size_t)l * C;

        // res3 = res2 + gelu(fch) @ fcprojw + fcprojb   (dres holds d res3, then d res2)
        matmul_backward(blas, g->d4c, gr->fcprojw + 4 * lc * C, gr->fcprojb + lc, g->dres, fchg,
                        p->fcprojw + 4 * lc * C, g->partials, N, 4 * C, C, s,
                        kept16(a->fchg_16, 4 * l * NC));
        gelu_backward(g->d4c, fch, 4 * NC, s);
        matmul_backward(blas, g->dnc, gr->fcw + 4 * lc * C, gr->fcb + 4 * lc, g->d4c, ln2, p->fcw + 4 * lc * C,
                        g->partials, N, C, 4 * C, s,
                        kept16(a->ln2_16, l * NC));
        layernorm_backward(g->dres, gr->ln2w + lc, gr->ln2b + lc, g->dnc, res2, p->ln2w + lc,
                           a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, g->partials, N, C, s);

        // res2 = residual + attention(ln1) @ attprojw + attprojb
        matmul_backward(blas, g->dnc, gr->attprojw + lc * C, gr->attprojb + lc, g->dres, atty, p->attprojw + lc * C,
                        g->partials, N, C, C, s,
                        kept16(a->atty_16, l * NC));
        float *dqkv = g->qkv;  // the forward's qkv scratch, free again
        attention_backward(blas, dqkv, g->dqkvh, g->datt, g->yh, g->dnc, qkvh, att, B, T, C, NH, s);
        float *dln1 = g->dnc;
        matmul_backward(blas, dln1, gr->qkvw + 3 * lc * C, gr->qkvb + 3 * lc, dqkv, ln1, p->qkvw + 3 * lc * C,
                        g->partials, N, C, 3 * C, s,
                        kept16(a->ln1_16, l * NC));
        layernorm_backward(g->dres, gr->ln1w + lc, gr->ln1b + lc, dln1, residual, p->ln1w + lc,
                           a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, g->partials, N, C, s);
    }
    encoder_backward(gr->wte, gr->wpe, g->dres, g->tok_offsets, g->tok_positions, B, T, C, s);
}

// Sums every GPU's gradients onto GPU 0 and zeroes the others, so GPU 0 always holds the whole
// accumulated gradient (a second backward without zero_grad adds correctly).
static void reduce_gradients(cuda_model *m) {
#ifdef TC_NCCL
    if (m->ngpu < 2) return;
    NCCL_CHECK(ncclGroupStart());
    for (int d = 0; d < m->ngpu; d++) {
        gpu *g = &m->g[d];
        NCCL_CHECK(ncclReduce(g->grads, g->grads, m->num_params, ncclFloat, ncclSum, 0, g->comm, g->stream));
    }
    NCCL_CHECK(ncclGroupEnd());
    for (int d = 1; d < m->ngpu; d++) {
        CUDA_CHECK(cudaSetDevice(m->g[d].id));
        CUDA_CHECK(cudaMemsetAsync(m->g[d].grads, 0, m->num_params * sizeof(float), m->g[d].stream));
    }
#else
    (void)m;
#endif
}

static void cuda_backward(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    if (!m->has_targets) return;  // nothing to differentiate: the last forward had no targets
    for (int d = 0; d < m->active; d++) backward_on(m, &m->g[d]);
    reduce_gradients(m);
}

static void cuda_zero_grad(void *impl) {
    cuda_model *m = (cuda_model *)impl;
    for (int d = 0; d < m->ngpu; d++) {
        CUDA_CHECK(cudaSetDevice(m->g[d].id));
        CUDA_CHECK(cudaMemsetAsync(m->g[d].grads, 0, m->num_params * sizeof(float), m->g[d].stream));
    }
}

// ------------------------------------------------------------------------------------------
// Update (on GPU 0, then the weights go to every replica)

static float cuda_clip_grad(void *impl, float max_norm) {
    cuda_model *m = (cuda_model *)impl;
    gpu *g = &m->g[0];
    CUDA_CHECK(cudaSetDevice(g->id));
    grad_sumsq(g->norm + NORM_BLOCKS, g->norm, g->grads, m->num_params, g->stream);
    double ss = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&ss, g->norm + NORM_BLOCKS, sizeof ss, cudaMemcpyDeviceToHost, g->stream));
    CUDA_CHECK(cudaStreamSynchronize(g->stream));
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) scale(g->grads, m->num_params, max_norm / norm, g->stream);
    return norm;
}

static void cuda_update(void *impl, float lr, float beta1, float beta2, float eps, float weight_decay, long t) {
    cuda_model *m = (cuda_model *)impl;
    gpu *g = &m->g[0];
    CUDA_CHECK(cudaSetDevice(g->id));
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    size_t off = 0;
    for (int k = 0; k < TC_P_COUNT; k++) {
        float wd = tc_param_decays(k) ? weight_decay : 0.0f;
        adamw(g->params + off, g->m + off, g->v + off, g->grads + off, m->sizes[k], lr, beta1, beta2, bc1, bc2, eps,
              wd, g->stream);
        off += m->sizes[k];
    }
#ifdef TC_NCCL
    if (m->ngpu > 1) {
        NCCL_CHECK(ncclGroupStart());
        for (int d = 0; d < m->ngpu; d++)
            NCCL_CHECK(ncclBroadcast(m->g[0].params, m->g[d].params, m->num_params, ncclFloat, 0, m->g[d].comm,
                                     m->g[d].stream));
        NCCL_CHECK(ncclGroupEnd());
    }
#endif
}

// Positional: C++ (before C++20) has no designated initialisers. Order as in trainer.h.
extern "C" const tc_model_backend tc_cuda_backend = {
    "cuda",           cuda_create_tf32, cuda_destroy,    cuda_forward, cuda_zero_grad, cuda_backward, cuda_clip_grad,
    cuda_update,      cuda_host_state,  cuda_download,   cuda_upload,  cuda_logits,    cuda_probs,    cuda_device,
};

extern "C" const tc_model_backend tc_cuda_bf16_backend = {
    "cuda-bf16",      cuda_create_bf16, cuda_destroy,    cuda_forward, cuda_zero_grad, cuda_backward, cuda_clip_grad,
    cuda_update,      cuda_host_state,  cuda_download,   cuda_upload,  cuda_logits,    cuda_probs,    cuda_device,
};

extern "C" const tc_model_backend tc_cuda_fp32_backend = {
    "cuda-fp32",      cuda_create_fp32, cuda_destroy,    cuda_forward, cuda_zero_grad, cuda_backward, cuda_clip_grad,
    cuda_update,      cuda_host_state,  cuda_download,   cuda_upload,  cuda_logits,    cuda_probs,    cuda_device,
};
