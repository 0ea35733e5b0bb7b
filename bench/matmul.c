/* bench/matmul.c — matrix-vector throughput of every weight type against this machine's
 * DRAM read bandwidth, measured in the same run: GB/s of weights streamed by
 * moe_matmul_prepared (n = 1, the decode case) and its % of a plain streaming read.
 *
 *   build/bench/matmul [--mib N] [--reps R] [--threads 1,2] [--types q8_0,q4_0] [--batch B] [--cols N]
 *
 * Method: the weights are ~N MiB (default 256, ≫ the caches) of random values quantized
 * per type; each rep quantizes an activation row and multiplies the weights with it once
 * (moe_act_prepare + moe_matmul_prepared); the median over R reps (default 7) is reported.
 * The bandwidth yardstick is an AVX2 read of a 1 GiB buffer split over the same threads,
 * timed just before each rep of each type, so that a machine shared with other work skews
 * both alike: "% DRAM" is the median over the reps of (product GB/s) / (read GB/s of the
 * read just before it). "L2 GB/s" runs the kernel on 512 KiB of the weights
 * (cache-resident; equal static shares, one call per thread), best of R: its compute
 * speed. "il GB/s" and "% il" are GB/s and % DRAM again with the weights interleaved
 * (core/matmul.h: moe_mat_interleave), the layout `--no-mmap` loads them in, and "il L2"
 * the compute speed of that layout's kernel; "-" for types that are not interleaved.
 * --batch B also
 * times B tokens at once (the prompt case, on the weights as last laid out), reported as
 * weight bytes × B per second. --cols N sets the row length (default 4096; the experts of
 * the mix-1b benchmark model have rows of 1024 and 2816). */
#include "core/matmul.h"
#include "core/membw.h"
#include "core/threads.h"
#include "core/types.h"
#include "model/quantize.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* The decode product of W (rows × cols) against x, reps times, each rep timed together
 * with the read of the bandwidth buffer just before it; returns the median of the
 * per-rep ratios (product GB/s / read GB/s) and sets the median product and read times. */
static double dram_ratio(moe_pool *pool, const moe_mat *W, const float *x, void *xq, float *y, int reps, const void *bwbuf,
                         size_t bw_size, double *sec, double *bw_sec) {
    double tm[64], tb[64], ratio[64];
    const double bytes = (double)W->rows * (double)W->row_bytes;
    moe_act_prepare(pool, W->type, x, xq, 1, W->cols);
    moe_matmul_prepared(pool, y, W->rows, W, xq, 1); /* warm-up */
    for (int r = 0; r < reps; r++) {
        tb[r] = moe_read_seconds(pool, bwbuf, bw_size);
        double t0 = moe_time_s();
        moe_act_prepare(pool, W->type, x, xq, 1, W->cols);
        moe_matmul_prepared(pool, y, W->rows, W, xq, 1);
        tm[r] = moe_time_s() - t0;
        ratio[r] = (bytes / tm[r]) / ((double)bw_size / tb[r]);
    }
    *sec = bench_median(tm, reps);
    *bw_sec = bench_median(tb, reps);
    return bench_median(ratio, reps);
}

/* ------------------------------------------------------------------ main */
/* Equal static shares of C's rows, one kernel call per thread: in cache, the few calls
 * per thread with which moe_matmul_prepared balances a stream from DRAM would add their
 * activation preparation to what this column is for, the kernel's own speed. */
typedef struct { const moe_mat *C; const void *xq; float *y; } static_job;
static void static_task(void *arg, int ith, int nth) {
    const static_job *j = arg;
    int64_t r0, r1;
    moe_split(j->C->rows, ith, nth, MOE_MAX(4, moe_mat_row_unit(j->C)), &r0, &r1);
    if (r0 < r1) moe_mat_dot_rows(j->C, r0, r1, j->xq, j->y);
}

/* Seconds of one product by C (a matrix that stays in L2), the best of reps runs of
 * ~64 MiB of products each: the kernel's speed on an idle core. */
static double cache_seconds(moe_pool *pool, const moe_mat *C, const void *xq, float *y, int64_t reps) {
    const int inner = (int)MOE_MAX(1, (int64_t)(64 << 20) / (C->rows * (int64_t)C->row_bytes));
    static_job j = {C, xq, y};
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = moe_time_s();
        for (int k = 0; k < inner; k++) moe_pool_run(pool, static_task, &j);
        const double t = (moe_time_s() - t0) / inner;
        if (r == 0 || t < best) best = t;
    }
    return best;
}

static bool in_list(const char *list, const char *name) {
    if (!list) return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncasecmp(p, name, n) == 0) return true;
        p += len + (c ? 1 : 0);
    }
    return false;
}

int main(int argc, char **argv) {
    int64_t mib = 256, reps = 7, batch = 0, cols = 4096;
    const char *types = NULL, *threads = "1,2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--mib N] [--reps R] [--threads 1,2] [--types q8_0,q4_0] [--batch B] [--cols N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (mib < 1 || reps < 1 || reps > 64 || batch < 0) { fprintf(stderr, "bad arguments\n"); return 2; }
    if (cols < 256 || cols > 65536 || cols % 256) {
        fprintf(stderr, "--cols %lld: must be a multiple of 256 (the K-quants' block) in [256, 65536]\n", (long long)cols);
        return 2;
    }

    int nthr[8], n_nthr = 0;
    for (const char *p = threads; *p && n_nthr < 8;) {
        nthr[n_nthr++] = atoi(p);
        const char *c = strchr(p, ',');
        if (!c) break;
        p = c + 1;
    }

    const size_t bw_size = (size_t)1 << 30;
    uint8_t *bwbuf = moe_aligned_alloc(bw_size);
    /* every type's matrix below has at most `mib` MiB of rows, or four F32 rows where
     * those are more (rows are counted per type, so a multiple-of-4 F32 row count would
     * be too small for a type whose row size does not divide it) */
    const size_t w_size = MOE_MAX((size_t)mib << 20, (size_t)cols * 4 * 4);
    float *src = moe_aligned_alloc((size_t)cols * 64 * sizeof(float));
    float *x = moe_aligned_alloc((size_t)cols * MOE_MAX(batch, 1) * sizeof(float));
    uint8_t *w = moe_aligned_alloc(w_size);
    void *xq = moe_aligned_alloc((size_t)cols * 4 * MOE_MAX(batch, 1));
    const int64_t max_rows = ((mib << 20) * 4 / cols) + 4; /* ≥ 2 bits per weight */
    float *y = moe_aligned_alloc((size_t)max_rows * MOE_MAX(batch, 1) * sizeof(float));
    if (!bwbuf || !src || !x || !w || !xq || !y) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
    memset(bwbuf, 1, bw_size);
    bench_fill_uniform(src, cols * 64);
    for (int64_t i = 0; i < cols * MOE_MAX(batch, 1); i++) x[i] = src[(i * 7) % (cols * 64)];

    printf("matrix-vector product, %lld columns, ~%lld MiB of weights per type, median of %lld reps\n",
           (long long)cols, (long long)mib, (long long)reps);
    printf("kernels: %s (MOE_PREFETCH, MOE_PREFETCH_IL=l1|l2|none override)\n", moe_system_info());
    for (int ti = 0; ti < n_nthr; ti++) {
        const int nt = nthr[ti];
        moe_pool *pool = moe_pool_create(nt);
        if (!pool) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
        double tb[64];
        moe_read_seconds(pool, bwbuf, bw_size); /* warm-up: page faults, clocks */
        for (int r = 0; r < reps; r++) tb[r] = moe_read_seconds(pool, bwbuf, bw_size);
        printf("\nthreads %d: DRAM read bandwidth %.1f GB/s (AVX2 read of 1 GiB, median of %lld)\n", nt,
               (double)bw_size / bench_median(tb, (int)reps) / 1e9, (long long)reps);
        printf("  %-6s %9s %9s %8s %9s %8s %9s %8s %8s %9s", "type", "MiB", "ms", "GB/s", "DRAM GB/s", "% DRAM", "L2 GB/s",
               "il GB/s", "% il", "il L2");
        if (batch) printf(" %10s", "batch GB/s");
        printf("\n");
        for (int t = 0; t < MOE_TYPE_COUNT; t++) {
            const moe_type_traits *tt = moe_type_get(t);
            /* weight types with kernels (not the activation-only Q8_1 / Q8_K) */
            if (!tt || !tt->to_float || !tt->vec_dot || moe_quantize_ftype(t) < 0 || !in_list(types, tt->name)) continue;
            const moe_type_traits *vt = moe_type_get(tt->vec_dot_type);
            if (!vt || !vt->from_float) continue;
            /* as many rows as fit in `mib` MiB at this type's size */
            const size_t rb = moe_row_size((moe_type)t, cols);
            const int64_t rows = MOE_MIN(max_rows, MOE_MAX(4, (int64_t)(((size_t)mib << 20) / rb))) & ~(int64_t)3;
            /* 64 distinct rows, quantized once and repeated (the K-quants' reference
             * quantizers are slow; the values do not matter for the speed) */
            bench_fill_rows(tt, src, w, rows, rb, cols, 64);
            moe_mat W = moe_mat_make(w, t, rows, cols);
            double tm[64], sec, bsec;
            /* The machine may be shared: the bandwidth yardstick is re-measured between the
             * reps of each type, so that the ratio compares like with like. */
            const double pct = 100.0 * dram_ratio(pool, &W, x, xq, y, (int)reps, bwbuf, bw_size, &sec, &bsec);
            const double bytes = (double)rows * (double)rb, bw = (double)bw_size / bsec / 1e9;
            /* the same kernel on the first 512 KiB of the matrix, which stays in L2: where
             * this is not well above the DRAM figure, the kernel is compute-bound */
            const int64_t crows = MOE_MIN(rows, MOE_MAX(4, (int64_t)((512 << 10) / rb) & ~(int64_t)3));
            moe_mat C = moe_mat_make(w, t, crows, cols);
            const double csec = cache_seconds(pool, &C, xq, y, reps);
            const double cbytes = (double)crows * (double)rb;
            printf("  %-6s %9.1f %9.2f %8.1f %9.1f %7.1f%% %9.1f", tt->name, bytes / 1048576.0, sec * 1e3, bytes / sec / 1e9,
                   bw, pct, cbytes / csec / 1e9);
            /* the same weights interleaved (core/matmul.h), as `--no-mmap` loads them; the
             * first crows rows (whole groups of four) are then C's rows interleaved */
            moe_buf tmp = {0};
            if (moe_mat_can_interleave(&W) && moe_mat_interleave(&W, &tmp) == MOE_OK) {
                double isec, ibsec;
                const double ipct = 100.0 * dram_ratio(pool, &W, x, xq, y, (int)reps, bwbuf, bw_size, &isec, &ibsec);
                C.interleaved = true;
                printf(" %8.1f %7.1f%% %9.1f", bytes / isec / 1e9, ipct, cbytes / cache_seconds(pool, &C, xq, y, reps) / 1e9);
            } else {
                printf(" %8s %8s %9s", "-", "-", "-");
            }
            moe_buf_free(&tmp);
            if (batch) {
                moe_act_prepare(pool, t, x, xq, batch, cols);
                for (int r = 0; r < reps; r++) {
                    double t0 = moe_time_s();
                    moe_matmul_prepared(pool, y, rows, &W, xq, batch);
                    tm[r] = moe_time_s() - t0;
                }
                printf(" %10.1f", bytes * (double)batch / bench_median(tm, (int)reps) / 1e9);
            }
            printf("\n");
            fflush(stdout);
        }
        moe_pool_free(pool);
    }
    free(bwbuf); free(src); free(x); free(w); free(xq); free(y);
    return 0;
}
