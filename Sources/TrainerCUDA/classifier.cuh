// The head of the model fused into one kernel: softmax over the 256 byte logits, the
// cross-entropy of each row, and the gradient the backward pass starts from.
#pragma once

#include "common.cuh"
#include "trainer.h"  // TC_VOCAB

static_assert(TC_VOCAB % 32 == 0, "the classifier gives each lane TC_VOCAB / 32 logits");

// One warp per row n of logits [N, V]:
//   probs[n]   = softmax(logits[n])
//   losses[n]  = logsumexp(logits[n]) - logits[n, target]   (= -log probs[n, target], but
//                computed in the log domain, so a tiny probability loses no digits)
//   dlogits[n] = (probs[n] - onehot(target)) * inv_total, the gradient of the mean loss over
//                all inv_total^-1 rows of the step (every GPU's rows), in the CPU's order:
//                probs * inv_total, then inv_total subtracted at the target
// targets == NULL (evaluation without labels) writes only probs.
__global__ void softmax_cross_entropy_kernel(float *probs, float *losses, float *dlogits, const float *logits,
                                             const uint8_t *targets, int N, float inv_total) {
    constexpr int PER_LANE = TC_VOCAB / 32;
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *l = logits + (size_t)row * TC_VOCAB;
    float e[PER_LANE], maxv = -INFINITY;
    for (int k = 0; k < PER_LANE; k++) {
        e[k] = l[lane + 32 * k];
        maxv = fmaxf(maxv, e[k]);
    }
    maxv = warp_max(maxv);
    float sum = 0.0f;
    for (int k = 0; k < PER_LANE; k++) {
        e[k] = expf(e[k] - maxv);
        sum += e[k];
    }
    sum = warp_sum(sum);
    float inv = 1.0f / sum;
    float *p = probs + (size_t)row * TC_VOCAB;
    for (int k = 0; k < PER_LANE; k++) p[lane + 32 * k] = e[k] * inv;
    if (!targets) return;
    int t = targets[row];
    if (lane == 0) losses[row] = logf(sum) + maxv - l[t];
    float *d = dlogits + (size_t)row * TC_VOCAB;
    for (int k = 0; k < PER_LANE; k++) {
        int i = lane + 32 * k;
        float g = e[k] * inv * inv_total;
        d[i] = i == t ? g - inv_total : g;
    }
}

static void softmax_cross_entropy(float *probs, float *losses, float *dlogits, const float *logits,
                                  const uint8_t *targets, int N, float inv_total, cudaStream_t s) {
    softmax_cross_entropy_kernel<<<ceil_div(N, ROWS_PER_BLOCK), ROW_BLOCK, 0, s>>>(probs, losses, dlogits, logits,
                                                                                  targets, N, inv_total);
    LAUNCH_CHECK();
}
