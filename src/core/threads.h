/* threads.h — the thread pool: one pool sized by -t, work split by index (thread `ith`
 * of `nth` takes its share of rows), as ggml does. */
#ifndef MOE_CORE_THREADS_H
#define MOE_CORE_THREADS_H

#include "core/common.h"

typedef struct moe_pool moe_pool;

/* A task: called once on every thread of the pool with ith = 0..nth-1. */
typedef void (*moe_task_fn)(void *arg, int ith, int nth);

/* n_threads ≤ 0 picks the number of cores. The calling thread is thread 0, so a pool of
 * n threads starts n-1 workers. */
moe_pool *moe_pool_create(int n_threads);
void moe_pool_free(moe_pool *p);
int moe_pool_size(const moe_pool *p);

/* Runs fn(arg, ith, nth) for every ith = 0..nth-1 (nth = the pool's size) and returns
 * when all have finished. Each index runs exactly once, but not necessarily on its "own"
 * thread: indices are claimed by whichever thread is free first (the caller included),
 * so a descheduled worker never holds a run up; tasks may keep per-index scratch, never
 * wait for each other. A NULL pool runs fn(arg, 0, 1) on the caller. Not reentrant:
 * call from one thread at a time. */
void moe_pool_run(moe_pool *p, moe_task_fn fn, void *arg);
/* The same with n_tasks indices (fn(arg, i, n_tasks), i < n_tasks): more indices than
 * threads balance the load when threads run at different speeds. */
void moe_pool_run_n(moe_pool *p, moe_task_fn fn, void *arg, int n_tasks);

/* Streams n items (chunks of a weight stream, say) on the pool in one run, each thread
 * reading ONE contiguous stretch front to back. The items are split into n_parts equal
 * parts (at most MOE_POOL_MAX_PARTS; one per thread is the rule) and part i goes to task
 * i, which calls fn(arg, i0, i1) on it in consecutive spans of at most `span` items
 * (shrinking towards its end). A task whose part is done takes single items from the
 * backs of the parts still running, so a slow thread holds the run up by at most the
 * span it is in. Every item is passed to fn exactly once.
 * Why: for a memory-bound product, every restart of a thread's stream at another address
 * costs a DRAM-prefetch ramp. Equal static parts avoid the restarts but wait for the
 * slowest thread; ranges claimed in turn balance the threads but restart each one many
 * times. This has neither cost. */
#define MOE_POOL_MAX_PARTS 64
typedef void (*moe_span_fn)(void *arg, int64_t i0, int64_t i1);
void moe_pool_run_parts(moe_pool *p, moe_span_fn fn, void *arg, int64_t n, int n_parts, int64_t span);

/* Seconds the caller spent waiting at the end of moe_pool_run for the other threads
 * (load imbalance + wake-up latency), summed since creation or the last reset. */
double moe_pool_wait_seconds(const moe_pool *p);
uint64_t moe_pool_runs(const moe_pool *p);
/* The one-token weight products run on the pool (moe_matvec_multi, gemm.c) note their
 * seconds and bytes here, so that a benchmark can tell the time spent streaming weights
 * from the time between products. Summed since creation or the last reset. */
void moe_pool_note_product(moe_pool *p, double seconds, uint64_t bytes);
void moe_pool_product_stats(const moe_pool *p, double *seconds, uint64_t *bytes);
void moe_pool_reset_stats(moe_pool *p);

/* The [begin, end) share of n items for thread ith of nth, in chunks of `align` items
 * (so SIMD blocks or quant blocks are never split). */
static inline void moe_split(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end) {
    int64_t chunks = (n + align - 1) / align;
    int64_t per = chunks / nth, extra = chunks % nth;
    int64_t c0 = ith * per + (ith < extra ? ith : extra);
    int64_t c1 = c0 + per + (ith < extra ? 1 : 0);
    *begin = MOE_MIN(c0 * align, n);
    *end = MOE_MIN(c1 * align, n);
}

#endif
