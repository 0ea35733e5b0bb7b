/* bench/prefetch.c — which prefetch settings of the matrix-vector kernels decode fastest on
 * this CPU, measured the only way that works on a shared or virtual machine: paired.
 *
 *     build/bench/prefetch -m MODEL.gguf [-n TOKENS] [-t THREADS] [--mmap]
 *
 * The model is read into memory and its matrices interleaved, as `moe run` and `moe bench`
 * load a model that fits; --mmap maps it instead (row-major matrices, as with --mmap).
 *
 * The kernels on row-major matrices prefetch the next rows into L1, L2 or not at all
 * (MOE_PREFETCH=l1|l2|none) at least MOE_PREFETCH_BYTES ahead; the kernels on
 * interleaved matrices, which is how a model's quantized matrices are loaded, prefetch
 * into L1, L2 or not at all on their own setting (MOE_PREFETCH_IL=l1|l2|none;
 * src/core/cpu.h). Which is best depends on the core and on the
 * matrices' row length, and the speed of a single benchmark run moves by ±20 % with the
 * neighbours, more than the differences sought. So one process decodes TOKENS tokens for
 * every setting against the current default, alternating the two token by token in ABBA
 * order (a slow second hits both alike), and prints the median of the per-pair speed
 * ratios with the quartiles. A ratio whose lower quartile is above 1 is a real gain. The
 * settings change speed only, never results. */
#include "moe.h"
#include "core/cpu.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int level, il_level; /* -1: the default's */
    size_t min_bytes;
} setting;

static setting base; /* the defaults, as the library chose them */

static void apply(const setting *s) {
    moe_prefetch_level = s->level >= 0 ? s->level : base.level;
    moe_prefetch_il_level = s->il_level >= 0 ? s->il_level : base.il_level;
    moe_prefetch_min_bytes = s->min_bytes;
}

/* One token through the model at the context's next position; seconds. */
static double step(moe_context *c, int32_t tok) {
    const double t0 = moe_time_s();
    if (moe_eval(c, &tok, 1, NULL, MOE_EVAL_LAST_ONLY) != MOE_OK) return -1;
    return moe_time_s() - t0;
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int n = 200, threads = 0;
    bool mapped = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--mmap")) mapped = true;
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s -m MODEL.gguf [-n TOKENS (200)] [-t THREADS (all cores)] [--mmap]\n", argv[0]);
            return 2;
        }
    }
    if (!model || n < 8 || n > 100000) {
        fprintf(stderr, "usage: %s -m MODEL.gguf [-n TOKENS (200)] [-t THREADS (all cores)] [--mmap]\n", argv[0]);
        return 2;
    }
    moe_model_params mp = moe_model_default_params();
    if (threads > 0) mp.n_threads = threads;
    mp.no_mmap = !mapped;
    moe_model *m = moe_model_load(model, &mp);
    if (!m) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
    const int ctx = 64;
    moe_context *c = moe_context_init(m, ctx);
    double *ratio = malloc((size_t)n * sizeof *ratio);
    if (!c || !ratio) { fprintf(stderr, "%s\n", c ? "out of memory" : moe_last_error()); return 1; }
    const int64_t nv = moe_model_n_vocab(m);
    int32_t warm[32];
    for (int i = 0; i < 32; i++) warm[i] = (int32_t)((i * 7919 + 13) % nv);
    if (moe_eval(c, warm, 32, NULL, MOE_EVAL_LAST_ONLY) != MOE_OK) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }

    base = (setting){"default", moe_prefetch_level, moe_prefetch_il_level, moe_prefetch_min_bytes};
    const size_t mb = base.min_bytes;
    /* the row-major settings keep the interleaved level, and the other way round */
    const setting tries[] = {
        {"L1, 4 rows", MOE_PF_L1, -1, 0},   {"L1, >= 4 KB", MOE_PF_L1, -1, 4096}, {"L1, >= 8 KB", MOE_PF_L1, -1, 8192},
        {"L2, 4 rows", MOE_PF_L2, -1, 0},   {"L2, >= 4 KB", MOE_PF_L2, -1, 4096}, {"L2, >= 8 KB", MOE_PF_L2, -1, 8192},
        {"none", MOE_PF_NONE, -1, mb},      {"il L1", -1, MOE_PF_L1, mb},         {"il L2", -1, MOE_PF_L2, mb},
        {"il none", -1, MOE_PF_NONE, mb},
    };
    printf("%s (%s), %d tokens per setting, paired with the default (row-major %s, >= %zu bytes ahead;\n"
           "interleaved %s)\n", model, mapped ? "mapped: row-major" : "in memory: interleaved", n,
           moe_prefetch_name(base.level), base.min_bytes, moe_prefetch_name(base.il_level));
    printf("  %-14s %8s %8s %8s\n", "setting", "speed", "p25", "p75");
    for (size_t k = 0; k < sizeof tries / sizeof *tries; k++) {
        const setting *pair[2] = {&base, &tries[k]};
        double tsum[2] = {0, 0};
        for (int i = 0; i < n; i++) {
            /* a fresh context every ctx/2 pairs keeps the attention cost small and even */
            if (i % (ctx / 2) == 0) moe_context_reset(c);
            double t[2];
            for (int h = 0; h < 2; h++) {
                const int which = (i & 1) ? 1 - h : h; /* ABBA */
                apply(pair[which]);
                t[which] = step(c, (int32_t)((i * 31 + h * 17 + 101) % nv));
                if (t[which] < 0) { fprintf(stderr, "%s\n", moe_last_error()); return 1; }
            }
            ratio[i] = t[0] / t[1]; /* > 1: the setting is faster than the default */
            tsum[0] += t[0];
            tsum[1] += t[1];
        }
        qsort(ratio, (size_t)n, sizeof *ratio, bench_cmp_double);
        printf("  %-14s %7.3fx %7.3fx %7.3fx%s\n", tries[k].name, ratio[n / 2], ratio[n / 4], ratio[3 * n / 4],
               ratio[n / 4] > 1.0 ? "  faster" : ratio[3 * n / 4] < 1.0 ? "  slower" : "");
    }
    apply(&base);
    printf("(speed = median over token pairs of default time / setting time; set the winner with\n"
           " MOE_PREFETCH=l1|l2|none, MOE_PREFETCH_BYTES=N and MOE_PREFETCH_IL=l1|l2|none)\n");
    free(ratio);
    moe_context_free(c);
    moe_model_free(m);
    return 0;
}
