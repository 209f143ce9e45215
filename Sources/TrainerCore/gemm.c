// The one matrix multiply every layer uses: C[M,N] += A[M,K] * B[K,N] (row-major).
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

static inline __attribute__((always_inline)) void tile_full(int kc, const float *A, int lda, const float *B, int ldb,
                                                            float *C, int ldc) {
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

static inline __attribute__((always_inline)) void gemm_rows(int M, int N, int K, const float *A, int lda,
                                                            const float *B, int ldb, float *C, int ldc) {
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int j0 = 0; j0 < N; j0 += NR) {
            int nr = N - j0 < NR ? N - j0 : NR;
            for (int i0 = 0; i0 < M; i0 += MR) {
                int mr = M - i0 < MR ? M - i0 : MR;
                const float *a = A + (size_t)i0 * lda + k0;
                const float *b = B + (size_t)k0 * ldb + j0;
                float *c = C + (size_t)i0 * ldc + j0;
                if (mr == MR && nr == NR)
                    tile_full(kc, a, lda, b, ldb, c, ldc);
                else
                    tile_edge(mr, nr, kc, a, lda, b, ldb, c, ldc);
            }
        }
    }
}

typedef void (*gemm_fn)(int, int, int, const float *, int, const float *, int, float *, int);

#if defined(__x86_64__) && !defined(TC_NO_DISPATCH)
__attribute__((target("avx512f,avx512vl,avx2,fma"))) static void gemm_avx512(int M, int N, int K, const float *A, int lda,
                                                                             const float *B, int ldb, float *C, int ldc) {
    gemm_rows(M, N, K, A, lda, B, ldb, C, ldc);
}
__attribute__((target("avx2,fma"))) static void gemm_avx2(int M, int N, int K, const float *A, int lda, const float *B,
                                                          int ldb, float *C, int ldc) {
    gemm_rows(M, N, K, A, lda, B, ldb, C, ldc);
}
#endif
static void gemm_base(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    gemm_rows(M, N, K, A, lda, B, ldb, C, ldc);
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
    int M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_item(void *arg, int item) {
    gemm_job *j = arg;
    int i0 = item * ROWS_PER_ITEM;
    int m = j->M - i0 < ROWS_PER_ITEM ? j->M - i0 : ROWS_PER_ITEM;
    j->fn(m, j->N, j->K, j->A + (size_t)i0 * j->lda, j->lda, j->B, j->ldb, j->C + (size_t)i0 * j->ldc, j->ldc);
}

void tc_gemm(tc_pool *p, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    gemm_job j = {resolved(NULL), M, N, K, lda, ldb, ldc, A, B, C};
    tc_pool_run(p, (M + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, gemm_item, &j);
}
