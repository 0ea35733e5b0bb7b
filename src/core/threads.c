/* threads.c — a spin-then-sleep thread pool whose runs hand out task indices by claim
 * rather than by thread. Decoding one token runs ~80 small parallel steps, so waking
 * workers through a condition variable each time would cost more than the work: workers
 * spin on a generation counter for a short while and only then sleep. */
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

/* Why claims: the task indices of a run (ith = 0..n-1) are taken by whichever thread
 * comes first, the caller included, and the run is over when every index is DONE — not
 * when every worker has checked in. On a machine shared with other processes a worker
 * is often descheduled for a whole time slice; with a fixed index per thread the caller
 * would wait for it, with claims it runs that index itself (at one thread's speed, which
 * for a memory-bound decode is most of two threads' speed). A worker that wakes late
 * finds nothing left and goes back to waiting. Each index still runs exactly once, on
 * one thread, so tasks may keep per-index scratch (index ith of nth).
 *
 * The claim word packs (run number, task count, next index) so that a late worker can
 * never claim an index of a run it did not see: its compare-and-swap fails once the run
 * number has moved on. */
#define TASK_BITS 20
#define TASK_MASK ((UINT64_C(1) << TASK_BITS) - 1)
#define MAX_TASKS ((int)TASK_MASK)

struct moe_pool {
    int n;
    pthread_t *tids;
    _Alignas(64) atomic_uint_fast64_t generation; /* bumped for every run: wakes the workers */
    _Alignas(64) atomic_uint_fast64_t claim;      /* run << 40 | n_tasks << 20 | next index */
    _Alignas(64) atomic_int done;                 /* indices finished in this run */
    _Alignas(64) atomic_int sleepers;
    atomic_bool quit;
    moe_task_fn fn;
    void *arg;
    uint64_t run_no;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double wait_s, product_s;
    uint64_t runs, product_bytes;
};

typedef struct { moe_pool *p; int ith; } worker_arg;

/* Claims and runs indices of the current run until none is left; returns how many ran. */
static int work(moe_pool *p, uint64_t run) {
    int ran = 0;
    for (;;) {
        uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
        for (;;) {
            const uint64_t idx = c & TASK_MASK, nt = (c >> TASK_BITS) & TASK_MASK;
            if ((c >> (2 * TASK_BITS)) != run || idx >= nt) return ran;
            if (atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
                break;
        }
        const int idx = (int)(c & TASK_MASK), nt = (int)((c >> TASK_BITS) & TASK_MASK);
        p->fn(p->arg, idx, nt);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        ran++;
    }
}

static void *worker_main(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    moe_pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int polls = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->quit, memory_order_relaxed)) {
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
        work(p, g & ((UINT64_C(1) << (64 - 2 * TASK_BITS)) - 1)); /* the run number is the generation */
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

void moe_pool_run_n(moe_pool *p, moe_task_fn fn, void *arg, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1 || n_tasks > MAX_TASKS) {
        for (int i = 0; i < n_tasks; i++) fn(arg, i, n_tasks);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    const uint64_t run = (p->run_no + 1) & ((UINT64_C(1) << (64 - 2 * TASK_BITS)) - 1);
    p->run_no = run;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, run << (2 * TASK_BITS) | (uint64_t)n_tasks << TASK_BITS, memory_order_release);
    /* generation ≡ run number (mod 2^24): a worker seeing generation g works on run g */
    uint64_t g = atomic_load_explicit(&p->generation, memory_order_relaxed);
    g = (g & ~((UINT64_C(1) << (64 - 2 * TASK_BITS)) - 1)) | run;
    if (run == 0) g += UINT64_C(1) << (64 - 2 * TASK_BITS); /* the run number wrapped: still a new generation */
    /* seq_cst store, then the sleepers load: a worker going to sleep increments sleepers
     * and then re-reads the generation, so one of the two sees the other */
    atomic_store(&p->generation, g);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, run);
    double t0 = moe_time_s();
    for (int polls = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; polls++) {
        if (polls < SPIN_POLLS) CPU_RELAX();
        else sched_yield();
    }
    p->wait_s += moe_time_s() - t0;
    p->runs++;
}

void moe_pool_run(moe_pool *p, moe_task_fn fn, void *arg) { moe_pool_run_n(p, fn, arg, moe_pool_size(p)); }

/* moe_pool_run_parts: part r's state packs the next item its owner takes (low 32 bits,
 * counting up) and the end of what is left of it (high 32 bits, counting down as other
 * tasks take items from the back), so that one compare-and-swap claims either way.
 * Items are counted from the part's first, so 32 bits bound a part, not n. */
typedef struct {
    moe_span_fn fn;
    void *arg;
    int64_t n, span;
    int parts;
    /* one cache line per part: its owner claims from it while others take from their own */
    struct { _Alignas(64) atomic_uint_fast64_t v; } state[MOE_POOL_MAX_PARTS];
} parts_job;

static int64_t part_first(const parts_job *j, int r) { return j->n / j->parts * r + MOE_MIN(r, j->n % j->parts); }

/* Claims [*i0, *i1) of part r: from the front half of what is left, at most `span` items
 * (owner: its last spans shrink, so a thread taking from the back meets it within an item
 * or two), else the last item. False when nothing is left. */
static bool part_claim(parts_job *j, int r, bool owner, int64_t *i0, int64_t *i1) {
    uint64_t st = atomic_load_explicit(&j->state[r].v, memory_order_acquire);
    for (;;) {
        const uint64_t f = st & 0xFFFFFFFFu, b = st >> 32;
        if (f >= b) return false;
        const uint64_t take = owner ? MOE_MIN(MOE_MAX((b - f) / 2, 1), (uint64_t)j->span) : 1;
        const uint64_t next = owner ? (b << 32 | (f + take)) : ((b - 1) << 32 | f);
        if (atomic_compare_exchange_weak_explicit(&j->state[r].v, &st, next, memory_order_acq_rel, memory_order_acquire)) {
            const int64_t first = part_first(j, r);
            *i0 = first + (int64_t)(owner ? f : b - 1);
            *i1 = first + (int64_t)(owner ? f + take : b);
            return true;
        }
    }
}

static void parts_task(void *arg, int ith, int nth) {
    parts_job *j = arg;
    (void)nth;
    int64_t i0, i1;
    while (part_claim(j, ith, true, &i0, &i1)) j->fn(j->arg, i0, i1);
    for (int k = 1; k < j->parts; k++)
        while (part_claim(j, (ith + k) % j->parts, false, &i0, &i1)) j->fn(j->arg, i0, i1);
}

void moe_pool_run_parts(moe_pool *p, moe_span_fn fn, void *arg, int64_t n, int n_parts, int64_t span) {
    if (n <= 0) return;
    /* Fields set one by one: an initializer would zero all 64 parts' state lines (4 KB)
     * at every run, ~80 a decoded token; only the parts used are initialised below. */
    parts_job j;
    j.fn = fn;
    j.arg = arg;
    j.n = n;
    j.span = MOE_MAX(span, 1);
    j.parts = (int)MOE_MIN(MOE_MAX(n_parts, 1), MOE_MIN(n, MOE_POOL_MAX_PARTS));
    /* the state counts a part's items in 32 bits: 2^32 items or more take more parts (n < 2^38) */
    while (j.parts < MOE_POOL_MAX_PARTS && n / j.parts >= (INT64_C(1) << 32)) j.parts++;
    for (int r = 0; r < j.parts; r++) atomic_init(&j.state[r].v, (uint64_t)(part_first(&j, r + 1) - part_first(&j, r)) << 32);
    moe_pool_run_n(p, parts_task, &j, j.parts);
}

double moe_pool_wait_seconds(const moe_pool *p) { return p ? p->wait_s : 0.0; }
uint64_t moe_pool_runs(const moe_pool *p) { return p ? p->runs : 0; }
void moe_pool_note_product(moe_pool *p, double seconds, uint64_t bytes) {
    if (p) {
        p->product_s += seconds;
        p->product_bytes += bytes;
    }
}
void moe_pool_product_stats(const moe_pool *p, double *seconds, uint64_t *bytes) {
    if (seconds) *seconds = p ? p->product_s : 0.0;
    if (bytes) *bytes = p ? p->product_bytes : 0;
}
void moe_pool_reset_stats(moe_pool *p) {
    if (p) {
        p->wait_s = p->product_s = 0;
        p->runs = p->product_bytes = 0;
    }
}
