// The update: global gradient norm, clipping, AdamW.
#pragma once

#include "common.cuh"

// The squared norm is summed in double, like the CPU backend, over a fixed grid: NORM_BLOCKS
// blocks each reduce a grid-stride slice in a fixed tree, then one block adds the partials in
// a fixed tree. Same gradients, same bits.
#define NORM_BLOCKS 1024

__global__ void sumsq_partials_kernel(double *partials, const float *g, size_t n) {
    __shared__ double s[EW_BLOCK];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += (double)g[i] * g[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = EW_BLOCK / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = s[0];
}

// out[0] = sum of partials[0 .. NORM_BLOCKS), one block of EW_BLOCK threads.
__global__ void sum_partials_kernel(double *out, const double *partials) {
    __shared__ double s[EW_BLOCK];
    double acc = 0.0;
    for (int i = threadIdx.x; i < NORM_BLOCKS; i += EW_BLOCK) acc += partials[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = EW_BLOCK / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = s[0];
}

__global__ void scale_kernel(float *x, size_t n, float s) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

// One AdamW step on n parameters, written exactly as the CPU backend writes it: moments,
// bias correction by division (bc1, bc2 computed once on the host), decoupled weight decay.
__global__ void adamw_kernel(float *param, float *m, float *v, const float *grad, size_t n, float lr, float beta1,
                             float beta2, float bc1, float bc2, float eps, float wd) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * param[i]);
}

// Squared L2 norm of g[0 .. n) into *out (device), via partials (NORM_BLOCKS doubles).
static void grad_sumsq(double *out, double *partials, const float *g, size_t n, cudaStream_t s) {
    sumsq_partials_kernel<<<NORM_BLOCKS, EW_BLOCK, 0, s>>>(partials, g, n);
    LAUNCH_CHECK();
    sum_partials_kernel<<<1, EW_BLOCK, 0, s>>>(out, partials);
    LAUNCH_CHECK();
}

static void scale(float *x, size_t n, float by, cudaStream_t s) {
    scale_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(x, n, by);
    LAUNCH_CHECK();
}

static void adamw(float *param, float *m, float *v, const float *grad, size_t n, float lr, float beta1, float beta2,
                  float bc1, float bc2, float eps, float wd, cudaStream_t s) {
    adamw_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(param, m, v, grad, n, lr, beta1, beta2, bc1, bc2, eps, wd);
    LAUNCH_CHECK();
}
