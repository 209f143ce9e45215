// Matrix multiplies through cuBLAS, plus the bias and column-sum kernels around them.
//
// Numerics: operands and results are float32 in memory. With CUBLAS_COMPUTE_32F_FAST_TF32
// (the trainer's default) the tensor cores round each operand to TF32 (10-bit mantissa,
// unit roundoff 2^-11 ~ 4.9e-4) and accumulate in float32, so a dot product carries a relative
// error of about 1e-3 of its terms' magnitude; the weights, gradients and AdamW moments stay
// float32 ("master weights"). CUBLAS_COMPUTE_32F is plain float32 (used by `make check` to
// test the kernels to ~1e-6).
//
// bf16 linear layers (tc_cuda_bf16_backend): the two operands of each linear layer's product
// (and the classifier's) are rounded to bf16 (7-bit mantissa, unit roundoff 2^-9 ~ 2e-3, round
// to nearest) into scratch buffers first, then multiplied at the tensor cores' bf16 rate, twice
// TF32's, with float32 accumulation and a float32 result. The conversion reads each float32
// operand once more; the forward keeps its bf16 copy of each linear input for the weight
// gradient, and a linear backward converts its output gradient once for both products.
// Attention's batched products stay TF32: their T x T operands are memory-bound, and a
// conversion would add a pass over them. (cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF on float32
// operands was measured to run the same TF32 kernels on an H200, so it is not used.)
#pragma once

#include "common.cuh"

#include <cuda_bf16.h>

// A cuBLAS handle bound to one GPU's stream, with the compute type of float32-operand matmuls.
// s16a and s16b (bf16 linear layers only, else NULL) are scratch for operands rounded to bf16,
// each large enough for any operand of a linear layer or the classifier.
struct Blas {
    cublasHandle_t handle;
    cublasComputeType_t compute;
    __nv_bfloat16 *s16a, *s16b;
};

__global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *in, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16(in[i]);
}

// Four at a time: one 16-byte load, two 4-byte stores. (The one-at-a-time kernel moved about
// half the copy bandwidth on an H200.)
__global__ void to_bf16x4_kernel(__nv_bfloat162 *out, const float4 *in, size_t n4) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    float4 v = in[i];
    out[2 * i] = __floats2bfloat162_rn(v.x, v.y);
    out[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
}

// out[0 .. n) = in rounded to bf16 (nearest, ties to even); returns out.
static const __nv_bfloat16 *to_bf16(__nv_bfloat16 *out, const float *in, size_t n, cudaStream_t s) {
    if (n % 4 == 0 && (uintptr_t)in % 16 == 0 && (uintptr_t)out % 8 == 0) {
        to_bf16x4_kernel<<<ceil_div(n / 4, EW_BLOCK), EW_BLOCK, 0, s>>>((__nv_bfloat162 *)out, (const float4 *)in,
                                                                         n / 4);
    } else {
        to_bf16_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(out, in, n);
    }
    LAUNCH_CHECK();
    return out;
}

// C = op(A) · op(B) + beta · C with every matrix row-major: C is [M, N], op(A) is [M, K], op(B)
// is [K, N]; ta / tb mean A / B are stored transposed ([K, M] / [N, K]). lda, ldb, ldc are row
// lengths in memory.
//
// cuBLAS is column-major, and a row-major matrix is the column-major view of its transpose,
// so we ask cuBLAS for C^T = op(B)^T · op(A)^T: the operands swap places and each keeps its
// own transpose flag.
static void gemm(const Blas &b, bool ta, bool tb, int M, int N, int K, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    const float one = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(b.handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one,
                              B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc, b.compute,
                              CUBLAS_GEMM_DEFAULT));
}

// gemm() with bf16 operands: float32 accumulation and result.
static void gemm_bf16(const Blas &b, bool ta, bool tb, int M, int N, int K, const __nv_bfloat16 *A, int lda,
                      const __nv_bfloat16 *B, int ldb, float beta, float *C, int ldc) {
    const float one = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(b.handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one,
                              B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

// A linear layer's (or the classifier's) product, as gemm(); with bf16 linear layers both
// operands are rounded to bf16 first. Every operand is a contiguous [rows, ld] block, so
// nA / nB = its rows * ld elements are converted.
static void gemm_linear(const Blas &b, bool ta, bool tb, int M, int N, int K, const float *A, int lda, size_t nA,
                        const float *B, int ldb, size_t nB, float beta, float *C, int ldc, cudaStream_t s) {
    if (!b.s16a) {
        gemm(b, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_bf16(b, ta, tb, M, N, K, to_bf16(b.s16a, A, nA, s), lda, to_bf16(b.s16b, B, nB, s), ldb, beta, C, ldc);
}

// The same for `batch` independent products whose operands sit strideA / strideB / strideC
// floats apart (one per (sequence, head) in attention).
static void gemm_batched(const Blas &b, bool ta, bool tb, int M, int N, int K, const float *A, int lda,
                         long long strideA, const float *B, int ldb, long long strideB, float beta, float *C, int ldc,
                         long long strideC, int batch) {
    const float one = 1.0f;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(b.handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            N, M, K, &one, B, CUDA_R_32F, ldb, strideB, A, CUDA_R_32F, lda, strideA,
                                            &beta, C, CUDA_R_32F, ldc, strideC, batch, b.compute,
                                            CUBLAS_GEMM_DEFAULT));
}

// out[n, :] = (residual ? residual[n, :] : 0) + b: the value a biased matmul accumulates onto,
// in the CPU backend's order (residual copy, then bias, then the product).
__global__ void bias_init_kernel(float *out, const float *residual, const float *b, int N, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * OC) return;
    float bias = b ? b[i % OC] : 0.0f;
    out[i] = residual ? residual[i] + bias : bias;
}

// ------------------------------------------------------------------------------------------
// Column sums (bias gradients, LayerNorm gain and bias gradients) without atomics.
//
// Stage 1: a 32 x 8 block owns 32 columns and COLSUM_ROWS rows; thread (x, y) sums rows
// y, y+8, ... of column x, then thread y = 0 adds the eight sums in order. Stage 2: one thread
// per column adds the row-block partials in order. Reads are coalesced (a warp reads 32
// neighbouring floats of one row) and the order depends only on N.
#define COLSUM_ROWS 256

template <typename F>
__global__ void column_partials_kernel(float *partials, int N, int cols, F value) {
    __shared__ float acc[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int n0 = blockIdx.y * COLSUM_ROWS, n1 = min(n0 + COLSUM_ROWS, N);
    float s = 0.0f;
    if (c < cols)
        for (int n = n0 + (int)threadIdx.y; n < n1; n += 8) s += value(n, c);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float t = acc[0][threadIdx.x];
        for (int k = 1; k < 8; k++) t += acc[k][threadIdx.x];
        partials[(size_t)blockIdx.y * cols + c] = t;
    }
}

__global__ void column_finish_kernel(float *out, const float *partials, int blocks, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int r = 0; r < blocks; r++) s += partials[(size_t)r * cols + c];
    out[c] += s;
}

// Rows needed in the partials buffer for N rows: ceil(N / COLSUM_ROWS) x cols.
static inline size_t column_partials_rows(size_t N) { return (N + COLSUM_ROWS - 1) / COLSUM_ROWS; }

// out[c] += sum over n of value(n, c).
template <typename F>
static void column_sum(float *out, float *partials, int N, int cols, F value, cudaStream_t s) {
    dim3 grid(ceil_div(cols, 32), (unsigned)column_partials_rows(N)), block(32, 8);
    column_partials_kernel<<<grid, block, 0, s>>>(partials, N, cols, value);
    LAUNCH_CHECK();
    column_finish_kernel<<<ceil_div(cols, EW_BLOCK), EW_BLOCK, 0, s>>>(out, partials, (int)grid.y, cols);
    LAUNCH_CHECK();
}

// value(n, c) = a[n, c]
struct MatrixEntry {
    const float *a;
    int ld;
    __device__ float operator()(int n, int c) const { return a[(size_t)n * ld + c]; }
};

// ------------------------------------------------------------------------------------------
// A linear layer, out = inp @ W + b with W stored input-major [Cin, OC] like the CPU backend.

// out[N, OC] = (residual ? residual : 0) + inp[N, Cin] @ W[Cin, OC] + b (b may be NULL).
// With bf16 linear layers, inp16 (if not NULL) receives inp rounded to bf16 and is kept for
// the backward pass's weight gradient; else the rounding goes to scratch.
static void matmul_forward(const Blas &blas, float *out, const float *inp, const float *W, const float *b,
                           const float *residual, int N, int Cin, int OC, cudaStream_t s,
                           __nv_bfloat16 *inp16 = NULL) {
    float beta = 0.0f;
    if (b || residual) {
        bias_init_kernel<<<ceil_div((size_t)N * OC, EW_BLOCK), EW_BLOCK, 0, s>>>(out, residual, b, N, OC);
        LAUNCH_CHECK();
        beta = 1.0f;
    }
    if (blas.s16a && inp16) {
        gemm_bf16(blas, false, false, N, OC, Cin, to_bf16(inp16, inp, (size_t)N * Cin, s), Cin,
                  to_bf16(blas.s16b, W, (size_t)Cin * OC, s), OC, beta, out, OC);
        return;
    }
    gemm_linear(blas, false, false, N, OC, Cin, inp, Cin, (size_t)N * Cin, W, OC, (size_t)Cin * OC, beta, out, OC, s);
}

// dinp = dout @ W^T (overwritten, skipped when NULL); dW += inp^T @ dout; db += column sums of dout.
// inp16: the forward's bf16 copy of inp (bf16 linear layers), or NULL to round inp here.
static void matmul_backward(const Blas &blas, float *dinp, float *dW, float *db, const float *dout, const float *inp,
                            const float *W, float *partials, int N, int Cin, int OC, cudaStream_t s,
                            const __nv_bfloat16 *inp16 = NULL) {
    if (blas.s16a) {  // bf16: dout is converted once for both products
        const __nv_bfloat16 *dout16 = to_bf16(blas.s16a, dout, (size_t)N * OC, s);
        if (dinp)
            gemm_bf16(blas, false, true, N, Cin, OC, dout16, OC, to_bf16(blas.s16b, W, (size_t)Cin * OC, s), OC, 0.0f,
                      dinp, Cin);
        if (!inp16) inp16 = to_bf16(blas.s16b, inp, (size_t)N * Cin, s);
        gemm_bf16(blas, true, false, Cin, OC, N, inp16, Cin, dout16, OC, 1.0f, dW, OC);
    } else {
        if (dinp) gemm(blas, false, true, N, Cin, OC, dout, OC, W, OC, 0.0f, dinp, Cin);
        gemm(blas, true, false, Cin, OC, N, inp, Cin, dout, OC, 1.0f, dW, OC);
    }
    if (db) column_sum(db, partials, N, OC, MatrixEntry{dout, OC}, s);
}
