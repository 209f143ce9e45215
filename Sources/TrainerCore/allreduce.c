// The cluster's interconnect check: a ring all-reduce of a float buffer between every node of
// a pool over TCP, timed, its result checked, as the bus bandwidth NCCL's tests report
// (algorithm bandwidth x 2(n-1)/n). Run once per boot beside the workload; a node whose peers
// cannot reach it (a firewall, a broken fabric) fails within the timeout instead of hanging,
// and says which peer it was waiting for.
//
// Rendezvous: rank 0 listens on `port`; every other rank connects to the coordinator there and
// sends its rank and the port of its own ring listener; rank 0 answers each with the table of
// every rank's address (the address rank 0 saw it connect from). Then each rank connects to
// the next one and accepts the previous one.
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
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

static double remaining(double deadline) {
    double left = deadline - tc_now();
    return left > 0 ? left : 0;
}

// The time left as a poll(2) timeout in milliseconds (never negative, never overflowing).
static int poll_ms(double deadline) {
    double ms = remaining(deadline) * 1000;
    return ms > 86400000 ? 86400000 : (int)ms;
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

static int listener(int port, int *bound, char *err, size_t errlen) {
    int fd = tc_tcp_listen(port, 0, bound);
    if (fd < 0) return tc_fail(err, errlen, "allreduce: cannot listen on port %d: %s", port, strerror(errno));
    return fd;
}

static int accept_by(int fd, double deadline, struct sockaddr_in *peer, char *err, size_t errlen, const char *what) {
    struct pollfd p = {fd, POLLIN, 0};
    int ready = poll(&p, 1, poll_ms(deadline));
    if (ready <= 0) return tc_fail(err, errlen, "allreduce: timed out waiting for %s to connect", what);
    socklen_t len = sizeof *peer;
    int c = accept(fd, (struct sockaddr *)peer, &len);
    if (c < 0) return tc_fail(err, errlen, "allreduce: accept: %s", strerror(errno));
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

// Connects to host:port, trying again until the deadline (the peer may not listen yet).
static int connect_by(const char *host, int port, double deadline, char *err, size_t errlen, const char *what) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    char last[160] = "no address";
    for (;;) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, service, &hints, &res);
        if (rc == 0) {
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
                if (fd < 0) continue;
                if (connect_until(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0) {
                    freeaddrinfo(res);
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    return fd;
                }
                snprintf(last, sizeof last, "%s", strerror(errno));
                close(fd);
            }
            freeaddrinfo(res);
        } else {
            snprintf(last, sizeof last, "%s", gai_strerror(rc));
        }
        if (remaining(deadline) <= 0) return tc_fail(err, errlen, "allreduce: cannot reach %s at %s:%d: %s", what, host, port, last);
        usleep(50 * 1000);
    }
}

// Rank 0's rendezvous port, for the others to read (atomically, by rename).
static int write_port(const char *path, int port, char *err, size_t errlen) {
    char tmp[TC_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return tc_fail(err, errlen, "allreduce: cannot write the rendezvous port to %s: %s", path, strerror(errno));
    int wrote = fprintf(f, "%d\n", port) >= 0;
    if (fclose(f) != 0 || !wrote || rename(tmp, path) != 0)
        return tc_fail(err, errlen, "allreduce: cannot write the rendezvous port to %s: %s", path, strerror(errno));
    return 0;
}

// Connects to the coordinator at the port rank 0 wrote in `path`, reading the file again
// between tries (a file left by an earlier run names a port nobody listens on any more).
static int connect_by_file(const char *host, const char *path, double deadline, char *err, size_t errlen) {
    for (;;) {
        int port = 0;
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (port > 0) {
            double soon = tc_now() + 0.5 < deadline ? tc_now() + 0.5 : deadline;
            int fd = connect_by(host, port, soon, err, errlen, "the coordinator (rank 0)");
            if (fd >= 0) return fd;
        }
        if (remaining(deadline) <= 0) return tc_fail(err, errlen, "allreduce: timed out waiting for the coordinator (rank 0) to listen (its port in %s)", path);
        usleep(50 * 1000);
    }
}

// Sends and receives whole buffers, both at once (the ring's neighbours send while they
// receive), until both are done or the deadline passes.
static int exchange(int out, const void *send_buf, size_t send_len, int in, void *recv_buf, size_t recv_len, double deadline, char *err, size_t errlen,
                    const char *what) {
    size_t sent = 0, got = 0;
    while (sent < send_len || got < recv_len) {
        struct pollfd p[2];
        int n = 0, si = -1, ri = -1;
        if (sent < send_len) { si = n; p[n++] = (struct pollfd){out, POLLOUT, 0}; }
        if (got < recv_len) { ri = n; p[n++] = (struct pollfd){in, POLLIN, 0}; }
        int ready = poll(p, (nfds_t)n, poll_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return tc_fail(err, errlen, "allreduce: timed out exchanging with %s", what);
        if (si >= 0 && (p[si].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(out, (const char *)send_buf + sent, send_len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return tc_fail(err, errlen, "allreduce: sending to the next rank failed: %s", strerror(errno));
            if (w > 0) sent += (size_t)w;
        }
        if (ri >= 0 && (p[ri].revents & (POLLIN | POLLERR | POLLHUP))) {
            ssize_t r = recv(in, (char *)recv_buf + got, recv_len - got, MSG_DONTWAIT);
            if (r == 0) return tc_fail(err, errlen, "allreduce: %s closed the connection", what);
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return tc_fail(err, errlen, "allreduce: receiving from %s failed: %s", what, strerror(errno));
            if (r > 0) got += (size_t)r;
        }
    }
    return 0;
}

static int send_line(int fd, const char *line, double deadline, char *err, size_t errlen, const char *what) {
    char none;
    return exchange(fd, line, strlen(line), fd, &none, 0, deadline, err, errlen, what);
}

// Reads one '\n'-terminated line (at most cap-1 bytes).
static int read_line(int fd, char *line, size_t cap, double deadline, char *err, size_t errlen, const char *what) {
    size_t n = 0;
    while (n < cap - 1) {
        char none;
        if (exchange(fd, &none, 0, fd, line + n, 1, deadline, err, errlen, what) != 0) return -1;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    return 0;
}

// Rank 0's side of the rendezvous: every rank's address, in rank order, into hosts/ports.
static int gather(int world, int fd, int own_port, char (*hosts)[64], int *ports, int *conns, double deadline, char *err, size_t errlen) {
    snprintf(hosts[0], 64, "-");
    ports[0] = own_port;
    for (int seen = 1; seen < world; seen++) {
        struct sockaddr_in peer;
        char what[64];
        snprintf(what, sizeof what, "%d of %d other ranks", world - seen, world - 1);
        int c = accept_by(fd, deadline, &peer, err, errlen, what);
        if (c < 0) return -1;
        char line[64] = "";
        int rank = -1, port = 0;
        // A joining rank says who it is within 10 s; anything else that connected (a stray
        // client, a scanner) is dropped, and the gather goes on.
        double hello = tc_now() + 10 < deadline ? tc_now() + 10 : deadline;
        char ignored[TC_ERR_MAX];
        if (read_line(c, line, sizeof line, hello, ignored, sizeof ignored, "a joining rank") != 0 || sscanf(line, "%d %d", &rank, &port) != 2 ||
            rank <= 0 || rank >= world || port <= 0 || port > 65535) {
            close(c);
            seen--;
            continue;
        }
        if (conns[rank] >= 0) {
            // The rank registered again (it missed the acknowledgement): the newer one counts.
            close(conns[rank]);
            conns[rank] = -1;
            seen--;
        }
        if (send_line(c, "ok\n", hello, ignored, sizeof ignored, "a joining rank") != 0) {
            close(c);
            seen--;
            continue;
        }
        conns[rank] = c;
        inet_ntop(AF_INET, &peer.sin_addr, hosts[rank], 64);
        ports[rank] = port;
    }
    // Everyone is here: hand out the table.
    size_t cap = (size_t)world * 80 + 1;
    char *table = malloc(cap);
    if (!table) return tc_fail(err, errlen, "allreduce: out of memory");
    size_t used = 0;
    for (int i = 0; i < world; i++) used += (size_t)snprintf(table + used, cap - used, "%s %d\n", hosts[i], ports[i]);
    int rc = 0;
    for (int i = 1; i < world && rc == 0; i++) rc = send_line(conns[i], table, deadline, err, errlen, "a joining rank");
    free(table);
    return rc;
}

int tc_allreduce_check(const tc_allreduce_spec *s, tc_allreduce_result *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    int world = s->world, rank = s->rank;
    if (world < 2 || rank < 0 || rank >= world) return tc_fail(err, errlen, "allreduce: rank %d of %d: a check needs at least 2 ranks", rank, world);
    if (s->bytes <= 0 || s->bytes > (1L << 34)) return tc_fail(err, errlen, "allreduce: --bytes must be more than 0 and at most 16 GiB (got %ld)", s->bytes);
    size_t count = (size_t)(s->bytes / (long)sizeof(float));
    count -= count % (size_t)world;
    if (count == 0) return tc_fail(err, errlen, "allreduce: %ld bytes is too small for %d ranks", s->bytes, world);
    double deadline = tc_now() + (s->timeout_s > 0 ? s->timeout_s : 60);

    char(*hosts)[64] = calloc((size_t)world, 64);
    int *ports = calloc((size_t)world, sizeof *ports), *conns = malloc((size_t)world * sizeof *conns);
    float *data = malloc(count * sizeof *data), *incoming = malloc(count / (size_t)world * sizeof *incoming);
    int ring = -1, next = -1, prev = -1, rendezvous = -1, rc = -1, ring_port = 0;
    if (!hosts || !ports || !conns || !data || !incoming) {
        tc_fail(err, errlen, "allreduce: out of memory for %zu floats", count);
        goto done;
    }
    for (int i = 0; i < world; i++) conns[i] = -1;
    if ((ring = listener(0, &ring_port, err, errlen)) < 0) goto done;

    if (rank == 0) {
        int bound;
        if ((rendezvous = listener(s->port_file[0] ? 0 : s->port, &bound, err, errlen)) < 0) goto done;
        if (s->port_file[0] && write_port(s->port_file, bound, err, errlen) != 0) goto done;
        if (gather(world, rendezvous, ring_port, hosts, ports, conns, deadline, err, errlen) != 0) goto done;
    } else {
        // Register with the coordinator, which answers "ok" at once: something else listening
        // on a stale port does not, and the registration is tried again (with a port file,
        // read anew).
        int c = -1;
        for (;;) {
            c = s->port_file[0] ? connect_by_file(s->coordinator, s->port_file, deadline, err, errlen)
                                : connect_by(s->coordinator, s->port, deadline, err, errlen, "the coordinator (rank 0)");
            if (c < 0) goto done;
            char line[64] = "", ack[8] = "";
            snprintf(line, sizeof line, "%d %d\n", rank, ring_port);
            double soon = tc_now() + 10 < deadline ? tc_now() + 10 : deadline;
            if (send_line(c, line, soon, err, errlen, "the coordinator") == 0 && read_line(c, ack, sizeof ack, soon, err, errlen, "the coordinator") == 0 &&
                strcmp(ack, "ok") == 0)
                break;
            close(c);
            c = -1;
            if (remaining(deadline) <= 0) {
                tc_fail(err, errlen, "allreduce: the coordinator (rank 0) never acknowledged this rank");
                goto done;
            }
            usleep(200 * 1000);
        }
        conns[0] = c;
        for (int i = 0; i < world; i++) {
            char entry[96];
            if (read_line(c, entry, sizeof entry, deadline, err, errlen, "the coordinator, which waits for every rank to join,") != 0) goto done;
            if (sscanf(entry, "%63s %d", hosts[i], &ports[i]) != 2 || ports[i] <= 0 || ports[i] > 65535) {
                tc_fail(err, errlen, "allreduce: the coordinator's table is malformed ('%s')", entry);
                goto done;
            }
        }
        snprintf(hosts[0], 64, "%s", s->coordinator);
    }

    // The ring: connect to the next rank, accept the previous one (who says its rank).
    int to = (rank + 1) % world, from = (rank + world - 1) % world;
    char what[64];
    snprintf(what, sizeof what, "rank %d", to);
    if ((next = connect_by(hosts[to], ports[to], deadline, err, errlen, what)) < 0) goto done;
    char hello[32];
    snprintf(hello, sizeof hello, "%d\n", rank);
    if (send_line(next, hello, deadline, err, errlen, what) != 0) goto done;
    snprintf(what, sizeof what, "rank %d", from);
    struct sockaddr_in peer;
    if ((prev = accept_by(ring, deadline, &peer, err, errlen, what)) < 0) goto done;
    char line[32] = "";
    int said = -1;
    if (read_line(prev, line, sizeof line, deadline, err, errlen, what) != 0) goto done;
    if (sscanf(line, "%d", &said) != 1 || said != from) {
        tc_fail(err, errlen, "allreduce: expected rank %d on the ring, got '%s'", from, line);
        goto done;
    }

    size_t chunk = count / (size_t)world;
    char from_what[32];
    snprintf(from_what, sizeof from_what, "rank %d", from);
    int iterations = s->iterations > 0 ? s->iterations : 5;
    double total = 0;
    for (int it = 0; it <= iterations; it++) {  // iteration 0 warms up and is not timed
        for (size_t i = 0; i < count; i++) data[i] = (float)(rank + 1);
        double started = tc_now();
        // Reduce-scatter, then all-gather, one chunk per step.
        for (int step = 0; step < world - 1; step++) {
            size_t out = (size_t)((rank - step + world) % world), in = (size_t)((rank - step - 1 + 2 * world) % world);
            if (exchange(next, data + out * chunk, chunk * sizeof(float), prev, incoming, chunk * sizeof(float), deadline, err, errlen, from_what) != 0)
                goto done;
            for (size_t i = 0; i < chunk; i++) data[in * chunk + i] += incoming[i];
        }
        for (int step = 0; step < world - 1; step++) {
            size_t out = (size_t)((rank + 1 - step + world) % world), in = (size_t)((rank - step + world) % world);
            if (exchange(next, data + out * chunk, chunk * sizeof(float), prev, data + in * chunk, chunk * sizeof(float), deadline, err, errlen,
                         from_what) != 0)
                goto done;
        }
        if (it > 0) total += tc_now() - started;
    }
    float expected = (float)world * (float)(world + 1) / 2.0f;
    for (size_t i = 0; i < count; i++) {
        if (data[i] != expected) {
            tc_fail(err, errlen, "allreduce: element %zu is %g after the all-reduce, expected %g: data was corrupted in transit", i, (double)data[i],
                    (double)expected);
            goto done;
        }
    }
    r->ok = 1;
    r->bytes = (long)(count * sizeof(float));
    r->seconds = total / iterations;
    r->algbw = r->seconds > 0 ? (double)r->bytes / r->seconds : 0;
    r->busbw = r->algbw * 2.0 * (world - 1) / world;
    rc = 0;
done:
    if (rc != 0) snprintf(r->detail, sizeof r->detail, "%s", err);
    if (next >= 0) close(next);
    if (prev >= 0) close(prev);
    if (ring >= 0) close(ring);
    if (rendezvous >= 0) close(rendezvous);
    if (conns)
        for (int i = 0; i < world; i++)
            if (conns[i] >= 0) close(conns[i]);
    free(hosts);
    free(ports);
    free(conns);
    free(data);
    free(incoming);
    return rc;
}

int tc_allreduce_write_metrics(const char *path, const tc_allreduce_spec *s, const tc_allreduce_result *r, char *err, size_t errlen) {
    char tmp[TC_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return tc_fail(err, errlen, "allreduce: cannot write %s: %s", tmp, strerror(errno));
    fprintf(f,
            "# HELP stratum_allreduce_ok Whether the interconnect check's all-reduce between the pool's nodes succeeded (1) or failed (0).\n"
            "# TYPE stratum_allreduce_ok gauge\n"
            "stratum_allreduce_ok %d\n"
            "# HELP stratum_allreduce_bus_bandwidth_bytes_per_second Bus bandwidth of the check's ring all-reduce (algorithm bandwidth x 2(n-1)/n).\n"
            "# TYPE stratum_allreduce_bus_bandwidth_bytes_per_second gauge\n"
            "stratum_allreduce_bus_bandwidth_bytes_per_second %.0f\n"
            "# HELP stratum_allreduce_world_size Nodes that took part in the check.\n"
            "# TYPE stratum_allreduce_world_size gauge\n"
            "stratum_allreduce_world_size %d\n"
            "# HELP stratum_allreduce_check_timestamp_seconds Unix time the check finished.\n"
            "# TYPE stratum_allreduce_check_timestamp_seconds gauge\n"
            "stratum_allreduce_check_timestamp_seconds %.0f\n",
            r->ok, r->busbw, s->world, (double)time(NULL));
    if (fclose(f) != 0 || rename(tmp, path) != 0) return tc_fail(err, errlen, "allreduce: cannot write %s: %s", path, strerror(errno));
    return 0;
}
