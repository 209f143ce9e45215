// The one matrix multiply every layer uses: C[M,N] += op(A) * B[K,N] (row-major), where
// op(A) is A[M,K] or, transposed, A[K,M] read column-wise (so dW = X^T dY needs no copy).
//
// A register tile of MR rows x NR columns of C stays in vector registers while k runs over
// a cache-sized block of K; B rows are read contiguously, A entries are broadcast. The same
// portable C body is compiled for AVX-512, AVX2+FMA and baseline, and the best one the CPU
// supports is picked once at run time. Every element of C accumulates over k in the same
// order whatever the thread count, so results are bit-identical across runs.
#include "internal.h"

#include <string.h>

#ifndef MR
#define MR 8
#endif
#ifndef NR
#define NR 32
#endif
#define KC 256
#define ROWS_PER_ITEM 16

static inline __attribute__((always_inline)) void tile_full(int kc, const float *A, int lda, const float *B,
                                                            int ldb, float *C, int ldc) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = C[i * ldc + j];
    for (int k = 0; k < kc; k++) {
        const float *b = B + (size_t)k * ldb;
        for (int i = 0; i < MR; i++) {
            float a = A[i * lda + k];
            for (int j = 0; j < NR; j++) acc[i][j] += a * b[j];
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) C[i * ldc + j] = acc[i][j];
}

// Any tile smaller than MR x NR (edges): same accumulation order per element.
static inline __attribute__((always_inline)) void tile_edge(int mr, int nr, int kc, const float *A, int lda,
                                                            const float *B, int ldb, float *C, int ldc) {
    for (int i = 0; i < mr; i++) {
        float acc[NR];
        for (int j = 0; j < nr; j++) acc[j] = C[i * ldc + j];
        for (int k = 0; k < kc; k++) {
            float a = A[i * lda + k];
            const float *b = B + (size_t)k * ldb;
            for (int j = 0; j < nr; j++) acc[j] += a * b[j];
        }
        for (int j = 0; j < nr; j++) C[i * ldc + j] = acc[j];
    }
}

static inline __attribute__((always_inline)) void gemm_rows(int ta, int M, int N, int K, const float *A, int lda,
                                                            const float *B, int ldb, float *C, int ldc) {
    // The A strip is copied to a small contiguous buffer (transposing it for A^T): the
    // kernel then reads MR short rows that stay in L1 whatever A's leading dimension.
    float apack[MR * KC];
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int i0 = 0; i0 < M; i0 += MR) {
            int mr = M - i0 < MR ? M - i0 : MR;
            const float *a = A + (size_t)i0 * lda + k0;
            int alda = lda;
            if (ta) {
                const float *src = A + (size_t)k0 * lda + i0;
                for (int k = 0; k < kc; k++)
                    for (int i = 0; i < mr; i++) apack[i * KC + k] = src[(size_t)k * lda + i];
            } else {
                for (int i = 0; i < mr; i++) memcpy(apack + i * KC, a + (size_t)i * lda, (size_t)kc * sizeof(float));
            }
            a = apack;
            alda = KC;
            // Keep the stride a run-time value: a constant one steers the vectoriser into gathers.
            __asm__("" : "+r"(alda));
            for (int j0 = 0; j0 < N; j0 += NR) {
                int nr = N - j0 < NR ? N - j0 : NR;
                const float *b = B + (size_t)k0 * ldb + j0;
                float *c = C + (size_t)i0 * ldc + j0;
                if (mr == MR && nr == NR)
                    tile_full(kc, a, alda, b, ldb, c, ldc);
                else
                    tile_edge(mr, nr, kc, a, alda, b, ldb, c, ldc);
            }
        }
    }
}

typedef void (*gemm_fn)(int, int, int, int, const float *, int, const float *, int, float *, int);

#if defined(__x86_64__) && !defined(TC_NO_DISPATCH)
// clang otherwise keeps AVX-512 code at 256-bit vectors (and half the registers).
#if defined(__clang__)
#define WIDE_VECTORS __attribute__((min_vector_width(512)))
#else
#define WIDE_VECTORS
#endif
// Each wrapper instantiates both A layouts with the transpose flag as a constant.
WIDE_VECTORS __attribute__((target("avx512f,avx512vl,avx2,fma"))) static void gemm_avx512(int ta, int M, int N, int K, const float *A,
                                                                             int lda, const float *B, int ldb, float *C,
                                                                             int ldc) {
    if (ta)
        gemm_rows(1, M, N, K, A, lda, B, ldb, C, ldc);
    else
        gemm_rows(0, M, N, K, A, lda, B, ldb, C, ldc);
}
__attribute__((target("avx2,fma"))) static void gemm_avx2(int ta, int M, int N, int K, const float *A, int lda,
                                                          const float *B, int ldb, float *C, int ldc) {
    if (ta)
        gemm_rows(1, M, N, K, A, lda, B, ldb, C, ldc);
    else
        gemm_rows(0, M, N, K, A, lda, B, ldb, C, ldc);
}
#endif
static void gemm_base(int ta, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    if (ta)
        gemm_rows(1, M, N, K, A, lda, B, ldb, C, ldc);
    else
        gemm_rows(0, M, N, K, A, lda, B, ldb, C, ldc);
}

static gemm_fn pick(const char **name) {
#if defined(__x86_64__) && !defined(TC_NO_DISPATCH)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
        *name = "avx512";
        return gemm_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *name = "avx2";
        return gemm_avx2;
    }
#endif
    *name = "baseline";
    return gemm_base;
}

// Resolved once; the answer is a pure function of the CPU, so racing threads agree.
static gemm_fn resolved(const char **name_out) {
    static gemm_fn fn;
    static const char *name;
    if (!fn) {
        const char *n = NULL;
        gemm_fn f = pick(&n);
        name = n;
        fn = f;
    }
    if (name_out) *name_out = name;
    return fn;
}

const char *tc_gemm_isa(void) {
    const char *n = NULL;
    resolved(&n);
    return n;
}

typedef struct {
    gemm_fn fn;
    int ta, M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_item(void *arg, int item, int tid) {
    (void)tid;
    gemm_job *j = arg;
    int i0 = item * ROWS_PER_ITEM;
    int m = j->M - i0 < ROWS_PER_ITEM ? j->M - i0 : ROWS_PER_ITEM;
    const float *a = j->ta ? j->A + i0 : j->A + (size_t)i0 * j->lda;
    j->fn(j->ta, m, j->N, j->K, a, j->lda, j->B, j->ldb, j->C + (size_t)i0 * j->ldc, j->ldc);
}

void tc_gemm(tc_pool *p, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    gemm_job j = {resolved(NULL), 0, M, N, K, lda, ldb, ldc, A, B, C};
    tc_pool_run(p, (M + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, gemm_item, &j);
}

void tc_gemm_tn(tc_pool *p, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    gemm_job j = {resolved(NULL), 1, M, N, K, lda, ldb, ldc, A, B, C};
    tc_pool_run(p, (M + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, gemm_item, &j);
}

void tc_gemm_serial(int transpose_a, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                    int ldc) {
    if (M > 0 && N > 0 && K > 0) resolved(NULL)(transpose_a, M, N, K, A, lda, B, ldb, C, ldc);
}
