/* offload_opts.c — the `--mem` family of options shared by run, chat, logits and bench
 * (and with them --no-mmap, --mmap, --kv-type): parsing, help text, attaching the
 * offloading expert provider to a context, and the statistics printed at the end. */
#include "cli/cli.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

void cli_offload_opts_default(cli_offload_opts *o) {
    memset(o, 0, sizeof *o);
    o->params = moe_offload_default_params();
}

int cli_offload_parse_opt(const char *sub, int argc, char **argv, int *i, cli_offload_opts *o) {
    const char *a = argv[*i], *s;
    if (!strcmp(a, "--mem")) return cli_arg_size(sub, argc, argv, i, &o->params.budget) ? 1 : -1;
    if (!strcmp(a, "--cache-policy")) {
        if (!cli_arg_str(sub, argc, argv, i, &s)) return -1;
        int p = moe_cache_policy_from_name(s);
        if (p < 0 || p >= MOE_CACHE_BELADY) { /* the offline references need the future */
            cli_usage(sub, "--cache-policy: '%s' is not one of lru, lfu, fifo, edgemoe", s);
            return -1;
        }
        o->params.policy = (moe_cache_policy)p;
        return 1;
    }
    if (!strcmp(a, "--profile")) return cli_arg_str(sub, argc, argv, i, &o->profile_path) ? 1 : -1;
    if (!strcmp(a, "--prefetch-n")) {
        int64_t v;
        if (!cli_arg_int(sub, argc, argv, i, 1, 256, &v)) return -1;
        o->params.prefetch_n = (int)v;
        return 1;
    }
    if (!strcmp(a, "--cache-per-layer")) { o->params.per_layer = true; return 1; }
    if (!strcmp(a, "--no-prefetch")) { o->params.prefetch = false; return 1; }
    if (!strcmp(a, "--lookahead")) { o->params.gate_lookahead = true; return 1; }
    if (!strcmp(a, "--no-lookahead")) { o->params.gate_lookahead = false; return 1; }
    if (!strcmp(a, "--no-direct-io")) { o->params.no_direct = true; return 1; }
    if (!strcmp(a, "--no-mmap")) { o->no_mmap = true; return 1; }
    if (!strcmp(a, "--mmap")) { o->mmap = true; return 1; }
    if (!strcmp(a, "--kv-type")) return cli_arg_kv_type(sub, argc, argv, i, &o->kv_type) ? 1 : -1;
    return 0;
}

bool cli_offload_opts_check(const char *sub, const cli_offload_opts *o) {
    if (o->no_mmap && o->params.budget) {
        cli_usage(sub, "--no-mmap reads the whole model into memory; it cannot be combined with --mem");
        return false;
    }
    if (o->no_mmap && o->mmap) {
        cli_usage(sub, "--mmap and --no-mmap contradict each other");
        return false;
    }
    return true;
}

bool cli_offload_model_params(const char *sub, const cli_offload_opts *o, int threads, const char *path,
                              moe_model_params *mp) {
    *mp = moe_model_default_params();
    mp->n_threads = threads;
    mp->kv_type = o->kv_type;
    if (!cli_offload_opts_check(sub, o)) return false;
    if (o->no_mmap || o->mmap || o->params.budget) {
        mp->no_mmap = o->no_mmap;
        /* --mem: the weights every token reads are copied out of the mapping and
         * interleaved (the same bytes in RSS); the experts stay on disk for the offloader */
        mp->resident_in_memory = o->params.budget && !o->mmap;
        return true;
    }
    /* The default: in memory, where the loader interleaves the weights for the kernels
     * (decode ran 22-49 % faster than from the mapping on the benchmark host,
     * docs/BENCHMARKS.md), unless that would crowd the machine: a mapping can still run
     * a model larger than the memory, slowly, where reading it in would fail. */
    struct stat sb;
    const uint64_t avail = moe_mem_available_bytes();
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return true; /* mapped: the loader names the problem */
    if (avail == 0) return true; /* no /proc/meminfo: mapped, the safe choice */
    const uint64_t need = (uint64_t)sb.st_size + (uint64_t)sb.st_size / 8 + ((uint64_t)256 << 20);
    mp->no_mmap = avail >= need;
    if (!mp->no_mmap)
        fprintf(stderr,
                "moe %s: note: %s (%.2f GiB) does not fit in the available memory (%.2f GiB) with room to spare: "
                "mapping it (slower; --mem SIZE reads experts on demand within a budget)\n",
                sub, path, (double)sb.st_size / 1073741824.0, (double)avail / 1073741824.0);
    return true;
}

void cli_offload_print_help(FILE *f) {
    fprintf(f,
            "  --mem SIZE               memory budget (700M, 2G): non-expert weights stay resident, routed\n"
            "                           experts are read from the file into a cache (default: no budget)\n"
            "  --cache-policy P         expert cache eviction: lru, lfu, fifo, edgemoe (default edgemoe)\n"
            "  --cache-per-layer        split the expert cache evenly between layers (default: shared)\n"
            "  --profile FILE           prefetch with EdgeMoE's statistical predictor (from `moe profile`)\n"
            "  --prefetch-n N           experts to prefetch per predicted layer (default: experts per token)\n"
            "  --lookahead              prefetch the next layer's experts guessed by its router applied to\n"
            "                           this layer's input (default off: wrong guesses cost bandwidth)\n"
            "  --no-prefetch            read experts on demand only (no I/O thread, no guesses)\n"
            "  --no-direct-io           read experts through the page cache instead of O_DIRECT\n"
            "  --no-mmap                read the model into memory, its weights interleaved for the kernels\n"
            "                           (the default without --mem when the model fits in the available memory)\n"
            "  --mmap                   map the model file instead: instant load, pages shared with the page\n"
            "                           cache, slower decoding (the default when the model does not fit); with\n"
            "                           --mem, the resident weights stay mapped too instead of being copied out\n"
            "                           and interleaved\n"
            "  --kv-type T              KV cache element type: f32 (default; the precision of llama.cpp's\n"
            "                           reference logits) or f16 (llama.cpp's default: half the memory,\n"
            "                           faster decoding at long contexts)\n");
}

moe_offload *cli_offload_attach(const char *sub, cli_offload_opts *o, moe_model *m, moe_context *c) {
    if (!o->params.budget) {
        if (o->profile_path) cli_fail(sub, "--profile needs --mem (it drives the expert cache's prefetching)");
        return NULL;
    }
    if (o->profile_path && !o->profile) {
        if (!(o->profile = moe_profile_load(o->profile_path))) {
            cli_fail_lib(sub);
            return NULL;
        }
        o->params.profile = o->profile;
    }
    moe_offload *off = moe_offload_init(m, c, &o->params);
    if (!off) {
        cli_fail_lib(sub);
        return NULL;
    }
    moe_offload_attach(off, c);
    return off;
}

void cli_offload_close(moe_offload *off, cli_offload_opts *o) {
    moe_offload_free(off);
    moe_profile_free(o->profile);
    o->profile = NULL;
    o->params.profile = NULL;
}

void cli_offload_print_stats(const char *sub, moe_offload *off, FILE *f) {
    if (off) {
        moe_offload_stats s;
        moe_offload_get_stats(off, &s);
        fprintf(f, "moe %s: expert cache: %lld slots x %.2f MiB (%s), hit rate %.1f%% (%lld hits, %lld misses), "
                   "%.1f MiB read, %.2f s stalled on I/O\n",
                sub, (long long)s.n_slots, s.slot_bytes / 1048576.0, s.direct_io ? "O_DIRECT" : "page cache dropped",
                100 * s.hit_rate, (long long)s.hits, (long long)s.misses,
                s.bytes_read / 1048576.0, s.stall_seconds);
        if (s.predicted)
            fprintf(f, "moe %s: prefetch: %lld experts guessed, precision %.1f%%, recall %.1f%%\n", sub,
                    (long long)s.predicted, 100 * s.prefetch_precision, 100 * s.prefetch_recall);
    }
    fprintf(f, "moe %s: peak RSS      = %10.1f MiB\n", sub, moe_peak_rss_bytes() / 1048576.0);
}

void cli_routing_jsonl(void *user, const moe_routing_event *ev) {
    FILE *f = user;
    fprintf(f, "{\"pos\":%lld,\"token\":%d,\"layer\":%d,\"experts\":[", (long long)ev->pos, ev->token, ev->layer);
    for (int j = 0; j < ev->k; j++) fprintf(f, "%s%d", j ? "," : "", ev->experts[j]);
    fprintf(f, "],\"weights\":[");
    for (int j = 0; j < ev->k; j++) {
        if (j) fputc(',', f);
        cli_json_num(f, ev->weights[j]);
    }
    fprintf(f, "]}\n");
}

void cli_offload_json_stats(moe_offload *off, FILE *f) {
    if (off) {
        moe_offload_stats s;
        moe_offload_get_stats(off, &s);
        fprintf(f, ",\"offload\":{\"slots\":%lld,\"slot_bytes\":%llu,\"direct_io\":%s,\"accesses\":%lld,\"hits\":%lld,"
                   "\"misses\":%lld,\"demand_loads\":%lld,\"waits\":%lld,\"bytes_read\":%llu,\"stall_seconds\":",
                (long long)s.n_slots, (unsigned long long)s.slot_bytes, s.direct_io ? "true" : "false",
                (long long)s.accesses, (long long)s.hits, (long long)s.misses, (long long)s.demand_loads, (long long)s.waits,
                (unsigned long long)s.bytes_read);
        cli_json_num(f, s.stall_seconds);
        fprintf(f, ",\"hit_rate\":");
        cli_json_num(f, s.hit_rate);
        fprintf(f, ",\"prefetch_precision\":");
        cli_json_num(f, s.predicted ? s.prefetch_precision : NAN);
        fprintf(f, ",\"prefetch_recall\":");
        cli_json_num(f, s.predicted ? s.prefetch_recall : NAN);
        /* per layer: null where a layer had no scored guesses */
        const char *names[2] = {"prefetch_precision_per_layer", "prefetch_recall_per_layer"};
        for (int which = 0; which < 2; which++) {
            fprintf(f, ",\"%s\":[", names[which]);
            for (int l = 0; l < moe_offload_n_layers(off); l++) {
                double pr, rc;
                bool have = moe_offload_layer_prediction(off, l, &pr, &rc);
                if (l) fputc(',', f);
                cli_json_num(f, have ? (which ? rc : pr) : NAN);
            }
            fputc(']', f);
        }
        fprintf(f, "}");
    }
    fprintf(f, ",\"peak_rss_bytes\":%llu", (unsigned long long)moe_peak_rss_bytes());
}
