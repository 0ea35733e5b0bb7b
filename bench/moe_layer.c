/* moe_layer.c — benchmark of the MoE layer's forward + backward (training step of one
 * layer): T = 2048 tokens, d = 512, ff = 1024, 8 SwiGLU experts, top-2, 2 threads. Prints
 * tokens/s and GFLOP/s against two baselines measured in the same run: the machine's
 * cblas_sgemm GFLOP/s on the layer's GEMM shapes (the bound), and PyTorch running the same
 * layer as a loop over experts (bench/moe_layer_torch.py), when torch is installed.
 *
 *   build/bench/moe_layer [-t 2] [-n 7] [--T 2048] [--d 512] [--ff 1024] [--E 8] [--k 2]
 *                         [--no-torch] [--torch-script bench/moe_layer_torch.py]
 */
#include "moe/layer.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * (1.0 / 4503599627370496.0) - 1.0);
}
static float *rbuf(int64_t n, float scale) {
    float *p = moe_aligned_alloc((size_t)n * sizeof *p);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int64_t i = 0; i < n; i++) p[i] = scale * frand();
    return p;
}
static float *zbuf(int64_t n) {
    float *p = rbuf(n, 0);
    memset(p, 0, (size_t)n * sizeof *p);
    return p;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One round of the baseline: cblas_sgemm on the expert GEMMs' shapes, M = T·k/E rows, the
 * three transposition patterns of the forward (X·Wᵀ) and backward (dY·W, dYᵀ·X). Returns
 * its GFLOP/s. Rounds are interleaved with the layer's steps so both see the same load on
 * a shared machine. */
typedef struct { int64_t M, d, ff; float *A, *B, *C, *D; } sgemm_ref;

static double sgemm_round(sgemm_ref *r) {
    const int M = (int)r->M, d = (int)r->d, ff = (int)r->ff;
    double t0 = moe_time_s();
    /* forward: [M×d]·[ff×d]ᵀ → [M×ff] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, ff, d, 1, r->A, d, r->B, d, 0, r->C, ff);
    /* backward data: [M×ff]·[ff×d] → [M×d] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, d, ff, 1, r->C, ff, r->B, d, 0, r->A, d);
    /* backward weights: [M×ff]ᵀ·[M×d] → [ff×d] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ff, d, M, 1, r->C, ff, r->A, d, 1, r->D, d);
    double t = moe_time_s() - t0;
    return 3.0 * 2.0 * (double)M * d * ff / t / 1e9;
}

/* Layer steps: forward + backward, each followed by 3 sgemm rounds. Fills per-step times
 * and the per-step ratio layer GFLOP/s ÷ sgemm GFLOP/s (median of its 3 rounds). */
typedef struct {
    moe_layer *layer;
    moe_layer_params *w, *g;
    float *x, *dy, *y, *dx;
    int64_t T, d;
    moe_pool *pool;
    sgemm_ref *ref;
} bench_ctx;

static double layer_flops(const bench_ctx *c, int64_t rows, int64_t ff, int E) {
    /* useful FLOPs: 3 expert GEMMs forward, 6 backward, per routed row; router 1 + 2 */
    return 9.0 * 2.0 * (double)rows * (double)c->d * (double)ff + 3.0 * 2.0 * (double)c->T * (double)E * (double)c->d;
}

static bool run_steps(bench_ctx *c, int n, double *tf, double *tb, double *tt, double *sg) {
    for (int it = 0; it < n; it++) {
        memset(c->dx, 0, (size_t)(c->T * c->d) * sizeof *c->dx); /* zero_grad: outside the timing */
        double t0 = moe_time_s();
        if (moe_layer_forward(c->layer, c->y, c->x, NULL, c->w, c->T, c->pool) != MOE_OK) return false;
        double t1 = moe_time_s();
        if (moe_layer_backward(c->layer, c->dx, c->g, c->dy, c->x, c->w, 0.01f, 0.001f, c->pool) != MOE_OK) return false;
        double t2 = moe_time_s();
        tf[it] = t1 - t0;
        tb[it] = t2 - t1;
        tt[it] = t2 - t0;
        double r[3];
        for (int j = 0; j < 3; j++) r[j] = sgemm_round(c->ref);
        sg[it] = median(r, 3);
    }
    return true;
}

int main(int argc, char **argv) {
    int nt = 2, iters = 7, E = 8, k = 2;
    int64_t T = 2048, d = 512, ff = 1024;
    bool torch = true;
    const char *script = "bench/moe_layer_torch.py";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-t") && v) { nt = atoi(v); i++; }
        else if (!strcmp(a, "-n") && v) { iters = atoi(v); i++; }
        else if (!strcmp(a, "--T") && v) { T = atoll(v); i++; }
        else if (!strcmp(a, "--d") && v) { d = atoll(v); i++; }
        else if (!strcmp(a, "--ff") && v) { ff = atoll(v); i++; }
        else if (!strcmp(a, "--E") && v) { E = atoi(v); i++; }
        else if (!strcmp(a, "--k") && v) { k = atoi(v); i++; }
        else if (!strcmp(a, "--no-torch")) torch = false;
        else if (!strcmp(a, "--torch-script") && v) { script = v; i++; }
        else { fprintf(stderr, "usage: %s [-t N] [-n ITERS] [--T N] [--d N] [--ff N] [--E N] [--k N] [--no-torch] [--torch-script PATH]\n", argv[0]); return 2; }
    }
    if (nt < 1 || iters < 1 || T < 1 || d < 1 || ff < 1 || E < 1 || k < 1 || k > E) { fprintf(stderr, "bad arguments\n"); return 2; }

    moe_layer_cfg cfg = {.d = d, .ff = ff, .act = MOE_FFN_SWIGLU};
    moe_router_cfg_default(&cfg.router, MOE_ROUTER_TOPK, E);
    cfg.router.k = k;
    moe_layer layer;
    if (moe_layer_init(&layer, &cfg) != MOE_OK) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
    moe_layer_params w = {0}, g = {0};
    w.router_w = rbuf(E * d, 0.05f);
    w.experts.gate = rbuf(E * ff * d, 0.04f);
    w.experts.up = rbuf(E * ff * d, 0.04f);
    w.experts.down = rbuf(E * d * ff, 0.03f);
    g.router_w = zbuf(E * d);
    g.experts.gate = zbuf(E * ff * d);
    g.experts.up = zbuf(E * ff * d);
    g.experts.down = zbuf(E * d * ff);
    float *x = rbuf(T * d, 1), *dy = rbuf(T * d, 1), *y = zbuf(T * d), *dx = zbuf(T * d);

    moe_pool *pool = moe_pool_create(nt);
    moe_blas_set_threads(nt);
    printf("MoE layer forward + backward: T=%lld d=%lld ff=%lld E=%d top-%d SwiGLU, %d thread%s\n", (long long)T,
           (long long)d, (long long)ff, E, k, nt, nt > 1 ? "s" : "");

    sgemm_ref ref = {.M = T * k / E, .d = d, .ff = ff};
    ref.A = rbuf(ref.M * ff, 1);
    ref.B = rbuf(ff * d, 1);
    ref.C = rbuf(ref.M * ff, 1);
    ref.D = rbuf(ff * d, 1);
    bench_ctx c = {.layer = &layer, .w = &w, .g = &g, .x = x, .dy = dy, .y = y, .dx = dx, .T = T, .d = d,
                   .pool = pool, .ref = &ref};
    double *tf = malloc((size_t)iters * sizeof *tf), *tb = malloc((size_t)iters * sizeof *tb);
    double *tt = malloc((size_t)iters * sizeof *tt), *sg = malloc((size_t)iters * sizeof *sg);
    double *ratio = malloc((size_t)iters * sizeof *ratio), dummy[4];
    /* warm-up, then half the steps before the PyTorch run and half after, so a change of
     * load on the machine affects both sides of the comparison alike */
    const int n_a = (iters + 1) / 2;
    if (!run_steps(&c, 1, dummy, dummy + 1, dummy + 2, dummy + 3) || !run_steps(&c, n_a, tf, tb, tt, sg)) {
        fprintf(stderr, "%s\n", moe_last_error());
        return 1;
    }
    double ttps = 0;
    if (torch) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s --T %lld --d %lld --ff %lld --E %d --k %d -t %d -n %d 2>&1", script, (long long)T,
                 (long long)d, (long long)ff, E, k, nt, iters < 3 ? iters : 3);
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p && fgets(line, sizeof line, p)) {
            fputs("  torch: ", stdout);
            fputs(line, stdout);
            const char *s = strstr(line, "tokens/s=");
            if (s) ttps = atof(s + 9);
        }
        if ((p ? pclose(p) : -1) != 0) ttps = 0;
    }
    if (!run_steps(&c, iters - n_a, tf + n_a, tb + n_a, tt + n_a, sg + n_a)) {
        fprintf(stderr, "%s\n", moe_last_error());
        return 1;
    }
    const double flops = layer_flops(&c, layer.n_rows, ff, E);
    for (int i = 0; i < iters; i++) ratio[i] = flops / tt[i] / 1e9 / sg[i];
    double mf = median(tf, iters), mb = median(tb, iters), mt = median(tt, iters);
    double msg = median(sg, iters), mr = median(ratio, iters);
    double tps = (double)T / mt;
    printf("  forward  %8.1f ms   backward %8.1f ms   total %8.1f ms   (median of %d steps)\n", mf * 1e3, mb * 1e3,
           mt * 1e3, iters);
    printf("  %.0f tokens/s   %.1f GFLOP/s  (%.1f GFLOP per step, %lld routed rows)\n", tps, flops / mt / 1e9,
           flops / 1e9, (long long)layer.n_rows);
    printf("  cblas_sgemm on the same shapes, interleaved with the steps: %.1f GFLOP/s\n", msg);
    printf("  layer at %.0f%% of sgemm (median of per-step ratios; target >= 70%%)\n", 100.0 * mr);
    if (torch && ttps > 0)
        printf("  PyTorch (loop over experts): %.0f tokens/s  ->  moe.c is %.2fx PyTorch (target >= 3x)\n", ttps, tps / ttps);
    else if (torch)
        printf("  PyTorch baseline not run (python3-torch missing or %s failed)\n", script);
    free(tf); free(tb); free(tt); free(sg); free(ratio);
    free(ref.A); free(ref.B); free(ref.C); free(ref.D);
    moe_layer_free(&layer);
    moe_pool_free(pool);
    return 0;
}
