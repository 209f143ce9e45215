// Internal declarations shared by the trainer's C files (not part of the public API).
#ifndef STRATUM_TRAINER_INTERNAL_H
#define STRATUM_TRAINER_INTERNAL_H

#include "trainer.h"
#include <stdarg.h>
#include <stdio.h>

// Formats an error message into err (if non-NULL); always returns -1.
int tc_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// A fixed set of pthreads that run "for i in 0..<n: fn(arg, i)" with a static partition,
// so each output element is always computed by the same code in the same order.
typedef struct tc_pool tc_pool;
tc_pool *tc_pool_create(int threads);
void tc_pool_free(tc_pool *p);
int tc_pool_threads(const tc_pool *p);
void tc_pool_run(tc_pool *p, int n, void (*fn)(void *arg, int i), void *arg);

// C[M,N] += A[M,K] * B[K,N], all row-major with leading dimensions; rows split over the pool.
void tc_gemm(tc_pool *p, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
// Name of the instruction set the GEMM kernel uses on this machine.
const char *tc_gemm_isa(void);

// Wall clock in seconds (monotonic).
double tc_now(void);

// Little helpers for growing byte buffers.
typedef struct { uint8_t *p; size_t len, cap; } tc_buf;
int tc_buf_append(tc_buf *b, const void *data, size_t len);
void tc_buf_free(tc_buf *b);

// HTTP via libcurl (shared by data streaming and the S3 store).
typedef struct {
    long status;
    tc_buf body;
    char content_range[128];
    char etag[256];
} tc_http_response;
void tc_http_global_init(void);

// S3 client (s3.c).
typedef struct tc_s3 tc_s3;
tc_s3 *tc_s3_create(const char *endpoint, const char *region, const char *bucket, char *err, size_t errlen);
void tc_s3_free(tc_s3 *s);
// Performs one signed request. range may be NULL ("bytes=a-b"), extra_headers "name: value\n" lines or NULL.
int tc_s3_request(tc_s3 *s, const char *method, const char *key, const char *query, const void *body, size_t body_len,
                  const char *range, const char *extra_headers, tc_http_response *resp, char *err, size_t errlen);
uint64_t tc_s3_bytes(const tc_s3 *s);
// URL-encodes s (keeping '/' when keep_slash) into out.
void tc_uri_encode(const char *s, int keep_slash, char *out, size_t outlen);

// Plain HTTP(S) GET with an optional Range header.
int tc_http_get(const char *url, const char *range, tc_http_response *resp, char *err, size_t errlen);

// DiLoCo outer state kept inside the trainer so that checkpoints carry it.
int tc_trainer_enable_outer(tc_trainer *t);
float *tc_trainer_outer_params(tc_trainer *t);
float *tc_trainer_outer_momentum(tc_trainer *t);
long *tc_trainer_outer_round(tc_trainer *t);
tc_store *tc_trainer_store(tc_trainer *t);

#endif
