// Internal declarations shared by the trainer's C files (not part of the public API).
#ifndef STRATUM_TRAINER_INTERNAL_H
#define STRATUM_TRAINER_INTERNAL_H

#include "trainer.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

// Formats an error message into err (if non-NULL); always returns -1.
int tc_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// A fixed set of pthreads that run "for i in 0..<n: fn(arg, i)" with a static partition,
// so each output element is always computed by the same code in the same order.
typedef struct tc_pool tc_pool;
tc_pool *tc_pool_create(int threads);
void tc_pool_free(tc_pool *p);
int tc_pool_threads(const tc_pool *p);
void tc_pool_run(tc_pool *p, int n, void (*fn)(void *arg, int i, int tid), void *arg);

// C[M,N] += A[M,K] * B[K,N], all row-major with leading dimensions; rows split over the pool.
void tc_gemm(tc_pool *p, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
// C[M,N] += A^T * B with A stored [K,M].
void tc_gemm_tn(tc_pool *p, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
// Either form on the calling thread only (for work already split over the pool).
void tc_gemm_serial(int transpose_a, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
// Name of the instruction set the GEMM kernel uses on this machine.
const char *tc_gemm_isa(void);

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one per CPU.
#if defined(__x86_64__) && defined(__linux__) && !defined(TC_NO_DISPATCH)
#define TC_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TC_HOT
#endif

// exp(x) as 2^k * p(r) with |r| <= ln2/2 and a degree-6 polynomial (relative error ~2e-7).
// Unlike libm's expf it vectorises, and it gives the same bits on every platform.
static inline float tc_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693145751953125f - k * 1.42860682030941723e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
    union { int32_t i; float f; } scale = {((int32_t)k + 127) << 23};
    return p * scale.f;
}

// tanh through tc_expf: 1 - 2 / (exp(2x) + 1) saturates cleanly to +-1.
static inline float tc_tanhf(float x) { return 1.0f - 2.0f / (tc_expf(2.0f * x) + 1.0f); }

// Wall clock in seconds (monotonic).
double tc_now(void);
/// A TCP listener on 127.0.0.1 (loopback_only) or every address; port 0: any free one. The fd
/// (its port in *bound), or -1 with errno set.
int tc_tcp_listen(int port, int loopback_only, int *bound);

// TCP with deadlines (net.c), shared by the interconnect check and the peer-to-peer exchanges.
// Errors start with `tag` ("allreduce", "p2p", ...) and name `what` (the peer). Counters (may be
// NULL) are incremented atomically by the bytes moved.
double tc_net_remaining(double deadline);
// Listens on host (NULL, "" or 0.0.0.0: every address) and port (0: any free one; *bound gets it).
int tc_net_listen(const char *host, int port, int *bound, const char *tag, char *err, size_t errlen);
// Accepts one connection before the deadline; peer_host (may be NULL) gets its IPv4 address.
int tc_net_accept(int fd, double deadline, char *peer_host, size_t peer_len, const char *tag, const char *what, char *err, size_t errlen);
// Connects to host:port, trying again until the deadline; a refused connection ends the tries at
// once unless retry_refused (a peer that may not listen yet).
int tc_net_connect(const char *host, int port, double deadline, int retry_refused, const char *tag, const char *what, char *err, size_t errlen);
// Sends send_len bytes on out while receiving recv_len bytes on in, until both are done.
int tc_net_exchange(int out, const void *send_buf, size_t send_len, int in, void *recv_buf, size_t recv_len, double deadline, uint64_t *sent_counter,
                    uint64_t *received_counter, const char *tag, const char *what, char *err, size_t errlen);
int tc_net_send_line(int fd, const char *line, double deadline, uint64_t *sent_counter, const char *tag, const char *what, char *err, size_t errlen);
// Reads one '\n'-terminated line (at most cap-1 bytes, without the '\n').
int tc_net_read_line(int fd, char *line, size_t cap, double deadline, uint64_t *received_counter, const char *tag, const char *what, char *err,
                     size_t errlen);
// "host:port" into its parts; 0, or -1 when malformed.
int tc_net_parse_hostport(const char *text, char *host, size_t hostlen, int *port);
// Ring all-reduce (sum) of count floats (a multiple of world) between this rank's next and prev
// connections: reduce-scatter then all-gather, so every rank ends with the same bits.
// incoming holds count/world floats.
int tc_net_ring_allreduce_sum(int next, int prev, float *data, size_t count, int world, int rank, float *incoming, double deadline,
                              uint64_t *sent_counter, uint64_t *received_counter, const char *tag, const char *what, char *err, size_t errlen);

// p2p.peers: how many host:port entries (0 for an empty list, -1 when malformed), and entry i.
int tc_p2p_peer_count(const char *list);
int tc_p2p_peer_at(const char *list, int index, char *host, size_t hostlen, int *port);

// A worker's endpoint on the peer-to-peer links (p2p.c): a listener served by a thread that
// acknowledges ring connections and queues them for tc_p2p_accept, and answers "state"
// requests with the DiLoCo global state (so a worker that fell behind catches up).
typedef struct tc_p2p tc_p2p;
tc_p2p *tc_p2p_open(const tc_config *c, int rank, const char *tag, char *err, size_t errlen);
void tc_p2p_close(tc_p2p *p);
// "incarnation host port\n": what the rendezvous and ready records hold.
void tc_p2p_record(const tc_p2p *p, char *out, size_t outlen);
// Writes peers/worker-RRR in the store.
int tc_p2p_publish(tc_p2p *p, tc_store *s, char *err, size_t errlen);
// Where worker `rank` listens: its p2p.peers entry (incarnation 0: any), else its record at
// `record_key` in the store. 1 found, 0 no record yet, -1 error.
int tc_p2p_lookup(tc_p2p *p, tc_store *s, const char *record_key, int rank, char *host, size_t hostlen, int *port, uint64_t *incarnation, char *err,
                  size_t errlen);
// Opens a ring connection to worker `to` (which must be that incarnation, unless 0) for
// (round, attempt); the peer's thread acknowledges it. The fd, or -1 with err.
int tc_p2p_connect(tc_p2p *p, const char *host, int port, uint64_t incarnation, int to, long round, int attempt, double deadline, int retry_refused,
                   char *err, size_t errlen);
// The connection worker `from` opened for (round, attempt), waiting until the deadline.
int tc_p2p_accept(tc_p2p *p, long round, int attempt, int from, double deadline, char *err, size_t errlen);
int tc_p2p_exchange(tc_p2p *p, int out, const void *send_buf, size_t send_len, int in, void *recv_buf, size_t recv_len, double deadline,
                    const char *what, char *err, size_t errlen);
uint64_t *tc_p2p_sent_counter(tc_p2p *p);
uint64_t *tc_p2p_received_counter(tc_p2p *p);
uint64_t tc_p2p_bytes_sent(const tc_p2p *p);
uint64_t tc_p2p_bytes_received(const tc_p2p *p);
// The DiLoCo state answered to "state" requests; every change to it happens between lock and unlock.
void tc_p2p_serve_state(tc_p2p *p, const float *global, const float *momentum, const long *round, size_t P);
void tc_p2p_lock(tc_p2p *p);
void tc_p2p_unlock(tc_p2p *p);
// Asks the worker at host:port for its state: 1 received (global, momentum, *round), 0 it has
// none, -1 error.
int tc_p2p_fetch_state(tc_p2p *p, const char *host, int port, float *global, float *momentum, size_t P, long *round, double deadline, char *err,
                       size_t errlen);

// Little helpers for growing byte buffers.
typedef struct { uint8_t *p; size_t len, cap; } tc_buf;
int tc_buf_append(tc_buf *b, const void *data, size_t len);
void tc_buf_free(tc_buf *b);

// HTTP via libcurl (shared by data streaming and the S3 store).
typedef struct {
    long status;
    tc_buf body;
    char content_range[128];
    char etag[256];
} tc_http_response;
void tc_http_global_init(void);

// S3 client (s3.c).
typedef struct tc_s3 tc_s3;
tc_s3 *tc_s3_create(const char *endpoint, const char *region, const char *bucket, char *err, size_t errlen);
void tc_s3_free(tc_s3 *s);
// Performs one signed request. range may be NULL ("bytes=a-b"), extra_headers "name: value\n" lines or NULL.
int tc_s3_request(tc_s3 *s, const char *method, const char *key, const char *query, const void *body, size_t body_len,
                  const char *range, const char *extra_headers, tc_http_response *resp, char *err, size_t errlen);
uint64_t tc_s3_bytes(const tc_s3 *s);
// URL-encodes s (keeping '/' when keep_slash) into out.
void tc_uri_encode(const char *s, int keep_slash, char *out, size_t outlen);

// Plain HTTP(S) GET with an optional Range header.
int tc_http_get(const char *url, const char *range, tc_http_response *resp, char *err, size_t errlen);
// One HTTP request; headers are "Name: value" lines separated by '\n' (or NULL). Retries
// connection failures and 5xx answers like every trainer request.
int tc_http_request(const char *method, const char *url, const char *headers, const void *body, size_t body_len,
                    tc_http_response *resp, char *err, size_t errlen);

// Just enough JSON for token answers (store_gcs.c): the string value of "key" at or after p,
// unescaped into out (returns the position after it, or NULL), and a number (bare or quoted).
const char *tc_json_string(const char *p, const char *key, char *out, size_t outlen);
long tc_json_long(const char *p, const char *key, long fallback);

// A node's identity token for another cloud's trust (identity.c): `source` is "file" (read
// `file`), "gcp" (the GCE metadata server's ID token) or "azure" (Azure IMDS's token for the
// identity `client_id`), for `audience`; `metadata` is the service's scheme://host[:port].
typedef struct {
    const char *source;
    const char *file;
    const char *metadata;
    const char *audience;
    const char *client_id;
} tc_identity_source;
int tc_identity_token(const tc_identity_source *s, char *token, size_t tokenlen, char *err, size_t errlen);
// POSTs `form` (application/x-www-form-urlencoded, ending in a field's '=') followed by `token`,
// URI-encoded, to `url`: a token exchange (STS, Entra). The body is scrubbed after the call;
// the answer's body ends in a NUL. 0, or -1 with err when no answer came.
int tc_exchange_token(const char *url, const char *form, const char *token, tc_http_response *r, char *err, size_t errlen);
// Fills a source from the environment: `file` when set, else the metadata service of `source`
// ("gcp" or "azure"; GCE_METADATA_HOST / AZURE_POD_IDENTITY_AUTHORITY_HOST), the audience
// STRATUM_WEB_IDENTITY_AUDIENCE (else `default_audience`) and AZURE_CLIENT_ID.
void tc_identity_from_environment(const char *file, const char *source, const char *default_audience, char source_out[16], char file_out[1024],
                                  char metadata_out[256], char audience_out[256], char client_id_out[128]);

// Storage backends behind tc_store (store.c picks one by the URL's scheme). "location" is the
// bucket for object stores and the root directory for files; keys are full keys inside it
// (the store's prefix already applied). put returns 1 written, 0 not written because the key
// exists (only with if_absent), -1 error; get 1 found, 0 absent, -1 error; list appends every
// key starting with prefix to out, each followed by '\n'; delete of an absent key succeeds.
typedef struct {
    const char *scheme;  // "s3://", "gs://", "az://"; "" for directories
    int segments;        // path components naming the location after the scheme (0 or 1: bucket; 2: account/container)
    const char *https_host_suffix;  // https://NAME<suffix>/rest is read as scheme + NAME/rest; NULL: none
    int remote;          // 1: every call is a billed network request, poll it less often
    void *(*open)(const char *location, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen);
    void (*close)(void *impl);
    int (*put)(void *impl, const char *key, const void *data, size_t len, int if_absent, size_t multipart_threshold,
               size_t part_size, char *err, size_t errlen);
    int (*get)(void *impl, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen);
    int (*list)(void *impl, const char *prefix, tc_buf *out, char *err, size_t errlen);
    int (*del)(void *impl, const char *key, char *err, size_t errlen);
    uint64_t (*bytes)(const void *impl);
    // One GET of key with a Range header ("bytes=a-b"); resp holds status, body and
    // Content-Range. -1 only when no answer came. NULL for directories.
    int (*get_range)(void *impl, const char *key, const char *range, tc_http_response *resp, char *err, size_t errlen);
} tc_store_backend;
extern const tc_store_backend tc_store_dir_backend, tc_store_s3_backend, tc_store_gcs_backend, tc_store_azure_backend;
// 1 when url names an object in an object store (s3://, gs://, az:// or an Azure Blob https URL),
// which data sources stream.
int tc_store_is_object_url(const char *url);
// Splits an object URL into the store it lives in (scheme://bucket, az://account/container) and
// its key. 0, or -1 when url is not an object URL with a key.
int tc_store_split_object_url(const char *url, char *store_url, size_t store_len, char *key, size_t key_len);
// A Range GET of key through the store's backend (object stores only).
int tc_store_get_range(tc_store *s, const char *key, const char *range, tc_http_response *resp, char *err, size_t errlen);

// DiLoCo outer state kept inside the trainer so that checkpoints carry it.
int tc_trainer_enable_outer(tc_trainer *t);
float *tc_trainer_outer_params(tc_trainer *t);
float *tc_trainer_outer_momentum(tc_trainer *t);
long *tc_trainer_outer_round(tc_trainer *t);
tc_store *tc_trainer_store(tc_trainer *t);
// 1 when the store is remote (an object store): callers poll it less often.
int tc_store_is_remote(const tc_store *s);

#endif
