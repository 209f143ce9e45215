// LayerNorm over the last dimension (width C), eps 1e-5, as in the CPU backend.
//
// Forward and the input gradient use one warp per row: the row's statistics are warp
// reductions, so no shared memory and no block-wide barrier. The mean and the variance are
// two passes over the row (the variance around the mean, not E[x^2] - mean^2, which cancels
// badly when |mean| >> std). The gain and bias gradients are column sums over rows
// (matmul.cuh), which keeps them deterministic.
#pragma once

#include "matmul.cuh"

__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, int N, int C) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) sum += x[i];
    float m = warp_sum(sum) / (float)C;
    float var = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = x[i] - m;
        var += d * d;
    }
    // 1/sqrtf rather than rsqrtf: correctly rounded, like the CPU backend.
    float s = 1.0f / sqrtf(warp_sum(var) / (float)C + 1e-5f);
    float *o = out + (size_t)row * C;
    for (int i = lane; i < C; i += 32) o[i] = (x[i] - m) * s * w[i] + b[i];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

// dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = w * dout.
__global__ void layernorm_backward_input_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                                const float *mean, const float *rstd, int N, int C) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s, dnorm = w[i] * dy[i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean = warp_sum(dnorm_mean) / (float)C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / (float)C;
    float *dx = dinp + (size_t)row * C;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s, dnorm = w[i] * dy[i];
        dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
}

// value(n, c) = norm[n, c] * dout[n, c], the summand of the gain gradient.
struct NormTimesGrad {
    const float *inp, *dout, *mean, *rstd;
    int C;
    __device__ float operator()(int n, int c) const {
        size_t i = (size_t)n * C + c;
        return (inp[i] - mean[n]) * rstd[n] * dout[i];
    }
};

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                              int N, int C, cudaStream_t s) {
    layernorm_forward_kernel<<<ceil_div(N, ROWS_PER_BLOCK), ROW_BLOCK, 0, s>>>(out, mean, rstd, inp, w, b, N, C);
    LAUNCH_CHECK();
}

// dinp += ...; dw += sum_n norm * dout; db += sum_n dout.
static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               const float *mean, const float *rstd, float *partials, int N, int C, cudaStream_t s) {
    layernorm_backward_input_kernel<<<ceil_div(N, ROWS_PER_BLOCK), ROW_BLOCK, 0, s>>>(dinp, dout, inp, w, mean, rstd,
                                                                                      N, C);
    LAUNCH_CHECK();
    column_sum(dw, partials, N, C, NormTimesGrad{inp, dout, mean, rstd, C}, s);
    column_sum(db, partials, N, C, MatrixEntry{dout, C}, s);
}
