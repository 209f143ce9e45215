// Configuration: one table of keys drives defaults, YAML parsing, command-line overrides
// and error messages, so every bad value is reported with the key that holds it.
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { K_INT, K_LONG, K_U64, K_FLOAT, K_DOUBLE, K_STR, K_BOOL, K_SCHEDULE, K_COMPRESS, K_EXCHANGE } key_type;

typedef struct {
    const char *name;   // "section.key"
    key_type type;
    size_t offset;
    size_t size;        // for strings
    double min, max;    // inclusive range for numbers
    const char *help;
} key_def;

#define F(field) offsetof(tc_config, field)
#define S(field) sizeof(((tc_config *)0)->field)

static const key_def KEYS[] = {
    {"model.layers", K_INT, F(n_layer), 0, 1, 256, "number of transformer blocks"},
    {"model.width", K_INT, F(n_embd), 0, 1, 65536, "embedding width (divisible by heads)"},
    {"model.heads", K_INT, F(n_head), 0, 1, 1024, "attention heads"},
    {"model.context", K_INT, F(context), 0, 1, 65536, "maximum sequence length"},
    {"train.batch_size", K_INT, F(batch_size), 0, 1, 1 << 20, "sequences per step"},
    {"train.seq_len", K_INT, F(seq_len), 0, 1, 65536, "bytes per sequence (<= model.context)"},
    {"train.steps", K_LONG, F(steps), 0, 0, 1e15, "optimizer steps, the length of the lr schedule (ignored in DiLoCo mode: rounds x inner_steps)"},
    {"train.lr", K_FLOAT, F(lr), 0, 0, 10, "peak learning rate"},
    {"train.warmup_steps", K_INT, F(warmup_steps), 0, 0, 1e9, "linear warmup steps"},
    {"train.schedule", K_SCHEDULE, F(cosine), 0, 0, 1, "cosine | constant"},
    {"train.min_lr_ratio", K_FLOAT, F(min_lr_ratio), 0, 0, 1, "final lr as a fraction of train.lr (cosine)"},
    {"train.weight_decay", K_FLOAT, F(weight_decay), 0, 0, 10, "AdamW decoupled weight decay"},
    {"train.beta1", K_FLOAT, F(beta1), 0, 0, 0.999999, "AdamW beta1"},
    {"train.beta2", K_FLOAT, F(beta2), 0, 0, 0.999999, "AdamW beta2"},
    {"train.eps", K_FLOAT, F(eps), 0, 1e-30, 1, "AdamW epsilon"},
    {"train.grad_clip", K_FLOAT, F(grad_clip), 0, 0, 1e9, "global gradient norm clip (0 = off)"},
    {"train.seed", K_U64, F(seed), 0, 0, 0, "seed of initialisation"},
    {"train.threads", K_INT, F(threads), 0, 1, 1024, "worker threads"},
    {"train.log_every", K_INT, F(log_every), 0, 0, 1e9, "progress line every N steps (0 = never)"},
    {"train.eval_batches", K_INT, F(eval_batches), 0, 0, 1e6, "held-out batches evaluated at the end"},
    {"data.source", K_STR, F(data_source), S(data_source), 0, 0, "synthetic | path | http(s)://... | s3://bucket/key"},
    {"data.branching", K_INT, F(markov_branching), 0, 1, 256, "synthetic: successors per byte"},
    {"data.markov_seed", K_U64, F(markov_seed), 0, 0, 0, "synthetic: seed of the transition table"},
    {"data.chunk_bytes", K_LONG, F(chunk_bytes), 0, 4096, 1L << 32, "streaming chunk size"},
    {"checkpoint.dir", K_STR, F(checkpoint_dir), S(checkpoint_dir), 0, 0, "directory or s3://bucket/prefix (empty = off)"},
    {"checkpoint.every", K_LONG, F(checkpoint_every), 0, 0, 1e15, "steps between checkpoints (0 = only at the end)"},
    {"checkpoint.keep", K_INT, F(checkpoint_keep), 0, 0, 1e6, "checkpoints kept (0 = all)"},
    {"s3.endpoint", K_STR, F(s3_endpoint), S(s3_endpoint), 0, 0, "S3 endpoint URL (empty = AWS)"},
    {"s3.region", K_STR, F(s3_region), S(s3_region), 0, 0, "S3 region (default: AWS_REGION, else us-east-1)"},
    {"metrics.port", K_INT, F(metrics_port), 0, 0, 65535, "Prometheus /metrics and /healthz port (0 = off)"},
    {"metrics.include", K_STR, F(metrics_include), S(metrics_include), 0, 0, "a Prometheus text file served with /metrics (the interconnect check's result)"},
    {"metrics.port_file", K_STR, F(metrics_port_file), S(metrics_port_file), 0, 0, "serve metrics and write the port here (metrics.port 0: any free port)"},
    {"diloco.workers", K_INT, F(diloco_workers), 0, 0, 4096, "number of DiLoCo workers (0 = plain training)"},
    {"diloco.rank", K_INT, F(diloco_rank), 0, 0, 4095, "this worker's index"},
    {"diloco.inner_steps", K_INT, F(diloco_inner_steps), 0, 1, 1e9, "inner AdamW steps per round (H)"},
    {"diloco.rounds", K_INT, F(diloco_rounds), 0, 1, 1e9, "outer rounds"},
    {"diloco.outer_lr", K_FLOAT, F(diloco_outer_lr), 0, 0, 100, "outer Nesterov SGD learning rate"},
    {"diloco.outer_momentum", K_FLOAT, F(diloco_outer_momentum), 0, 0, 0.999999, "outer Nesterov momentum"},
    {"diloco.round_timeout_s", K_DOUBLE, F(diloco_round_timeout_s), 0, 0.01, 1e7, "seconds a round waits for stragglers"},
    {"diloco.compress", K_COMPRESS, F(diloco_compress), 0, 0, 1, "int8 | none: encoding of published pseudo-gradients"},
    {"diloco.store", K_STR, F(diloco_store), S(diloco_store), 0, 0, "directory or s3://bucket/prefix for pseudo-gradients"},
    {"diloco.exchange", K_EXCHANGE, F(diloco_p2p), 0, 0, 1, "store | p2p: pseudo-gradients through diloco.store, or over TCP between the workers"},
    {"p2p.listen", K_STR, F(p2p_listen), S(p2p_listen), 0, 0, "host:port this worker listens on for its peers (port 0: any free one)"},
    {"p2p.advertise", K_STR, F(p2p_advertise), S(p2p_advertise), 0, 0, "host[:port] the peers connect to (default: STRATUM_NODE_IP or the listen host)"},
    {"p2p.peers", K_STR, F(p2p_peers), S(p2p_peers), 0, 0, "host:port,... every worker's address in rank order (empty: rendezvous records)"},
    {"p2p.timeout_s", K_DOUBLE, F(p2p_timeout_s), 0, 0.01, 1e7, "seconds for a peer connection and one exchange"},
    {"dp.workers", K_INT, F(dp_workers), 0, 0, 4096, "data-parallel workers (0 = off): gradients all-reduced over TCP every step"},
    {"dp.rank", K_INT, F(dp_rank), 0, 0, 4095, "this data-parallel worker's index"},
    {"dp.rendezvous", K_STR, F(dp_rendezvous), S(dp_rendezvous), 0, 0, "directory or object store URL for the peer records (when p2p.peers is empty)"},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

void tc_config_defaults(tc_config *c) {
    memset(c, 0, sizeof *c);
    c->n_layer = 4;
    c->n_embd = 256;
    c->n_head = 4;
    c->context = 256;
    c->batch_size = 8;
    c->seq_len = 256;
    c->steps = 1000;
    c->lr = 1e-3f;
    c->warmup_steps = 50;
    c->cosine = 1;
    c->min_lr_ratio = 0.1f;
    c->weight_decay = 0.1f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->grad_clip = 1.0f;
    c->seed = 1337;
    c->threads = 2;
    c->log_every = 10;
    snprintf(c->data_source, sizeof c->data_source, "synthetic");
    c->markov_branching = 4;
    c->markov_seed = 7;
    c->chunk_bytes = 1 << 20;
    c->checkpoint_every = 0;
    c->checkpoint_keep = 3;
    // The bucket's region: AWS_REGION where the node setup names it (a node on another cloud
    // reaching its cluster's bucket), us-east-1 otherwise; s3.region overrides both.
    const char *aws_region = getenv("AWS_REGION");
    snprintf(c->s3_region, sizeof c->s3_region, "%s", aws_region && aws_region[0] ? aws_region : "us-east-1");
    c->diloco_inner_steps = 50;
    c->diloco_rounds = 10;
    c->diloco_outer_lr = 0.7f;
    c->diloco_outer_momentum = 0.9f;
    c->diloco_round_timeout_s = 60.0;
    c->diloco_compress = 1;
    c->eval_batches = 8;
    snprintf(c->p2p_listen, sizeof c->p2p_listen, "0.0.0.0:0");
    c->p2p_timeout_s = 60.0;
}

static const key_def *find_key(const char *name) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

static int range_error(const key_def *k, const char *value, char *err, size_t errlen) {
    return tc_fail(err, errlen, "config: '%s' = '%s' is out of range [%g, %g] (%s)", k->name, value, k->min, k->max,
                   k->help);
}

int tc_config_set(tc_config *c, const char *key, const char *value, char *err, size_t errlen) {
    const key_def *k = find_key(key);
    if (!k) {
        const char *dot = strchr(key, '.');
        if (!dot) return tc_fail(err, errlen, "config: unknown key '%s' (expected model, train, data, checkpoint, s3, metrics, diloco, p2p or dp)", key);
        return tc_fail(err, errlen, "config: unknown key '%s'", key);
    }
    char *base = (char *)c + k->offset;
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case K_INT:
    case K_LONG: {
        long long v = strtoll(value, &end, 10);
        if (end == value || *end != 0 || errno) {
            // Accept integral floats like 1e6 for convenience.
            double d = strtod(value, &end);
            if (end == value || *end != 0 || d != floor(d) || fabs(d) > 9e15)
                return tc_fail(err, errlen, "config: '%s' must be an integer, got '%s' (%s)", key, value, k->help);
            v = (long long)d;
        }
        if ((double)v < k->min || (double)v > k->max) return range_error(k, value, err, errlen);
        if (k->type == K_INT)
            *(int *)base = (int)v;
        else
            *(long *)base = (long)v;
        return 0;
    }
    case K_U64: {
        if (value[0] == '-') return tc_fail(err, errlen, "config: '%s' must be a non-negative integer, got '%s'", key, value);
        unsigned long long v = strtoull(value, &end, 0);
        if (end == value || *end != 0 || errno)
            return tc_fail(err, errlen, "config: '%s' must be a non-negative integer, got '%s'", key, value);
        *(uint64_t *)base = (uint64_t)v;
        return 0;
    }
    case K_FLOAT:
    case K_DOUBLE: {
        double v = strtod(value, &end);
        if (end == value || *end != 0 || errno || !isfinite(v))
            return tc_fail(err, errlen, "config: '%s' must be a number, got '%s' (%s)", key, value, k->help);
        if (v < k->min || v > k->max) return range_error(k, value, err, errlen);
        if (k->type == K_FLOAT)
            *(float *)base = (float)v;
        else
            *(double *)base = v;
        return 0;
    }
    case K_STR:
        if (strlen(value) >= k->size) return tc_fail(err, errlen, "config: '%s' is too long (max %zu bytes)", key, k->size - 1);
        snprintf(base, k->size, "%s", value);
        return 0;
    case K_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes"))
            *(int *)base = 1;
        else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no"))
            *(int *)base = 0;
        else
            return tc_fail(err, errlen, "config: '%s' must be true or false, got '%s'", key, value);
        return 0;
    case K_SCHEDULE:
        if (!strcmp(value, "cosine"))
            *(int *)base = 1;
        else if (!strcmp(value, "constant"))
            *(int *)base = 0;
        else
            return tc_fail(err, errlen, "config: '%s' must be 'cosine' or 'constant', got '%s'", key, value);
        return 0;
    case K_EXCHANGE:
        if (!strcmp(value, "store"))
            *(int *)base = 0;
        else if (!strcmp(value, "p2p"))
            *(int *)base = 1;
        else
            return tc_fail(err, errlen, "config: '%s' must be 'store' or 'p2p', got '%s'", key, value);
        return 0;
    case K_COMPRESS:
        if (!strcmp(value, "int8"))
            *(int *)base = 1;
        else if (!strcmp(value, "none"))
            *(int *)base = 0;
        else
            return tc_fail(err, errlen, "config: '%s' must be 'int8' or 'none', got '%s'", key, value);
        return 0;
    }
    return tc_fail(err, errlen, "config: '%s' has an unsupported type", key);
}

static const char *scalar(yaml_node_t *n) { return (const char *)n->data.scalar.value; }

int tc_config_parse_yaml(tc_config *c, const char *text, size_t len, char *err, size_t errlen) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return tc_fail(err, errlen, "config: cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = tc_fail(err, errlen, "config: YAML error at line %zu: %s", parser.problem_mark.line + 1,
                         parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        return rc;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) goto done;  // empty document: keep current values
    if (root->type != YAML_MAPPING_NODE) {
        rc = tc_fail(err, errlen, "config: the top level must be a mapping of sections (model, train, data, ...)");
        goto done;
    }
    for (yaml_node_pair_t *sp = root->data.mapping.pairs.start; sp < root->data.mapping.pairs.top && rc == 0; sp++) {
        yaml_node_t *sk = yaml_document_get_node(&doc, sp->key), *sv = yaml_document_get_node(&doc, sp->value);
        if (sk->type != YAML_SCALAR_NODE) {
            rc = tc_fail(err, errlen, "config: section names must be plain words (line %zu)", sk->start_mark.line + 1);
            break;
        }
        if (sv->type == YAML_SCALAR_NODE && sv->data.scalar.length == 0) continue;  // "section:" with nothing under it
        if (sv->type != YAML_MAPPING_NODE) {
            char probe[160];
            snprintf(probe, sizeof probe, "%s.", scalar(sk));
            int known = 0;
            for (size_t i = 0; i < NKEYS; i++)
                if (strncmp(KEYS[i].name, probe, strlen(probe)) == 0) known = 1;
            rc = known ? tc_fail(err, errlen, "config: '%s' must be a mapping of keys (line %zu)", scalar(sk), sk->start_mark.line + 1)
                       : tc_fail(err, errlen, "config: unknown key '%s' (line %zu)", scalar(sk), sk->start_mark.line + 1);
            break;
        }
        char probe[160];
        snprintf(probe, sizeof probe, "%s.", scalar(sk));
        int known_section = 0;
        for (size_t i = 0; i < NKEYS; i++)
            if (strncmp(KEYS[i].name, probe, strlen(probe)) == 0) known_section = 1;
        if (!known_section) {
            rc = tc_fail(err, errlen, "config: unknown key '%s' (line %zu; sections are model, train, data, checkpoint, s3, metrics, diloco, p2p, dp)",
                         scalar(sk), sk->start_mark.line + 1);
            break;
        }
        for (yaml_node_pair_t *kp = sv->data.mapping.pairs.start; kp < sv->data.mapping.pairs.top; kp++) {
            yaml_node_t *kk = yaml_document_get_node(&doc, kp->key), *kv = yaml_document_get_node(&doc, kp->value);
            char name[256];
            snprintf(name, sizeof name, "%s.%s", scalar(sk), kk->type == YAML_SCALAR_NODE ? scalar(kk) : "?");
            if (kv->type != YAML_SCALAR_NODE) {
                rc = find_key(name) ? tc_fail(err, errlen, "config: '%s' must be a single value (line %zu)", name, kk->start_mark.line + 1)
                                    : tc_fail(err, errlen, "config: unknown key '%s' (line %zu)", name, kk->start_mark.line + 1);
                break;
            }
            char msg[TC_ERR_MAX];
            if (tc_config_set(c, name, scalar(kv), msg, sizeof msg) != 0) {
                rc = tc_fail(err, errlen, "%s (line %zu)", msg, kk->start_mark.line + 1);
                break;
            }
        }
    }
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int tc_config_load_file(tc_config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return tc_fail(err, errlen, "config: cannot open '%s': %s", path, strerror(errno));
    tc_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) tc_buf_append(&b, chunk, n);
    fclose(f);
    int rc = tc_config_parse_yaml(c, b.p ? (const char *)b.p : "", b.len, err, errlen);
    tc_buf_free(&b);
    return rc;
}

int tc_config_validate(const tc_config *c, char *err, size_t errlen) {
    if (c->n_embd % c->n_head != 0)
        return tc_fail(err, errlen, "config: 'model.width' (%d) must be divisible by 'model.heads' (%d)", c->n_embd, c->n_head);
    if (c->seq_len > c->context)
        return tc_fail(err, errlen, "config: 'train.seq_len' (%d) must not exceed 'model.context' (%d)", c->seq_len, c->context);
    if (c->data_source[0] == 0) return tc_fail(err, errlen, "config: 'data.source' must not be empty");
    if (c->diloco_workers > 0 && c->diloco_rank >= c->diloco_workers)
        return tc_fail(err, errlen, "config: 'diloco.rank' (%d) must be below 'diloco.workers' (%d)", c->diloco_rank, c->diloco_workers);
    if (c->diloco_workers > 0 && c->diloco_store[0] == 0)
        return tc_fail(err, errlen, "config: 'diloco.store' must name a directory or s3:// prefix when 'diloco.workers' > 0");
    if (c->dp_workers > 0 && c->diloco_workers > 0)
        return tc_fail(err, errlen, "config: 'dp.workers' and 'diloco.workers' are both set: train data-parallel or with DiLoCo, not both");
    if (c->dp_workers > 0 && c->dp_rank >= c->dp_workers)
        return tc_fail(err, errlen, "config: 'dp.rank' (%d) must be below 'dp.workers' (%d)", c->dp_rank, c->dp_workers);
    char host[256];
    int port;
    if (tc_net_parse_hostport(c->p2p_listen, host, sizeof host, &port) != 0)
        return tc_fail(err, errlen, "config: 'p2p.listen' must be host:port (port 0: any free one), got '%s'", c->p2p_listen);
    if (c->p2p_advertise[0] && strchr(c->p2p_advertise, ':') && (tc_net_parse_hostport(c->p2p_advertise, host, sizeof host, &port) != 0 || port == 0))
        return tc_fail(err, errlen, "config: 'p2p.advertise' must be host or host:port with a port above 0, got '%s'", c->p2p_advertise);
    int peers = tc_p2p_peer_count(c->p2p_peers);
    if (peers < 0)
        return tc_fail(err, errlen, "config: 'p2p.peers' must be a comma-separated list of host:port with ports above 0, got '%s'", c->p2p_peers);
    int p2p_workers = c->dp_workers > 0 ? c->dp_workers : (c->diloco_workers > 0 && c->diloco_p2p ? c->diloco_workers : 0);
    const char *workers_key = c->dp_workers > 0 ? "dp.workers" : "diloco.workers";
    if (peers > 0 && p2p_workers > 0 && peers != p2p_workers)
        return tc_fail(err, errlen, "config: 'p2p.peers' names %d addresses but '%s' is %d (one address per worker, in rank order)", peers, workers_key,
                       p2p_workers);
    if (c->dp_workers > 1 && peers == 0 && c->dp_rendezvous[0] == 0)
        return tc_fail(err, errlen, "config: 'dp.workers' > 1 needs 'p2p.peers' or 'dp.rendezvous' to find the other workers");
    return 0;
}

int tc_p2p_peer_count(const char *list) {
    if (!list[0]) return 0;
    int n = 0;
    for (const char *p = list; p;) {
        const char *comma = strchr(p, ',');
        char entry[300];
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len >= sizeof entry) return -1;
        memcpy(entry, p, len);
        entry[len] = 0;
        char host[256];
        int port;
        if (tc_net_parse_hostport(entry, host, sizeof host, &port) != 0 || port == 0) return -1;
        n++;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

int tc_p2p_peer_at(const char *list, int index, char *host, size_t hostlen, int *port) {
    const char *p = list;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, ',');
        if (p) p++;
    }
    if (!p || !*p) return -1;
    const char *comma = strchr(p, ',');
    char entry[300];
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len >= sizeof entry) return -1;
    memcpy(entry, p, len);
    entry[len] = 0;
    return tc_net_parse_hostport(entry, host, hostlen, port);
}

void tc_config_print_keys(FILE *out) {
    for (size_t i = 0; i < NKEYS; i++) fprintf(out, "  %-26s %s\n", KEYS[i].name, KEYS[i].help);
}
