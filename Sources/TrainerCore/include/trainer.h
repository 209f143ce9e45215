// Stratum trainer: a byte-level GPT trained on CPU in plain C (and on GPUs through the
// CUDA model backend in Sources/TrainerCUDA).
//
// The whole training path reads top to bottom: tc_model_forward, tc_model_backward,
// tc_model_update over flat float arrays. Everything else (config, data, checkpoints,
// metrics, DiLoCo rounds) feeds that loop.
#ifndef STRATUM_TRAINER_H
#define STRATUM_TRAINER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TC_VOCAB 256
#define TC_PATH_MAX 1024
#define TC_ERR_MAX 512

// ---------------------------------------------------------------------------------------
// Configuration (YAML through libyaml; every key is also settable as "section.key=value")

/// Everything a training run needs; tc_config_defaults fills sane values.
typedef struct {
    // model
    int n_layer;
    int n_embd;
    int n_head;
    int context;          // maximum sequence length (size of the positional table)
    // train
    int batch_size;
    int seq_len;
    long steps;           // total optimizer steps (inner steps per worker in DiLoCo mode)
    float lr;
    int warmup_steps;
    int cosine;           // 1: cosine decay to min_lr_ratio * lr, 0: constant after warmup
    float min_lr_ratio;
    float weight_decay;
    float beta1, beta2, eps;
    float grad_clip;      // 0 = off
    uint64_t seed;
    int threads;
    int log_every;
    // data
    char data_source[TC_PATH_MAX];   // "synthetic", a file path, http(s)://..., s3://bucket/key
    int markov_branching;            // synthetic: successors per byte
    uint64_t markov_seed;            // synthetic: seed of the transition table
    long chunk_bytes;                // streaming chunk size for files and HTTP/S3 objects
    // checkpoint
    char checkpoint_dir[TC_PATH_MAX]; // directory or s3://bucket/prefix; empty = off
    long checkpoint_every;
    int checkpoint_keep;
    // s3
    char s3_endpoint[256];           // e.g. http://127.0.0.1:5000; empty = AWS
    char s3_region[64];
    // metrics
    int metrics_port;                // 0 = off (unless metrics_port_file is set)
    char metrics_port_file[TC_PATH_MAX]; // set: serve (on metrics_port, or any free port when 0) and write the port here
    char metrics_include[TC_PATH_MAX];   // a Prometheus text file served with /metrics when it exists (the interconnect check's)
    // diloco
    int diloco_workers;              // 0 = plain training
    int diloco_rank;
    int diloco_inner_steps;
    float diloco_outer_lr;
    float diloco_outer_momentum;
    double diloco_round_timeout_s;
    int diloco_rounds;
    char diloco_store[TC_PATH_MAX];  // directory or s3://bucket/prefix
    int diloco_compress;             // 1: int8 pseudo-gradients (per-64 block scale), 0: float32
    int diloco_p2p;                  // 0: pseudo-gradients through diloco_store; 1: over TCP between the workers (p2p.*)
    int eval_batches;                // batches of held-out data for the final evaluation
    // p2p: the workers' own TCP links (DiLoCo with diloco_p2p, and data-parallel training)
    char p2p_listen[256];            // host:port this worker listens on (port 0: any free port, or its p2p_peers entry's)
    char p2p_advertise[256];         // host[:port] the others connect to (empty: STRATUM_NODE_IP, the listen host, or this machine's address)
    char p2p_peers[4096];            // "host:port,host:port,..." every worker's address in rank order (empty: from the rendezvous records)
    double p2p_timeout_s;            // connection setup and one exchange
    // dp: synchronous data-parallel training, gradients ring all-reduced over TCP every step
    int dp_workers;                  // 0 = off
    int dp_rank;
    char dp_rendezvous[TC_PATH_MAX]; // store for the peer records (directory or object store URL) when p2p_peers is empty
    // Not a config key: where the model runs, chosen by the binary (NULL = the CPU backend),
    // so one YAML file drives stratum-trainer and stratum-trainer-cuda alike.
    const struct tc_model_backend *backend;
} tc_config;

/// Fills every field with its default value.
void tc_config_defaults(tc_config *c);
/// Sets one key ("train.lr", "model.layers", ...) from its text value; 0 on success,
/// otherwise -1 with a message naming the key in err.
int tc_config_set(tc_config *c, const char *key, const char *value, char *err, size_t errlen);
/// Parses a YAML document (text) over the current values; 0 or -1 with err naming the key.
int tc_config_parse_yaml(tc_config *c, const char *text, size_t len, char *err, size_t errlen);
/// Reads and parses a YAML file; 0 or -1.
int tc_config_load_file(tc_config *c, const char *path, char *err, size_t errlen);
/// Checks cross-field constraints (width divisible by heads, seq_len <= context, ...).
int tc_config_validate(const tc_config *c, char *err, size_t errlen);
/// Prints every key with a one-line description.
void tc_config_print_keys(FILE *out);

// ---------------------------------------------------------------------------------------
// Deterministic random numbers (xorshift64*), never rand()

typedef struct { uint64_t s; } tc_rng;
void tc_rng_seed(tc_rng *r, uint64_t seed);
uint64_t tc_rng_u64(tc_rng *r);
float tc_rng_uniform(tc_rng *r);   // [0, 1)
float tc_rng_normal(tc_rng *r);

// ---------------------------------------------------------------------------------------
// Model: decoder-only GPT, byte vocabulary, learned positions, pre-LayerNorm, GELU MLP,
// output projection tied to the token embedding.

typedef struct tc_model tc_model;

/// Where a model's arithmetic runs. Everything above the model (trainer, checkpoints, DiLoCo,
/// tests) goes through the tc_model_* functions, so the CPU backend (model.c) and the CUDA
/// backend (Sources/TrainerCUDA, linked into stratum-trainer-cuda) are interchangeable.
/// A backend keeps parameters, gradients and AdamW moments where it likes and copies them to
/// and from one host array in the shared layout when asked; tc_model calls download before
/// handing that array out and upload before the next device operation after it was handed
/// out. Both are NULL when the host array is the state itself (CPU). create leaves the host
/// array and the device equal (the seeded initialisation, tc_param_init, on both).
typedef struct tc_model_backend {
    const char *name;
    void *(*create)(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads, char *err, size_t errlen);
    void (*destroy)(void *impl);
    float (*forward)(void *impl, const uint8_t *inputs, const uint8_t *targets, int B, int T);
    void (*zero_grad)(void *impl);
    void (*backward)(void *impl);
    float (*clip_grad)(void *impl, float max_norm);
    void (*update)(void *impl, float lr, float beta1, float beta2, float eps, float weight_decay, long t);
    float *(*host_state)(void *impl);    // params | grads | AdamW m | AdamW v, num_params floats each
    void (*download)(void *impl);        // device -> host_state (NULL: nothing to copy)
    void (*upload)(void *impl);          // host_state -> device (NULL: nothing to copy)
    const float *(*logits)(void *impl);  // [B*T, 256] of the last forward, on the host
    const float *(*probs)(void *impl);   // softmax of the logits, [B*T, 256], on the host
    const char *(*device)(void *impl);   // one line for logs, e.g. "cpu, 2 threads"
} tc_model_backend;

/// The built-in backend: plain C on a pool of CPU threads.
extern const tc_model_backend tc_cpu_backend;

/// Creates a CPU model initialised from seed (normal 0.02, residual projections scaled by depth); NULL on bad shape or OOM.
tc_model *tc_model_create(int n_layer, int n_embd, int n_head, int context, uint64_t seed, int threads);
/// Creates a model on backend with the same initialisation; NULL with err on bad shape, OOM or no device.
tc_model *tc_model_create_on(const tc_model_backend *backend, int n_layer, int n_embd, int n_head, int context,
                             uint64_t seed, int threads, char *err, size_t errlen);
void tc_model_free(tc_model *m);
/// The backend the model runs on.
const tc_model_backend *tc_model_backend_of(const tc_model *m);
/// One line naming the device, for logs.
const char *tc_model_device(tc_model *m);
size_t tc_model_num_params(const tc_model *m);
/// Host arrays of the parameters, gradients and AdamW moments, current as of the last call
/// (a device backend copies them off the device first). Writes through them take effect
/// at the next forward, backward or update. Fetch them again after any of those.
float *tc_model_params(tc_model *m);
float *tc_model_grads(tc_model *m);
float *tc_model_adam_m(tc_model *m);
float *tc_model_adam_v(tc_model *m);
/// Forward pass over B sequences of T bytes; returns the mean cross-entropy (nats) when
/// targets is non-NULL, otherwise -1. Activations are kept for tc_model_backward.
float tc_model_forward(tc_model *m, const uint8_t *inputs, const uint8_t *targets, int B, int T);
/// Sets every gradient to zero.
void tc_model_zero_grad(tc_model *m);
/// Accumulates d(mean loss)/d(params) of the last forward into the gradients.
void tc_model_backward(tc_model *m);
/// Scales gradients so their global L2 norm is at most max_norm; returns the norm before.
float tc_model_clip_grad(tc_model *m, float max_norm);
/// One AdamW step (t counts from 1); decay applies to matrices only.
void tc_model_update(tc_model *m, float lr, float beta1, float beta2, float eps, float weight_decay, long t);
/// Probabilities of the last forward, [B*T, 256].
const float *tc_model_probs(const tc_model *m);
/// Logits of the last forward, [B*T, 256].
const float *tc_model_logits(const tc_model *m);

// ---------------------------------------------------------------------------------------
// Data: a stream of bytes from a synthetic Markov chain, a local file, or an HTTP(S)/S3
// object read with range requests. The cursor is part of every checkpoint.

typedef struct tc_data tc_data;

/// Opens the source named in c->data_source; shard/nshards pick a disjoint starting point
/// (the DiLoCo rank). NULL with a message in err when the source is unreachable.
tc_data *tc_data_open(const tc_config *c, int shard, int nshards, char *err, size_t errlen);
void tc_data_free(tc_data *d);
/// Fills B rows of T+1 consecutive bytes (inputs are row[0..T), targets row[1..T]).
int tc_data_next_batch(tc_data *d, uint8_t *inputs, uint8_t *targets, int B, int T, char *err, size_t errlen);
/// Entropy rate of the synthetic source in nats per byte (the loss floor); -1 otherwise.
double tc_data_entropy_floor(const tc_data *d);
/// Bytes fetched over the network so far.
uint64_t tc_data_bytes_fetched(const tc_data *d);
/// Serialises the cursor (at most cap bytes); returns its size.
size_t tc_data_save_cursor(const tc_data *d, uint8_t *buf, size_t cap);
int tc_data_load_cursor(tc_data *d, const uint8_t *buf, size_t len);

/// Entropy rate (nats/byte) of the synthetic Markov source with these parameters.
double tc_markov_entropy_rate(uint64_t markov_seed, int branching);

// ---------------------------------------------------------------------------------------
// Object store: a directory or an S3 bucket prefix (SigV4, endpoint configurable).

typedef struct tc_store tc_store;

/// Opens "dir/path" or "s3://bucket/prefix"; NULL with err on failure.
tc_store *tc_store_open(const char *url, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen);
void tc_store_free(tc_store *s);
/// Writes key atomically (whole object visible or none).
int tc_store_put(tc_store *s, const char *key, const void *data, size_t len, char *err, size_t errlen);
/// Creates key only when absent: 1 created, 0 already existed, -1 error.
int tc_store_put_if_absent(tc_store *s, const char *key, const void *data, size_t len, char *err, size_t errlen);
/// Reads key into a malloc'd buffer: 1 found, 0 absent, -1 error.
int tc_store_get(tc_store *s, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen);
/// Lists keys under prefix (relative to the store root), newline separated, malloc'd.
int tc_store_list(tc_store *s, const char *prefix, char **keys, char *err, size_t errlen);
int tc_store_delete(tc_store *s, const char *key, char *err, size_t errlen);
/// Bytes sent plus received by this store so far.
uint64_t tc_store_bytes(const tc_store *s);
/// Creates a bucket (idempotent: an existing bucket owned by the caller is fine).
int tc_s3_create_bucket(const char *endpoint, const char *region, const char *bucket, char *err, size_t errlen);
/// Multipart threshold and part size for S3 uploads (default 8 MiB / 8 MiB; min part 5 MiB on AWS).
void tc_store_set_multipart(tc_store *s, size_t threshold, size_t part_size);

// ---------------------------------------------------------------------------------------
// AWS Signature Version 4 (exposed for tests against published vectors)

/// Computes the SigV4 Authorization header value for one request.
/// headers: "name:value" lines already canonical (lowercase names, sorted, trimmed), '\n' separated.
/// signed_headers: "host;x-amz-date"...; payload_hash: hex SHA-256 of the body.
int tc_sigv4_authorization(const char *method, const char *canonical_uri, const char *canonical_query,
                           const char *headers, const char *signed_headers, const char *payload_hash,
                           const char *amz_date, const char *region, const char *service,
                           const char *access_key, const char *secret_key,
                           char *out, size_t outlen);
/// Lowercase hex SHA-256 of data (65 bytes incl. NUL).
void tc_sha256_hex(const void *data, size_t len, char out[65]);

// ---------------------------------------------------------------------------------------
// Trainer: model + optimizer + data + checkpoints, one step at a time.

typedef struct tc_trainer tc_trainer;

/// Builds everything the config names; NULL with err on failure.
tc_trainer *tc_trainer_create(const tc_config *c, char *err, size_t errlen);
void tc_trainer_free(tc_trainer *t);
/// One optimizer step on the next batch; writes the loss. 0 or -1 with err.
int tc_trainer_step(tc_trainer *t, float *loss, char *err, size_t errlen);
long tc_trainer_step_count(const tc_trainer *t);
tc_model *tc_trainer_model(tc_trainer *t);
tc_data *tc_trainer_data(tc_trainer *t);
/// Writes a checkpoint to the configured store (temp + rename + DONE marker).
int tc_trainer_save_checkpoint(tc_trainer *t, char *err, size_t errlen);
/// Loads the newest complete checkpoint if any: 1 resumed, 0 none found, -1 error.
int tc_trainer_resume(tc_trainer *t, char *err, size_t errlen);
/// Serialises the full training state (weights, AdamW m/v, step, RNG, data cursor).
int tc_trainer_serialize(tc_trainer *t, uint8_t **buf, size_t *len);
int tc_trainer_deserialize(tc_trainer *t, const uint8_t *buf, size_t len, char *err, size_t errlen);
/// Unix time of the last checkpoint written by this trainer (0 = none yet).
double tc_trainer_last_checkpoint(const tc_trainer *t);
/// Mean loss of the current weights on eval_batches held-out batches (a separate stream).
double tc_trainer_eval(tc_trainer *t, int batches, char *err, size_t errlen);
/// SHA-256 (hex) of the current weights, to compare replicas.
void tc_trainer_params_digest(tc_trainer *t, char out[65]);
/// Learning rate at step s (0-based) under the configured schedule.
float tc_trainer_lr(const tc_config *c, long s);
/// Combines gradients between backward and clipping (data-parallel training): it may rewrite
/// tc_model_grads(m) and *loss. 0, or -1 with err.
typedef int (*tc_grad_reduce)(void *arg, tc_model *m, float *loss, char *err, size_t errlen);
/// tc_trainer_step with the gradients passed through reduce (NULL: same as tc_trainer_step).
int tc_trainer_step_reduced(tc_trainer *t, float *loss, tc_grad_reduce reduce, void *arg, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------
// Metrics: Prometheus text on /metrics and a liveness probe on /healthz.

typedef struct tc_metrics tc_metrics;

/// Starts the HTTP server thread on 127.0.0.1-or-any:port (0 picks a free port when
/// ephemeral is set). NULL with err on failure.
tc_metrics *tc_metrics_start(int port, int loopback_only, char *err, size_t errlen);
int tc_metrics_port(const tc_metrics *m);
void tc_metrics_update(tc_metrics *m, long step, double loss, double tokens_per_s, double last_checkpoint_unix, uint64_t bytes_exchanged);
/// The DiLoCo round reached and the bytes sent and received over the workers' own TCP links.
void tc_metrics_update_exchange(tc_metrics *m, long diloco_round, uint64_t p2p_bytes_sent, uint64_t p2p_bytes_received);
void tc_metrics_stop(tc_metrics *m);
/// Serves the contents of `path` (Prometheus text, read at each scrape; absent: nothing) after
/// the trainer's own metrics.
void tc_metrics_include(tc_metrics *m, const char *path);

// ---------------------------------------------------------------------------------------
// The interconnect check: a timed ring all-reduce over TCP between the pool's nodes.

typedef struct {
    int world, rank;
    char coordinator[256];  // rank 0's address (ranks 1 and up connect to it)
    int port;               // the rendezvous port rank 0 listens on
    char port_file[TC_PATH_MAX];  // set: rank 0 listens on any free port and writes it here; the others read it
    long bytes;             // buffer size all-reduced
    int iterations;         // timed all-reduces (after one untimed)
    double timeout_s;       // the whole check's limit
} tc_allreduce_spec;

typedef struct {
    int ok;
    long bytes;
    double seconds;  // mean per all-reduce
    double algbw;    // bytes per second: buffer / time
    double busbw;    // algbw x 2(n-1)/n, as NCCL's tests report it
    char detail[512];
} tc_allreduce_result;

/// Runs the check as one rank; 0, or -1 with err (a peer that never came, a timeout, data
/// that arrived wrong).
int tc_allreduce_check(const tc_allreduce_spec *s, tc_allreduce_result *r, char *err, size_t errlen);
/// Writes the result as Prometheus text to `path` (atomically).
int tc_allreduce_write_metrics(const char *path, const tc_allreduce_spec *s, const tc_allreduce_result *r, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------
// DiLoCo: H inner AdamW steps per round, pseudo-gradients through the object store,
// outer Nesterov SGD on their average.

typedef struct {
    int rounds_done;
    int rounds_skipped;        // rounds where this worker's pseudo-gradient missed the deadline
    double final_loss;         // mean inner loss of the last round
    uint64_t bytes_exchanged;  // object store and p2p bytes sent + received by this worker
    uint64_t p2p_bytes_sent, p2p_bytes_received;  // over the workers' own TCP links (diloco.exchange p2p)
} tc_diloco_result;

/// Runs a DiLoCo worker to completion (c->diloco_rounds rounds). progress may be NULL.
int tc_diloco_run(const tc_config *c, tc_diloco_result *res, tc_metrics *metrics, int quiet, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------
// Data parallel: W processes, each on its own shard, ring all-reduce their float32 gradients
// over TCP before every AdamW step, so every replica stays bit-identical.

typedef struct tc_dp tc_dp;

/// Listens, publishes this rank's address, and connects the ring (every rank must come within
/// p2p.timeout_s). NULL with err.
tc_dp *tc_dp_open(const tc_config *c, long start_step, char *err, size_t errlen);
/// One optimizer step with the gradients (and the loss) averaged over every rank.
int tc_dp_step(tc_dp *dp, tc_trainer *t, float *loss, char *err, size_t errlen);
uint64_t tc_dp_bytes_sent(const tc_dp *dp);
uint64_t tc_dp_bytes_received(const tc_dp *dp);
void tc_dp_close(tc_dp *dp);

#ifdef __cplusplus
}
#endif
#endif
