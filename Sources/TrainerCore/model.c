// The CPU model backend: a decoder-only GPT over bytes in plain C on a thread pool.
//
//   x   = wte[token] + wpe[position]
//   per layer:  x = x + proj(attention(LN1(x)));  x = x + fcproj(gelu(fc(LN2(x))))
//   logits = LNf(x) @ wte^T          (output projection tied to the token embedding)
//
// Weights are stored input-major, W[C_in, C_out], so a forward matmul is out = in @ W.
// Every buffer is a plain float array carved out of one allocation; the forward pass keeps
// exactly the activations the backward pass reads. The parameter layout and initialisation
// are shared with every other backend (model_layout.h); callers reach this file through the
// tc_model handle (backend.c) and the tc_cpu_backend table at the bottom.
#include "internal.h"
#include "model_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b;
    float *fcw, *fcb, *fcprojw, *fcprojb, *lnfw, *lnfb;
} params;

typedef struct {
    float *encoded;                   // [N, C]
    float *ln1, *ln1_mean, *ln1_rstd; // [L, N, C], [L, N], [L, N]
    float *qkv;                       // [L, N, 3C]
    float *atty;                      // [L, N, C]
    float *att;                       // [L, B, NH, T, T]
    float *residual2;                 // [L, N, C]
    float *ln2, *ln2_mean, *ln2_rstd; // [L, N, C], [L, N], [L, N]
    float *fch, *fch_gelu;            // [L, N, 4C]
    float *residual3;                 // [L, N, C]
    float *lnf, *lnf_mean, *lnf_rstd; // [N, C], [N], [N]
    float *logits, *probs;            // [N, V], [N, V]
} activations;

typedef struct {
    int L, C, NH, maxT;
    size_t sizes[TC_P_COUNT];
    size_t num_params;
    float *mem;                  // params | grads | adam m | adam v
    params p, g;
    float *m, *v;
    // activations for the current (B, T)
    int B, T;
    float *act_mem;
    activations a;
    // backward scratch
    float *dres, *dnc, *d4c, *dqkv, *dlogits, *scratch_w, *ln_partials;
    float *attn_scratch;            // per thread: [hs, T] + [T, T]
    size_t attn_scratch_per_thread;
    uint8_t *inputs, *targets;
    float loss;
    tc_pool *pool;
    char device[64];
} cpu_model;

static void point_params(params *p, float *base, const size_t *sizes) {
    float **ptrs[TC_P_COUNT] = {&p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb, &p->attprojw, &p->attprojb,
                             &p->ln2w, &p->ln2b, &p->fcw, &p->fcb, &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb};
    for (int i = 0; i < TC_P_COUNT; i++) {
        *ptrs[i] = base;
        base += sizes[i];
    }
}

static void *cpu_create(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads, char *err,
                        size_t errlen) {
    cpu_model *m = calloc(1, sizeof *m);
    if (!m) {
        tc_fail(err, errlen, "model: cannot allocate %d layers x %d wide", n_layer, n_embd);
        return NULL;
    }
    m->L = n_layer;
    m->C = n_embd;
    m->NH = n_head;
    m->maxT = context;
    m->num_params = tc_param_sizes(n_layer, n_embd, context, m->sizes);
    m->mem = calloc(4 * m->num_params, sizeof(float));
    if (!m->mem) {
        free(m);
        tc_fail(err, errlen, "model: cannot allocate %d layers x %d wide", n_layer, n_embd);
        return NULL;
    }
    point_params(&m->p, m->mem, m->sizes);
    point_params(&m->g, m->mem + m->num_params, m->sizes);
    m->m = m->mem + 2 * m->num_params;
    m->v = m->mem + 3 * m->num_params;
    tc_param_init(m->mem, m->sizes, n_layer, seed);
    m->pool = tc_pool_create(threads);
    snprintf(m->device, sizeof m->device, "cpu (%s), %d threads", tc_gemm_isa(), threads);
    return m;
}

static void cpu_destroy(void *impl) {
    cpu_model *m = impl;
    tc_pool_free(m->pool);
    free(m->act_mem);
    free(m->mem);
    free(m);
}

static float *cpu_host_state(void *impl) { return ((cpu_model *)impl)->mem; }
static const float *cpu_probs(void *impl) { return ((cpu_model *)impl)->a.probs; }
static const float *cpu_logits(void *impl) { return ((cpu_model *)impl)->a.logits; }
static const char *cpu_device(void *impl) { return ((cpu_model *)impl)->device; }

// (Re)allocates activations and scratch for B x T; a no-op when the shape is unchanged.
static int ensure_activations(cpu_model *m, int B, int T) {
    if (m->act_mem && m->B == B && m->T == T) return 0;
    free(m->act_mem);
    m->act_mem = NULL;
    size_t L = (size_t)m->L, C = (size_t)m->C, N = (size_t)B * T, V = TC_VOCAB, NH = (size_t)m->NH;
    size_t wmax = 4 * C * C > V * C ? 4 * C * C : V * C;
    size_t per_thread = (C / NH) * (size_t)T + (size_t)T * T;
    size_t threads = (size_t)tc_pool_threads(m->pool);
    size_t nparts = (N + 63) / 64;
    size_t sizes[] = {
        N * C,                                        // encoded
        L * N * C, L * N, L * N,                      // ln1
        L * N * 3 * C, L * N * C,                     // qkv, atty
        L * B * NH * T * T,                           // att
        L * N * C,                                    // residual2
        L * N * C, L * N, L * N,                      // ln2
        L * N * 4 * C, L * N * 4 * C,                 // fch, fch_gelu
        L * N * C,                                    // residual3
        N * C, N, N,                                  // lnf
        N * V, N * V,                                 // logits, probs
        N * C, N * C, N * 4 * C, N * 3 * C, N * V,    // dres, dnc, d4c, dqkv, dlogits
        wmax, nparts * 2 * C,                         // weight transposes, layernorm partial sums
        threads * per_thread,                         // attention scratch
        N, N};                                        // inputs, targets (as floats' worth of bytes)
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += sizes[i];
    float *mem = malloc(total * sizeof(float));
    if (!mem) return -1;
    m->act_mem = mem;
    m->B = B;
    m->T = T;
    m->attn_scratch_per_thread = per_thread;
    float **ptrs[] = {&m->a.encoded, &m->a.ln1, &m->a.ln1_mean, &m->a.ln1_rstd, &m->a.qkv, &m->a.atty, &m->a.att,
                      &m->a.residual2, &m->a.ln2, &m->a.ln2_mean, &m->a.ln2_rstd, &m->a.fch, &m->a.fch_gelu,
                      &m->a.residual3, &m->a.lnf, &m->a.lnf_mean, &m->a.lnf_rstd, &m->a.logits, &m->a.probs, &m->dres, &m->dnc,
                      &m->d4c, &m->dqkv, &m->dlogits, &m->scratch_w, &m->ln_partials, &m->attn_scratch};
    size_t n = sizeof ptrs / sizeof ptrs[0];
    float *p = mem;
    for (size_t i = 0; i < n; i++) {
        *ptrs[i] = p;
        p += sizes[i];
    }
    m->inputs = (uint8_t *)p;
    m->targets = (uint8_t *)(p + N);
    return 0;
}

// ------------------------------------------------------------------------------------------
// Building blocks. Row-parallel work goes through the pool in fixed chunks of rows.

#define ROW_CHUNK 64

TC_HOT static void transpose(const float *src, int rows, int cols, float *dst) {
    // dst[c, r] = src[r, c], in 32x32 blocks to keep both sides in cache.
    for (int r0 = 0; r0 < rows; r0 += 32)
        for (int c0 = 0; c0 < cols; c0 += 32) {
            int r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}

typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int N, C;
} ln_job;

TC_HOT static void layernorm_rows(void *arg, int item, int tid) {
    (void)tid;
    ln_job *j = arg;
    int C = j->C;
    int n1 = (item + 1) * ROW_CHUNK < j->N ? (item + 1) * ROW_CHUNK : j->N;
    for (int n = item * ROW_CHUNK; n < n1; n++) {
        const float *x = j->inp + (size_t)n * C;
        float mean = 0.0f;
        for (int i = 0; i < C; i++) mean += x[i];
        mean /= (float)C;
        float var = 0.0f;
        for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= (float)C;
        float rstd = 1.0f / sqrtf(var + 1e-5f);
        float *o = j->out + (size_t)n * C;
        for (int i = 0; i < C; i++) o[i] = (x[i] - mean) * rstd * j->w[i] + j->b[i];
        j->mean[n] = mean;
        j->rstd[n] = rstd;
    }
}

static void layernorm_forward(tc_pool *pool, float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int C) {
    ln_job j = {out, mean, rstd, inp, w, b, N, C};
    tc_pool_run(pool, (N + ROW_CHUNK - 1) / ROW_CHUNK, layernorm_rows, &j);
}

typedef struct {
    float *dinp, *partials;
    const float *dout, *inp, *w, *mean, *rstd;
    int N, C;
} lnb_job;

TC_HOT static void layernorm_backward_rows(void *arg, int item, int tid) {
    (void)tid;
    lnb_job *j = arg;
    int C = j->C;
    float *dw = j->partials + (size_t)item * 2 * C, *db = dw + C;
    memset(dw, 0, 2 * (size_t)C * sizeof(float));
    int n1 = (item + 1) * ROW_CHUNK < j->N ? (item + 1) * ROW_CHUNK : j->N;
    for (int n = item * ROW_CHUNK; n < n1; n++) {
        const float *dout = j->dout + (size_t)n * C, *x = j->inp + (size_t)n * C;
        float mean = j->mean[n], rstd = j->rstd[n];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mean) * rstd, dnorm = j->w[i] * dout[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= (float)C;
        dnorm_norm_mean /= (float)C;
        float *dx = j->dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mean) * rstd, dnorm = j->w[i] * dout[i];
            db[i] += dout[i];
            dw[i] += norm * dout[i];
            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd;
        }
    }
}

// dinp += ...; dw, db += ... (per-chunk partial sums added in chunk order: deterministic).
static void layernorm_backward(cpu_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int N, int C) {
    lnb_job j = {dinp, m->ln_partials, dout, inp, w, mean, rstd, N, C};
    int items = (N + ROW_CHUNK - 1) / ROW_CHUNK;
    tc_pool_run(m->pool, items, layernorm_backward_rows, &j);
    for (int it = 0; it < items; it++) {
        const float *pw = m->ln_partials + (size_t)it * 2 * C, *pb = pw + C;
        for (int i = 0; i < C; i++) {
            dw[i] += pw[i];
            db[i] += pb[i];
        }
    }
}

// out[N, OC] = (accumulate ? out : 0) + inp[N, Cin] @ W[Cin, OC] + b
TC_HOT static void matmul_forward(tc_pool *pool, float *out, const float *inp, const float *W, const float *b, int N, int Cin,
                           int OC, int accumulate) {
    if (!accumulate) memset(out, 0, (size_t)N * OC * sizeof(float));
    if (b)
        for (int n = 0; n < N; n++) {
            float *o = out + (size_t)n * OC;
            for (int i = 0; i < OC; i++) o[i] += b[i];
        }
    tc_gemm(pool, N, OC, Cin, inp, Cin, W, OC, out, OC);
}

// dinp = dout @ W^T (overwritten); dW += inp^T @ dout; db += column sums of dout.
TC_HOT static void matmul_backward(cpu_model *m, float *dinp, float *dW, float *db, const float *dout, const float *inp,
                            const float *W, int N, int Cin, int OC) {
    if (dinp) {
        memset(dinp, 0, (size_t)N * Cin * sizeof(float));
        transpose(W, Cin, OC, m->scratch_w);  // [OC, Cin]
        tc_gemm(m->pool, N, Cin, OC, dout, OC, m->scratch_w, Cin, dinp, Cin);
    }
    tc_gemm_tn(m->pool, Cin, OC, N, inp, Cin, dout, OC, dW, OC);
    if (db)
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * OC;
            for (int i = 0; i < OC; i++) db[i] += d[i];
        }
}

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

typedef struct {
    float *out;       // forward: gelu(x); backward: holds dout on entry, dx on exit
    const float *x;   // the pre-activation
    size_t n;
} ew_job;

#define EW_CHUNK 16384

TC_HOT static void gelu_forward_chunk(void *arg, int item, int tid) {
    (void)tid;
    ew_job *j = arg;
    size_t i0 = (size_t)item * EW_CHUNK, i1 = i0 + EW_CHUNK < j->n ? i0 + EW_CHUNK : j->n;
    float *out = j->out;
    const float *x = j->x;
    for (size_t i = i0; i < i1; i++) {
        float u = x[i];
        out[i] = 0.5f * u * (1.0f + tc_tanhf(GELU_SCALE * (u + 0.044715f * u * u * u)));
    }
}

TC_HOT static void gelu_backward_chunk(void *arg, int item, int tid) {
    (void)tid;
    ew_job *j = arg;
    size_t i0 = (size_t)item * EW_CHUNK, i1 = i0 + EW_CHUNK < j->n ? i0 + EW_CHUNK : j->n;
    for (size_t i = i0; i < i1; i++) {
        float x = j->x[i];
        float cube = 0.044715f * x * x * x;
        float th = tc_tanhf(GELU_SCALE * (x + cube));
        float sech2 = 1.0f - th * th;
        float local = 0.5f * (1.0f + th) + x * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        j->out[i] *= local;
    }
}

typedef struct {
    cpu_model *m;
    float *out, *att;
    const float *qkv;
    float *dqkv;
    const float *dout;
    int T;
} attn_job;

// Attention for one (batch, head) as matrix products on row blocks of ATT_BLOCK queries;
// a block of queries only needs keys up to its last row, so the causal half is skipped.
#define ATT_BLOCK 32

static void transpose_strided(const float *src, int rows, int cols, int ld, float *dst) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * rows + r] = src[(size_t)r * ld + c];
}

TC_HOT static void attention_forward_head(void *arg, int item, int tid) {
    attn_job *j = arg;
    cpu_model *m = j->m;
    int C = m->C, NH = m->NH, hs = C / NH, T = j->T, C3 = 3 * C;
    int b = item / NH, h = item % NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = j->qkv + (size_t)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
    float *att = j->att + ((size_t)b * NH + h) * T * T, *out = j->out + (size_t)b * T * C + h * hs;
    float *kt = m->attn_scratch + (size_t)tid * m->attn_scratch_per_thread;  // [hs, T]
    transpose_strided(k, T, hs, C3, kt);
    for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
        int rb = T - i0 < ATT_BLOCK ? T - i0 : ATT_BLOCK, i1 = i0 + rb;
        for (int i = i0; i < i1; i++) memset(att + (size_t)i * T, 0, (size_t)i1 * sizeof(float));
        tc_gemm_serial(0, rb, i1, hs, q + (size_t)i0 * C3, C3, kt, T, att + (size_t)i0 * T, T);
    }
    for (int i = 0; i < T; i++) {
        float *row = att + (size_t)i * T, maxv = -1e30f, sum = 0.0f;
        for (int t2 = 0; t2 <= i; t2++) {
            row[t2] *= scale;
            maxv = row[t2] > maxv ? row[t2] : maxv;
        }
        for (int t2 = 0; t2 <= i; t2++) {
            row[t2] = tc_expf(row[t2] - maxv);
            sum += row[t2];
        }
        float inv = 1.0f / sum;
        for (int t2 = 0; t2 <= i; t2++) row[t2] *= inv;
        for (int t2 = i + 1; t2 < T; t2++) row[t2] = 0.0f;
    }
    for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
        int rb = T - i0 < ATT_BLOCK ? T - i0 : ATT_BLOCK, i1 = i0 + rb;
        for (int i = i0; i < i1; i++) memset(out + (size_t)i * C, 0, (size_t)hs * sizeof(float));
        tc_gemm_serial(0, rb, hs, i1, att + (size_t)i0 * T, T, v, C3, out + (size_t)i0 * C, C);
    }
}

TC_HOT static void attention_backward_head(void *arg, int item, int tid) {
    attn_job *j = arg;
    cpu_model *m = j->m;
    int C = m->C, NH = m->NH, hs = C / NH, T = j->T, C3 = 3 * C;
    int b = item / NH, h = item % NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = j->qkv + (size_t)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
    const float *att = j->att + ((size_t)b * NH + h) * T * T, *dout = j->dout + (size_t)b * T * C + h * hs;
    float *dq = j->dqkv + (size_t)b * T * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * C;
    float *vt = m->attn_scratch + (size_t)tid * m->attn_scratch_per_thread;  // [hs, T]
    float *ds = vt + (size_t)hs * T;                                           // [T, T]
    transpose_strided(v, T, hs, C3, vt);
    // dP = dO V^T (causal rows only), then dS = P * (dP - rowsum(P * dP)) * scale, zero above the diagonal.
    for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
        int rb = T - i0 < ATT_BLOCK ? T - i0 : ATT_BLOCK, i1 = i0 + rb;
        for (int i = i0; i < i1; i++) memset(ds + (size_t)i * T, 0, (size_t)i1 * sizeof(float));
        tc_gemm_serial(0, rb, i1, hs, dout + (size_t)i0 * C, C, vt, T, ds + (size_t)i0 * T, T);
    }
    for (int i = 0; i < T; i++) {
        const float *p = att + (size_t)i * T;
        float *d = ds + (size_t)i * T, dot = 0.0f;
        for (int t2 = 0; t2 <= i; t2++) dot += p[t2] * d[t2];
        for (int t2 = 0; t2 <= i; t2++) d[t2] = p[t2] * (d[t2] - dot) * scale;
        for (int t2 = i + 1; t2 < T; t2++) d[t2] = 0.0f;
    }
    for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
        int rb = T - i0 < ATT_BLOCK ? T - i0 : ATT_BLOCK, i1 = i0 + rb;
        // dQ[i0:i1] = dS[i0:i1, :i1] K[:i1]
        tc_gemm_serial(0, rb, hs, i1, ds + (size_t)i0 * T, T, k, C3, dq + (size_t)i0 * C3, C3);
        // dK[i0:i1] = dS[i0:, i0:i1]^T Q[i0:];  dV[i0:i1] = P[i0:, i0:i1]^T dO[i0:]
        tc_gemm_serial(1, rb, hs, T - i0, ds + (size_t)i0 * T + i0, T, q + (size_t)i0 * C3, C3, dk + (size_t)i0 * C3, C3);
        tc_gemm_serial(1, rb, hs, T - i0, att + (size_t)i0 * T + i0, T, dout + (size_t)i0 * C, C, dv + (size_t)i0 * C3, C3);
    }
}

typedef struct {
    cpu_model *m;
    int N;
} softmax_job;

TC_HOT static void softmax_rows(void *arg, int item, int tid) {
    (void)tid;
    softmax_job *j = arg;
    cpu_model *m = j->m;
    int n1 = (item + 1) * ROW_CHUNK < j->N ? (item + 1) * ROW_CHUNK : j->N;
    for (int n = item * ROW_CHUNK; n < n1; n++) {
        const float *logit = m->a.logits + (size_t)n * TC_VOCAB;
        float *p = m->a.probs + (size_t)n * TC_VOCAB;
        float maxv = -1e30f;
        for (int i = 0; i < TC_VOCAB; i++)
            if (logit[i] > maxv) maxv = logit[i];
        float sum = 0.0f;
        for (int i = 0; i < TC_VOCAB; i++) {
            p[i] = tc_expf(logit[i] - maxv);
            sum += p[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < TC_VOCAB; i++) p[i] *= inv;
    }
}

// ------------------------------------------------------------------------------------------
// Forward

static float cpu_forward(void *impl, const uint8_t *inputs, const uint8_t *targets, int B, int T) {
    cpu_model *m = impl;
    if (T > m->maxT || B < 1 || T < 1 || ensure_activations(m, B, T) != 0) return -1.0f;
    int L = m->L, C = m->C, N = B * T, V = TC_VOCAB;
    activations *a = &m->a;
    params *p = &m->p;
    memcpy(m->inputs, inputs, (size_t)N);
    if (targets) memcpy(m->targets, targets, (size_t)N);

    for (int n = 0; n < N; n++) {
        const float *te = p->wte + (size_t)inputs[n] * C, *pe = p->wpe + (size_t)(n % T) * C;
        float *o = a->encoded + (size_t)n * C;
        for (int i = 0; i < C; i++) o[i] = te[i] + pe[i];
    }
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * N * C;
        float *ln1 = a->ln1 + (size_t)l * N * C, *qkv = a->qkv + (size_t)l * N * 3 * C;
        float *atty = a->atty + (size_t)l * N * C, *att = a->att + (size_t)l * B * m->NH * T * T;
        float *res2 = a->residual2 + (size_t)l * N * C, *ln2 = a->ln2 + (size_t)l * N * C;
        float *fch = a->fch + (size_t)l * N * 4 * C, *fchg = a->fch_gelu + (size_t)l * N * 4 * C;
        float *res3 = a->residual3 + (size_t)l * N * C;

        layernorm_forward(m->pool, ln1, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, residual,
                          p->ln1w + l * C, p->ln1b + l * C, N, C);
        matmul_forward(m->pool, qkv, ln1, p->qkvw + (size_t)l * C * 3 * C, p->qkvb + l * 3 * C, N, C, 3 * C, 0);
        attn_job aj = {m, atty, att, qkv, NULL, NULL, T};
        tc_pool_run(m->pool, B * m->NH, attention_forward_head, &aj);
        memcpy(res2, residual, (size_t)N * C * sizeof(float));
        matmul_forward(m->pool, res2, atty, p->attprojw + (size_t)l * C * C, p->attprojb + l * C, N, C, C, 1);

        layernorm_forward(m->pool, ln2, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, res2,
                          p->ln2w + l * C, p->ln2b + l * C, N, C);
        matmul_forward(m->pool, fch, ln2, p->fcw + (size_t)l * C * 4 * C, p->fcb + l * 4 * C, N, C, 4 * C, 0);
        ew_job gj = {fchg, fch, (size_t)N * 4 * C};
        tc_pool_run(m->pool, (int)((gj.n + EW_CHUNK - 1) / EW_CHUNK), gelu_forward_chunk, &gj);
        memcpy(res3, res2, (size_t)N * C * sizeof(float));
        matmul_forward(m->pool, res3, fchg, p->fcprojw + (size_t)l * 4 * C * C, p->fcprojb + l * C, N, 4 * C, C, 1);
    }
    const float *last = a->residual3 + (size_t)(L - 1) * N * C;
    layernorm_forward(m->pool, a->lnf, a->lnf_mean, a->lnf_rstd, last, p->lnfw, p->lnfb, N, C);
    // logits = lnf @ wte^T, then softmaxed into probs.
    transpose(p->wte, V, C, m->scratch_w);  // [C, V]
    matmul_forward(m->pool, a->logits, a->lnf, m->scratch_w, NULL, N, C, V, 0);
    softmax_job sj = {m, N};
    tc_pool_run(m->pool, (N + ROW_CHUNK - 1) / ROW_CHUNK, softmax_rows, &sj);

    if (!targets) {
        m->loss = -1.0f;
        return -1.0f;
    }
    double loss = 0.0;
    for (int n = 0; n < N; n++) loss -= log((double)a->probs[(size_t)n * V + targets[n]] + 1e-30);
    m->loss = (float)(loss / N);
    return m->loss;
}

static void cpu_zero_grad(void *impl) {
    cpu_model *m = impl;
    memset(m->mem + m->num_params, 0, m->num_params * sizeof(float));
}

// ------------------------------------------------------------------------------------------
// Backward: the forward pass read in reverse.

static void cpu_backward(void *impl) {
    cpu_model *m = impl;
    int L = m->L, C = m->C, B = m->B, T = m->T, N = B * T, V = TC_VOCAB;
    activations *a = &m->a;
    params *p = &m->p, *g = &m->g;

    // d(mean cross-entropy)/d(logits) = (probs - onehot) / N
    float invN = 1.0f / (float)N;
    for (int n = 0; n < N; n++) {
        const float *pr = a->probs + (size_t)n * V;
        float *d = m->dlogits + (size_t)n * V;
        for (int i = 0; i < V; i++) d[i] = pr[i] * invN;
        d[m->targets[n]] -= invN;
    }
    // logits = lnf @ wte^T: dlnf = dlogits @ wte, dwte += dlogits^T @ lnf
    float *dlnf = m->dnc;
    memset(dlnf, 0, (size_t)N * C * sizeof(float));
    tc_gemm(m->pool, N, C, V, m->dlogits, V, p->wte, C, dlnf, C);
    tc_gemm_tn(m->pool, V, C, N, m->dlogits, V, a->lnf, C, g->wte, C);

    memset(m->dres, 0, (size_t)N * C * sizeof(float));
    layernorm_backward(m, m->dres, g->lnfw, g->lnfb, dlnf, a->residual3 + (size_t)(L - 1) * N * C, p->lnfw, a->lnf_mean,
                       a->lnf_rstd, N, C);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * N * C;
        float *ln1 = a->ln1 + (size_t)l * N * C, *qkv = a->qkv + (size_t)l * N * 3 * C;
        float *atty = a->atty + (size_t)l * N * C, *att = a->att + (size_t)l * B * m->NH * T * T;
        float *res2 = a->residual2 + (size_t)l * N * C, *ln2 = a->ln2 + (size_t)l * N * C;
        float *fch = a->fch + (size_t)l * N * 4 * C, *fchg = a->fch_gelu + (size_t)l * N * 4 * C;

        // res3 = res2 + gelu(fch) @ fcprojw + fcprojb   (dres holds d res3, then d res2)
        matmul_backward(m, m->d4c, g->fcprojw + (size_t)l * 4 * C * C, g->fcprojb + l * C, m->dres, fchg,
                        p->fcprojw + (size_t)l * 4 * C * C, N, 4 * C, C);
        ew_job gj = {m->d4c, fch, (size_t)N * 4 * C};
        tc_pool_run(m->pool, (int)((gj.n + EW_CHUNK - 1) / EW_CHUNK), gelu_backward_chunk, &gj);
        matmul_backward(m, m->dnc, g->fcw + (size_t)l * C * 4 * C, g->fcb + l * 4 * C, m->d4c, ln2,
                        p->fcw + (size_t)l * C * 4 * C, N, C, 4 * C);
        layernorm_backward(m, m->dres, g->ln2w + l * C, g->ln2b + l * C, m->dnc, res2, p->ln2w + l * C,
                           a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, N, C);

        // res2 = residual + attention(ln1) @ attprojw + attprojb
        matmul_backward(m, m->dnc, g->attprojw + (size_t)l * C * C, g->attprojb + l * C, m->dres, atty,
                        p->attprojw + (size_t)l * C * C, N, C, C);
        memset(m->dqkv, 0, (size_t)N * 3 * C * sizeof(float));
        attn_job aj = {m, NULL, att, qkv, m->dqkv, m->dnc, T};
        tc_pool_run(m->pool, B * m->NH, attention_backward_head, &aj);
        float *dln1 = m->dnc;
        matmul_backward(m, dln1, g->qkvw + (size_t)l * C * 3 * C, g->qkvb + l * 3 * C, m->dqkv, ln1,
                        p->qkvw + (size_t)l * C * 3 * C, N, C, 3 * C);
        layernorm_backward(m, m->dres, g->ln1w + l * C, g->ln1b + l * C, dln1, residual, p->ln1w + l * C,
                           a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, N, C);
    }
    for (int n = 0; n < N; n++) {
        const float *d = m->dres + (size_t)n * C;
        float *dte = g->wte + (size_t)m->inputs[n] * C, *dpe = g->wpe + (size_t)(n % T) * C;
        for (int i = 0; i < C; i++) {
            dte[i] += d[i];
            dpe[i] += d[i];
        }
    }
}

// ------------------------------------------------------------------------------------------
// Update

static float cpu_clip_grad(void *impl, float max_norm) {
    cpu_model *m = impl;
    const float *g = m->mem + m->num_params;
    double ss = 0.0;
    for (size_t i = 0; i < m->num_params; i++) ss += (double)g[i] * g[i];
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        float s = max_norm / norm;
        float *gw = m->mem + m->num_params;
        for (size_t i = 0; i < m->num_params; i++) gw[i] *= s;
    }
    return norm;
}

TC_HOT static void cpu_update(void *impl, float lr, float beta1, float beta2, float eps, float weight_decay, long t) {
    cpu_model *m = impl;
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    float *param = m->mem, *grad = m->mem + m->num_params;
    size_t off = 0;
    for (int k = 0; k < TC_P_COUNT; k++) {
        float wd = tc_param_decays(k) ? weight_decay : 0.0f;
        for (size_t i = off; i < off + m->sizes[k]; i++) {
            float gi = grad[i];
            float mi = beta1 * m->m[i] + (1.0f - beta1) * gi;
            float vi = beta2 * m->v[i] + (1.0f - beta2) * gi * gi;
            m->m[i] = mi;
            m->v[i] = vi;
            float mhat = mi / bc1, vhat = vi / bc2;
            param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * param[i]);
        }
        off += m->sizes[k];
    }
}

const tc_model_backend tc_cpu_backend = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .forward = cpu_forward,
    .zero_grad = cpu_zero_grad,
    .backward = cpu_backward,
    .clip_grad = cpu_clip_grad,
    .update = cpu_update,
    .host_state = cpu_host_state,
    .download = NULL,  // the host arrays are the state
    .upload = NULL,
    .logits = cpu_logits,
    .probs = cpu_probs,
    .device = cpu_device,
};
