/* threads.c — a spin-then-sleep thread pool. Decoding one token runs a few hundred small
 * parallel steps, so waking workers through a condition variable each time would cost
 * more than the work: workers spin on a generation counter for a short while and only
 * then sleep. */
#include "core/threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* A waiting thread polls with a pause instruction for SPIN_POLLS rounds (a few µs),
 * then yields the core for YIELD_POLLS rounds, then (workers) sleeps. Yielding matters
 * when the machine is oversubscribed: a thread spinning on a core that the thread it
 * waits for needs would otherwise slow every step down by a scheduler quantum. */
#define SPIN_POLLS 2000
#define YIELD_POLLS 200

struct moe_pool {
    int n;
    pthread_t *tids;
    _Alignas(64) atomic_uint_fast64_t generation; /* bumped for every run */
    _Alignas(64) atomic_int pending;              /* workers still running this run */
    _Alignas(64) atomic_int sleepers;
    atomic_bool quit;
    moe_task_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double wait_s;
    uint64_t runs;
};

typedef struct { moe_pool *p; int ith; } worker_arg;

static void *worker_main(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    moe_pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int polls = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->quit)) {
            if (++polls < SPIN_POLLS) { CPU_RELAX(); continue; }
            if (polls < SPIN_POLLS + YIELD_POLLS) { sched_yield(); continue; }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            polls = 0;
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

int moe_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

moe_pool *moe_pool_create(int n_threads) {
    if (n_threads <= 0) n_threads = moe_default_threads();
    if (n_threads > 512) return moe_error_null(MOE_ERR_INVALID, "thread count %d is too large (max 512)", n_threads);
    moe_pool *p = moe_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->tids = moe_calloc((size_t)n_threads, sizeof *p->tids);
    if (!p->tids) { free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) { wa->p = p; wa->ith = i; }
        if (!wa || pthread_create(&p->tids[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i; /* workers 1..i-1 exist: shut them down */
            moe_pool_free(p);
            return moe_error_null(MOE_ERR_NOMEM, "could not start thread %d of %d", i, n_threads);
        }
    }
    return p;
}

void moe_pool_free(moe_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->tids);
    free(p);
}

int moe_pool_size(const moe_pool *p) { return p ? p->n : 1; }

void moe_pool_run(moe_pool *p, moe_task_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    double t0 = moe_time_s();
    for (int polls = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; polls++) {
        if (polls < SPIN_POLLS) CPU_RELAX();
        else sched_yield();
    }
    p->wait_s += moe_time_s() - t0;
    p->runs++;
}

double moe_pool_wait_seconds(const moe_pool *p) { return p ? p->wait_s : 0.0; }
uint64_t moe_pool_runs(const moe_pool *p) { return p ? p->runs : 0; }
void moe_pool_reset_stats(moe_pool *p) { if (p) { p->wait_s = 0; p->runs = 0; } }
