// TCP helpers shared by the interconnect check (allreduce.c) and the peer-to-peer exchanges
// (p2p.c): listening on a given address, connecting and accepting with deadlines, and moving
// whole buffers both ways at once. Every wait is bounded by a deadline, so a peer behind a
// firewall that drops packets, or one that died, costs at most the time left, never a hang.
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

double tc_net_remaining(double deadline) {
    double left = deadline - tc_now();
    return left > 0 ? left : 0;
}

// The time left as a poll(2) timeout in milliseconds (never negative, never overflowing).
static int poll_ms(double deadline) {
    double ms = tc_net_remaining(deadline) * 1000;
    return ms > 86400000 ? 86400000 : (int)ms;
}

static void count(uint64_t *counter, size_t n) {
    if (counter && n) __atomic_fetch_add(counter, (uint64_t)n, __ATOMIC_RELAXED);
}

// connect(2) bounded by the deadline: a peer behind a firewall that drops packets would
// otherwise hold a blocking connect for minutes. 0, or -1 with errno set.
static int connect_until(int fd, const struct sockaddr *addr, socklen_t len, double deadline) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
    int rc = connect(fd, addr, len);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int ready = poll(&p, 1, poll_ms(deadline));
        if (ready <= 0) {
            errno = ready == 0 ? ETIMEDOUT : errno;
            return -1;
        }
        int soerr = 0;
        socklen_t slen = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0) return -1;
        if (soerr != 0) {
            errno = soerr;
            return -1;
        }
        rc = 0;
    }
    if (rc == 0) fcntl(fd, F_SETFL, flags);
    return rc;
}

int tc_net_listen(const char *host, int port, int *bound, const char *tag, char *err, size_t errlen) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (!host || !host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0) {
        a.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || !res) return tc_fail(err, errlen, "%s: cannot resolve the listen address '%s': %s", tag, host, gai_strerror(rc));
        a.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
        freeaddrinfo(res);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return tc_fail(err, errlen, "%s: socket: %s", tag, strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return tc_fail(err, errlen, "%s: cannot listen on %s:%d: %s", tag, host && host[0] ? host : "0.0.0.0", port, strerror(e));
    }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *bound = ntohs(a.sin_port);
    return fd;
}

int tc_net_accept(int fd, double deadline, char *peer_host, size_t peer_len, const char *tag, const char *what, char *err, size_t errlen) {
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int ready = poll(&p, 1, poll_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return tc_fail(err, errlen, "%s: timed out waiting for %s to connect", tag, what);
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int c = accept(fd, (struct sockaddr *)&peer, &len);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
            return tc_fail(err, errlen, "%s: accept: %s", tag, strerror(errno));
        }
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
        setsockopt(c, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        if (peer_host) inet_ntop(AF_INET, &peer.sin_addr, peer_host, (socklen_t)peer_len);
        return c;
    }
}

int tc_net_connect(const char *host, int port, double deadline, int retry_refused, const char *tag, const char *what, char *err, size_t errlen) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    char last[160] = "no address";
    for (;;) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, service, &hints, &res), refused = 0;
        if (rc == 0) {
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
                if (fd < 0) continue;
                if (connect_until(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0) {
                    freeaddrinfo(res);
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
                    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
                    return fd;
                }
                refused |= errno == ECONNREFUSED;
                snprintf(last, sizeof last, "%s", strerror(errno));
                close(fd);
            }
            freeaddrinfo(res);
        } else {
            snprintf(last, sizeof last, "%s", gai_strerror(rc));
        }
        // A refused connection means nothing listens there: a peer that is gone, when the
        // caller knows it listened before it advertised its address.
        if (tc_net_remaining(deadline) <= 0 || (refused && !retry_refused))
            return tc_fail(err, errlen, "%s: cannot reach %s at %s:%d: %s", tag, what, host, port, last);
        usleep(50 * 1000);
    }
}

int tc_net_exchange(int out, const void *send_buf, size_t send_len, int in, void *recv_buf, size_t recv_len, double deadline, uint64_t *sent_counter,
                    uint64_t *received_counter, const char *tag, const char *what, char *err, size_t errlen) {
    size_t sent = 0, got = 0;
    while (sent < send_len || got < recv_len) {
        struct pollfd p[2];
        int n = 0, si = -1, ri = -1;
        if (sent < send_len) { si = n; p[n++] = (struct pollfd){out, POLLOUT, 0}; }
        if (got < recv_len) { ri = n; p[n++] = (struct pollfd){in, POLLIN, 0}; }
        int ready = poll(p, (nfds_t)n, poll_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return tc_fail(err, errlen, "%s: timed out exchanging with %s", tag, what);
        if (si >= 0 && (p[si].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(out, (const char *)send_buf + sent, send_len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return tc_fail(err, errlen, "%s: sending to %s failed: %s", tag, what, strerror(errno));
            if (w > 0) {
                sent += (size_t)w;
                count(sent_counter, (size_t)w);
            }
        }
        if (ri >= 0 && (p[ri].revents & (POLLIN | POLLERR | POLLHUP))) {
            ssize_t r = recv(in, (char *)recv_buf + got, recv_len - got, MSG_DONTWAIT);
            if (r == 0) return tc_fail(err, errlen, "%s: %s closed the connection", tag, what);
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return tc_fail(err, errlen, "%s: receiving from %s failed: %s", tag, what, strerror(errno));
            if (r > 0) {
                got += (size_t)r;
                count(received_counter, (size_t)r);
            }
        }
    }
    return 0;
}

int tc_net_send_line(int fd, const char *line, double deadline, uint64_t *sent_counter, const char *tag, const char *what, char *err, size_t errlen) {
    char none = 0;
    return tc_net_exchange(fd, line, strlen(line), fd, &none, 0, deadline, sent_counter, NULL, tag, what, err, errlen);
}

int tc_net_read_line(int fd, char *line, size_t cap, double deadline, uint64_t *received_counter, const char *tag, const char *what, char *err,
                     size_t errlen) {
    size_t n = 0;
    while (n < cap - 1) {
        char none = 0;
        if (tc_net_exchange(fd, &none, 0, fd, line + n, 1, deadline, NULL, received_counter, tag, what, err, errlen) != 0) return -1;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    return 0;
}

int tc_net_parse_hostport(const char *text, char *host, size_t hostlen, int *port) {
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= hostlen) return -1;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != 0 || p < 0 || p > 65535) return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    *port = (int)p;
    return 0;
}

int tc_net_ring_allreduce_sum(int next, int prev, float *data, size_t count, int world, int rank, float *incoming, double deadline,
                              uint64_t *sent_counter, uint64_t *received_counter, const char *tag, const char *what, char *err, size_t errlen) {
    size_t chunk = count / (size_t)world;
    // Reduce-scatter: after world-1 steps rank r holds the full sum of chunk (r+1) mod world.
    for (int step = 0; step < world - 1; step++) {
        size_t out = (size_t)((rank - step + world) % world), in = (size_t)((rank - step - 1 + 2 * world) % world);
        if (tc_net_exchange(next, data + out * chunk, chunk * sizeof(float), prev, incoming, chunk * sizeof(float), deadline, sent_counter,
                            received_counter, tag, what, err, errlen) != 0)
            return -1;
        for (size_t i = 0; i < chunk; i++) data[in * chunk + i] += incoming[i];
    }
    // All-gather: the summed chunks go round as they are, so every rank ends with the same bits.
    for (int step = 0; step < world - 1; step++) {
        size_t out = (size_t)((rank + 1 - step + world) % world), in = (size_t)((rank - step + world) % world);
        if (tc_net_exchange(next, data + out * chunk, chunk * sizeof(float), prev, data + in * chunk, chunk * sizeof(float), deadline, sent_counter,
                            received_counter, tag, what, err, errlen) != 0)
            return -1;
    }
    return 0;
}
