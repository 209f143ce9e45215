// Shared pieces of the CUDA backend: error checks, launch arithmetic, warp reductions.
//
// Every reduction in these kernels runs in a fixed order (a warp butterfly, or a loop whose
// bounds depend only on the shape), never through atomics, so a step gives the same bits on
// every run on the same GPU model and GPU count.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// A CUDA or cuBLAS error in the middle of a step leaves the device in an unknown state, so
// the process reports where it happened and exits with the trainer's runtime-error status.
#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)
#define LAUNCH_CHECK() cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

static inline void cuda_check(cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "stratum-trainer-cuda: %s failed at %s:%d: %s\n", what, file, line, cudaGetErrorString(e));
    exit(1);
}

static inline void cublas_check(cublasStatus_t s, const char *what, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "stratum-trainer-cuda: %s failed at %s:%d: cuBLAS status %d\n", what, file, line, (int)s);
    exit(1);
}

static inline unsigned ceil_div(size_t n, size_t d) { return (unsigned)((n + d - 1) / d); }

// Threads per block for the element-wise and row kernels; a row kernel gives each row one
// warp, so a block covers ROW_BLOCK / 32 rows.
#define EW_BLOCK 256
#define ROW_BLOCK 256
#define ROWS_PER_BLOCK (ROW_BLOCK / 32)

// Butterfly reductions: after the loop every lane holds the same value, bit for bit (each
// step adds the same two numbers on both partner lanes, and IEEE addition is commutative).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
