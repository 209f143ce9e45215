// Causal self-attention: cuBLAS batched products around fused causal-softmax kernels.
//
// For every (sequence b, head h), with q, k, v of shape [T, hs]:
//
//   S = q k^T            batched GEMM over B*NH heads (tensor cores)
//   P = softmax(S / sqrt(hs)) with j > i masked: one fused kernel, one warp per row
//   y = P v              batched GEMM
//
// P is kept per layer for the backward pass, as the CPU backend keeps its attention
// probabilities ([B, NH, T, T] floats per layer). The GEMMs compute the full T x T square;
// the masked half of P is exactly zero, so it contributes nothing and its gradient is zero.
// A flash-style kernel would avoid storing P, but written without tensor cores it would run
// the attention FLOPs (about a sixth of a GPT-2-small step) on the CUDA cores at a fraction of
// the GEMMs' speed; this layout keeps every FLOP on the tensor cores at the cost of memory.
//
// The matmul that produces qkv writes rows [B, T, 3, NH, hs]; the batched GEMMs want
// [B, NH, T, hs] per operand, so permute kernels move data between the two layouts.
#pragma once

#include "matmul.cuh"

// Element idx of a [B, NH, T, hs] heads tensor sits at this offset of a [B, T, W] row tensor
// whose columns h*hs .. h*hs+hs-1 hold head h (W = C for y, 3C for qkv with q at column 0).
__device__ __forceinline__ size_t row_offset(size_t idx, int T, int NH, int hs, size_t W) {
    size_t d = idx % hs, t = (idx / hs) % T, h = (idx / ((size_t)hs * T)) % NH, b = idx / ((size_t)hs * T * NH);
    return (b * T + t) * W + h * hs + d;
}

// qkv [B, T, 3C] -> q, k, v each [B, NH, T, hs] (C = NH * hs).
__global__ void qkv_split_kernel(float *q, float *k, float *v, const float *qkv, int B, int T, int NH, int hs) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x, C = (size_t)NH * hs;
    if (idx >= (size_t)B * T * C) return;
    size_t src = row_offset(idx, T, NH, hs, 3 * C);
    q[idx] = qkv[src];
    k[idx] = qkv[src + C];
    v[idx] = qkv[src + 2 * C];
}

// The inverse: dq, dk, dv [B, NH, T, hs] -> dqkv [B, T, 3C].
__global__ void qkv_merge_kernel(float *dqkv, const float *dq, const float *dk, const float *dv, int B, int T, int NH,
                                 int hs) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x, C = (size_t)NH * hs;
    if (idx >= (size_t)B * T * C) return;
    size_t dst = row_offset(idx, T, NH, hs, 3 * C);
    dqkv[dst] = dq[idx];
    dqkv[dst + C] = dk[idx];
    dqkv[dst + 2 * C] = dv[idx];
}

// rows [B, T, C] -> heads [B, NH, T, hs]
__global__ void rows_to_heads_kernel(float *heads, const float *rows, int B, int T, int NH, int hs) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x, C = (size_t)NH * hs;
    if (idx >= (size_t)B * T * C) return;
    heads[idx] = rows[row_offset(idx, T, NH, hs, C)];
}

// heads [B, NH, T, hs] -> rows [B, T, C]
__global__ void heads_to_rows_kernel(float *rows, const float *heads, int B, int T, int NH, int hs) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x, C = (size_t)NH * hs;
    if (idx >= (size_t)B * T * C) return;
    rows[row_offset(idx, T, NH, hs, C)] = heads[idx];
}

// In place on att [rows = B*NH*T, T]: row i of a head becomes softmax(scale * s[0..i]) and
// zeros after i. The maximum is subtracted before exp, so nothing overflows; expf is within
// 2 ulp, the CPU's polynomial within ~2e-7 relative.
__global__ void causal_softmax_forward_kernel(float *att, int rows, int T, float scale) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int i = row % T;
    float *r = att + (size_t)row * T;
    float maxv = -INFINITY;
    for (int j = lane; j <= i; j += 32) maxv = fmaxf(maxv, r[j] * scale);
    maxv = warp_max(maxv);
    float sum = 0.0f;
    for (int j = lane; j <= i; j += 32) {
        float e = expf(r[j] * scale - maxv);
        r[j] = e;
        sum += e;
    }
    float inv = 1.0f / warp_sum(sum);
    // Each lane rescales the entries it wrote itself, so no barrier is needed.
    for (int j = lane; j < T; j += 32) r[j] = j <= i ? r[j] * inv : 0.0f;
}

// In place on datt: dP becomes dS = P * (dP - sum_j P dP) * scale, zero above the diagonal.
__global__ void causal_softmax_backward_kernel(float *datt, const float *att, int rows, int T, float scale) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int i = row % T;
    const float *p = att + (size_t)row * T;
    float *d = datt + (size_t)row * T;
    float dot = 0.0f;
    for (int j = lane; j <= i; j += 32) dot += p[j] * d[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) d[j] = j <= i ? p[j] * (d[j] - dot) * scale : 0.0f;
}

// out [B, T, C] = attention of this layer's qkv [B, T, 3C]. Keeps q, k, v (qkvh, three
// [B, NH, T, hs] blocks) and P (att, [B, NH, T, T]) for the backward pass; yh is scratch.
static void attention_forward(const Blas &blas, float *out, float *qkvh, float *att, float *yh, const float *qkv,
                              int B, int T, int C, int NH, cudaStream_t s) {
    int hs = C / NH, heads = B * NH;
    size_t n = (size_t)B * T * C;
    float *q = qkvh, *k = qkvh + n, *v = qkvh + 2 * n;
    float scale = 1.0f / sqrtf((float)hs);
    qkv_split_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(q, k, v, qkv, B, T, NH, hs);
    LAUNCH_CHECK();
    // S = q k^T: [T, hs] x [hs, T] per head
    gemm_batched(blas, false, true, T, T, hs, q, hs, (long long)T * hs, k, hs, (long long)T * hs, 0.0f, att, T,
                 (long long)T * T, heads);
    causal_softmax_forward_kernel<<<ceil_div((size_t)heads * T, ROWS_PER_BLOCK), ROW_BLOCK, 0, s>>>(att, heads * T, T,
                                                                                                  scale);
    LAUNCH_CHECK();
    // y = P v: [T, T] x [T, hs] per head
    gemm_batched(blas, false, false, T, hs, T, att, T, (long long)T * T, v, hs, (long long)T * hs, 0.0f, yh, hs,
                 (long long)T * hs, heads);
    heads_to_rows_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(out, yh, B, T, NH, hs);
    LAUNCH_CHECK();
}

// dqkv [B, T, 3C] (overwritten) from dout [B, T, C]. dh (three [B, NH, T, hs] blocks),
// datt ([B, NH, T, T]) and dyh ([B, NH, T, hs]) are scratch.
static void attention_backward(const Blas &blas, float *dqkv, float *dh, float *datt, float *dyh, const float *dout,
                               const float *qkvh, const float *att, int B, int T, int C, int NH, cudaStream_t s) {
    int hs = C / NH, heads = B * NH;
    size_t n = (size_t)B * T * C;
    const float *q = qkvh, *k = qkvh + n, *v = qkvh + 2 * n;
    float *dq = dh, *dk = dh + n, *dv = dh + 2 * n;
    float scale = 1.0f / sqrtf((float)hs);
    long long sh = (long long)T * hs, sa = (long long)T * T;
    rows_to_heads_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(dyh, dout, B, T, NH, hs);
    LAUNCH_CHECK();
    // dP = dy v^T;  dv = P^T dy
    gemm_batched(blas, false, true, T, T, hs, dyh, hs, sh, v, hs, sh, 0.0f, datt, T, sa, heads);
    gemm_batched(blas, true, false, T, hs, T, att, T, sa, dyh, hs, sh, 0.0f, dv, hs, sh, heads);
    causal_softmax_backward_kernel<<<ceil_div((size_t)heads * T, ROWS_PER_BLOCK), ROW_BLOCK, 0, s>>>(datt, att,
                                                                                                   heads * T, T, scale);
    LAUNCH_CHECK();
    // dq = dS k;  dk = dS^T q
    gemm_batched(blas, false, false, T, hs, T, datt, T, sa, k, hs, sh, 0.0f, dq, hs, sh, heads);
    gemm_batched(blas, true, false, T, hs, T, datt, T, sa, q, hs, sh, 0.0f, dk, hs, sh, heads);
    qkv_merge_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(dqkv, dq, dk, dv, B, T, NH, hs);
    LAUNCH_CHECK();
}
