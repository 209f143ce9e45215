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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double remaining(double deadline) { return tc_net_remaining(deadline); }

static int listener(int port, int *bound, char *err, size_t errlen) { return tc_net_listen(NULL, port, bound, "allreduce", err, errlen); }

static int accept_by(int fd, double deadline, char *peer_host, size_t peer_len, char *err, size_t errlen, const char *what) {
    return tc_net_accept(fd, deadline, peer_host, peer_len, "allreduce", what, err, errlen);
}

// Connects to host:port, trying again until the deadline (the peer may not listen yet).
static int connect_by(const char *host, int port, double deadline, char *err, size_t errlen, const char *what) {
    return tc_net_connect(host, port, deadline, 1, "allreduce", what, err, errlen);
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

static int send_line(int fd, const char *line, double deadline, char *err, size_t errlen, const char *what) {
    return tc_net_send_line(fd, line, deadline, NULL, "allreduce", what, err, errlen);
}

static int read_line(int fd, char *line, size_t cap, double deadline, char *err, size_t errlen, const char *what) {
    return tc_net_read_line(fd, line, cap, deadline, NULL, "allreduce", what, err, errlen);
}

// Rank 0's side of the rendezvous: every rank's address, in rank order, into hosts/ports.
static int gather(int world, int fd, int own_port, char (*hosts)[64], int *ports, int *conns, double deadline, char *err, size_t errlen) {
    snprintf(hosts[0], 64, "-");
    ports[0] = own_port;
    for (int seen = 1; seen < world; seen++) {
        char peer[64] = "";
        char what[64];
        snprintf(what, sizeof what, "%d of %d other ranks", world - seen, world - 1);
        int c = accept_by(fd, deadline, peer, sizeof peer, err, errlen, what);
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
        snprintf(hosts[rank], 64, "%s", peer);
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
    if ((prev = accept_by(ring, deadline, NULL, 0, err, errlen, what)) < 0) goto done;
    char line[32] = "";
    int said = -1;
    if (read_line(prev, line, sizeof line, deadline, err, errlen, what) != 0) goto done;
    if (sscanf(line, "%d", &said) != 1 || said != from) {
        tc_fail(err, errlen, "allreduce: expected rank %d on the ring, got '%s'", from, line);
        goto done;
    }

    char from_what[32];
    snprintf(from_what, sizeof from_what, "rank %d", from);
    int iterations = s->iterations > 0 ? s->iterations : 5;
    double total = 0;
    for (int it = 0; it <= iterations; it++) {  // iteration 0 warms up and is not timed
        for (size_t i = 0; i < count; i++) data[i] = (float)(rank + 1);
        double started = tc_now();
        // Reduce-scatter, then all-gather, one chunk per step.
        if (tc_net_ring_allreduce_sum(next, prev, data, count, world, rank, incoming, deadline, NULL, NULL, "allreduce", from_what, err, errlen) != 0)
            goto done;
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
