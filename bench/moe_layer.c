/* moe_layer.c — benchmark of the MoE layer's forward + backward (training step of one
 * layer): T = 2048 tokens, d = 512, ff = 1024, 8 SwiGLU experts, top-2, 2 threads. Prints
 * tokens/s and GFLOP/s against two baselines measured in the same run: the machine's
 * cblas_sgemm GFLOP/s on the layer's GEMM shapes (the bound), and PyTorch running the same
 * layer as a loop over experts (bench/moe_layer_torch.py), when torch is installed.
 *
 *   build/bench/moe_layer [-t 2] [-n 7] [--T 2048] [--d 512] [--ff 1024] [--E 8] [--k 2]
 *                         [--no-torch] [--torch-script bench/moe_layer_torch.py]
 *                         [--torch-layout per-expert|stacked]
 */
#include "moe/layer.h"

#include "bench_util.h"

#include <cblas.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

char *openblas_get_corename(void);

/* AVX-512 F+BW+DQ+VL: the CPU can run OpenBLAS's SkylakeX kernels. OpenBLAS 0.3.21
 * (Debian 12) does not recognise recent AMD cores and picks its Haswell (AVX2) kernels,
 * which halves sgemm speed on such a machine; OPENBLAS_CORETYPE=SkylakeX overrides. */
static bool cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31); /* F, DQ, BW, VL */
    return (b & need) == need;
}

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


/* The baseline: cblas_sgemm on the expert GEMMs' shapes, M = T·k/E rows, the three
 * transposition patterns of the forward (X·Wᵀ) and backward (dY·W, dYᵀ·X). The machine's
 * sgemm speed is taken as the better of the two ways to use nt threads: one GEMM at a time
 * threaded by OpenBLAS, or nt single-threaded GEMMs at once on the pool (as the layer's
 * whole-experts-per-thread schedule does). Rounds are interleaved with the layer's steps
 * so both see the same load on a shared machine. */
#define MAX_T 64
typedef struct { int64_t M, d, ff; int nt; moe_pool *pool; float *A[MAX_T], *B[MAX_T], *C[MAX_T], *D[MAX_T]; } sgemm_ref;

static void gemm3(sgemm_ref *r, int i) {
    const int M = (int)r->M, d = (int)r->d, ff = (int)r->ff;
    /* forward: [M×d]·[ff×d]ᵀ → [M×ff] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, ff, d, 1, r->A[i], d, r->B[i], d, 0, r->C[i], ff);
    /* backward data: [M×ff]·[ff×d] → [M×d] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, d, ff, 1, r->C[i], ff, r->B[i], d, 0, r->A[i], d);
    /* backward weights: [M×ff]ᵀ·[M×d] → [ff×d] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ff, d, M, 1, r->C[i], ff, r->A[i], d, 1, r->D[i], d);
}

static void gemm3_task(void *arg, int ith, int nth) { gemm3(arg, ith); }

static double sgemm_round(sgemm_ref *r) {
    const double flops = 3.0 * 2.0 * (double)r->M * r->d * r->ff;
    double t0 = moe_time_s();
    gemm3(r, 0);
    double threaded = flops / (moe_time_s() - t0) / 1e9;
    moe_blas_set_threads(1);
    t0 = moe_time_s();
    moe_pool_run(r->pool, gemm3_task, r);
    double concurrent = r->nt * flops / (moe_time_s() - t0) / 1e9;
    moe_blas_set_threads(r->nt);
    return threaded > concurrent ? threaded : concurrent;
}

/* PyTorch as a child process (moe_layer_torch.py --serve): one of its steps per "step"
 * line, answered with the step's seconds, so its steps interleave with ours. */
typedef struct { FILE *to, *from; pid_t pid; } torch_proc;

static bool torch_start(torch_proc *tp, const char *script, const char *layout, int64_t T, int64_t d, int64_t ff,
                        int E, int k, int nt) {
    int in[2], out[2];
    if (access(script, R_OK) != 0 || access("/usr/bin/python3", X_OK) != 0) return false;
    if (pipe(in) != 0) return false;
    if (pipe(out) != 0) { close(in[0]); close(in[1]); return false; }
    char a[7][32];
    snprintf(a[0], 32, "%lld", (long long)T); snprintf(a[1], 32, "%lld", (long long)d);
    snprintf(a[2], 32, "%lld", (long long)ff); snprintf(a[3], 32, "%d", E);
    snprintf(a[4], 32, "%d", k); snprintf(a[5], 32, "%d", nt);
    fflush(stdout);
    tp->pid = fork();
    if (tp->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]); close(out[0]);
        execl("/usr/bin/python3", "python3", script, "--serve", "--T", a[0], "--d", a[1], "--ff", a[2], "--E", a[3],
              "--k", a[4], "-t", a[5], "--layout", layout, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (tp->pid < 0) { close(in[1]); close(out[0]); return false; }
    tp->to = fdopen(in[1], "w");
    tp->from = fdopen(out[0], "r");
    char line[256];
    if (!tp->to || !tp->from || !fgets(line, sizeof line, tp->from) || strncmp(line, "ready", 5) != 0) return false;
    printf("  baseline: %s", line + 6);
    return true;
}

static double torch_step(torch_proc *tp) {
    char line[64];
    fputs("step\n", tp->to);
    fflush(tp->to);
    return fgets(line, sizeof line, tp->from) ? atof(line) : 0;
}

static void torch_stop(torch_proc *tp) {
    if (tp->to) fclose(tp->to);  /* EOF ends the server */
    if (tp->from) fclose(tp->from);
    if (tp->pid > 0) waitpid(tp->pid, NULL, 0);
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
    torch_proc *torch;  /* NULL: no PyTorch baseline */
} bench_ctx;

static double layer_flops(const bench_ctx *c, int64_t rows, int64_t ff, int E) {
    /* useful FLOPs: 3 expert GEMMs forward, 6 backward, per routed row; router 1 + 2 */
    return 9.0 * 2.0 * (double)rows * (double)c->d * (double)ff + 3.0 * 2.0 * (double)c->T * (double)E * (double)c->d;
}

static bool run_steps(bench_ctx *c, int n, double *tf, double *tb, double *tt, double *sg, double *tpt) {
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
        sg[it] = bench_median(r, 3);
        if (c->torch && (tpt[it] = torch_step(c->torch)) <= 0) return false;
    }
    return true;
}

int main(int argc, char **argv) {
    int nt = 2, iters = 7, E = 8, k = 2;
    int64_t T = 2048, d = 512, ff = 1024;
    bool torch = true;
    const char *script = "bench/moe_layer_torch.py", *layout = "per-expert";
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
        else if (!strcmp(a, "--torch-layout") && v) { layout = v; i++; }
        else { fprintf(stderr, "usage: %s [-t N] [-n ITERS] [--T N] [--d N] [--ff N] [--E N] [--k N] [--no-torch] [--torch-script PATH] [--torch-layout per-expert|stacked]\n", argv[0]); return 2; }
    }
    if (nt < 1 || nt > MAX_T || iters < 1 || T < 1 || d < 1 || ff < 1 || E < 1 || k < 1 || k > E) { fprintf(stderr, "bad arguments\n"); return 2; }

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
    const char *core = openblas_get_corename(), *forced = getenv("OPENBLAS_CORETYPE");
    printf("  OpenBLAS kernels: %s", core);
    if (forced) printf(" (OPENBLAS_CORETYPE=%s in the environment)", forced);
    else if (cpu_has_avx512() && strstr(core, "aswell"))
        printf(" (this CPU has AVX-512: OPENBLAS_CORETYPE=SkylakeX gives faster sgemm, to PyTorch too)");
    printf("\n");

    sgemm_ref ref = {.M = T * k / E, .d = d, .ff = ff, .nt = nt, .pool = pool};
    for (int i = 0; i < nt; i++) {
        ref.A[i] = rbuf(ref.M * ff, 1);
        ref.B[i] = rbuf(ff * d, 1);
        ref.C[i] = rbuf(ref.M * ff, 1);
        ref.D[i] = rbuf(ff * d, 1);
    }
    bench_ctx c = {.layer = &layer, .w = &w, .g = &g, .x = x, .dy = dy, .y = y, .dx = dx, .T = T, .d = d,
                   .pool = pool, .ref = &ref};
    double *tf = malloc((size_t)iters * sizeof *tf), *tb = malloc((size_t)iters * sizeof *tb);
    double *tt = malloc((size_t)iters * sizeof *tt), *sg = malloc((size_t)iters * sizeof *sg);
    double *ratio = malloc((size_t)iters * sizeof *ratio), *tpt = malloc((size_t)iters * sizeof *tpt);
    double *tratio = malloc((size_t)iters * sizeof *tratio), dummy[5];
    torch_proc tp = {0};
    if (torch && torch_start(&tp, script, layout, T, d, ff, E, k, nt)) c.torch = &tp;
    else if (torch) printf("  PyTorch baseline not run (python3-torch missing or %s failed)\n", script);
    /* every step: ours, 3 sgemm rounds, one PyTorch step: a change of load on a shared
     * machine affects all three alike */
    if (!run_steps(&c, 1, dummy, dummy + 1, dummy + 2, dummy + 3, dummy + 4) ||
        !run_steps(&c, iters, tf, tb, tt, sg, tpt)) {
        fprintf(stderr, "%s\n", c.torch ? "the PyTorch baseline stopped" : moe_last_error());
        torch_stop(&tp);
        return 1;
    }
    torch_stop(&tp);
    const double flops = layer_flops(&c, layer.n_rows, ff, E);
    for (int i = 0; i < iters; i++) {
        ratio[i] = flops / tt[i] / 1e9 / sg[i];
        tratio[i] = c.torch ? tpt[i] / tt[i] : 0;
    }
    double mf = bench_median(tf, iters), mb = bench_median(tb, iters), mt = bench_median(tt, iters);
    double msg = bench_median(sg, iters), mr = bench_median(ratio, iters);
    double tps = (double)T / mt;
    printf("  forward  %8.1f ms   backward %8.1f ms   total %8.1f ms   (median of %d steps)\n", mf * 1e3, mb * 1e3,
           mt * 1e3, iters);
    printf("  %.0f tokens/s   %.1f GFLOP/s  (%.1f GFLOP per step, %lld routed rows)\n", tps, flops / mt / 1e9,
           flops / 1e9, (long long)layer.n_rows);
    printf("  cblas_sgemm on the same shapes (best of threaded / %d concurrent), interleaved: %.1f GFLOP/s\n", nt, msg);
    printf("  layer at %.0f%% of sgemm (median of per-step ratios; target >= 70%%)\n", 100.0 * mr);
    if (c.torch)
        printf("  PyTorch (loop over experts): %.0f tokens/s  ->  moe.c is %.2fx PyTorch (median of per-step ratios; "
               "target >= 3x)\n", (double)T / bench_median(tpt, iters), bench_median(tratio, iters));
    free(tf); free(tb); free(tt); free(sg); free(ratio); free(tpt); free(tratio);
    for (int i = 0; i < nt; i++) { free(ref.A[i]); free(ref.B[i]); free(ref.C[i]); free(ref.D[i]); }
    moe_layer_free(&layer);
    moe_pool_free(pool);
    return 0;
}
