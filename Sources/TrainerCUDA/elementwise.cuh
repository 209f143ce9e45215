// The glue between the matmuls: token + position embeddings and their gradients, and the
// tanh-approximated GELU. (Residual adds are folded into the matmuls: see bias_init_kernel.)
#pragma once

#include "common.cuh"
#include "trainer.h"  // TC_VOCAB

// out[n, :] = wte[inputs[n], :] + wpe[n % T, :]
__global__ void encoder_forward_kernel(float *out, const uint8_t *inputs, const float *wte, const float *wpe, int N,
                                       int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    out[i] = wte[(size_t)inputs[n] * C + c] + wpe[(n % T) * C + c];
}

// dwte[v, c] += dout[n, c] over the rows n whose input byte is v, in increasing n. The rows of
// each byte value come from a counting sort on the host (positions[offsets[v] .. offsets[v+1]]),
// so every output element has one thread and a fixed order: no atomics, same bits every run.
// The sum starts from the value already there (the output projection's share of the tied
// embedding's gradient), in the CPU backend's order.
__global__ void wte_backward_kernel(float *dwte, const float *dout, const int *offsets, const int *positions, int C) {
    int v = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = dwte[(size_t)v * C + c];
    for (int k = offsets[v]; k < offsets[v + 1]; k++) acc += dout[(size_t)positions[k] * C + c];
    dwte[(size_t)v * C + c] = acc;
}

// dwpe[t, c] += dout[b*T + t, c] for b = 0, 1, ... B-1 in order.
__global__ void wpe_backward_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    float acc = dwpe[i];
    for (int b = 0; b < B; b++) acc += dout[(size_t)b * T * C + i];
    dwpe[i] = acc;
}

static void encoder_forward(float *out, const uint8_t *inputs, const float *wte, const float *wpe, int B, int T, int C,
                            cudaStream_t s) {
    size_t n = (size_t)B * T * C;
    encoder_forward_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(out, inputs, wte, wpe, B * T, T, C);
    LAUNCH_CHECK();
}

static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *offsets, const int *positions,
                             int B, int T, int C, cudaStream_t s) {
    dim3 grid(ceil_div(C, EW_BLOCK), TC_VOCAB);
    wte_backward_kernel<<<grid, EW_BLOCK, 0, s>>>(dwte, dout, offsets, positions, C);
    LAUNCH_CHECK();
    wpe_backward_kernel<<<ceil_div((size_t)T * C, EW_BLOCK), EW_BLOCK, 0, s>>>(dwpe, dout, B, T, C);
    LAUNCH_CHECK();
}

// ------------------------------------------------------------------------------------------
// GELU, tanh approximation: gelu(x) = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
// tanhf is CUDA's libdevice tanh (within 2 ulp); the CPU uses a polynomial exp (~2e-7 relative).

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

__global__ void gelu_forward_kernel(float *out, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float u = x[i];
    out[i] = 0.5f * u * (1.0f + tanhf(GELU_SCALE * (u + 0.044715f * u * u * u)));
}

// In place: d holds dout on entry and dx on exit.
__global__ void gelu_backward_kernel(float *d, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float u = x[i];
    float th = tanhf(GELU_SCALE * (u + 0.044715f * u * u * u));
    float sech2 = 1.0f - th * th;
    d[i] *= 0.5f * (1.0f + th) + u * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * u * u);
}

static void gelu_forward(float *out, const float *x, size_t n, cudaStream_t s) {
    gelu_forward_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(out, x, n);
    LAUNCH_CHECK();
}

static void gelu_backward(float *d, const float *x, size_t n, cudaStream_t s) {
    gelu_backward_kernel<<<ceil_div(n, EW_BLOCK), EW_BLOCK, 0, s>>>(d, x, n);
    LAUNCH_CHECK();
}
