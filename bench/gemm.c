/* bench/gemm.c — batch (prefill) product speed: the tile kernels of moe_gemm_prepared
 * against the per-row vec_dot path of moe_matmul_prepared (llama.cpp's mul_mat scheme),
 * on one expert-sized matrix, in GFLOP/s (2·rows·cols·n per product), median of R reps.
 * With --n 1 both columns time the same four-row vec_dot kernels (the decode product):
 * moe_matmul_prepared's static split against moe_matvec_multi's claimed byte ranges.
 *
 *   build/bench/gemm [--rows 2816] [--cols 1024] [--n 32] [--reps 9] [--threads 1] [--types q8_0,q4_0,q4_K] */
#include "core/gemm.h"
#include "core/threads.h"
#include "core/types.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static uint64_t g_rng = 88172645463325252ull;
static float rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef void (*product_fn)(moe_pool *, float *, int64_t, const moe_mat *, const void *, int64_t);

/* Seconds per product: each sample repeats it until ~50 MFLOP have run (small products,
 * e.g. --n 1, take microseconds). */
static double time_product(product_fn f, moe_pool *pool, float *y, const moe_mat *W, const void *xq, int64_t n, int reps) {
    double t[64];
    const double flop = 2.0 * (double)W->rows * (double)W->cols * (double)n;
    const int iters = (int)(5e7 / flop) + 1;
    f(pool, y, W->rows, W, xq, n); /* warm-up: weights into the caches they fit */
    for (int r = 0; r < reps; r++) {
        const double t0 = moe_time_s();
        for (int it = 0; it < iters; it++) f(pool, y, W->rows, W, xq, n);
        t[r] = (moe_time_s() - t0) / iters;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    int64_t rows = 2816, cols = 1024, n = 32, reps = 9, threads = 1;
    const char *types = "q8_0,q4_0,q4_K";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--rows R] [--cols C] [--n N] [--reps R] [--threads T] [--types q8_0,q4_0,q4_K]\n", argv[0]);
            return 2;
        }
    }
    if (rows < 1 || cols < 256 || cols % 256 || n < 1 || reps < 1 || reps > 64 || threads < 1) {
        fprintf(stderr, "bad arguments (cols: a multiple of 256)\n");
        return 2;
    }
    moe_pool *pool = moe_pool_create((int)threads);
    float *src = malloc((size_t)cols * sizeof(float)), *x = malloc((size_t)(cols * n) * sizeof(float));
    float *y = malloc((size_t)(rows * n) * sizeof(float));
    if (!pool || !src || !x || !y) { fprintf(stderr, "out of memory\n"); return 1; }
    for (int64_t k = 0; k < cols * n; k++) x[k] = rnd();
    printf("batch product %lld x %lld, %lld tokens, %lld thread(s), GFLOP/s (median of %lld)\n", (long long)rows,
           (long long)cols, (long long)n, (long long)threads, (long long)reps);
    printf("  type   per-row vec_dot   tiles   speed-up   tiles interleaved\n");
    for (int type = 0; type < MOE_TYPE_COUNT; type++) {
        const moe_type_traits *t = moe_type_get(type);
        if (!t || !t->from_float_ref || !strstr(types, t->name)) continue;
        const size_t rb = moe_row_size(type, cols);
        uint8_t *wq = malloc(rb * (size_t)rows);
        void *xq = malloc(moe_act_row_size(type, cols) * (size_t)n);
        if (!wq || !xq) { fprintf(stderr, "out of memory\n"); return 1; }
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t k = 0; k < cols; k++) src[k] = rnd();
            t->from_float_ref(src, wq + (size_t)r * rb, cols);
        }
        moe_mat W = moe_mat_make(wq, type, rows, cols);
        moe_act_prepare(pool, type, x, xq, n, cols);
        const double flop = 2.0 * (double)rows * (double)cols * (double)n;
        const double a = time_product(moe_matmul_prepared, pool, y, &W, xq, n, (int)reps);
        const double b = time_product(moe_gemm_prepared, pool, y, &W, xq, n, (int)reps);
        /* the same weights in the interleaved layout a model read into memory gets */
        double c = 0;
        moe_buf tmp = {0};
        if (moe_mat_can_interleave(&W) && moe_mat_interleave(&W, &tmp) == MOE_OK)
            c = time_product(moe_gemm_prepared, pool, y, &W, xq, n, (int)reps);
        moe_buf_free(&tmp);
        printf("  %-5s  %15.1f  %6.1f   %.2fx%s", t->name, flop / a / 1e9, flop / b / 1e9, a / b,
               moe_gemm_tile_for(type) ? "" : " (no tile kernel: same path)");
        if (c > 0) printf("   %17.1f", flop / c / 1e9);
        printf("\n");
        free(wq);
        free(xq);
    }
    moe_pool_free(pool);
    free(src); free(x); free(y);
    return 0;
}
