// A fixed pool of pthreads. Work items are split into one contiguous range per thread,
// which keeps each thread's memory access local. Results never depend on the partition
// because every item writes disjoint output with the same code.
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

struct tc_pool {
    int n;                 // threads including the caller
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    long generation;
    int pending;
    int quit;
    void (*fn)(void *, int, int);
    void *arg;
    int items;
};

static void run_range(tc_pool *p, int tid) {
    int per = (p->items + p->n - 1) / p->n;
    int lo = tid * per, hi = lo + per;
    if (hi > p->items) hi = p->items;
    for (int i = lo; i < hi; i++) p->fn(p->arg, i, tid);
}

typedef struct { tc_pool *p; int tid; } worker_arg;

static void *worker(void *a) {
    worker_arg *wa = a;
    tc_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_range(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

tc_pool *tc_pool_create(int threads) {
    if (threads < 1) threads = 1;
    tc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)threads, sizeof(pthread_t));
    for (int t = 1; t < threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        wa->p = p;
        wa->tid = t;
        if (pthread_create(&p->threads[t], NULL, worker, wa) != 0) {
            free(wa);
            p->n = t;  // run with what we have
            break;
        }
    }
    return p;
}

int tc_pool_threads(const tc_pool *p) { return p ? p->n : 1; }

void tc_pool_run(tc_pool *p, int n, void (*fn)(void *arg, int i, int tid), void *arg) {
    if (!p || p->n == 1 || n <= 1) {
        for (int i = 0; i < n; i++) fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->items = n;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    run_range(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void tc_pool_free(tc_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n; t++) pthread_join(p->threads[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}
