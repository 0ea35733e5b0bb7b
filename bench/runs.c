/* bench/runs.c — what starting and ending a pool run costs a short decode product: L
 * products of R × C weights (interleaved, 2 MiB pages, each in memory of its own), run
 * (a) one pool run per product, as the decode does for a layer's output projection, and
 * (b) all in one run (moe_matvec_multi over every segment), at each thread count; each
 * as % of the read probe measured right before it. Where (a) is well below (b) at 2
 * threads and not at 1, the difference is the handoff between the threads, not the
 * kernel.
 *
 *   build/bench/runs [--type q4_0] [--rows 1024] [--cols 1024] [--segs 1] [--layers 16]
 *                    [--reps 11] [--threads 1,2]
 *
 * --segs S puts S matrices in each run (4: two experts' gate and up). Reported: the median
 * over the reps of each ratio, and the median time of one run in (a). The defaults are
 * mix-1b's output projection (0.59 MB of Q4_0); docs/BENCHMARKS.md has results. */
#include "core/gemm.h"
#include "core/matmul.h"
#include "core/membw.h"
#include "core/threads.h"
#include "core/types.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


int main(int argc, char **argv) {
    const char *type_name = "q4_0", *threads = "1,2";
    long long rows = 1024, cols = 1024, segs = 1, layers = 16, reps = 11;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--type") && i + 1 < argc) type_name = argv[++i];
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--segs") && i + 1 < argc) segs = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--type q4_0] [--rows 1024] [--cols 1024] [--segs 1] [--layers 16] [--reps 11] "
                            "[--threads 1,2]\n", argv[0]);
            return 2;
        }
    }
    int type = -1;
    for (int t = 0; t < MOE_TYPE_COUNT; t++) {
        const moe_type_traits *tt = moe_type_get(t);
        if (tt && tt->vec_dot && !strcasecmp(tt->name, type_name)) type = t;
    }
    if (type < 0) { fprintf(stderr, "--type %s: not a weight type with kernels\n", type_name); return 2; }
    const int64_t bs = moe_type_get(type)->block_size;
    if (rows < 4 || rows % 4 || rows > (1 << 20) || cols < bs || cols % bs || cols > 65536 || segs < 1 || segs > 64 ||
        layers < 1 || layers * segs > 64 || reps < 1 || reps > 64) {
        fprintf(stderr, "bad arguments: rows a multiple of 4, cols of %lld, segs × layers ≤ 64, reps ≤ 64\n", (long long)bs);
        return 2;
    }
    const int n = (int)(layers * segs);
    const size_t rb = moe_row_size((moe_type)type, cols), mat = (size_t)rows * rb, stride = (mat + 63) / 64 * 64;
    uint8_t *w = bench_region_alloc(stride * (size_t)n); /* as the loader keeps weights */
    float *src = malloc((size_t)cols * 8 * sizeof(float)), *x = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)rows * (size_t)n * sizeof(float));
    void *xq = moe_aligned_alloc(moe_act_row_size(type, cols));
    const size_t bw_size = (size_t)1 << 30;
    uint8_t *bwbuf = moe_aligned_alloc(bw_size);
    moe_mat *W = calloc((size_t)n, sizeof *W);
    moe_mv_seg *sg = calloc((size_t)n, sizeof *sg);
    moe_buf scratch = {0};
    if (!w || !src || !x || !y || !xq || !bwbuf || !W || !sg) { fprintf(stderr, "out of memory\n"); return 1; }
    memset(bwbuf, 1, bw_size);
    bench_fill_uniform(src, cols * 8);
    memcpy(x, src, (size_t)cols * sizeof(float));
    /* 8 distinct rows quantized, the rest copies (the values do not matter for speed) */
    const moe_type_traits *tt = moe_type_get(type);
    for (int m = 0; m < n; m++) {
        uint8_t *d = w + (size_t)m * stride;
        for (int64_t r = 0; r < rows; r++)
            if (m == 0 && r < 8) tt->from_float_ref(src + r * cols, d + r * rb, cols);
            else memcpy(d + r * rb, w + (size_t)(r % 8) * rb, rb);
        W[m] = moe_mat_make(d, type, rows, cols);
        if (moe_mat_can_interleave(&W[m]) && moe_mat_interleave(&W[m], &scratch)) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
        sg[m] = (moe_mv_seg){&W[m], xq, y + (size_t)m * rows};
    }
    moe_buf_free(&scratch);
    const double bytes = (double)mat * n;
    printf("%lld products of %lld × %lld %s (%.2f MB each, %s), %lld per run in (a), median of %lld reps\n",
           (long long)n, rows, cols, tt->name, mat / 1e6, W[0].interleaved ? "interleaved" : "row-major", segs, reps);
    printf("  %-7s %13s %13s %10s %12s\n", "threads", "(a) % probe", "(b) % probe", "(a)/(b)", "(a) µs/run");
    for (const char *p = threads; *p;) {
        const int nt = atoi(p);
        moe_pool *pool = moe_pool_create(nt);
        if (!pool) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
        moe_read_seconds(pool, bwbuf, bw_size); /* warm-up: clocks, pages */
        double ra[64], rb_[64], ratio[64], per_run[64];
        for (int r = 0; r < reps; r++)
            for (int mode = 0; mode < 2; mode++) {
                const double tb = moe_read_seconds(pool, bwbuf, bw_size), t0 = moe_time_s();
                moe_act_prepare(pool, type, x, xq, 1, cols);
                if (mode == 0)
                    for (int l = 0; l < layers; l++) moe_matvec_multi(pool, sg + l * segs, (int)segs);
                else moe_matvec_multi(pool, sg, n);
                const double tm = moe_time_s() - t0, pct = 100.0 * (bytes / tm) / ((double)bw_size / tb);
                if (mode == 0) { ra[r] = pct; per_run[r] = tm / (double)layers * 1e6; }
                else { rb_[r] = pct; ratio[r] = ra[r] / pct; }
            }
        printf("  %-7d %12.1f%% %12.1f%% %10.3f %12.2f\n", nt, bench_median(ra, (int)reps), bench_median(rb_, (int)reps),
               bench_median(ratio, (int)reps), bench_median(per_run, (int)reps));
        moe_pool_free(pool);
        const char *c = strchr(p, ',');
        if (!c) break;
        p = c + 1;
    }
    return 0;
}
