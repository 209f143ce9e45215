// A tiny HTTP/1.0 server on its own thread: GET /metrics (Prometheus text exposition) and
// GET /healthz. One request per connection; the accept loop polls so stop is prompt.
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // macOS: SO_NOSIGPIPE is set on each connection instead
#endif

struct tc_metrics {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t mu;
    int stop;
    long step;
    double loss, tokens_per_s, last_checkpoint, started;
    uint64_t bytes, p2p_sent, p2p_received;
    long diloco_round;
    char include[TC_PATH_MAX];
};

void tc_metrics_include(tc_metrics *m, const char *path) {
    pthread_mutex_lock(&m->mu);
    snprintf(m->include, sizeof m->include, "%s", path ? path : "");
    pthread_mutex_unlock(&m->mu);
}

// The body with the included file's text after it (at most 64 KB of it). Caller frees.
static char *with_include(const char *body, const char *path) {
    size_t n = strlen(body), extra = 0;
    char *out = malloc(n + 65536 + 1);
    if (!out) return NULL;
    memcpy(out, body, n);
    FILE *f = path[0] ? fopen(path, "r") : NULL;
    if (f) {
        extra = fread(out + n, 1, 65536, f);
        fclose(f);
    }
    out[n + extra] = 0;
    return out;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int status, const char *reason, const char *ctype, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, reason, ctype, strlen(body));
    send_all(fd, head, (size_t)n);
    send_all(fd, body, strlen(body));
}

static void handle(tc_metrics *m, int fd) {
    char req[2048];
    size_t got = 0;
    struct pollfd pfd = {fd, POLLIN, 0};
    while (got < sizeof req - 1 && poll(&pfd, 1, 2000) > 0) {
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    req[got] = 0;
    char method[8] = {0}, path[256] = {0};
    if (sscanf(req, "%7s %255s", method, path) != 2) {
        respond(fd, 400, "Bad Request", "text/plain", "bad request\n");
        return;
    }
    char *q = strchr(path, '?');
    if (q) *q = 0;
    if (strcmp(method, "GET") != 0) {
        respond(fd, 405, "Method Not Allowed", "text/plain", "only GET\n");
    } else if (strcmp(path, "/healthz") == 0) {
        respond(fd, 200, "OK", "text/plain", "ok\n");
    } else if (strcmp(path, "/metrics") == 0) {
        pthread_mutex_lock(&m->mu);
        long step = m->step;
        double loss = m->loss, tps = m->tokens_per_s, ck = m->last_checkpoint, up = tc_now() - m->started;
        uint64_t bytes = m->bytes, p2p_sent = m->p2p_sent, p2p_received = m->p2p_received;
        long diloco_round = m->diloco_round;
        char include[TC_PATH_MAX];
        snprintf(include, sizeof include, "%s", m->include);
        pthread_mutex_unlock(&m->mu);
        char body[3072];
        snprintf(body, sizeof body,
                 "# HELP stratum_trainer_step Optimizer steps completed.\n"
                 "# TYPE stratum_trainer_step counter\n"
                 "stratum_trainer_step %ld\n"
                 "# HELP stratum_trainer_loss Training loss of the last step (nats per byte).\n"
                 "# TYPE stratum_trainer_loss gauge\n"
                 "stratum_trainer_loss %.6f\n"
                 "# HELP stratum_trainer_tokens_per_second Training throughput.\n"
                 "# TYPE stratum_trainer_tokens_per_second gauge\n"
                 "stratum_trainer_tokens_per_second %.3f\n"
                 "# HELP stratum_trainer_last_checkpoint_timestamp_seconds Unix time of the last checkpoint (0 = none).\n"
                 "# TYPE stratum_trainer_last_checkpoint_timestamp_seconds gauge\n"
                 "stratum_trainer_last_checkpoint_timestamp_seconds %.0f\n"
                 "# HELP stratum_trainer_bytes_exchanged_total Bytes sent and received through object stores, data streams and the workers' TCP links.\n"
                 "# TYPE stratum_trainer_bytes_exchanged_total counter\n"
                 "stratum_trainer_bytes_exchanged_total %llu\n"
                 "# HELP stratum_trainer_p2p_bytes_sent_total Bytes sent to other workers over TCP (DiLoCo p2p exchange, data-parallel all-reduce).\n"
                 "# TYPE stratum_trainer_p2p_bytes_sent_total counter\n"
                 "stratum_trainer_p2p_bytes_sent_total %llu\n"
                 "# HELP stratum_trainer_p2p_bytes_received_total Bytes received from other workers over TCP.\n"
                 "# TYPE stratum_trainer_p2p_bytes_received_total counter\n"
                 "stratum_trainer_p2p_bytes_received_total %llu\n"
                 "# HELP stratum_trainer_diloco_round DiLoCo outer rounds this worker has finished (0 outside DiLoCo).\n"
                 "# TYPE stratum_trainer_diloco_round gauge\n"
                 "stratum_trainer_diloco_round %ld\n"
                 "# HELP stratum_trainer_uptime_seconds Seconds since the metrics server started.\n"
                 "# TYPE stratum_trainer_uptime_seconds gauge\n"
                 "stratum_trainer_uptime_seconds %.3f\n",
                 step, loss, tps, ck, (unsigned long long)bytes, (unsigned long long)p2p_sent, (unsigned long long)p2p_received, diloco_round, up);
        char *full = with_include(body, include);
        respond(fd, 200, "OK", "text/plain; version=0.0.4", full ? full : body);
        free(full);
    } else {
        respond(fd, 404, "Not Found", "text/plain", "not found\n");
    }
}

static void *serve(void *arg) {
    tc_metrics *m = arg;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        int stop = m->stop;
        pthread_mutex_unlock(&m->mu);
        if (stop) break;
        struct pollfd pfd = {m->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) continue;
        int c = accept(m->fd, NULL, NULL);
        if (c < 0) continue;
#ifdef SO_NOSIGPIPE
        int one = 1;
        setsockopt(c, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        handle(m, c);
        close(c);
    }
    return NULL;
}

// A TCP listener on 127.0.0.1 or every address, port 0 for any free one; the fd and the port
// it got, or -1 with errno set.
int tc_tcp_listen(int port, int loopback_only, int *bound) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(loopback_only ? INADDR_LOOPBACK : INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *bound = ntohs(a.sin_port);
    return fd;
}

tc_metrics *tc_metrics_start(int port, int loopback_only, char *err, size_t errlen) {
    int bound = 0, fd = tc_tcp_listen(port, loopback_only, &bound);
    if (fd < 0) {
        tc_fail(err, errlen, "metrics: cannot listen on port %d ('metrics.port'): %s", port, strerror(errno));
        return NULL;
    }
    tc_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return NULL;
    }
    m->fd = fd;
    m->port = bound;
    m->started = tc_now();
    pthread_mutex_init(&m->mu, NULL);
    if (pthread_create(&m->thread, NULL, serve, m) != 0) {
        tc_fail(err, errlen, "metrics: cannot start the server thread");
        close(fd);
        free(m);
        return NULL;
    }
    return m;
}

int tc_metrics_port(const tc_metrics *m) { return m->port; }

void tc_metrics_update(tc_metrics *m, long step, double loss, double tokens_per_s, double last_checkpoint_unix,
                       uint64_t bytes_exchanged) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->step = step;
    m->loss = loss;
    m->tokens_per_s = tokens_per_s;
    m->last_checkpoint = last_checkpoint_unix;
    m->bytes = bytes_exchanged;
    pthread_mutex_unlock(&m->mu);
}

void tc_metrics_update_exchange(tc_metrics *m, long diloco_round, uint64_t p2p_bytes_sent, uint64_t p2p_bytes_received) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->diloco_round = diloco_round;
    m->p2p_sent = p2p_bytes_sent;
    m->p2p_received = p2p_bytes_received;
    pthread_mutex_unlock(&m->mu);
}

void tc_metrics_stop(tc_metrics *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    close(m->fd);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
