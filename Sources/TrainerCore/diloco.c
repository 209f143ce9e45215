// DiLoCo: W workers train independently for H inner AdamW steps, then exchange only their
// pseudo-gradients (global weights minus local weights) and take one outer Nesterov-momentum
// SGD step on the average.
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
//
// diloco.exchange p2p: the pseudo-gradients go round a TCP ring between the workers (a ring
// all-gather of the encoded payloads, p2p.c's links) instead of through the store, and every
// worker decodes and averages them exactly as above. The store keeps only small records, and
// its put-if-absent still decides who is in a round:
//   peers/worker-003               "incarnation host port" of worker 3 (written at start)
//   round-000012/ready-003         worker 3's pseudo-gradient is ready (same text: its address now)
//   round-000012/roster-0          the ranks of the first try: every worker ready, or those ready
//                                  by the round deadline (first writer wins, like the manifest)
//   round-000012/done-0-003.ok     worker 3 received every pseudo-gradient of try 0 (.fail: not)
//   round-000012/outcome-0         "commit" and the ranks, once every member reported ok; else
//                                  "retry" and the ranks that reported (a worker that died mid-
//                                  round reports nothing and is dropped); first writer wins
//   round-000012/manifest          written after a commit, as in the store exchange
// A retry runs the ring again among its ranks (try 1, 2, ...). A worker left out of a round, or
// one that restarts into a round already under way or finished, waits for the round's manifest
// and then takes the global weights, outer momentum and round from a peer that is past it
// (tc_p2p_fetch_state): the same bits the others hold, without the pseudo-gradients.
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 64
#define MAX_WORKERS 4096
#define HEADER 16  // a pseudo-gradient on the ring: "DLCO", rank (u32), payload length (u64), then the payload

typedef struct {
    const tc_config *cfg;
    tc_trainer *t;
    tc_store *store;
    size_t P;
    float *delta, *avg;
    int quiet;
    tc_p2p *p2p;       // diloco.exchange p2p
    uint8_t **blocks;  // [W]: pseudo-gradients gathered over the ring (HEADER + payload)
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
static int apply_round(diloco *d, long round, const int *ranks, int n, const uint8_t *own, size_t own_len, uint8_t *const *gathered, char *err,
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
        } else if (gathered) {
            rc = gathered[ranks[i]] ? decode(gathered[ranks[i]] + HEADER, own_len, P, d->delta) : -1;  // received over the ring
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
    if (d->p2p) tc_p2p_lock(d->p2p);  // peers may be reading the state to catch up
    for (size_t k = 0; k < P; k++) {
        float g = d->avg[k] * inv;
        mom[k] = mu * mom[k] + g;
        global[k] -= lr * (g + mu * mom[k]);
    }
    *tc_trainer_outer_round(d->t) = round + 1;
    if (d->p2p) tc_p2p_unlock(d->p2p);
    memcpy(tc_model_params(tc_trainer_model(d->t)), global, P * sizeof(float));
    return 0;
}

// ------------------------------------------------------------------------------------------
// diloco.exchange p2p

static void sort_ranks(int *ranks, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ranks[j - 1] > ranks[j]; j--) {
            int tmp = ranks[j];
            ranks[j] = ranks[j - 1];
            ranks[j - 1] = tmp;
        }
}

static int has_rank(const int *ranks, int n, int rank) {
    for (int i = 0; i < n; i++)
        if (ranks[i] == rank) return 1;
    return 0;
}

// A small record as text: 1 found, 0 absent, -1 error.
static int get_text(diloco *d, const char *key, char *text, size_t cap, char *err, size_t errlen) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tc_store_get(d->store, key, &buf, &len, err, errlen);
    if (rc == 1) snprintf(text, cap, "%.*s", (int)(len < cap ? len : cap - 1), (const char *)buf);
    free(buf);
    return rc;
}

static int exists(diloco *d, const char *key, char *err, size_t errlen) {
    char text[8];
    return get_text(d, key, text, sizeof text, err, errlen);
}

// The ranks listed one per line after `skip` lines.
static int parse_ranks(const char *text, int skip, int *ranks) {
    int n = 0;
    const char *p = text;
    for (int i = 0; i < skip && p; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    while (p && *p && n < MAX_WORKERS) {
        char *end;
        long r = strtol(p, &end, 10);
        if (end == p) break;
        ranks[n++] = (int)r;
        p = strchr(end, '\n');
        if (p) p++;
    }
    return n;
}

static int put_ranks(diloco *d, const char *key, const char *first_line, const int *ranks, int n, char *err, size_t errlen) {
    char *text = malloc((size_t)n * 6 + 32);
    if (!text) return tc_fail(err, errlen, "diloco: out of memory");
    size_t tl = first_line ? (size_t)sprintf(text, "%s\n", first_line) : 0;
    for (int i = 0; i < n; i++) tl += (size_t)sprintf(text + tl, "%d\n", ranks[i]);
    int rc = tc_store_put_if_absent(d->store, key, text, tl, err, errlen);
    free(text);
    return rc < 0 ? -1 : 0;
}

static void poll_pause(diloco *d) { usleep(tc_store_is_remote(d->store) ? 250000 : 20000); }  // each object-store poll is a billed request

// Where worker `rank` listens this round: its p2p.peers entry, else its ready record.
static int ring_address(diloco *d, long round, int rank, char *host, size_t hostlen, int *port, uint64_t *inc, char *err, size_t errlen) {
    char key[96];
    snprintf(key, sizeof key, "round-%06ld/ready-%03d", round, rank);
    int rc = tc_p2p_lookup(d->p2p, d->store, key, rank, host, hostlen, port, inc, err, errlen);
    return rc == 0 ? tc_fail(err, errlen, "diloco: worker %d is in round %ld but its record %s is missing", rank, round, key) : (rc < 0 ? -1 : 0);
}

static uint8_t *block_of(diloco *d, int rank, size_t blen) {
    if (!d->blocks[rank]) d->blocks[rank] = malloc(HEADER + blen);
    return d->blocks[rank];
}

// Ring all-gather of the encoded pseudo-gradients among `roster` (sorted), try `attempt`:
// n-1 steps, each passing on the block received in the step before. 0 when this worker holds
// every member's block, else -1 with err.
static int ring_allgather(diloco *d, long round, int attempt, const int *roster, int n, const uint8_t *blob, size_t blen, char *err, size_t errlen) {
    int me = d->cfg->diloco_rank, pos = 0;
    while (roster[pos] != me) pos++;
    uint8_t *own = block_of(d, me, blen);
    if (!own) return tc_fail(err, errlen, "diloco: out of memory");
    uint32_t r32 = (uint32_t)me;
    uint64_t l64 = blen;
    memcpy(own, "DLCO", 4);
    memcpy(own + 4, &r32, 4);
    memcpy(own + 8, &l64, 8);
    memcpy(own + HEADER, blob, blen);
    if (n == 1) return 0;
    int to = roster[(pos + 1) % n], from = roster[(pos + n - 1) % n];
    double deadline = tc_now() + d->cfg->p2p_timeout_s;
    char host[256];
    int port, out = -1, in = -1, rc = -1;
    uint64_t inc;
    if (ring_address(d, round, to, host, sizeof host, &port, &inc, err, errlen) != 0) return -1;
    if ((out = tc_p2p_connect(d->p2p, host, port, inc, to, round, attempt, deadline, 0, err, errlen)) < 0) goto done;
    if ((in = tc_p2p_accept(d->p2p, round, attempt, from, deadline, err, errlen)) < 0) goto done;
    char what[64];
    snprintf(what, sizeof what, "workers %d and %d (the ring's neighbours)", to, from);
    for (int s = 0; s < n - 1; s++) {
        int send_rank = roster[(pos - s + n) % n], recv_rank = roster[(pos - s - 1 + 2 * n) % n];
        uint8_t *incoming = block_of(d, recv_rank, blen);
        if (!incoming) {
            tc_fail(err, errlen, "diloco: out of memory");
            goto done;
        }
        if (tc_p2p_exchange(d->p2p, out, d->blocks[send_rank], HEADER + blen, in, incoming, HEADER + blen, deadline, what, err, errlen) != 0) goto done;
        memcpy(&r32, incoming + 4, 4);
        memcpy(&l64, incoming + 8, 8);
        if (memcmp(incoming, "DLCO", 4) != 0 || r32 != (uint32_t)recv_rank || l64 != blen) {
            tc_fail(err, errlen, "diloco: worker %d sent a malformed pseudo-gradient for worker %d (%llu bytes, this worker's are %zu: same model and "
                    "'diloco.compress' everywhere?)", from, recv_rank, (unsigned long long)l64, blen);
            goto done;
        }
    }
    rc = 0;
done:
    if (out >= 0) close(out);
    if (in >= 0) close(in);
    return rc;
}

// One round's exchange over the ring, membership decided through the store (see the top of the
// file). 0: committed, with the members in ranks/n; 1: this worker was left out (late); -1 error.
static int p2p_round(diloco *d, long round, const uint8_t *blob, size_t blen, int *ranks, int *n, int *attempts, char *err, size_t errlen) {
    const tc_config *c = d->cfg;
    int me = c->diloco_rank, W = c->diloco_workers;
    char key[96], record[320];
    tc_p2p_record(d->p2p, record, sizeof record);
    snprintf(key, sizeof key, "round-%06ld/ready-%03d", round, me);
    if (tc_store_put(d->store, key, record, strlen(record), err, errlen) != 0) return -1;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "round-%06ld/", round);

    // Try 0's members: every worker, or whoever is ready by the deadline.
    int *roster = malloc(MAX_WORKERS * sizeof *roster), *seen = malloc(MAX_WORKERS * sizeof *seen), nr = 0;
    char *text = malloc(MAX_WORKERS * 6 + 32);
    int rc = -1;
    if (!roster || !seen || !text) {
        tc_fail(err, errlen, "diloco: out of memory");
        goto out;
    }
    double deadline = tc_now() + c->diloco_round_timeout_s;
    snprintf(key, sizeof key, "round-%06ld/roster-0", round);
    for (;;) {
        int got = get_text(d, key, text, MAX_WORKERS * 6 + 32, err, errlen);
        if (got < 0) goto out;
        if (got == 1) {
            nr = parse_ranks(text, 0, roster);
            break;
        }
        char *keys = NULL;
        if (tc_store_list(d->store, prefix, &keys, err, errlen) != 0) goto out;
        int ns = 0;
        for (char *line = keys; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            int r;
            char extra;
            if (sscanf(line, "round-%*d/ready-%d%c", &r, &extra) == 1 && r >= 0 && r < W && ns < MAX_WORKERS) seen[ns++] = r;
            line = nl ? nl + 1 : NULL;
        }
        free(keys);
        if (ns >= W || tc_now() >= deadline) {
            sort_ranks(seen, ns);
            if (put_ranks(d, key, NULL, seen, ns, err, errlen) != 0) goto out;
            continue;  // read back whichever roster won
        }
        poll_pause(d);
    }

    for (int a = 0;; a++) {
        *attempts = a + 1;
        if (!has_rank(roster, nr, me)) {
            rc = 1;
            goto out;
        }
        if (a > W + 1) {
            tc_fail(err, errlen, "diloco: round %ld: the p2p exchange failed %d times; see the lines above for why", round, a);
            goto out;
        }
        char okey[96];
        snprintf(okey, sizeof okey, "round-%06ld/outcome-%d", round, a);
        int got = get_text(d, okey, text, MAX_WORKERS * 6 + 32, err, errlen), ok = 0;
        if (got < 0) goto out;
        if (got == 0) {
            char why[TC_ERR_MAX] = "";
            ok = ring_allgather(d, round, a, roster, nr, blob, blen, why, sizeof why) == 0;
            if (!ok && !d->quiet) {
                printf("worker %d: round %ld, try %d among %d workers failed: %s\n", me, round + 1, a, nr, why);
                fflush(stdout);
            }
            snprintf(key, sizeof key, "round-%06ld/done-%d-%03d.%s", round, a, me, ok ? "ok" : "fail");
            if (tc_store_put(d->store, key, ok ? "" : why, ok ? 0 : strlen(why), err, errlen) != 0) goto out;
            // Every member's report, or the deadline: then commit (all ok) or retry among those
            // that reported.
            deadline = tc_now() + c->diloco_round_timeout_s;
            for (;;) {
                got = get_text(d, okey, text, MAX_WORKERS * 6 + 32, err, errlen);
                if (got < 0) goto out;
                if (got == 1) break;
                char *keys = NULL;
                if (tc_store_list(d->store, prefix, &keys, err, errlen) != 0) goto out;
                int ns = 0, all_ok = 1;
                for (char *line = keys; line && *line;) {
                    char *nl = strchr(line, '\n');
                    if (nl) *nl = 0;
                    int t, r;
                    char status[8] = "", extra;  // nothing may follow: a directory store's temporary files do
                    if (sscanf(line, "round-%*d/done-%d-%d.%7[a-z]%c", &t, &r, status, &extra) == 3 && t == a && has_rank(roster, nr, r) && !has_rank(seen, ns, r)) {
                        seen[ns++] = r;
                        all_ok &= strcmp(status, "ok") == 0;
                    }
                    line = nl ? nl + 1 : NULL;
                }
                free(keys);
                if (ns >= nr || tc_now() >= deadline) {
                    sort_ranks(seen, ns);
                    int commit = ns == nr && all_ok;
                    if (put_ranks(d, okey, commit ? "commit" : "retry", commit ? roster : seen, commit ? nr : ns, err, errlen) != 0) goto out;
                    continue;  // read back whichever outcome won
                }
                poll_pause(d);
            }
        }
        if (strncmp(text, "commit\n", 7) == 0) {
            // A commit needs every member's ok, this worker's too: without it (it found the
            // outcome already written) it holds no blocks of this try.
            if (!ok) {
                rc = 1;
                goto out;
            }
            *n = parse_ranks(text, 1, ranks);
            rc = 0;
            goto out;
        }
        if (strncmp(text, "retry\n", 6) != 0) {
            tc_fail(err, errlen, "diloco: round %ld: the record outcome-%d is malformed", round, a);
            goto out;
        }
        nr = parse_ranks(text, 1, roster);
    }
out:
    free(roster);
    free(seen);
    free(text);
    return rc;
}

// This worker missed round `round` (left out, or restarted into it): waits until the others
// finished it (its manifest), then takes the global state from a peer past it. 0 or -1.
static int p2p_catch_up(diloco *d, long round, int *source, char *err, size_t errlen) {
    const tc_config *c = d->cfg;
    int me = c->diloco_rank, W = c->diloco_workers;
    // The others may need every try of the round, each up to both timeouts.
    double deadline = tc_now() + (double)(W + 2) * (c->diloco_round_timeout_s + c->p2p_timeout_s);
    char key[96];
    snprintf(key, sizeof key, "round-%06ld/manifest", round);
    for (;;) {
        int m = exists(d, key, err, errlen);
        if (m < 0) return -1;
        if (m == 1) break;
        if (tc_now() >= deadline) return tc_fail(err, errlen, "diloco: round %ld is under way without this worker and was never finished", round + 1);
        poll_pause(d);
    }
    float *global = malloc(d->P * sizeof(float)), *mom = malloc(d->P * sizeof(float));
    if (!global || !mom) {
        free(global);
        free(mom);
        return tc_fail(err, errlen, "diloco: out of memory");
    }
    char last[TC_ERR_MAX] = "no other worker";
    int rc = -1;
    while (rc != 0) {
        for (int k = 0; k < W && rc != 0; k++) {
            if (k == me) continue;
            char host[256], rec[64];
            int port;
            uint64_t inc;
            long r = 0;
            snprintf(rec, sizeof rec, "peers/worker-%03d", k);
            int found = tc_p2p_lookup(d->p2p, d->store, rec, k, host, sizeof host, &port, &inc, last, sizeof last);
            if (found != 1) continue;
            double soon = tc_now() + c->p2p_timeout_s < deadline ? tc_now() + c->p2p_timeout_s : deadline;
            if (tc_p2p_fetch_state(d->p2p, host, port, global, mom, d->P, &r, soon, last, sizeof last) != 1) continue;
            if (r <= round) {
                snprintf(last, sizeof last, "worker %d has not finished round %ld yet", k, round + 1);
                continue;
            }
            tc_p2p_lock(d->p2p);
            memcpy(tc_trainer_outer_params(d->t), global, d->P * sizeof(float));
            memcpy(tc_trainer_outer_momentum(d->t), mom, d->P * sizeof(float));
            *tc_trainer_outer_round(d->t) = r;
            tc_p2p_unlock(d->p2p);
            memcpy(tc_model_params(tc_trainer_model(d->t)), global, d->P * sizeof(float));
            *source = k;
            rc = 0;
        }
        if (rc != 0) {
            if (tc_now() >= deadline) {
                tc_fail(err, errlen, "diloco: cannot catch up after round %ld: no peer gave its state (%s)", round + 1, last);
                break;
            }
            usleep(100 * 1000);
        }
    }
    free(global);
    free(mom);
    return rc;
}

// After the last round: a worker that was left out of it catches up from the others, so they
// keep answering until every worker says it is finished (or both timeouts pass).
static int p2p_linger(diloco *d, char *err, size_t errlen) {
    const tc_config *c = d->cfg;
    char key[96], prefix[64];
    long last = c->diloco_rounds - 1;
    snprintf(key, sizeof key, "round-%06ld/finished-%03d", last, c->diloco_rank);
    if (tc_store_put(d->store, key, "", 0, err, errlen) != 0) return -1;
    snprintf(prefix, sizeof prefix, "round-%06ld/finished-", last);
    double deadline = tc_now() + c->diloco_round_timeout_s + c->p2p_timeout_s;
    while (tc_now() < deadline) {
        char *keys = NULL;
        if (tc_store_list(d->store, prefix, &keys, err, errlen) != 0) return -1;
        int n = 0;
        for (char *line = keys; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            int r;
            char extra;
            n += sscanf(line, "round-%*d/finished-%d%c", &r, &extra) == 1;
            line = nl ? nl + 1 : NULL;
        }
        free(keys);
        if (n >= c->diloco_workers) break;
        poll_pause(d);
    }
    return 0;
}

// After p2p_catch_up: reports the rounds this worker missed and checkpoints where it now is.
static int caught_up(diloco *d, long from_round, int source, tc_diloco_result *res, tc_metrics *metrics, double *ck_time, char *err, size_t errlen) {
    long now_round = *tc_trainer_outer_round(d->t);
    res->rounds_skipped += (int)(now_round - from_round);
    if (!d->quiet) {
        printf("worker %d: rounds %ld-%ld went on without this worker; caught up from worker %d after round %ld\n", d->cfg->diloco_rank, from_round + 1,
               now_round, source, now_round);
        fflush(stdout);
    }
    if (d->cfg->checkpoint_dir[0]) {
        if (tc_trainer_save_checkpoint(d->t, err, errlen) != 0) return -1;
        *ck_time = (double)time(NULL);
    }
    tc_metrics_update_exchange(metrics, now_round, tc_p2p_bytes_sent(d->p2p), tc_p2p_bytes_received(d->p2p));
    return 0;
}

int tc_diloco_run(const tc_config *c, tc_diloco_result *res, tc_metrics *metrics, int quiet, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (c->diloco_workers < 1) return tc_fail(err, errlen, "config: 'diloco.workers' must be at least 1 for DiLoCo mode");
    if (c->diloco_workers > MAX_WORKERS) return tc_fail(err, errlen, "config: 'diloco.workers' is above %d", MAX_WORKERS);
    diloco d = {c, NULL, NULL, 0, NULL, NULL, quiet, NULL, NULL};
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
    if (c->diloco_p2p) {
        d.blocks = calloc((size_t)c->diloco_workers, sizeof *d.blocks);
        if (!d.blocks) {
            tc_fail(err, errlen, "diloco: out of memory");
            goto out;
        }
        if (!(d.p2p = tc_p2p_open(c, c->diloco_rank, "diloco", err, errlen))) goto out;
        tc_p2p_serve_state(d.p2p, tc_trainer_outer_params(d.t), tc_trainer_outer_momentum(d.t), tc_trainer_outer_round(d.t), d.P);
        if (tc_p2p_publish(d.p2p, d.store, err, errlen) != 0) goto out;
        if (!quiet) {
            char record[320];
            tc_p2p_record(d.p2p, record, sizeof record);
            unsigned long long inc = 0;
            char host[256] = "";
            int port = 0;
            sscanf(record, "%llu %255s %d", &inc, host, &port);
            printf("worker %d: exchanging pseudo-gradients over TCP, listening as %s:%d (incarnation %llx)\n", c->diloco_rank, host, port, inc);
            fflush(stdout);
        }
    }
    tc_model *model = tc_trainer_model(d.t);
    long tokens_per_step = (long)c->batch_size * c->seq_len;
    double ck_time = 0.0;
    tc_metrics_update_exchange(metrics, *tc_trainer_outer_round(d.t), 0, 0);

    for (long round = *tc_trainer_outer_round(d.t); round < c->diloco_rounds; round = *tc_trainer_outer_round(d.t)) {
        int n = 0, attempts = 1, source = -1;
        if (d.p2p) {
            // A round the others finished or started without this worker (it restarted, or
            // fell behind): take the state from a peer instead of replaying.
            char key[96];
            snprintf(key, sizeof key, "round-%06ld/manifest", round);
            int under_way = exists(&d, key, err, errlen);
            if (under_way == 0) {
                snprintf(key, sizeof key, "round-%06ld/roster-0", round);
                under_way = exists(&d, key, err, errlen);
            }
            if (under_way < 0) goto out;
            if (under_way == 1) {
                if (p2p_catch_up(&d, round, &source, err, errlen) != 0 || caught_up(&d, round, source, res, metrics, &ck_time, err, errlen) != 0) goto out;
                continue;
            }
        } else {
            // Rounds the others already finished (this worker restarted): replay them.
            int m = read_manifest(&d, round, ranks, &n, err, errlen);
            if (m < 0) goto out;
            if (m == 1) {
                if (apply_round(&d, round, ranks, n, NULL, 0, NULL, err, errlen) != 0) goto out;
                res->rounds_skipped++;
                if (!quiet) printf("worker %d: round %ld already finished by %d workers, caught up\n", c->diloco_rank, round, n);
                continue;
            }
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
        int included = 1;
        if (d.p2p) {
            int got = p2p_round(&d, round, blob, blen, ranks, &n, &attempts, err, errlen);
            if (got < 0) goto out;
            if (got == 1) {
                if (!quiet) {
                    printf("worker %d: round %ld went on without this worker (late)\n", c->diloco_rank, round + 1);
                    fflush(stdout);
                }
                if (p2p_catch_up(&d, round, &source, err, errlen) != 0 || caught_up(&d, round, source, res, metrics, &ck_time, err, errlen) != 0) goto out;
                continue;
            }
            if (apply_round(&d, round, ranks, n, blob, blen, d.blocks, err, errlen) != 0) goto out;
            char mkey[96];
            snprintf(mkey, sizeof mkey, "round-%06ld/manifest", round);
            if (put_ranks(&d, mkey, NULL, ranks, n, err, errlen) != 0) goto out;
        } else {
            char key[96];
            worker_key(key, sizeof key, round, c->diloco_rank);
            if (tc_store_put(d.store, key, blob, blen, err, errlen) != 0) goto out;

            // Wait for the others (real processes on other machines) until the deadline.
            double deadline = tc_now() + c->diloco_round_timeout_s;
            char prefix[64];
            snprintf(prefix, sizeof prefix, "round-%06ld/", round);
            for (;;) {
                int m = read_manifest(&d, round, ranks, &n, err, errlen);
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
                    sort_ranks(ranks, n);
                    char mkey[96];
                    snprintf(mkey, sizeof mkey, "round-%06ld/manifest", round);
                    if (put_ranks(&d, mkey, NULL, ranks, n, err, errlen) != 0) goto out;
                    continue;  // read back whichever manifest won
                }
                poll_pause(&d);
            }
            included = has_rank(ranks, n, c->diloco_rank);
            if (!included) res->rounds_skipped++;
            if (apply_round(&d, round, ranks, n, blob, blen, NULL, err, errlen) != 0) goto out;
        }
        res->rounds_done++;
        res->final_loss = inner_loss;
        if (c->checkpoint_dir[0]) {
            if (tc_trainer_save_checkpoint(d.t, err, errlen) != 0) goto out;
            ck_time = (double)time(NULL);
        }
        uint64_t sent = d.p2p ? tc_p2p_bytes_sent(d.p2p) : 0, received = d.p2p ? tc_p2p_bytes_received(d.p2p) : 0;
        uint64_t bytes = tc_store_bytes(d.store) + tc_data_bytes_fetched(tc_trainer_data(d.t)) + sent + received;
        double tps = dt > 0 ? (double)tokens_per_step * c->diloco_inner_steps / dt : 0.0;
        tc_metrics_update(metrics, tc_trainer_step_count(d.t), inner_loss, tps, ck_time, bytes);
        tc_metrics_update_exchange(metrics, *tc_trainer_outer_round(d.t), sent, received);
        if (!quiet) {
            char p2p_text[128] = "";
            if (d.p2p)
                snprintf(p2p_text, sizeof p2p_text, ", p2p sent %llu received %llu%s", (unsigned long long)sent, (unsigned long long)received,
                         attempts > 1 ? " (after a failed try)" : "");
            printf("worker %d: round %ld/%d inner loss %.4f, averaged %d pseudo-gradients%s, tok/s %.0f, bytes %llu%s\n", c->diloco_rank, round + 1,
                   c->diloco_rounds, inner_loss, n, included ? "" : " (this worker was late: skipped)", tps, (unsigned long long)bytes, p2p_text);
            fflush(stdout);
        }
    }
    if (d.p2p && p2p_linger(&d, err, errlen) != 0) goto out;
    if (d.p2p) {
        res->p2p_bytes_sent = tc_p2p_bytes_sent(d.p2p);
        res->p2p_bytes_received = tc_p2p_bytes_received(d.p2p);
    }
    res->bytes_exchanged = tc_store_bytes(d.store) + res->p2p_bytes_sent + res->p2p_bytes_received;
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
    tc_p2p_close(d.p2p);
    if (d.blocks)
        for (int i = 0; i < c->diloco_workers; i++) free(d.blocks[i]);
    free(d.blocks);
    tc_store_free(d.store);
    tc_trainer_free(d.t);
    return rc;
}
