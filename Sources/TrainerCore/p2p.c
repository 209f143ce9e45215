// The workers' own TCP links, for DiLoCo's peer-to-peer exchange (diloco.c) and data-parallel
// training (tc_dp_* below).
//
// Each worker listens on p2p.listen from start to end. A thread accepts every connection and
// reads its first line:
//   "ring ROUND ATTEMPT FROM TO INCARNATION"  a neighbour opening a ring link: acknowledged with
//                                            "ok" when it is meant for this worker (rank TO, and
//                                            this incarnation unless 0), then queued until the
//                                            main thread asks for it (tc_p2p_accept)
//   "state"                                  a worker that fell behind: answered with the DiLoCo
//                                            global weights, outer momentum and round
// Since the listener is open before a worker advertises its address, a ring link can be opened
// at any time and waits in the queue until its receiver gets to that round; links for rounds the
// receiver has left behind are closed.
//
// Addresses: p2p.peers (host:port of every worker, rank order) or each worker's record in a
// store, "INCARNATION HOST PORT", written at start (peers/worker-003) and, for DiLoCo, with every
// round's readiness, so a restarted worker (new port, new incarnation) is found again.
#include "internal.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QUEUE 64

typedef struct {
    long round;
    int attempt, from, fd;
} pending;

struct tc_p2p {
    const char *tag;
    int rank;
    int fd, port;
    char host[256];  // advertised
    int advertised_port;
    uint64_t incarnation;
    double timeout_s;
    char peers[4096];
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    pending queue[QUEUE];
    int queued;
    const float *global, *momentum;
    const long *round;
    size_t P;
    uint64_t sent, received;
};

uint64_t *tc_p2p_sent_counter(tc_p2p *p) { return &p->sent; }
uint64_t *tc_p2p_received_counter(tc_p2p *p) { return &p->received; }
uint64_t tc_p2p_bytes_sent(const tc_p2p *p) { return __atomic_load_n(&p->sent, __ATOMIC_RELAXED); }
uint64_t tc_p2p_bytes_received(const tc_p2p *p) { return __atomic_load_n(&p->received, __ATOMIC_RELAXED); }
void tc_p2p_lock(tc_p2p *p) { pthread_mutex_lock(&p->mu); }
void tc_p2p_unlock(tc_p2p *p) { pthread_mutex_unlock(&p->mu); }

int tc_p2p_exchange(tc_p2p *p, int out, const void *send_buf, size_t send_len, int in, void *recv_buf, size_t recv_len, double deadline,
                    const char *what, char *err, size_t errlen) {
    return tc_net_exchange(out, send_buf, send_len, in, recv_buf, recv_len, deadline, &p->sent, &p->received, p->tag, what, err, errlen);
}

void tc_p2p_serve_state(tc_p2p *p, const float *global, const float *momentum, const long *round, size_t P) {
    pthread_mutex_lock(&p->mu);
    p->global = global;
    p->momentum = momentum;
    p->round = round;
    p->P = P;
    pthread_mutex_unlock(&p->mu);
}

// Queues an acknowledged ring link; the same (round, attempt, from) again replaces the older one
// (the neighbour reconnected), and a full queue drops its oldest entry.
static void enqueue(tc_p2p *p, long round, int attempt, int from, int fd) {
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->queued; i++) {
        if (p->queue[i].round == round && p->queue[i].attempt == attempt && p->queue[i].from == from) {
            close(p->queue[i].fd);
            p->queue[i] = p->queue[--p->queued];
            break;
        }
    }
    if (p->queued == QUEUE) {
        close(p->queue[0].fd);
        memmove(p->queue, p->queue + 1, (QUEUE - 1) * sizeof p->queue[0]);
        p->queued--;
    }
    p->queue[p->queued++] = (pending){round, attempt, from, fd};
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void answer_state(tc_p2p *p, int c) {
    char ignored[TC_ERR_MAX];
    pthread_mutex_lock(&p->mu);
    size_t P = p->P;
    float *copy = p->global ? malloc(2 * P * sizeof(float)) : NULL;
    long round = p->round ? *p->round : 0;
    if (copy) {
        memcpy(copy, p->global, P * sizeof(float));
        memcpy(copy + P, p->momentum, P * sizeof(float));
    }
    pthread_mutex_unlock(&p->mu);
    double deadline = tc_now() + p->timeout_s;
    if (!copy) {
        tc_net_send_line(c, "none\n", deadline, &p->sent, p->tag, "a worker asking for the state", ignored, sizeof ignored);
        return;
    }
    char head[96];
    snprintf(head, sizeof head, "state %ld %zu\n", round, P);
    if (tc_net_send_line(c, head, deadline, &p->sent, p->tag, "a worker asking for the state", ignored, sizeof ignored) == 0) {
        char none = 0;
        tc_net_exchange(c, copy, 2 * P * sizeof(float), c, &none, 0, deadline, &p->sent, NULL, p->tag, "a worker asking for the state", ignored,
                        sizeof ignored);
    }
    free(copy);
}

static void *serve(void *arg) {
    tc_p2p *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        struct pollfd pfd = {p->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) continue;
        char ignored[TC_ERR_MAX];
        int c = tc_net_accept(p->fd, tc_now() + 0.1, NULL, 0, p->tag, "a peer", ignored, sizeof ignored);
        if (c < 0) continue;
        // A peer says who it is at once; anything else (a scanner, a stray client) is dropped
        // after 5 s and the queue goes on.
        char line[160] = "";
        double hello = tc_now() + 5;
        if (tc_net_read_line(c, line, sizeof line, hello, &p->received, p->tag, "a peer", ignored, sizeof ignored) != 0) {
            close(c);
            continue;
        }
        long round;
        int attempt, from, to;
        unsigned long long inc;
        if (sscanf(line, "ring %ld %d %d %d %llu", &round, &attempt, &from, &to, &inc) == 5) {
            int mine = to == p->rank && (inc == 0 || inc == p->incarnation);
            if (tc_net_send_line(c, mine ? "ok\n" : "no\n", hello, &p->sent, p->tag, "a peer", ignored, sizeof ignored) != 0 || !mine) {
                close(c);
                continue;
            }
            enqueue(p, round, attempt, from, c);
        } else if (strcmp(line, "state") == 0) {
            answer_state(p, c);
            close(c);
        } else {
            close(c);
        }
    }
    return NULL;
}

// This machine's first non-loopback IPv4 address, for the others to reach it; 127.0.0.1 if none.
static void own_address(char *out, size_t outlen) {
    snprintf(out, outlen, "127.0.0.1");
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0) return;
    for (struct ifaddrs *i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if ((ntohl(a.s_addr) >> 24) == 127) continue;
        inet_ntop(AF_INET, &a, out, (socklen_t)outlen);
        break;
    }
    freeifaddrs(list);
}

tc_p2p *tc_p2p_open(const tc_config *c, int rank, const char *tag, char *err, size_t errlen) {
    tc_p2p *p = calloc(1, sizeof *p);
    if (!p) {
        tc_fail(err, errlen, "%s: out of memory", tag);
        return NULL;
    }
    p->tag = tag;
    p->rank = rank;
    p->fd = -1;
    p->timeout_s = c->p2p_timeout_s;
    snprintf(p->peers, sizeof p->peers, "%s", c->p2p_peers);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    char host[256];
    int port = 0, listed = 0;
    if (tc_net_parse_hostport(c->p2p_listen, host, sizeof host, &port) != 0) {
        tc_fail(err, errlen, "config: 'p2p.listen' must be host:port, got '%s'", c->p2p_listen);
        goto fail;
    }
    // With an explicit peer list, this worker listens where the list says it does.
    char listed_host[256];
    if (c->p2p_peers[0] && tc_p2p_peer_at(c->p2p_peers, rank, listed_host, sizeof listed_host, &listed) != 0) {
        tc_fail(err, errlen, "config: 'p2p.peers' has no entry for rank %d", rank);
        goto fail;
    }
    if (port == 0 && listed > 0) port = listed;
    if ((p->fd = tc_net_listen(host, port, &p->port, tag, err, errlen)) < 0) goto fail;
    // The address the others use: p2p.advertise, else the node's own address, else the listen host.
    const char *node_ip = getenv("STRATUM_NODE_IP");
    p->advertised_port = p->port;
    if (c->p2p_advertise[0]) {
        if (strchr(c->p2p_advertise, ':'))
            tc_net_parse_hostport(c->p2p_advertise, p->host, sizeof p->host, &p->advertised_port);
        else
            snprintf(p->host, sizeof p->host, "%s", c->p2p_advertise);
    } else if (c->p2p_peers[0]) {
        snprintf(p->host, sizeof p->host, "%s", listed_host);
    } else if (node_ip && node_ip[0]) {
        snprintf(p->host, sizeof p->host, "%s", node_ip);
    } else if (host[0] && strcmp(host, "0.0.0.0") != 0 && strcmp(host, "*") != 0) {
        snprintf(p->host, sizeof p->host, "%s", host);
    } else {
        own_address(p->host, sizeof p->host);
    }
    // A new number each start, so the others can tell a restarted worker from the one they knew.
    tc_rng r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tc_rng_seed(&r, (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)rank);
    p->incarnation = tc_rng_u64(&r) >> 1 | 1;
    if (pthread_create(&p->thread, NULL, serve, p) != 0) {
        tc_fail(err, errlen, "%s: cannot start the listener thread", tag);
        goto fail;
    }
    p->started = 1;
    return p;
fail:
    tc_p2p_close(p);
    return NULL;
}

void tc_p2p_close(tc_p2p *p) {
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    if (p->fd >= 0) close(p->fd);
    for (int i = 0; i < p->queued; i++) close(p->queue[i].fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

void tc_p2p_record(const tc_p2p *p, char *out, size_t outlen) {
    snprintf(out, outlen, "%llu %s %d\n", (unsigned long long)p->incarnation, p->host, p->advertised_port);
}

int tc_p2p_publish(tc_p2p *p, tc_store *s, char *err, size_t errlen) {
    char key[64], record[320];
    snprintf(key, sizeof key, "peers/worker-%03d", p->rank);
    tc_p2p_record(p, record, sizeof record);
    return tc_store_put(s, key, record, strlen(record), err, errlen);
}

int tc_p2p_lookup(tc_p2p *p, tc_store *s, const char *record_key, int rank, char *host, size_t hostlen, int *port, uint64_t *incarnation, char *err,
                  size_t errlen) {
    if (p->peers[0]) {
        *incarnation = 0;
        if (tc_p2p_peer_at(p->peers, rank, host, hostlen, port) != 0) return tc_fail(err, errlen, "%s: 'p2p.peers' has no entry for rank %d", p->tag, rank);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tc_store_get(s, record_key, &buf, &len, err, errlen);
    if (rc <= 0) return rc;
    char text[400], h[256];
    snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text ? len : sizeof text - 1), (const char *)buf);
    free(buf);
    unsigned long long inc;
    if (sscanf(text, "%llu %255s %d", &inc, h, port) != 3 || *port <= 0 || *port > 65535)
        return tc_fail(err, errlen, "%s: the record '%s' is malformed ('%s')", p->tag, record_key, text);
    snprintf(host, hostlen, "%s", h);
    *incarnation = inc;
    return 1;
}

int tc_p2p_connect(tc_p2p *p, const char *host, int port, uint64_t incarnation, int to, long round, int attempt, double deadline, int retry_refused,
                   char *err, size_t errlen) {
    char what[64];
    snprintf(what, sizeof what, "worker %d", to);
    int fd = tc_net_connect(host, port, deadline, retry_refused, p->tag, what, err, errlen);
    if (fd < 0) return -1;
    char hello[160], ack[8] = "";
    snprintf(hello, sizeof hello, "ring %ld %d %d %d %llu\n", round, attempt, p->rank, to, (unsigned long long)incarnation);
    if (tc_net_send_line(fd, hello, deadline, &p->sent, p->tag, what, err, errlen) != 0 ||
        tc_net_read_line(fd, ack, sizeof ack, deadline, &p->received, p->tag, what, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    if (strcmp(ack, "ok") != 0) {
        close(fd);
        return tc_fail(err, errlen, "%s: %s:%d is not worker %d as it was advertised (it restarted, or another process took the port)", p->tag, host, port,
                       to);
    }
    return fd;
}

int tc_p2p_accept(tc_p2p *p, long round, int attempt, int from, double deadline, char *err, size_t errlen) {
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (int i = 0; i < p->queued;) {
            pending *q = &p->queue[i];
            if (q->round == round && q->attempt == attempt && q->from == from) {
                int fd = q->fd;
                *q = p->queue[--p->queued];
                pthread_mutex_unlock(&p->mu);
                return fd;
            }
            if (q->round < round || (q->round == round && q->attempt < attempt)) {  // a link for an exchange that is over
                close(q->fd);
                *q = p->queue[--p->queued];
                continue;
            }
            i++;
        }
        double left = tc_net_remaining(deadline);
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double wait = left < 0.1 ? left : 0.1;
        ts.tv_nsec += (long)(wait * 1e9);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return tc_fail(err, errlen, "%s: timed out waiting for worker %d to connect", p->tag, from);
}

int tc_p2p_fetch_state(tc_p2p *p, const char *host, int port, float *global, float *momentum, size_t P, long *round, double deadline, char *err,
                       size_t errlen) {
    int fd = tc_net_connect(host, port, deadline, 0, p->tag, "a peer", err, errlen);
    if (fd < 0) return -1;
    char line[96] = "";
    int rc = -1;
    if (tc_net_send_line(fd, "state\n", deadline, &p->sent, p->tag, "a peer", err, errlen) != 0 ||
        tc_net_read_line(fd, line, sizeof line, deadline, &p->received, p->tag, "a peer", err, errlen) != 0)
        goto done;
    if (strcmp(line, "none") == 0) {
        rc = 0;
        goto done;
    }
    long r;
    size_t n;
    if (sscanf(line, "state %ld %zu", &r, &n) != 2) {
        tc_fail(err, errlen, "%s: %s:%d answered '%s' to a state request", p->tag, host, port, line);
        goto done;
    }
    if (n != P) {
        tc_fail(err, errlen, "%s: the worker at %s:%d has %zu parameters, this one %zu (same model everywhere?)", p->tag, host, port, n, P);
        goto done;
    }
    float *buf = malloc(2 * P * sizeof(float));
    if (!buf) {
        tc_fail(err, errlen, "%s: out of memory", p->tag);
        goto done;
    }
    char none = 0;
    if (tc_net_exchange(fd, &none, 0, fd, buf, 2 * P * sizeof(float), deadline, NULL, &p->received, p->tag, "a peer", err, errlen) != 0) {
        free(buf);
        goto done;
    }
    memcpy(global, buf, P * sizeof(float));
    memcpy(momentum, buf + P, P * sizeof(float));
    free(buf);
    *round = r;
    rc = 1;
done:
    close(fd);
    return rc;
}

// ------------------------------------------------------------------------------------------
// Data parallel: a fixed ring of every rank, connected once; each step all-reduces the
// gradients and the loss (one buffer, padded to a multiple of the ranks) and divides by W.

struct tc_dp {
    int world, rank;
    double timeout_s;
    tc_p2p *p;
    tc_store *store;
    int next, prev;
    float *buf, *incoming;
    size_t count;
    char what[32];
};

uint64_t tc_dp_bytes_sent(const tc_dp *dp) { return dp->p ? tc_p2p_bytes_sent(dp->p) : 0; }
uint64_t tc_dp_bytes_received(const tc_dp *dp) { return dp->p ? tc_p2p_bytes_received(dp->p) : 0; }

void tc_dp_close(tc_dp *dp) {
    if (!dp) return;
    if (dp->next >= 0) close(dp->next);
    if (dp->prev >= 0) close(dp->prev);
    tc_p2p_close(dp->p);
    tc_store_free(dp->store);
    free(dp->buf);
    free(dp->incoming);
    free(dp);
}

tc_dp *tc_dp_open(const tc_config *c, long start_step, char *err, size_t errlen) {
    tc_dp *dp = calloc(1, sizeof *dp);
    if (!dp) {
        tc_fail(err, errlen, "dp: out of memory");
        return NULL;
    }
    dp->world = c->dp_workers > 0 ? c->dp_workers : 1;
    dp->rank = c->dp_rank;
    dp->timeout_s = c->p2p_timeout_s;
    dp->next = dp->prev = -1;
    if (dp->world == 1) return dp;
    if (!(dp->p = tc_p2p_open(c, dp->rank, "dp", err, errlen))) goto fail;
    if (!c->p2p_peers[0]) {
        if (!(dp->store = tc_store_open(c->dp_rendezvous, c->s3_endpoint, c->s3_region, err, errlen))) goto fail;
        if (tc_p2p_publish(dp->p, dp->store, err, errlen) != 0) goto fail;
    }
    int to = (dp->rank + 1) % dp->world, from = (dp->rank + dp->world - 1) % dp->world;
    double deadline = tc_now() + dp->timeout_s;
    // The next rank may not have started yet, or its record may still be a previous run's:
    // read it again between tries until the deadline.
    char last[TC_ERR_MAX] = "";
    char key[64];
    snprintf(key, sizeof key, "peers/worker-%03d", to);
    while (dp->next < 0) {
        char host[256];
        int port;
        uint64_t inc;
        int found = tc_p2p_lookup(dp->p, dp->store, key, to, host, sizeof host, &port, &inc, last, sizeof last);
        if (found < 0) {
            snprintf(err, errlen, "%s", last);
            goto fail;
        }
        if (found == 0) snprintf(last, sizeof last, "dp: rank %d has not published its address (%s) yet", to, key);
        if (found == 1) {
            double soon = tc_now() + 2 < deadline ? tc_now() + 2 : deadline;
            dp->next = tc_p2p_connect(dp->p, host, port, inc, to, -1, 0, soon, 1, last, sizeof last);
        }
        if (dp->next < 0) {
            if (tc_net_remaining(deadline) <= 0) {
                tc_fail(err, errlen, "dp: rank %d: could not connect to rank %d within %g s ('p2p.timeout_s'): %s", dp->rank, to, dp->timeout_s, last);
                goto fail;
            }
            usleep(100 * 1000);
        }
    }
    if ((dp->prev = tc_p2p_accept(dp->p, -1, 0, from, deadline, err, errlen)) < 0) goto fail;
    // Every rank must start from the same step (the same checkpoint), or the replicas would differ.
    snprintf(dp->what, sizeof dp->what, "rank %d", from);
    char mine[48], theirs[48] = "";
    snprintf(mine, sizeof mine, "step %ld\n", start_step);
    if (tc_net_send_line(dp->next, mine, deadline, tc_p2p_sent_counter(dp->p), "dp", dp->what, err, errlen) != 0 ||
        tc_net_read_line(dp->prev, theirs, sizeof theirs, deadline, tc_p2p_received_counter(dp->p), "dp", dp->what, err, errlen) != 0)
        goto fail;
    long their_step = -1;
    if (sscanf(theirs, "step %ld", &their_step) != 1 || their_step != start_step) {
        tc_fail(err, errlen, "dp: rank %d starts at step %ld but rank %d at step %s: start every rank from the same checkpoint", dp->rank, start_step, from,
                theirs + (strncmp(theirs, "step ", 5) == 0 ? 5 : 0));
        goto fail;
    }
    return dp;
fail:
    tc_dp_close(dp);
    return NULL;
}

static int dp_reduce(void *arg, tc_model *m, float *loss, char *err, size_t errlen) {
    tc_dp *dp = arg;
    size_t P = tc_model_num_params(m);
    if (!dp->buf) {
        size_t W = (size_t)dp->world;
        dp->count = (P + 1 + W - 1) / W * W;
        dp->buf = calloc(dp->count, sizeof(float));
        dp->incoming = malloc(dp->count / W * sizeof(float));
        if (!dp->buf || !dp->incoming) return tc_fail(err, errlen, "dp: out of memory for %zu gradients", P);
    }
    float *g = tc_model_grads(m);
    memcpy(dp->buf, g, P * sizeof(float));
    dp->buf[P] = *loss;
    memset(dp->buf + P + 1, 0, (dp->count - P - 1) * sizeof(float));
    if (tc_net_ring_allreduce_sum(dp->next, dp->prev, dp->buf, dp->count, dp->world, dp->rank, dp->incoming, tc_now() + dp->timeout_s,
                                  tc_p2p_sent_counter(dp->p), tc_p2p_received_counter(dp->p), "dp", dp->what, err, errlen) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, errlen > n ? errlen - n : 0, " (a data-parallel run needs every rank: restart them all from their checkpoints)");
        return -1;
    }
    float inv = 1.0f / (float)dp->world;
    for (size_t k = 0; k < P; k++) g[k] = dp->buf[k] * inv;
    *loss = dp->buf[P] * inv;
    return 0;
}

int tc_dp_step(tc_dp *dp, tc_trainer *t, float *loss, char *err, size_t errlen) {
    return tc_trainer_step_reduced(t, loss, dp->world > 1 ? dp_reduce : NULL, dp, err, errlen);
}
