// tc_model: the handle every caller holds, whatever backend runs the arithmetic.
//
// The handle forwards each operation to its backend and keeps the backend's host arrays
// (parameters, gradients, AdamW moments) coherent with its device copy:
//
//   host_stale    the device has computed since the host arrays were last downloaded
//   device_stale  the host arrays were handed out (and maybe written) since the last upload
//
// An accessor downloads when host_stale and then sets device_stale; a device operation
// uploads when device_stale and then sets host_stale. For the CPU backend the host arrays are
// the state, download/upload are NULL and both flags stay 0, so this layer adds one indirect
// call per operation and nothing else.
//
// The parameter layout and initialisation live here too: every backend starts from the same
// seeded weights in the same order.
#include "internal.h"
#include "model_layout.h"

#include <stdlib.h>
#include <string.h>

struct tc_model {
    const tc_model_backend *be;
    void *impl;
    size_t num_params;
    int host_stale, device_stale;
};

size_t tc_param_sizes(int n_layer, int n_embd, int context, size_t sizes[TC_P_COUNT]) {
    size_t L = (size_t)n_layer, C = (size_t)n_embd, V = TC_VOCAB;
    size_t s[TC_P_COUNT] = {V * C, (size_t)context * C, L * C, L * C, L * C * 3 * C, L * 3 * C, L * C * C, L * C,
                            L * C, L * C, L * C * 4 * C, L * 4 * C, L * 4 * C * C, L * C, C, C};
    size_t total = 0;
    for (int i = 0; i < TC_P_COUNT; i++) {
        sizes[i] = s[i];
        total += s[i];
    }
    return total;
}

void tc_param_init(float *params, const size_t s[TC_P_COUNT], int n_layer, uint64_t seed) {
    float *t[TC_P_COUNT];
    size_t total = 0;
    for (int i = 0; i < TC_P_COUNT; i++) {
        t[i] = params + total;
        total += s[i];
    }
    memset(params, 0, total * sizeof(float));
    // Small normal initialisation; residual projections shrink with depth so the residual
    // stream keeps its scale as layers are added.
    tc_rng r;
    tc_rng_seed(&r, seed);
    float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)n_layer);
    for (size_t i = 0; i < s[TC_P_WTE]; i++) t[TC_P_WTE][i] = std * tc_rng_normal(&r);
    for (size_t i = 0; i < s[TC_P_WPE]; i++) t[TC_P_WPE][i] = 0.01f * tc_rng_normal(&r);
    for (size_t i = 0; i < s[TC_P_QKVW]; i++) t[TC_P_QKVW][i] = std * tc_rng_normal(&r);
    for (size_t i = 0; i < s[TC_P_ATTPROJW]; i++) t[TC_P_ATTPROJW][i] = std_res * tc_rng_normal(&r);
    for (size_t i = 0; i < s[TC_P_FCW]; i++) t[TC_P_FCW][i] = std * tc_rng_normal(&r);
    for (size_t i = 0; i < s[TC_P_FCPROJW]; i++) t[TC_P_FCPROJW][i] = std_res * tc_rng_normal(&r);
    for (size_t i = 0; i < s[TC_P_LN1W]; i++) t[TC_P_LN1W][i] = t[TC_P_LN2W][i] = 1.0f;
    for (size_t i = 0; i < s[TC_P_LNFW]; i++) t[TC_P_LNFW][i] = 1.0f;
}

int tc_param_decays(int k) {
    // Decay matrices (and the embeddings); biases and LayerNorm gains stay undecayed.
    return k == TC_P_WTE || k == TC_P_WPE || k == TC_P_QKVW || k == TC_P_ATTPROJW || k == TC_P_FCW || k == TC_P_FCPROJW;
}

const char *tc_param_name(int k) {
    static const char *const names[TC_P_COUNT] = {"wte",  "wpe",      "ln1w", "ln1b", "qkvw", "qkvb",
                                                  "attprojw", "attprojb", "ln2w", "ln2b", "fcw",  "fcb",
                                                  "fcprojw", "fcprojb",  "lnfw", "lnfb"};
    return k >= 0 && k < TC_P_COUNT ? names[k] : "?";
}

// ------------------------------------------------------------------------------------------
// The handle

tc_model *tc_model_create_on(const tc_model_backend *backend, int n_layer, int n_embd, int n_head, int context,
                             uint64_t seed, int threads, char *err, size_t errlen) {
    if (n_layer < 1 || n_embd < 1 || n_head < 1 || n_embd % n_head != 0 || context < 1) {
        tc_fail(err, errlen, "model: bad shape (%d layers, width %d, %d heads, context %d)", n_layer, n_embd, n_head, context);
        return NULL;
    }
    tc_model *m = calloc(1, sizeof *m);
    if (!m) {
        tc_fail(err, errlen, "model: out of memory");
        return NULL;
    }
    size_t sizes[TC_P_COUNT];
    m->be = backend;
    m->num_params = tc_param_sizes(n_layer, n_embd, context, sizes);
    m->impl = backend->create(n_layer, n_embd, n_head, context, seed, threads, err, errlen);
    if (!m->impl) {
        free(m);
        return NULL;
    }
    return m;
}

tc_model *tc_model_create(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads) {
    return tc_model_create_on(&tc_cpu_backend, n_layer, n_embd, n_head, context, seed, threads, NULL, 0);
}

void tc_model_free(tc_model *m) {
    if (!m) return;
    m->be->destroy(m->impl);
    free(m);
}

const tc_model_backend *tc_model_backend_of(const tc_model *m) { return m->be; }
const char *tc_model_device(tc_model *m) { return m->be->device(m->impl); }
size_t tc_model_num_params(const tc_model *m) { return m->num_params; }

// Before a device operation: the device must see what was written through the host arrays.
static void device_current(tc_model *m) {
    if (m->device_stale) m->be->upload(m->impl);
    m->device_stale = 0;
}

// After a device operation that changed parameters, gradients or moments.
static void device_moved(tc_model *m) { m->host_stale = m->be->download != NULL; }

static float *host_state(tc_model *m) {
    if (m->host_stale) m->be->download(m->impl);
    m->host_stale = 0;
    m->device_stale = m->be->upload != NULL;
    return m->be->host_state(m->impl);
}

float *tc_model_params(tc_model *m) { return host_state(m); }
float *tc_model_grads(tc_model *m) { return host_state(m) + m->num_params; }
float *tc_model_adam_m(tc_model *m) { return host_state(m) + 2 * m->num_params; }
float *tc_model_adam_v(tc_model *m) { return host_state(m) + 3 * m->num_params; }
const float *tc_model_probs(const tc_model *m) { return m->be->probs(m->impl); }
const float *tc_model_logits(const tc_model *m) { return m->be->logits(m->impl); }

float tc_model_forward(tc_model *m, const uint8_t *inputs, const uint8_t *targets, int B, int T) {
    device_current(m);
    return m->be->forward(m->impl, inputs, targets, B, T);
}

void tc_model_zero_grad(tc_model *m) {
    device_current(m);
    m->be->zero_grad(m->impl);
    device_moved(m);
}

void tc_model_backward(tc_model *m) {
    device_current(m);
    m->be->backward(m->impl);
    device_moved(m);
}

float tc_model_clip_grad(tc_model *m, float max_norm) {
    device_current(m);
    float norm = m->be->clip_grad(m->impl, max_norm);
    device_moved(m);
    return norm;
}

void tc_model_update(tc_model *m, float lr, float beta1, float beta2, float eps, float weight_decay, long t) {
    device_current(m);
    m->be->update(m->impl, lr, beta1, beta2, eps, weight_decay, t);
    device_moved(m);
}
