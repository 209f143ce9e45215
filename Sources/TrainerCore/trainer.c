// The training loop state: model + AdamW moments + data cursor + step, and its checkpoints.
//
// Checkpoint layout in the store (a directory or s3://bucket/prefix):
//   step-0000000100/state.bin   written first (atomic: temp + rename, or one S3 object)
//   step-0000000100/DONE        written last; a checkpoint without DONE does not exist
// state.bin = header | cursor | DiLoCo outer state | params | AdamW m | AdamW v | SHA-256
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CKPT_MAGIC "STRATCK1"
#define CKPT_VERSION 1

struct tc_trainer {
    tc_config cfg;
    tc_model *model;
    tc_data *data;
    tc_store *store;  // checkpoints; NULL when off
    long step;
    tc_rng rng;
    uint8_t *inputs, *targets;
    double last_checkpoint_unix;
    // DiLoCo outer state (NULL unless set by the DiLoCo driver)
    float *outer_params, *outer_momentum;
    long outer_round;
};

float tc_trainer_lr(const tc_config *c, long s) {
    if (s < c->warmup_steps) return c->lr * (float)(s + 1) / (float)c->warmup_steps;
    if (!c->cosine || c->steps <= c->warmup_steps) return c->lr;
    double progress = (double)(s - c->warmup_steps) / (double)(c->steps - c->warmup_steps);
    if (progress > 1.0) progress = 1.0;
    double min_lr = c->lr * c->min_lr_ratio;
    return (float)(min_lr + 0.5 * (c->lr - min_lr) * (1.0 + cos(M_PI * progress)));
}

tc_trainer *tc_trainer_create(const tc_config *c, char *err, size_t errlen) {
    if (tc_config_validate(c, err, errlen) != 0) return NULL;
    tc_trainer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cfg = *c;
    t->model = tc_model_create_on(c->backend ? c->backend : &tc_cpu_backend, c->n_layer, c->n_embd, c->n_head,
                                  c->context, c->seed, c->threads, err, errlen);
    if (!t->model) goto fail;
    // Each DiLoCo or data-parallel worker reads its own shard of the stream.
    int shard = c->diloco_workers > 0 ? c->diloco_rank : (c->dp_workers > 0 ? c->dp_rank : 0);
    int nshards = c->diloco_workers > 0 ? c->diloco_workers : (c->dp_workers > 0 ? c->dp_workers : 1);
    t->data = tc_data_open(c, shard, nshards, err, errlen);
    if (!t->data) goto fail;
    if (c->checkpoint_dir[0]) {
        t->store = tc_store_open(c->checkpoint_dir, c->s3_endpoint, c->s3_region, err, errlen);
        if (!t->store) goto fail;
    }
    tc_rng_seed(&t->rng, c->seed ^ 0x5DEECE66DULL);
    size_t n = (size_t)c->batch_size * c->seq_len;
    t->inputs = malloc(n);
    t->targets = malloc(n);
    if (!t->inputs || !t->targets) {
        tc_fail(err, errlen, "trainer: out of memory");
        goto fail;
    }
    return t;
fail:
    tc_trainer_free(t);
    return NULL;
}

void tc_trainer_free(tc_trainer *t) {
    if (!t) return;
    tc_model_free(t->model);
    tc_data_free(t->data);
    tc_store_free(t->store);
    free(t->inputs);
    free(t->targets);
    free(t->outer_params);
    free(t->outer_momentum);
    free(t);
}

long tc_trainer_step_count(const tc_trainer *t) { return t->step; }
tc_model *tc_trainer_model(tc_trainer *t) { return t->model; }
tc_data *tc_trainer_data(tc_trainer *t) { return t->data; }
tc_store *tc_trainer_store(tc_trainer *t) { return t->store; }
double tc_trainer_last_checkpoint(const tc_trainer *t) { return t->last_checkpoint_unix; }

int tc_trainer_step(tc_trainer *t, float *loss, char *err, size_t errlen) { return tc_trainer_step_reduced(t, loss, NULL, NULL, err, errlen); }

int tc_trainer_step_reduced(tc_trainer *t, float *loss, tc_grad_reduce reduce, void *arg, char *err, size_t errlen) {
    const tc_config *c = &t->cfg;
    if (tc_data_next_batch(t->data, t->inputs, t->targets, c->batch_size, c->seq_len, err, errlen) != 0) return -1;
    float l = tc_model_forward(t->model, t->inputs, t->targets, c->batch_size, c->seq_len);
    if (l < 0) return tc_fail(err, errlen, "model: forward pass failed (out of memory?)");
    tc_model_zero_grad(t->model);
    tc_model_backward(t->model);
    if (reduce && reduce(arg, t->model, &l, err, errlen) != 0) return -1;
    tc_model_clip_grad(t->model, c->grad_clip);
    tc_model_update(t->model, tc_trainer_lr(c, t->step), c->beta1, c->beta2, c->eps, c->weight_decay, t->step + 1);
    t->step++;
    if (loss) *loss = l;
    if (!isfinite(l)) return tc_fail(err, errlen, "train: loss is not finite at step %ld", t->step);
    return 0;
}

// ------------------------------------------------------------------------------------------
// Serialisation

typedef struct {
    char magic[8];
    uint32_t version;
    int32_t n_layer, n_embd, n_head, context;
    uint32_t has_outer;
    uint64_t num_params;
    int64_t step;
    uint64_t rng;
    int64_t outer_round;
    uint8_t cursor[16];
} ckpt_header;

int tc_trainer_serialize(tc_trainer *t, uint8_t **buf, size_t *len) {
    size_t P = tc_model_num_params(t->model);
    int has_outer = t->outer_params != NULL;
    size_t body = sizeof(ckpt_header) + (3 + (has_outer ? 2 : 0)) * P * sizeof(float);
    uint8_t *b = malloc(body + 32);
    if (!b) return -1;
    ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.n_layer = t->cfg.n_layer;
    h.n_embd = t->cfg.n_embd;
    h.n_head = t->cfg.n_head;
    h.context = t->cfg.context;
    h.has_outer = (uint32_t)has_outer;
    h.num_params = P;
    h.step = t->step;
    h.rng = t->rng.s;
    h.outer_round = t->outer_round;
    tc_data_save_cursor(t->data, h.cursor, sizeof h.cursor);
    uint8_t *p = b;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    const float *arrays[5] = {tc_model_params(t->model), tc_model_adam_m(t->model), tc_model_adam_v(t->model),
                              t->outer_params, t->outer_momentum};
    for (int i = 0; i < 3 + (has_outer ? 2 : 0); i++) {
        memcpy(p, arrays[i], P * sizeof(float));
        p += P * sizeof(float);
    }
    char digest[65];
    tc_sha256_hex(b, body, digest);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(digest + 2 * i, "%2x", &v);
        b[body + (size_t)i] = (uint8_t)v;
    }
    *buf = b;
    *len = body + 32;
    return 0;
}

int tc_trainer_deserialize(tc_trainer *t, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    ckpt_header h;
    if (len < sizeof h + 32) return tc_fail(err, errlen, "checkpoint: file is truncated (%zu bytes)", len);
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, CKPT_MAGIC, 8) != 0 || h.version != CKPT_VERSION)
        return tc_fail(err, errlen, "checkpoint: not a Stratum trainer checkpoint (bad magic or version)");
    if (h.n_layer != t->cfg.n_layer || h.n_embd != t->cfg.n_embd || h.n_head != t->cfg.n_head ||
        h.context != t->cfg.context)
        return tc_fail(err, errlen,
                       "checkpoint: model shape %dx%d/%d ctx %d does not match the config (%dx%d/%d ctx %d)", h.n_layer,
                       h.n_embd, h.n_head, h.context, t->cfg.n_layer, t->cfg.n_embd, t->cfg.n_head, t->cfg.context);
    size_t P = tc_model_num_params(t->model);
    int narrays = 3 + (h.has_outer ? 2 : 0);
    size_t body = sizeof h + (size_t)narrays * P * sizeof(float);
    if (h.num_params != P || len != body + 32) return tc_fail(err, errlen, "checkpoint: size mismatch (%zu bytes)", len);
    char digest[65], stored[65];
    tc_sha256_hex(buf, body, digest);
    for (int i = 0; i < 32; i++) snprintf(stored + 2 * i, 3, "%02x", buf[body + (size_t)i]);
    if (strcmp(digest, stored) != 0) return tc_fail(err, errlen, "checkpoint: checksum mismatch (corrupted file)");
    if (tc_data_load_cursor(t->data, h.cursor, sizeof h.cursor) != 0)
        return tc_fail(err, errlen, "checkpoint: data cursor does not fit the configured source");
    const uint8_t *p = buf + sizeof h;
    float *arrays[3] = {tc_model_params(t->model), tc_model_adam_m(t->model), tc_model_adam_v(t->model)};
    for (int i = 0; i < 3; i++) {
        memcpy(arrays[i], p, P * sizeof(float));
        p += P * sizeof(float);
    }
    if (h.has_outer) {
        if (!t->outer_params) t->outer_params = malloc(P * sizeof(float));
        if (!t->outer_momentum) t->outer_momentum = malloc(P * sizeof(float));
        if (!t->outer_params || !t->outer_momentum) return tc_fail(err, errlen, "checkpoint: out of memory");
        memcpy(t->outer_params, p, P * sizeof(float));
        memcpy(t->outer_momentum, p + P * sizeof(float), P * sizeof(float));
    }
    t->step = h.step;
    t->rng.s = h.rng;
    t->outer_round = h.outer_round;
    return 0;
}

// ------------------------------------------------------------------------------------------
// Checkpoints in the store

// Highest step that has a DONE marker, or -1.
static long latest_complete(tc_store *s, long *all, int *nall, int cap, char *err, size_t errlen) {
    char *keys = NULL;
    if (tc_store_list(s, "step-", &keys, err, errlen) != 0) return -2;
    long best = -1;
    int n = 0;
    for (char *line = keys; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        long step;
        char tail[64];
        if (sscanf(line, "step-%ld/%63s", &step, tail) == 2 && strcmp(tail, "DONE") == 0) {
            if (step > best) best = step;
            if (all && n < cap) all[n++] = step;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(keys);
    if (nall) *nall = n;
    return best;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

int tc_trainer_save_checkpoint(tc_trainer *t, char *err, size_t errlen) {
    if (!t->store) return tc_fail(err, errlen, "checkpoint: 'checkpoint.dir' is not set");
    uint8_t *buf = NULL;
    size_t len = 0;
    if (tc_trainer_serialize(t, &buf, &len) != 0) return tc_fail(err, errlen, "checkpoint: out of memory");
    char key[128];
    snprintf(key, sizeof key, "step-%010ld/state.bin", t->step);
    int rc = tc_store_put(t->store, key, buf, len, err, errlen);
    free(buf);
    if (rc != 0) return -1;
    snprintf(key, sizeof key, "step-%010ld/DONE", t->step);
    char done[64];
    int dl = snprintf(done, sizeof done, "%ld\n", t->step);
    if (tc_store_put(t->store, key, done, (size_t)dl, err, errlen) != 0) return -1;
    t->last_checkpoint_unix = (double)time(NULL);

    // Retention: drop the oldest complete checkpoints beyond 'keep' (DONE first, then data).
    if (t->cfg.checkpoint_keep > 0) {
        long steps[4096];
        int n = 0;
        if (latest_complete(t->store, steps, &n, 4096, NULL, 0) >= 0 && n > t->cfg.checkpoint_keep) {
            qsort(steps, (size_t)n, sizeof steps[0], cmp_long);
            for (int i = 0; i < n - t->cfg.checkpoint_keep; i++) {
                snprintf(key, sizeof key, "step-%010ld/DONE", steps[i]);
                tc_store_delete(t->store, key, NULL, 0);
                snprintf(key, sizeof key, "step-%010ld/state.bin", steps[i]);
                tc_store_delete(t->store, key, NULL, 0);
            }
        }
    }
    return 0;
}

int tc_trainer_resume(tc_trainer *t, char *err, size_t errlen) {
    if (!t->store) return 0;
    long best = latest_complete(t->store, NULL, NULL, 0, err, errlen);
    if (best == -2) return -1;
    if (best < 0) return 0;
    char key[128];
    snprintf(key, sizeof key, "step-%010ld/state.bin", best);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tc_store_get(t->store, key, &buf, &len, err, errlen);
    if (rc <= 0) {
        free(buf);
        return rc == 0 ? tc_fail(err, errlen, "checkpoint: '%s' is marked DONE but missing", key) : -1;
    }
    rc = tc_trainer_deserialize(t, buf, len, err, errlen);
    free(buf);
    return rc == 0 ? 1 : -1;
}

// DiLoCo hooks: the outer state lives in the trainer so checkpoints carry it.
float *tc_trainer_outer_params(tc_trainer *t) { return t->outer_params; }
float *tc_trainer_outer_momentum(tc_trainer *t) { return t->outer_momentum; }
long *tc_trainer_outer_round(tc_trainer *t) { return &t->outer_round; }
int tc_trainer_enable_outer(tc_trainer *t) {
    size_t P = tc_model_num_params(t->model);
    if (!t->outer_params) {
        t->outer_params = malloc(P * sizeof(float));
        t->outer_momentum = calloc(P, sizeof(float));
        if (!t->outer_params || !t->outer_momentum) return -1;
        memcpy(t->outer_params, tc_model_params(t->model), P * sizeof(float));
    }
    return 0;
}

double tc_trainer_eval(tc_trainer *t, int batches, char *err, size_t errlen) {
    const tc_config *c = &t->cfg;
    // A stream no training shard reads: another RNG stream (synthetic) or the slice after
    // the last worker's starting point (files and objects).
    int nshards = (c->diloco_workers > 0 ? c->diloco_workers : (c->dp_workers > 0 ? c->dp_workers : 1)) + 1;
    int synthetic = strcmp(c->data_source, "synthetic") == 0;
    tc_data *d = synthetic ? tc_data_open(c, 1000003, 1000004, err, errlen) : tc_data_open(c, nshards - 1, nshards, err, errlen);
    if (!d) return -1.0;
    double sum = 0.0;
    for (int b = 0; b < batches; b++) {
        if (tc_data_next_batch(d, t->inputs, t->targets, c->batch_size, c->seq_len, err, errlen) != 0) {
            tc_data_free(d);
            return -1.0;
        }
        sum += tc_model_forward(t->model, t->inputs, t->targets, c->batch_size, c->seq_len);
    }
    tc_data_free(d);
    return batches > 0 ? sum / batches : 0.0;
}

void tc_trainer_params_digest(tc_trainer *t, char out[65]) {
    tc_sha256_hex(tc_model_params(t->model), tc_model_num_params(t->model) * sizeof(float), out);
}
