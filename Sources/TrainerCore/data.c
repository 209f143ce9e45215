// Data sources. Every source is a stream of bytes read through a cursor; a batch is B*T+1
// consecutive bytes (row b holds bytes [b*T, b*T+T]) and the cursor then moves B*T on.
//
//   synthetic  a seeded first-order Markov chain over bytes whose entropy rate (the best
//              achievable loss) is computed exactly from its stationary distribution
//   file       a local file read in chunks with pread, wrapping around at the end
//   http(s), s3://, gs://  an object read in chunks with Range requests, wrapping around at the end
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { SRC_SYNTHETIC, SRC_FILE, SRC_HTTP, SRC_OBJECT } source_kind;

typedef struct {
    uint8_t succ[TC_VOCAB][TC_VOCAB];
    float cdf[TC_VOCAB][TC_VOCAB];
    int branching;
} markov_table;

struct tc_data {
    source_kind kind;
    // synthetic
    markov_table *table;
    tc_rng rng;
    uint8_t last;
    double entropy;
    // streamed sources
    uint64_t size, pos;
    uint8_t *chunk;
    uint64_t chunk_start, chunk_len, chunk_cap;
    int fd;
    char url[TC_PATH_MAX];
    char key[TC_PATH_MAX];
    tc_store *store;  // object sources: the bucket, key relative to it
    uint64_t fetched;
};

// Successor 0 of byte s is s+1, so the chain is irreducible whatever the random choices.
static void markov_build(markov_table *mt, uint64_t seed, int branching) {
    tc_rng r;
    tc_rng_seed(&r, seed);
    mt->branching = branching;
    for (int s = 0; s < TC_VOCAB; s++) {
        uint8_t used[TC_VOCAB] = {0};
        mt->succ[s][0] = (uint8_t)((s + 1) % TC_VOCAB);
        used[mt->succ[s][0]] = 1;
        for (int j = 1; j < branching; j++) {
            int c;
            do c = (int)(tc_rng_u64(&r) % TC_VOCAB);
            while (used[c]);
            used[c] = 1;
            mt->succ[s][j] = (uint8_t)c;
        }
        float w[TC_VOCAB], sum = 0.0f;
        for (int j = 0; j < branching; j++) {
            w[j] = 0.1f + tc_rng_uniform(&r);
            sum += w[j];
        }
        float acc = 0.0f;
        for (int j = 0; j < branching; j++) {
            acc += w[j] / sum;
            mt->cdf[s][j] = acc;
        }
        mt->cdf[s][branching - 1] = 1.0f;
    }
}

static double markov_prob(const markov_table *mt, int s, int j) {
    return (double)mt->cdf[s][j] - (j > 0 ? (double)mt->cdf[s][j - 1] : 0.0);
}

// H = sum_s pi(s) * H(next | s), with pi from a damped power iteration (converges for any
// irreducible chain, periodic or not).
static double markov_entropy(const markov_table *mt) {
    double pi[TC_VOCAB], next[TC_VOCAB];
    for (int s = 0; s < TC_VOCAB; s++) pi[s] = 1.0 / TC_VOCAB;
    for (int it = 0; it < 20000; it++) {
        for (int s = 0; s < TC_VOCAB; s++) next[s] = 0.5 * pi[s];
        for (int s = 0; s < TC_VOCAB; s++)
            for (int j = 0; j < mt->branching; j++) next[mt->succ[s][j]] += 0.5 * pi[s] * markov_prob(mt, s, j);
        double diff = 0.0;
        for (int s = 0; s < TC_VOCAB; s++) {
            diff += fabs(next[s] - pi[s]);
            pi[s] = next[s];
        }
        if (diff < 1e-15) break;
    }
    double h = 0.0;
    for (int s = 0; s < TC_VOCAB; s++)
        for (int j = 0; j < mt->branching; j++) {
            double p = markov_prob(mt, s, j);
            if (p > 0) h -= pi[s] * p * log(p);
        }
    return h;
}

double tc_markov_entropy_rate(uint64_t markov_seed, int branching) {
    markov_table *mt = malloc(sizeof *mt);
    if (!mt) return -1.0;
    markov_build(mt, markov_seed, branching);
    double h = markov_entropy(mt);
    free(mt);
    return h;
}

static uint8_t markov_next(tc_data *d) {
    float u = tc_rng_uniform(&d->rng);
    const float *cdf = d->table->cdf[d->last];
    int j = 0;
    while (j < d->table->branching - 1 && u >= cdf[j]) j++;
    d->last = d->table->succ[d->last][j];
    return d->last;
}

// Fills d->chunk with bytes starting at offset (clamped to the object end).
static int load_chunk(tc_data *d, uint64_t offset, char *err, size_t errlen) {
    uint64_t want = d->chunk_cap;
    if (d->size && offset + want > d->size) want = d->size - offset;
    if (d->kind == SRC_FILE) {
        ssize_t n = pread(d->fd, d->chunk, want, (off_t)offset);
        if (n <= 0) return tc_fail(err, errlen, "data: read of '%s' failed at offset %llu: %s", d->url,
                                   (unsigned long long)offset, n == 0 ? "unexpected end of file" : strerror(errno));
        d->chunk_len = (uint64_t)n;
    } else {
        char range[96];
        snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)offset, (unsigned long long)(offset + want - 1));
        tc_http_response resp = {0};
        int rc = d->kind == SRC_OBJECT ? tc_store_get_range(d->store, d->key, range, &resp, err, errlen)
                                       : tc_http_get(d->url, range, &resp, err, errlen);
        if (rc != 0) {
            tc_buf_free(&resp.body);
            char inner[TC_ERR_MAX];
            snprintf(inner, sizeof inner, "%s", err ? err : "");
            return tc_fail(err, errlen, "data: cannot fetch '%s': %s", d->url, inner);
        }
        if (resp.status != 206 && resp.status != 200) {
            int r2 = tc_fail(err, errlen, "data: fetching '%s' returned HTTP %ld", d->url, resp.status);
            tc_buf_free(&resp.body);
            return r2;
        }
        if (d->size == 0) {  // first request: learn the object size
            const char *slash = strchr(resp.content_range, '/');
            if (resp.status == 206 && slash)
                d->size = strtoull(slash + 1, NULL, 10);
            else if (resp.status == 200 && resp.body.len <= d->chunk_cap)
                d->size = resp.body.len;  // small object sent whole
            else {
                tc_buf_free(&resp.body);
                return tc_fail(err, errlen, "data: '%s' does not support Range requests; refusing to download it whole", d->url);
            }
        }
        if (resp.body.len == 0 || resp.body.len > d->chunk_cap) {
            tc_buf_free(&resp.body);
            return tc_fail(err, errlen, "data: '%s' returned an unexpected body for %s", d->url, range);
        }
        memcpy(d->chunk, resp.body.p, resp.body.len);
        d->chunk_len = resp.body.len;
        d->fetched += resp.body.len;
        tc_buf_free(&resp.body);
    }
    d->chunk_start = offset;
    return 0;
}

tc_data *tc_data_open(const tc_config *c, int shard, int nshards, char *err, size_t errlen) {
    tc_data *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->fd = -1;
    if (nshards < 1) nshards = 1;
    const char *src = c->data_source;
    snprintf(d->url, sizeof d->url, "%s", src);
    if (strcmp(src, "synthetic") == 0) {
        d->kind = SRC_SYNTHETIC;
        d->table = malloc(sizeof *d->table);
        if (!d->table) goto oom;
        markov_build(d->table, c->markov_seed, c->markov_branching);
        d->entropy = markov_entropy(d->table);
        tc_rng_seed(&d->rng, c->markov_seed * 0x9E3779B97F4A7C15ULL + 1000003ULL * (uint64_t)(shard + 1));
        d->last = (uint8_t)(tc_rng_u64(&d->rng) % TC_VOCAB);
        return d;
    }
    d->chunk_cap = (uint64_t)c->chunk_bytes;
    d->chunk = malloc(d->chunk_cap);
    if (!d->chunk) goto oom;
    if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0 || tc_store_is_object_url(src)) {
        if (tc_store_is_object_url(src)) {
            // scheme://bucket/key: the store is the bucket, the key is relative to it.
            d->kind = SRC_OBJECT;
            char bucket_url[TC_PATH_MAX];
            if (tc_store_split_object_url(src, bucket_url, sizeof bucket_url, d->key, sizeof d->key) != 0) {
                tc_fail(err, errlen, "data: 'data.source' = '%s' must name an object: scheme://bucket/key", src);
                goto fail;
            }
            d->store = tc_store_open(bucket_url, c->s3_endpoint, c->s3_region, err, errlen);
            if (!d->store) goto fail;
        } else {
            d->kind = SRC_HTTP;
            tc_http_global_init();
        }
        if (load_chunk(d, 0, err, errlen) != 0) goto fail;
    } else {
        d->kind = SRC_FILE;
        const char *path = strncmp(src, "file://", 7) == 0 ? src + 7 : src;
        d->fd = open(path, O_RDONLY);
        struct stat st;
        if (d->fd < 0 || fstat(d->fd, &st) != 0) {
            tc_fail(err, errlen, "data: cannot open '%s': %s", path, strerror(errno));
            goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
            tc_fail(err, errlen, "data: '%s' is not a regular file", path);
            goto fail;
        }
        d->size = (uint64_t)st.st_size;
        if (load_chunk(d, 0, err, errlen) != 0) goto fail;
    }
    if (d->size < 2) {
        tc_fail(err, errlen, "data: '%s' holds fewer than 2 bytes", src);
        goto fail;
    }
    d->pos = d->size / (uint64_t)nshards * (uint64_t)shard;
    return d;
oom:
    tc_fail(err, errlen, "data: out of memory");
fail:
    tc_data_free(d);
    return NULL;
}

void tc_data_free(tc_data *d) {
    if (!d) return;
    if (d->fd >= 0) close(d->fd);
    tc_store_free(d->store);
    free(d->table);
    free(d->chunk);
    free(d);
}

int tc_data_next_batch(tc_data *d, uint8_t *inputs, uint8_t *targets, int B, int T, char *err, size_t errlen) {
    size_t n = (size_t)B * T + 1;
    uint8_t *buf = malloc(n);
    if (!buf) return tc_fail(err, errlen, "data: out of memory");
    if (d->kind == SRC_SYNTHETIC) {
        buf[0] = d->last;
        for (size_t i = 1; i < n; i++) buf[i] = markov_next(d);
    } else {
        uint64_t p = d->pos;
        size_t got = 0;
        while (got < n) {
            if (p < d->chunk_start || p >= d->chunk_start + d->chunk_len) {
                if (load_chunk(d, p, err, errlen) != 0) {
                    free(buf);
                    return -1;
                }
            }
            size_t avail = (size_t)(d->chunk_start + d->chunk_len - p);
            size_t take = avail < n - got ? avail : n - got;
            memcpy(buf + got, d->chunk + (p - d->chunk_start), take);
            got += take;
            p += take;
            if (p >= d->size) p = 0;
        }
        d->pos = (d->pos + (uint64_t)B * T) % d->size;
    }
    for (int b = 0; b < B; b++) {
        memcpy(inputs + (size_t)b * T, buf + (size_t)b * T, (size_t)T);
        memcpy(targets + (size_t)b * T, buf + (size_t)b * T + 1, (size_t)T);
    }
    free(buf);
    return 0;
}

double tc_data_entropy_floor(const tc_data *d) { return d->kind == SRC_SYNTHETIC ? d->entropy : -1.0; }
uint64_t tc_data_bytes_fetched(const tc_data *d) { return d->fetched; }

// Cursor: 8 bytes RNG state, 1 byte last symbol (synthetic) or 8 bytes position (streams).
size_t tc_data_save_cursor(const tc_data *d, uint8_t *buf, size_t cap) {
    if (cap < 16) return 0;
    memset(buf, 0, 16);
    if (d->kind == SRC_SYNTHETIC) {
        memcpy(buf, &d->rng.s, 8);
        buf[8] = d->last;
    } else {
        memcpy(buf, &d->pos, 8);
    }
    return 16;
}

int tc_data_load_cursor(tc_data *d, const uint8_t *buf, size_t len) {
    if (len != 16) return -1;
    if (d->kind == SRC_SYNTHETIC) {
        memcpy(&d->rng.s, buf, 8);
        d->last = buf[8];
    } else {
        uint64_t p;
        memcpy(&p, buf, 8);
        if (p >= d->size) return -1;
        d->pos = p;
    }
    return 0;
}
