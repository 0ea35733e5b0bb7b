/* cmd_bench.c — `moe bench`: prompt processing and decode speed, measured against this
 * machine's DRAM bandwidth bound (decode reads the active weights once per token). */
#include "cli/cli.h"
#include "model/kv_cache.h" /* moe_kv_elem_bytes */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define MAX2(a, b) ((a) > (b) ? (a) : (b))
#define MIN2(a, b) ((a) < (b) ? (a) : (b))

static void help(void) {
    printf("usage: moe bench -m MODEL.gguf [-t N] [-p N] [-n N] [-d N] [-r REPS] [--json] [--mem SIZE ...]\n\n"
           "Measures prompt processing (-p tokens as one batch, default 128) and decode (-n tokens one at\n"
           "a time, default 64), -r times (default 5), and reports the median and spread in tokens/s.\n"
           "It also measures the DRAM read bandwidth in the same run and reports decode as a percentage\n"
           "of the bound bandwidth / bytes of weights read per token.\n\n"
           "  -m, --model FILE    the model\n"
           "  -t, --threads N     threads (default: all cores)\n"
           "  -p, --n-prompt N    prompt tokens (0 skips the prompt test)\n"
           "  -n, --n-gen N       generated tokens (0 skips the decode test)\n"
           "  -d, --n-depth N     tokens already in the context (KV cache) when each test starts, as\n"
           "                      llama-bench's -d (default 0); filling it is not timed. The bound still\n"
           "                      counts weights only; at depth, decode also reads the cache's keys and\n"
           "                      values, and a second figure counts them too (tg_pct_of_bound_with_kv)\n"
           "  -r, --repetitions N repetitions (default 5)\n"
           "  --bw-bytes SIZE     buffer for the bandwidth measurement (default 512M)\n"
           "  --json              one JSON object: pp_tps, tg_tps, dram_gbps, bytes_per_token, tg_bound_tps,\n"
           "                      tg_pct_of_bound, peak_rss_bytes, weights (memory or mapped), kv_type,\n"
           "                      kv_bytes_per_token and tg_pct_of_bound_with_kv (the bound with the cache's\n"
           "                      keys and values counted too), tg_product_share_pct (the share of decode\n"
           "                      time spent in weight products) and tg_product_pct_of_dram (their speed /\n"
           "                      the bandwidth), pool_wait_us_per_token, system_info (the kernels' SIMD\n"
           "                      and prefetch levels: docs/RUN.md, \"Tuning the kernels to a CPU\"), ...\n");
    cli_offload_print_help(stdout);
}

/* Restarts the kernel's peak-RSS count (VmHWM) from the current RSS, so that a buffer
 * freed before (the bandwidth probe's) does not count; silently nothing where
 * /proc/self/clear_refs is not writable. */
static void reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

/* CPU seconds (user + system) of the whole process so far: with the wall time it says
 * how much of the cores the run actually had on a shared machine. */
static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* Warm-up batch: 32 tokens route to (almost) every expert of every layer, so the mapped
 * weights are paged in before anything is timed, also with -p 0. */
#define WARMUP 32

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct { double median, min, max; } spread;

static spread summarize(double *v, int n) {
    spread s = {NAN, NAN, NAN};
    if (n <= 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

/* Deterministic token ids spread over the vocabulary (the content does not change the
 * work a dense pass does; routing varies with it as real text would). */
static void fill_tokens(int32_t *t, int64_t n, int64_t n_vocab, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % (uint32_t)n_vocab);
    }
}

/* Bytes of cached keys and values a decoded token reads, averaged over a test's tokens:
 * token i of n_gen attends to n_depth + i + 1 positions of every layer's KV heads. Next to
 * nothing from an empty context; at depth, the main read besides the weights. */
static double kv_read_per_token(const moe_model *m, moe_kv_type kv, int64_t n_depth, int64_t n_gen) {
    const moe_hparams *hp = moe_model_hparams(m);
    const double per_position = (double)hp->n_layer * (double)hp->n_head_kv *
                                (double)(hp->n_embd_head_k + hp->n_embd_head_v) * (double)moe_kv_elem_bytes(kv == MOE_KV_F16);
    return per_position * ((double)n_depth + (double)(n_gen + 1) / 2.0);
}

/* Empties the context and puts n_depth tokens in it, in one untimed batch (no logits). */
static bool fill_depth(moe_context *c, int32_t *toks, int64_t n_depth, int64_t n_vocab) {
    moe_context_reset(c);
    if (n_depth == 0) return true;
    fill_tokens(toks, n_depth, n_vocab, 7);
    return moe_eval(c, toks, n_depth, NULL, 0) == MOE_OK;
}

int cmd_bench(int argc, char **argv) {
    const char *sub = "bench", *model = NULL;
    int64_t threads = 0, n_prompt = 128, n_gen = 64, n_depth = 0, reps = 5;
    uint64_t bw_bytes = 512ull << 20;
    bool json = false;
    cli_offload_opts off_opts;
    cli_offload_opts_default(&off_opts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (cli_is_help(a)) { help(); return 0; }
        else if ((r = cli_offload_parse_opt(sub, argc, argv, &i, &off_opts)) != 0) { if (r < 0) return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str(sub, argc, argv, &i, &model)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_arg_int(sub, argc, argv, &i, 0, 1024, &threads)) return 2; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { if (!cli_arg_int(sub, argc, argv, &i, 0, 1 << 20, &n_prompt)) return 2; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { if (!cli_arg_int(sub, argc, argv, &i, 0, 1 << 20, &n_gen)) return 2; }
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) { if (!cli_arg_int(sub, argc, argv, &i, 0, 1 << 20, &n_depth)) return 2; }
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) { if (!cli_arg_int(sub, argc, argv, &i, 1, 1000, &reps)) return 2; }
        else if (!strcmp(a, "--bw-bytes")) { if (!cli_arg_size(sub, argc, argv, &i, &bw_bytes)) return 2; }
        else if (!strcmp(a, "--json")) json = true;
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!model) return cli_usage(sub, "no model given (-m FILE)");
    int nt = threads > 0 ? (int)threads : moe_default_threads();

    moe_model_params mp;
    if (!cli_offload_model_params(sub, &off_opts, nt, model, &mp)) return 2;
    double t0 = moe_time_s();
    moe_model *m = moe_model_load(model, &mp);
    if (!m) return cli_fail_lib(sub);
    double load_s = moe_time_s() - t0;
    int64_t n_ctx = n_depth + MAX2(n_prompt, WARMUP) + n_gen + 8;
    moe_context *c = moe_context_init(m, n_ctx);
    if (!c) { moe_model_free(m); return cli_fail_lib(sub); }
    moe_offload *off = NULL;
    if ((off_opts.params.budget || off_opts.profile_path) && !(off = cli_offload_attach(sub, &off_opts, m, c))) {
        moe_context_free(c);
        moe_model_free(m);
        return 1;
    }
    int64_t nv = moe_model_n_vocab(m);
    int32_t *toks = malloc((size_t)MAX2(MAX2(MAX2(n_prompt, n_gen + 1), WARMUP), n_depth) * sizeof *toks);
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    double *bws = calloc((size_t)reps, sizeof *bws), *pcts = calloc((size_t)reps, sizeof *pcts);
    double *shares = calloc((size_t)reps, sizeof *shares);
    /* per rep: the share of decode time spent in weight products, their GB/s / the probe */
    double *prod_share = calloc((size_t)reps, sizeof *prod_share), *prod_pct = calloc((size_t)reps, sizeof *prod_pct);
    /* Every evaluation computes the logits of its last token, as llama-bench does and as the
     * bound counts the output head (without a buffer the engine skips the head: ~9 % of a
     * mix-1b token's bytes, which every figure before 2026-12-07 left out) */
    float *logits = malloc((size_t)nv * sizeof *logits);
    int rc = 1;
    if (!toks || !pp || !tg || !bws || !pcts || !shares || !prod_share || !prod_pct || !logits) {
        cli_fail(sub, "out of memory");
        goto done;
    }

    /* The bandwidth is measured right before and after every decode run (the mean of the
     * two is that run's yardstick): on a machine shared with other work it changes from
     * second to second, and a bound measured once at the start would credit or blame the
     * decode for the neighbours. */
    if (!json) fprintf(stderr, "moe bench: measuring DRAM read bandwidth (%d threads) before and after each decode run\n", nt);
    if (!json && n_depth > 0)
        fprintf(stderr, "moe bench: each test first fills the context with %lld tokens (not timed)\n", (long long)n_depth);
    uint64_t bpt = moe_model_bytes_per_token(m);

    /* Warm-up: page the weights in and let the caches settle. */
    fill_tokens(toks, WARMUP, nv, 1);
    if (moe_eval(c, toks, WARMUP, logits, MOE_EVAL_LAST_ONLY) != MOE_OK) { cli_fail_lib(sub); goto done; }
    double wait_s = 0;
    uint64_t steps = 0, peak_seen = 0, prod_bytes = 0;
    for (int64_t r = 0; r < reps; r++) {
        if (n_prompt > 0) {
            if (!fill_depth(c, toks, n_depth, nv)) { cli_fail_lib(sub); goto done; }
            fill_tokens(toks, n_prompt, nv, (uint32_t)(100 + r));
            double a = moe_time_s();
            if (moe_eval(c, toks, n_prompt, logits, MOE_EVAL_LAST_ONLY) != MOE_OK) { cli_fail_lib(sub); goto done; }
            pp[r] = (double)n_prompt / (moe_time_s() - a);
        }
        /* right before (and after) the decode it bounds; the peak RSS is read before each
         * probe and restarted after it: the probe's buffer is not the engine's memory */
        peak_seen = MAX2(peak_seen, moe_peak_rss_bytes());
        double bw_before = moe_measure_read_bandwidth(nt, (size_t)bw_bytes, 3);
        reset_peak_rss();
        bws[r] = bw_before;
        if (n_gen > 0) {
            /* llama-bench's tg: n tokens decoded one at a time after n_depth in the context */
            if (!fill_depth(c, toks, n_depth, nv)) { cli_fail_lib(sub); goto done; }
            fill_tokens(toks, n_gen, nv, (uint32_t)(200 + r));
            moe_context_pool_stats(c, NULL, NULL, true);
            const double cpu0 = cpu_seconds(), a = moe_time_s();
            for (int64_t i = 0; i < n_gen; i++)
                if (moe_eval(c, toks + i, 1, logits, MOE_EVAL_LAST_ONLY) != MOE_OK) { cli_fail_lib(sub); goto done; }
            const double wall = moe_time_s() - a;
            tg[r] = (double)n_gen / wall;
            shares[r] = 100.0 * (cpu_seconds() - cpu0) / (wall * nt);
            peak_seen = MAX2(peak_seen, moe_peak_rss_bytes());
            bws[r] = 0.5 * (bw_before + moe_measure_read_bandwidth(nt, (size_t)bw_bytes, 3));
            reset_peak_rss();
            pcts[r] = bpt && bws[r] > 0 ? 100.0 * tg[r] * (double)bpt / bws[r] : NAN;
            double w, ps;
            uint64_t s, pb;
            moe_context_product_stats(c, &ps, &pb, false);
            prod_share[r] = 100.0 * ps / wall;
            prod_pct[r] = ps > 0 && bws[r] > 0 ? 100.0 * (double)pb / ps / bws[r] : NAN;
            prod_bytes += pb;
            moe_context_pool_stats(c, &w, &s, false);
            wait_s += w;
            steps += s;
        }
        if (!json)
            fprintf(stderr, "moe bench: rep %lld/%lld: DRAM %.2f GB/s, pp %.2f t/s, tg %.2f t/s (%.1f %% of this rep's bound)\n",
                    (long long)r + 1, (long long)reps, bws[r] / 1e9, pp[r], tg[r], pcts[r]);
    }
    spread sp = summarize(pp, n_prompt > 0 ? (int)reps : 0), sg = summarize(tg, n_gen > 0 ? (int)reps : 0);
    spread sb = summarize(bws, (int)reps), spc = summarize(pcts, n_gen > 0 ? (int)reps : 0);
    spread ssh = summarize(shares, n_gen > 0 ? (int)reps : 0);
    spread sps = summarize(prod_share, n_gen > 0 ? (int)reps : 0), spp = summarize(prod_pct, n_gen > 0 ? (int)reps : 0);
    const double prod_bpt = n_gen > 0 ? (double)prod_bytes / (double)(n_gen * reps) : NAN;
    double bw = sb.median;
    double bound = bpt ? bw / (double)bpt : NAN;
    /* the median of the per-repetition ratios: each decode against the bandwidth measured
     * just before it */
    double pct = spc.median;
    /* the same with the cache's keys and values counted (each rep's ratio scales alike) */
    const double kvb = n_gen > 0 ? kv_read_per_token(m, mp.kv_type, n_depth, n_gen) : NAN;
    const double pct_kv = bpt ? pct * ((double)bpt + kvb) / (double)bpt : NAN;
    /* Memory: the model is mapped, so the peak should be the file, the context (KV cache
     * and scratch) and a little for the binary and the heap. */
    uint64_t peak = MAX2(peak_seen, moe_peak_rss_bytes()), ctx_bytes = moe_context_memory_bytes(c), fbytes = 0;
    struct stat st;
    if (stat(model, &st) == 0) fbytes = (uint64_t)st.st_size;
    uint64_t rss_limit = (uint64_t)(1.05 * (double)fbytes) + (50ull << 20) + ctx_bytes;
    double wait_us_tok = n_gen > 0 ? 1e6 * wait_s / (double)(n_gen * reps) : NAN;
    double wait_us_layer = wait_us_tok / (double)moe_model_n_layer(m);
    if (json) {
        printf("{\"model\":");
        cli_json_str(stdout, model, strlen(model));
        printf(",\"arch\":\"%s\",\"threads\":%d,\"weights\":\"%s\",\"kv_type\":\"%s\",\"n_prompt\":%lld,\"n_gen\":%lld,"
               "\"n_depth\":%lld,\"reps\":%lld,\"load_s\":",
               moe_model_arch(m), nt, mp.no_mmap ? "memory" : "mapped", moe_kv_type_name(mp.kv_type), (long long)n_prompt,
               (long long)n_gen, (long long)n_depth, (long long)reps);
        cli_json_num(stdout, load_s);
        const char *keys[] = {"pp_tps", "pp_tps_min", "pp_tps_max", "tg_tps", "tg_tps_min", "tg_tps_max", "dram_gbps",
                              "dram_gbps_min", "dram_gbps_max", "tg_bound_tps", "tg_pct_of_bound", "tg_pct_of_bound_min",
                              "tg_pct_of_bound_max", "pool_wait_us_per_token", "pool_wait_us_per_layer", "tg_cpu_share_pct",
                              "kv_bytes_per_token", "tg_pct_of_bound_with_kv", "tg_product_share_pct",
                              "tg_product_pct_of_dram", "tg_product_bytes_per_token"};
        double vals[] = {sp.median, sp.min, sp.max, sg.median, sg.min, sg.max, bw / 1e9, sb.min / 1e9, sb.max / 1e9,
                         bound, pct, spc.min, spc.max, wait_us_tok, wait_us_layer, ssh.median, kvb, pct_kv,
                         sps.median, spp.median, prod_bpt};
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            printf(",\"%s\":", keys[k]);
            cli_json_num(stdout, vals[k]);
        }
        printf(",\"bytes_per_token\":%llu,\"file_bytes\":%llu,\"context_bytes\":%llu,\"rss_limit_bytes\":%llu",
               (unsigned long long)bpt, (unsigned long long)fbytes, (unsigned long long)ctx_bytes,
               (unsigned long long)rss_limit);
        printf(",\"system_info\":");
        const char *si = moe_system_info();
        cli_json_str(stdout, si, strlen(si));
        printf(",\"pool_steps_per_token\":");
        cli_json_num(stdout, n_gen > 0 ? (double)steps / (double)(n_gen * reps) : NAN);
        cli_offload_json_stats(off, stdout);
        printf("}\n");
    } else {
        printf("model %s (%s), %d threads, weights %s, KV cache %s", model, moe_model_arch(m), nt,
               mp.no_mmap ? "read into memory (interleaved)" : "mapped", moe_kv_type_name(mp.kv_type));
        if (n_depth > 0) printf(", %lld tokens in the context before each test", (long long)n_depth);
        printf("\n  kernels: %s\n", moe_system_info());
        if (n_prompt > 0)
            printf("  pp%-5lld %9.2f tokens/s  (min %.2f, max %.2f, %lld reps)\n", (long long)n_prompt, sp.median, sp.min,
                   sp.max, (long long)reps);
        if (n_gen > 0) {
            printf("  tg%-5lld %9.2f tokens/s  (min %.2f, max %.2f, %lld reps)\n", (long long)n_gen, sg.median, sg.min,
                   sg.max, (long long)reps);
            printf("  DRAM read bandwidth %.2f GB/s (min %.2f, max %.2f); %.1f MB of weights per token -> bound %.2f tokens/s\n",
                   bw / 1e9, sb.min / 1e9, sb.max / 1e9, bpt / 1e6, bound);
            printf("  decode at %.1f %% of the bound (median over the reps, each against the bandwidth measured around it;"
                   " min %.1f, max %.1f)\n", pct, spc.min, spc.max);
            if (n_depth > 0)
                printf("  the bound counts weights only; with %lld tokens in the context each token also reads %.1f MB of"
                       " keys and values (%s): decode at %.1f %% of the bound with those counted\n",
                       (long long)n_depth, kvb / 1e6, moe_kv_type_name(mp.kv_type), pct_kv);
            printf("  weight products: %.1f %% of the decode time, streaming at %.1f %% of the measured bandwidth"
                   " (the rest: attention, norms, routing, the pool's steps%s)\n", sps.median, spp.median,
                   off ? ", expert reads" : "");
            printf("  thread pool: %.1f us waiting per token (%.2f us per layer)\n", wait_us_tok, wait_us_layer);
            printf("  CPU share during decode: %.0f %% of %d cores (below ~95 %%: other processes held the cores)\n",
                   ssh.median, nt);
        }
        printf("  peak RSS %.1f MiB (file %.1f MiB, context %.1f MiB; limit file + 5 %% + 50 MiB + context = %.1f MiB)\n",
               peak / 1048576.0, fbytes / 1048576.0, ctx_bytes / 1048576.0, rss_limit / 1048576.0);
        cli_offload_print_stats(sub, off, stdout);
    }
    rc = 0;
done:
    free(logits);
    free(toks);
    free(pp);
    free(tg);
    free(bws);
    free(pcts);
    free(shares);
    free(prod_share);
    free(prod_pct);
    moe_context_free(c);
    cli_offload_close(off, &off_opts);
    moe_model_free(m);
    return rc;
}
