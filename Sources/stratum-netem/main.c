// stratum-netem: a link emulator in user space, for kernels without sch_netem.
//
// It joins two network interfaces (typically the root-namespace ends of two veth pairs: one
// whose other end is a node's eth0, one whose other end sits on the network's bridge), copying
// every Ethernet frame between them through AF_PACKET sockets, and holds the link to a profile
// as Stratum's traffic control would (LinkProfile.tcCommands):
//   frames from --node to --net (what the node sends): dropped with probability loss, sent at
//     once with probability reorder, else delayed by delay ± jitter (uniform), then serialized
//     at the rate behind a queue of about 50 ms (tail drop);
//   frames from --net to --node (what the node receives): serialized at the rate only.
// Loss, reorder and jitter draw from one seeded generator; with correlation c each draw is
// c·previous + (1−c)·fresh, as netem's correlation does.
//
// The profile is a file of `key=value` lines with the keys of the `link` input (rate_kbit,
// delay_ms, jitter_ms, loss_percent, correlation_percent, reorder_percent); SIGHUP reloads it
// and the profile in force is written to --state (same format), so a reader sees what the
// emulator applies, not what was asked. SIGTERM/SIGINT end it, printing the counters.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define MAX_FRAME 65536

typedef struct {
    long rate_kbit;  // 0: uncapped
    double delay_ms, jitter_ms, loss, correlation, reorder;  // percentages as 0..1
} profile;

typedef struct frame {
    double due;
    size_t len;
    uint64_t seq;
    struct frame *next;
    unsigned char data[];
} frame;

// One direction: frames waiting out their delay (a heap by due time), then the rate stage (a
// FIFO by departure time).
typedef struct {
    frame **heap;
    size_t heap_len, heap_cap;
    frame *fifo_head, *fifo_tail;
    size_t fifo_bytes;
    double link_free;
    uint64_t seq;
    unsigned long long frames_in, frames_out, bytes_out, dropped_loss, dropped_queue;
} direction;

static volatile sig_atomic_t stop_requested = 0, reload_requested = 0;
static void on_stop(int sig) { (void)sig; stop_requested = 1; }
static void on_reload(int sig) { (void)sig; reload_requested = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// xorshift64*: small, seeded, good enough for drop and delay draws.
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static double uniform01(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

// A correlated draw in [0,1): c·last + (1−c)·fresh, one memory per use.
static double correlated(double *last, double c) {
    double v = c * *last + (1 - c) * uniform01();
    *last = v;
    return v;
}

static int load_profile(const char *path, profile *p) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    profile q = {0};
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq || line[0] == '#') continue;
        *eq = 0;
        double v = strtod(eq + 1, NULL);
        if (!strcmp(line, "rate_kbit")) q.rate_kbit = (long)v;
        else if (!strcmp(line, "delay_ms")) q.delay_ms = v;
        else if (!strcmp(line, "jitter_ms")) q.jitter_ms = v;
        else if (!strcmp(line, "loss_percent")) q.loss = v / 100;
        else if (!strcmp(line, "correlation_percent")) q.correlation = v / 100;
        else if (!strcmp(line, "reorder_percent")) q.reorder = v / 100;
    }
    fclose(f);
    *p = q;
    return 0;
}

static void write_state(const char *path, const profile *p) {
    if (!path) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    if (p->rate_kbit > 0) fprintf(f, "rate_kbit=%ld\n", p->rate_kbit);
    fprintf(f, "delay_ms=%g\njitter_ms=%g\nloss_percent=%g\ncorrelation_percent=%g\nreorder_percent=%g\n", p->delay_ms, p->jitter_ms,
            p->loss * 100, p->correlation * 100, p->reorder * 100);
    fclose(f);
    rename(tmp, path);
}

static int open_interface(const char *name) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) return -1;
    unsigned int index = if_nametoindex(name);
    if (!index) { close(fd); errno = ENODEV; return -1; }
    int one = 1;
    // Our own sends would otherwise come back as outgoing frames.
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    struct sockaddr_ll addr = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)index};
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { close(fd); return -1; }
    struct packet_mreq mreq = {.mr_ifindex = (int)index, .mr_type = PACKET_MR_PROMISC};
    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq);
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    return fd;
}

static void heap_push(direction *d, frame *f) {
    if (d->heap_len == d->heap_cap) {
        d->heap_cap = d->heap_cap ? d->heap_cap * 2 : 256;
        d->heap = realloc(d->heap, d->heap_cap * sizeof *d->heap);
    }
    size_t i = d->heap_len++;
    d->heap[i] = f;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        frame *a = d->heap[parent], *b = d->heap[i];
        if (a->due < b->due || (a->due == b->due && a->seq < b->seq)) break;
        d->heap[parent] = b;
        d->heap[i] = a;
        i = parent;
    }
}

static frame *heap_pop(direction *d) {
    frame *top = d->heap[0];
    d->heap[0] = d->heap[--d->heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < d->heap_len && (d->heap[l]->due < d->heap[m]->due || (d->heap[l]->due == d->heap[m]->due && d->heap[l]->seq < d->heap[m]->seq))) m = l;
        if (r < d->heap_len && (d->heap[r]->due < d->heap[m]->due || (d->heap[r]->due == d->heap[m]->due && d->heap[r]->seq < d->heap[m]->seq))) m = r;
        if (m == i) break;
        frame *t = d->heap[i];
        d->heap[i] = d->heap[m];
        d->heap[m] = t;
        i = m;
    }
    return top;
}

// The queue the rate stage holds: about 50 ms at the rate, at least 3000 bytes (as tbf's limit).
static size_t queue_limit(const profile *p) {
    long per_ms = p->rate_kbit / 8;
    size_t limit = (size_t)(per_ms * 50);
    return limit < 3000 ? 3000 : limit;
}

// Moves a frame whose delay is over into the rate stage (or straight out when uncapped).
static void enter_rate_stage(direction *d, frame *f, const profile *p, double now) {
    if (p->rate_kbit <= 0) {
        f->due = now;
    } else {
        if (d->fifo_bytes + f->len > queue_limit(p)) {
            d->dropped_queue++;
            free(f);
            return;
        }
        double start = d->link_free > now ? d->link_free : now;
        d->link_free = start + (double)f->len * 8 / (p->rate_kbit * 1000.0);
        f->due = d->link_free;
    }
    f->next = NULL;
    if (d->fifo_tail) d->fifo_tail->next = f;
    else d->fifo_head = f;
    d->fifo_tail = f;
    d->fifo_bytes += f->len;
}

static void transmit_due(direction *d, int out_fd, const profile *p, double now) {
    while (d->heap_len > 0 && d->heap[0]->due <= now) enter_rate_stage(d, heap_pop(d), p, now);
    while (d->fifo_head && d->fifo_head->due <= now) {
        frame *f = d->fifo_head;
        d->fifo_head = f->next;
        if (!d->fifo_head) d->fifo_tail = NULL;
        d->fifo_bytes -= f->len;
        if (send(out_fd, f->data, f->len, MSG_DONTWAIT) == (ssize_t)f->len) {
            d->frames_out++;
            d->bytes_out += f->len;
        }
        free(f);
    }
}

static double next_due(const direction *d) {
    double due = 1e300;
    if (d->heap_len > 0) due = d->heap[0]->due;
    if (d->fifo_head && d->fifo_head->due < due) due = d->fifo_head->due;
    return due;
}

// Reads every frame waiting on `fd` into direction `d`; impaired: the full profile, else the rate only.
static double loss_memory = 0, reorder_memory = 0, jitter_memory = 0;
static void receive(int fd, direction *d, const profile *p, int impaired, unsigned char *buffer) {
    for (;;) {
        ssize_t n = recv(fd, buffer, MAX_FRAME, MSG_DONTWAIT);
        if (n <= 0) {
            // A pending error (the interface went down) is read and cleared here.
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            }
            return;
        }
        d->frames_in++;
        double now = now_s();
        double delay = 0;
        if (impaired) {
            if (p->loss > 0 && correlated(&loss_memory, p->correlation) < p->loss) {
                d->dropped_loss++;
                continue;
            }
            int at_once = p->reorder > 0 && correlated(&reorder_memory, p->correlation) < p->reorder;
            if (!at_once) {
                delay = p->delay_ms;
                if (p->jitter_ms > 0) delay += p->jitter_ms * (2 * correlated(&jitter_memory, p->correlation) - 1);
                if (delay < 0) delay = 0;
            }
        }
        frame *f = malloc(sizeof *f + (size_t)n);
        if (!f) return;
        memcpy(f->data, buffer, (size_t)n);
        f->len = (size_t)n;
        f->seq = d->seq++;
        f->due = now + delay / 1000.0;
        if (delay > 0) heap_push(d, f);
        else enter_rate_stage(d, f, p, now);
    }
}

static void usage(FILE *to) {
    fprintf(to,
            "usage: stratum-netem --node IFACE --net IFACE --profile FILE [--state FILE] [--seed N]\n"
            "  Copies Ethernet frames between IFACE --node (toward a node) and IFACE --net (toward its\n"
            "  network), holding what the node sends to the profile's delay, jitter, loss, reordering\n"
            "  and rate, and what it receives to the rate. The profile holds key=value lines: rate_kbit,\n"
            "  delay_ms, jitter_ms, loss_percent, correlation_percent, reorder_percent. SIGHUP reloads\n"
            "  it; the profile in force is written to --state. SIGTERM ends it.\n");
}

int main(int argc, char **argv) {
    const char *node_if = NULL, *net_if = NULL, *profile_path = NULL, *state_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "stratum-netem: %s needs a value\n", a); usage(stderr); return 2; }
        if (!strcmp(a, "--node")) node_if = v;
        else if (!strcmp(a, "--net")) net_if = v;
        else if (!strcmp(a, "--profile")) profile_path = v;
        else if (!strcmp(a, "--state")) state_path = v;
        else if (!strcmp(a, "--seed")) rng_state = strtoull(v, NULL, 10) | 1;
        else { fprintf(stderr, "stratum-netem: unknown option %s\n", a); usage(stderr); return 2; }
        i++;
    }
    if (!node_if || !net_if || !profile_path) { usage(stderr); return 2; }
    profile p;
    if (load_profile(profile_path, &p) != 0) { fprintf(stderr, "stratum-netem: cannot read %s: %s\n", profile_path, strerror(errno)); return 2; }
    int node_fd = open_interface(node_if), net_fd = node_fd >= 0 ? open_interface(net_if) : -1;
    if (node_fd < 0 || net_fd < 0) {
        fprintf(stderr, "stratum-netem: cannot open %s: %s\n", node_fd < 0 ? node_if : net_if, strerror(errno));
        return 1;
    }
    struct sigaction stop = {.sa_handler = on_stop}, reload = {.sa_handler = on_reload};
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGHUP, &reload, NULL);
    write_state(state_path, &p);

    direction up = {0}, down = {0};  // up: node -> net (impaired); down: net -> node (rate only)
    unsigned char *buffer = malloc(MAX_FRAME);
    while (!stop_requested) {
        if (reload_requested) {
            reload_requested = 0;
            profile q;
            if (load_profile(profile_path, &q) == 0) p = q;
            write_state(state_path, &p);
        }
        double now = now_s();
        transmit_due(&up, net_fd, &p, now);
        transmit_due(&down, node_fd, &p, now);
        double due = next_due(&up), other = next_due(&down);
        if (other < due) due = other;
        struct timespec timeout = {1, 0};
        if (due < 1e299) {
            double wait = due - now_s();
            if (wait < 0) wait = 0;
            if (wait < 1) { timeout.tv_sec = 0; timeout.tv_nsec = (long)(wait * 1e9); }
        }
        struct pollfd fds[2] = {{node_fd, POLLIN, 0}, {net_fd, POLLIN, 0}};
        int ready = ppoll(fds, 2, &timeout, NULL);
        if (ready < 0 && errno != EINTR) { perror("stratum-netem: poll"); break; }
        if (ready > 0) {
            // An interface that went away (its namespace or link deleted) ends the emulator.
            if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLHUP | POLLNVAL)) {
                const char *gone = (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) ? node_if : net_if;
                if (if_nametoindex(gone) == 0) {
                    fprintf(stderr, "stratum-netem: %s is gone\n", gone);
                    break;
                }
            }
            if (fds[0].revents & POLLIN) receive(node_fd, &up, &p, 1, buffer);
            if (fds[1].revents & POLLIN) receive(net_fd, &down, &p, 0, buffer);
        }
    }
    fprintf(stderr,
            "stratum-netem: sent %llu frames (%llu bytes) toward the network, %llu (%llu bytes) toward the node; "
            "dropped %llu by loss, %llu by a full queue\n",
            up.frames_out, up.bytes_out, down.frames_out, down.bytes_out, up.dropped_loss, up.dropped_queue + down.dropped_queue);
    return 0;
}
