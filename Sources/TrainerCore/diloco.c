// DiLoCo: W workers train independently for H inner AdamW steps, then exchange only their
// pseudo-gradients (global weights minus local weights) through an object store and take
// one outer Nesterov-momentum SGD step on the average.
//
// Store layout (diloco.store, a directory or s3://bucket/prefix):
//   round-000012/worker-003.bin   pseudo-gradient of worker 3 for round 12
//   round-000012/manifest         sorted ranks whose pseudo-gradients make up round 12
//
// Agreement without a coordinator: after publishing, a worker waits until all W
// pseudo-gradients exist or the round deadline passes, then creates the manifest with
// put-if-absent. The first manifest wins; every worker averages exactly the ranks it names,
// in rank order, so all replicas stay bit-identical. A worker whose pseudo-gradient is not in
// the manifest (late, or restarted) is skipped for that round but still applies it, and a
// worker restarting from an older checkpoint replays finished rounds before training again.
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 64
#define MAX_WORKERS 4096

typedef struct {
    const tc_config *cfg;
    tc_trainer *t;
    tc_store *store;
    size_t P;
    float *delta, *avg;
    int quiet;
} diloco;

// Encodes a pseudo-gradient: float32 as is, or int8 with one float scale per BLOCK values.
static uint8_t *encode(const float *d, size_t P, int compress, size_t *len) {
    if (!compress) {
        uint8_t *b = malloc(4 + P * sizeof(float));
        if (!b) return NULL;
        memcpy(b, "F32\n", 4);
        memcpy(b + 4, d, P * sizeof(float));
        *len = 4 + P * sizeof(float);
        return b;
    }
    size_t nb = (P + BLOCK - 1) / BLOCK;
    uint8_t *b = malloc(4 + nb * sizeof(float) + P);
    if (!b) return NULL;
    memcpy(b, "I8\n\n", 4);
    float *scales = (float *)(b + 4);
    int8_t *q = (int8_t *)(b + 4 + nb * sizeof(float));
    for (size_t k = 0; k < nb; k++) {
        size_t i0 = k * BLOCK, i1 = i0 + BLOCK < P ? i0 + BLOCK : P;
        float amax = 0.0f;
        for (size_t i = i0; i < i1; i++) amax = fabsf(d[i]) > amax ? fabsf(d[i]) : amax;
        float scale = amax / 127.0f;
        memcpy(&scales[k], &scale, sizeof scale);
        float inv = scale > 0 ? 1.0f / scale : 0.0f;
        for (size_t i = i0; i < i1; i++) q[i] = (int8_t)lrintf(d[i] * inv);
    }
    *len = 4 + nb * sizeof(float) + P;
    return b;
}

static int decode(const uint8_t *b, size_t len, size_t P, float *out) {
    if (len == 4 + P * sizeof(float) && memcmp(b, "F32\n", 4) == 0) {
        memcpy(out, b + 4, P * sizeof(float));
        return 0;
    }
    size_t nb = (P + BLOCK - 1) / BLOCK;
    if (len != 4 + nb * sizeof(float) + P || memcmp(b, "I8\n\n", 4) != 0) return -1;
    const int8_t *q = (const int8_t *)(b + 4 + nb * sizeof(float));
    for (size_t k = 0; k < nb; k++) {
        float scale;
        memcpy(&scale, b + 4 + k * sizeof(float), sizeof scale);
        size_t i0 = k * BLOCK, i1 = i0 + BLOCK < P ? i0 + BLOCK : P;
        for (size_t i = i0; i < i1; i++) out[i] = scale * (float)q[i];
    }
    return 0;
}

static void worker_key(char *out, size_t n, long round, int rank) {
    snprintf(out, n, "round-%06ld/worker-%03d.bin", round, rank);
}

// Reads the manifest of a round into ranks; 1 found, 0 absent, -1 error.
static int read_manifest(diloco *d, long round, int *ranks, int *n, char *err, size_t errlen) {
    char key[96];
    snprintf(key, sizeof key, "round-%06ld/manifest", round);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tc_store_get(d->store, key, &buf, &len, err, errlen);
    if (rc <= 0) return rc;
    *n = 0;
    char *text = malloc(len + 1);
    memcpy(text, buf, len);
    text[len] = 0;
    free(buf);
    for (char *tok = strtok(text, " \n"); tok && *n < MAX_WORKERS; tok = strtok(NULL, " \n")) ranks[(*n)++] = atoi(tok);
    free(text);
    return 1;
}

// Outer step from the manifest's pseudo-gradients: mom = mu*mom + avg;
// global -= lr * (avg + mu*mom)  (Nesterov), then the local model restarts from global.
static int apply_round(diloco *d, long round, const int *ranks, int n, const uint8_t *own, size_t own_len, char *err,
                       size_t errlen) {
    const tc_config *c = d->cfg;
    size_t P = d->P;
    memset(d->avg, 0, P * sizeof(float));
    for (int i = 0; i < n; i++) {
        char key[96];
        worker_key(key, sizeof key, round, ranks[i]);
        int rc;
        if (own && ranks[i] == d->cfg->diloco_rank) {
            rc = decode(own, own_len, P, d->delta);  // the bytes this worker published: no download
        } else {
            uint8_t *buf = NULL;
            size_t len = 0;
            rc = tc_store_get(d->store, key, &buf, &len, err, errlen);
            if (rc == 0) rc = tc_fail(err, errlen, "diloco: round %ld names worker %d but its pseudo-gradient is missing", round, ranks[i]);
            if (rc < 0) {
                free(buf);
                return -1;
            }
            rc = decode(buf, len, P, d->delta);
            free(buf);
        }
        if (rc != 0) return tc_fail(err, errlen, "diloco: pseudo-gradient %s is malformed", key);
        for (size_t k = 0; k < P; k++) d->avg[k] += d->delta[k];
    }
    float inv = 1.0f / (float)n, mu = c->diloco_outer_momentum, lr = c->diloco_outer_lr;
    float *global = tc_trainer_outer_params(d->t), *mom = tc_trainer_outer_momentum(d->t);
    for (size_t k = 0; k < P; k++) {
        float g = d->avg[k] * inv;
        mom[k] = mu * mom[k] + g;
        global[k] -= lr * (g + mu * mom[k]);
    }
    memcpy(tc_model_params(tc_trainer_model(d->t)), global, P * sizeof(float));
    *tc_trainer_outer_round(d->t) = round + 1;
    return 0;
}

int tc_diloco_run(const tc_config *c, tc_diloco_result *res, tc_metrics *metrics, int quiet, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (c->diloco_workers < 1) return tc_fail(err, errlen, "config: 'diloco.workers' must be at least 1 for DiLoCo mode");
    if (c->diloco_workers > MAX_WORKERS) return tc_fail(err, errlen, "config: 'diloco.workers' is above %d", MAX_WORKERS);
    diloco d = {c, NULL, NULL, 0, NULL, NULL, quiet};
    int ranks[MAX_WORKERS];
    int rc = -1;
    uint8_t *blob = NULL;
    size_t blen = 0;
    tc_config inner = *c;
    inner.steps = (long)c->diloco_rounds * c->diloco_inner_steps;  // the inner lr schedule spans the whole run
    d.t = tc_trainer_create(&inner, err, errlen);
    if (!d.t) return -1;
    d.store = tc_store_open(c->diloco_store, c->s3_endpoint, c->s3_region, err, errlen);
    if (!d.store) goto out;
    d.P = tc_model_num_params(tc_trainer_model(d.t));
    d.delta = malloc(d.P * sizeof(float));
    d.avg = malloc(d.P * sizeof(float));
    if (!d.delta || !d.avg || tc_trainer_enable_outer(d.t) != 0) {
        tc_fail(err, errlen, "diloco: out of memory");
        goto out;
    }
    int resumed = tc_trainer_resume(d.t, err, errlen);
    if (resumed < 0) goto out;
    if (resumed == 1 && !quiet) {
        printf("worker %d: resumed from its checkpoint at step %ld (round %ld)\n", c->diloco_rank, tc_trainer_step_count(d.t), *tc_trainer_outer_round(d.t));
        fflush(stdout);
    }
    tc_model *model = tc_trainer_model(d.t);
    long tokens_per_step = (long)c->batch_size * c->seq_len;
    double ck_time = 0.0;

    for (long round = *tc_trainer_outer_round(d.t); round < c->diloco_rounds; round++) {
        int n = 0;
        // Rounds the others already finished (this worker restarted): replay them.
        int m = read_manifest(&d, round, ranks, &n, err, errlen);
        if (m < 0) goto out;
        if (m == 1) {
            if (apply_round(&d, round, ranks, n, NULL, 0, err, errlen) != 0) goto out;
            res->rounds_skipped++;
            if (!quiet) printf("worker %d: round %ld already finished by %d workers, caught up\n", c->diloco_rank, round, n);
            continue;
        }
        // Inner steps from the global weights.
        double t0 = tc_now(), loss_sum = 0.0;
        for (int h = 0; h < c->diloco_inner_steps; h++) {
            float loss;
            if (tc_trainer_step(d.t, &loss, err, errlen) != 0) goto out;
            loss_sum += loss;
        }
        double inner_loss = loss_sum / c->diloco_inner_steps, dt = tc_now() - t0;
        const float *global = tc_trainer_outer_params(d.t), *local = tc_model_params(model);
        for (size_t k = 0; k < d.P; k++) d.delta[k] = global[k] - local[k];
        free(blob);
        blob = encode(d.delta, d.P, c->diloco_compress, &blen);
        if (!blob) {
            tc_fail(err, errlen, "diloco: out of memory");
            goto out;
        }
        char key[96];
        worker_key(key, sizeof key, round, c->diloco_rank);
        if (tc_store_put(d.store, key, blob, blen, err, errlen) != 0) goto out;

        // Wait for the others (real processes on other machines) until the deadline.
        double deadline = tc_now() + c->diloco_round_timeout_s;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "round-%06ld/", round);
        for (;;) {
            m = read_manifest(&d, round, ranks, &n, err, errlen);
            if (m < 0) goto out;
            if (m == 1) break;
            char *keys = NULL;
            if (tc_store_list(d.store, prefix, &keys, err, errlen) != 0) goto out;
            n = 0;
            for (char *line = keys; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl) *nl = 0;
                int r;
                if (sscanf(line, "round-%*d/worker-%d.bin", &r) == 1 && r >= 0 && r < c->diloco_workers && n < MAX_WORKERS)
                    ranks[n++] = r;
                line = nl ? nl + 1 : NULL;
            }
            free(keys);
            if (n >= c->diloco_workers || tc_now() >= deadline) {
                // Sorted list of ranks present now; the first manifest written wins.
                for (int i = 1; i < n; i++)
                    for (int j = i; j > 0 && ranks[j - 1] > ranks[j]; j--) {
                        int tmp = ranks[j];
                        ranks[j] = ranks[j - 1];
                        ranks[j - 1] = tmp;
                    }
                char text[MAX_WORKERS * 6];
                size_t tl = 0;
                for (int i = 0; i < n; i++) tl += (size_t)snprintf(text + tl, sizeof text - tl, "%d\n", ranks[i]);
                char mkey[96];
                snprintf(mkey, sizeof mkey, "round-%06ld/manifest", round);
                if (tc_store_put_if_absent(d.store, mkey, text, tl, err, errlen) < 0) goto out;
                continue;  // read back whichever manifest won
            }
            usleep(tc_store_is_remote(d.store) ? 250000 : 20000);  // each object-store poll is a billed request
        }
        int included = 0;
        for (int i = 0; i < n; i++) included |= ranks[i] == c->diloco_rank;
        if (!included) res->rounds_skipped++;
        if (apply_round(&d, round, ranks, n, blob, blen, err, errlen) != 0) goto out;
        res->rounds_done++;
        res->final_loss = inner_loss;
        if (c->checkpoint_dir[0]) {
            if (tc_trainer_save_checkpoint(d.t, err, errlen) != 0) goto out;
            ck_time = (double)time(NULL);
        }
        uint64_t bytes = tc_store_bytes(d.store) + tc_data_bytes_fetched(tc_trainer_data(d.t));
        tc_metrics_update(metrics, tc_trainer_step_count(d.t), inner_loss,
                          dt > 0 ? (double)tokens_per_step * c->diloco_inner_steps / dt : 0.0, ck_time, bytes);
        if (!quiet) {
            printf("worker %d: round %ld/%d inner loss %.4f, averaged %d pseudo-gradients%s, tok/s %.0f, bytes %llu\n",
                   c->diloco_rank, round + 1, c->diloco_rounds, inner_loss, n, included ? "" : " (this worker was late: skipped)",
                   dt > 0 ? (double)tokens_per_step * c->diloco_inner_steps / dt : 0.0, (unsigned long long)bytes);
            fflush(stdout);
        }
    }
    res->bytes_exchanged = tc_store_bytes(d.store);
    if (c->eval_batches > 0) {
        double ev = tc_trainer_eval(d.t, c->eval_batches, err, errlen);
        if (ev < 0) goto out;
        res->final_loss = ev;
    }
    char digest[65];
    tc_trainer_params_digest(d.t, digest);
    if (!quiet) printf("worker %d: eval loss %.4f, weights sha256 %s\n", c->diloco_rank, res->final_loss, digest);
    rc = 0;
out:
    free(blob);
    free(d.delta);
    free(d.avg);
    tc_store_free(d.store);
    tc_trainer_free(d.t);
    return rc;
}
