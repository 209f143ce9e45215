// Matrix multiplies through cuBLAS, plus the bias and column-sum kernels around them.
//
// Numerics: operands and results are float32 in memory. With CUBLAS_COMPUTE_32F_FAST_TF32
// (the trainer's default) the tensor cores round each operand to TF32 (10-bit mantissa,
// unit roundoff 2^-11 ~ 4.9e-4) and accumulate in float32, so a dot product carries a relative
// error of about 1e-3 of its terms' magnitude; the weights, gradients and AdamW moments stay
// float32 ("master weights"). CUBLAS_COMPUTE_32F_FAST_16BF rounds the operands to bf16
// instead (7-bit mantissa, unit roundoff 2^-8 ~ 3.9e-3) at twice TF32's tensor-core rate;
// operands and results still move through memory as float32. CUBLAS_COMPUTE_32F is plain
// float32 (used by `make check` to test the kernels to ~1e-6).
#pragma once

#include "common.cuh"

// A cuBLAS handle bound to one GPU's stream, with the compute type every matmul uses.
struct Blas {
    cublasHandle_t handle;
    cublasComputeType_t compute;
};

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
static void matmul_forward(const Blas &blas, float *out, const float *inp, const float *W, const float *b,
                           const float *residual, int N, int Cin, int OC, cudaStream_t s) {
    float beta = 0.0f;
    if (b || residual) {
        bias_init_kernel<<<ceil_div((size_t)N * OC, EW_BLOCK), EW_BLOCK, 0, s>>>(out, residual, b, N, OC);
        LAUNCH_CHECK();
        beta = 1.0f;
    }
    gemm(blas, false, false, N, OC, Cin, inp, Cin, W, OC, beta, out, OC);
}

// dinp = dout @ W^T (overwritten, skipped when NULL); dW += inp^T @ dout; db += column sums of dout.
static void matmul_backward(const Blas &blas, float *dinp, float *dW, float *db, const float *dout, const float *inp,
                            const float *W, float *partials, int N, int Cin, int OC, cudaStream_t s) {
    if (dinp) gemm(blas, false, true, N, Cin, OC, dout, OC, W, OC, 0.0f, dinp, Cin);
    gemm(blas, true, false, Cin, OC, N, inp, Cin, dout, OC, 1.0f, dW, OC);
    if (db) column_sum(db, partials, N, OC, MatrixEntry{dout, OC}, s);
}
