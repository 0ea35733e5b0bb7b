/* bench/levels.c — what ONE core streams through each kernel, by where the weights are:
 * L2, L3 or DRAM. A matrix-vector product on one pinned thread over matrices of 256 KiB
 * to 256 MiB (interleaved where the type has that layout, as `--no-mmap` loads them),
 * best of --reps, against the read probe on the same thread.
 *
 * Why: decode at two threads reaches the DRAM bound only if each core streams its half
 * of the bytes, ~30 GB/s when the probe gives 60. A kernel whose DRAM column is well
 * below the probe while its cache columns are well above it is limited by how it
 * streams (prefetch, misses in flight), not by its arithmetic; docs/BENCHMARKS.md
 * ("what one core streams") has results.
 *
 *   build/bench/levels [--types q4_0,q4_K,q8_0,f16] [--cols 4096] [--reps 5] [--cpu 0]
 *
 * --cpu -1 leaves the thread unpinned. The machine may be shared: alternate runs before
 * comparing two builds. */
#include "core/matmul.h"
#include "core/membw.h"
#include "core/threads.h"
#include "core/types.h"

#include "bench_util.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t k_sizes[] = {256u << 10, 2u << 20, 8u << 20, 24u << 20, 256u << 20};
#define N_SIZES (sizeof k_sizes / sizeof k_sizes[0])

/* Seconds per byte of the fastest of `reps` passes, each ≥ 256 MiB of products over W */
static double best_seconds_per_byte(const moe_mat *W, const void *xq, float *y, int reps) {
    const double bytes = (double)W->rows * (double)W->row_bytes;
    const int inner = (int)MOE_MAX(1, (int64_t)((256.0 * 1048576.0) / bytes));
    double best = 0;
    moe_mat_dot_rows(W, 0, W->rows, xq, y); /* warm-up: pages, and the caches for the small sizes */
    for (int r = 0; r < reps; r++) {
        const double t0 = moe_time_s();
        for (int k = 0; k < inner; k++) moe_mat_dot_rows(W, 0, W->rows, xq, y);
        const double t = (moe_time_s() - t0) / (inner * bytes);
        if (r == 0 || t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *types = "q4_0,q4_K,q8_0,f16";
    long long cols = 4096, reps = 5, cpu = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cpu") && i + 1 < argc) cpu = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--types q4_0,q4_K,q8_0,f16] [--cols 4096] [--reps 5] [--cpu 0]\n", argv[0]);
            return 2;
        }
    }
    if (cols < 256 || cols % 256 || cols > 65536 || reps < 1 || reps > 64) {
        fprintf(stderr, "bad arguments: --cols a multiple of 256 up to 65536, --reps 1-64\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
            fprintf(stderr, "--cpu %lld: cannot pin to that CPU\n", cpu);
            return 2;
        }
    }
    /* the probe: AVX2 reads of 512 MiB on this thread (a pool of one runs on its caller) */
    const size_t bw_size = (size_t)512 << 20;
    uint8_t *bwbuf = bench_region_alloc(bw_size);
    moe_pool *pool = moe_pool_create(1);
    float *src = malloc((size_t)cols * 64 * sizeof(float)), *x = malloc((size_t)cols * sizeof(float));
    float *y = malloc(((size_t)256 << 20) / 64 * sizeof(float)); /* rows of the largest matrix, at ≥ 64 bytes a row */
    void *xq = moe_aligned_alloc((size_t)cols * 4);
    if (!bwbuf || !pool || !src || !x || !y || !xq) { fprintf(stderr, "out of memory\n"); return 1; }
    memset(bwbuf, 1, bw_size);
    double tb[64];
    moe_read_seconds(pool, bwbuf, bw_size);
    for (int r = 0; r < reps; r++) tb[r] = moe_read_seconds(pool, bwbuf, bw_size);
    const double probe = (double)bw_size / bench_median(tb, (int)reps) / 1e9;
    bench_fill_uniform(src, cols * 64);
    memcpy(x, src, (size_t)cols * sizeof(float));

    printf("one thread%s, %lld columns, interleaved where the type has the layout, best of %lld\n",
           cpu >= 0 ? " (pinned)" : "", cols, reps);
    printf("kernels: %s (MOE_PREFETCH, MOE_PREFETCH_IL=l1|l2|none override)\n", moe_system_info());
    printf("read probe, one thread, 512 MiB: %.1f GB/s (median of %lld)\n\n", probe, reps);
    printf("  %-6s", "type");
    for (size_t s = 0; s < N_SIZES; s++) {
        char h[24];
        if (k_sizes[s] >= (1u << 20)) snprintf(h, sizeof h, "%zu MiB", k_sizes[s] >> 20);
        else snprintf(h, sizeof h, "%zu KiB", k_sizes[s] >> 10);
        printf(" %9s", h);
    }
    printf(" %12s\n", "DRAM/probe");
    for (const char *p = types; *p;) {
        const size_t len = strcspn(p, ",");
        char name[16] = {0};
        memcpy(name, p, MOE_MIN(len, sizeof name - 1));
        p += len + (p[len] == ',');
        const int t = moe_type_from_name(name);
        const moe_type_traits *tt = moe_type_get(t);
        if (!tt || !tt->vec_dot || cols % tt->block_size) {
            fprintf(stderr, "%s: not a weight type with kernels (or %lld columns are not whole blocks)\n", name, cols);
            continue;
        }
        const size_t rb = moe_row_size((moe_type)t, cols);
        printf("  %-6s", tt->name);
        double last = 0;
        for (size_t s = 0; s < N_SIZES; s++) {
            /* whole super-groups of 32 rows, so that tiled layouts are complete */
            const int64_t rows = MOE_MAX(32, (int64_t)(k_sizes[s] / rb) & ~(int64_t)31);
            uint8_t *w = bench_region_alloc((size_t)rows * rb);
            if (!w) { fprintf(stderr, "out of memory\n"); return 1; }
            bench_fill_rows(tt, src, w, rows, rb, cols, 64);
            moe_mat W = moe_mat_make(w, t, rows, cols);
            moe_buf tmp = {0};
            if (moe_mat_can_interleave(&W) && moe_mat_interleave(&W, &tmp)) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
            moe_buf_free(&tmp);
            moe_act_prepare(NULL, t, x, xq, 1, cols);
            last = 1e-9 / best_seconds_per_byte(&W, xq, y, (int)reps);
            printf(" %9.1f", last);
            fflush(stdout);
            bench_region_free(w, (size_t)rows * rb);
        }
        printf(" %11.1f%%\n", 100.0 * last / probe);
    }
    moe_pool_free(pool);
    bench_region_free(bwbuf, bw_size);
    free(src);
    free(x);
    free(y);
    free(xq);
    return 0;
}
