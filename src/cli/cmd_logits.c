/* cmd_logits.c — `moe logits`: the logits of a token sequence, as raw float32 rows (the
 * layout of llama.cpp's reference .logits files), optionally with the routing trace. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moe logits -m MODEL.gguf --tokens FILE -o OUT.f32 [options]\n\n"
            "Evaluates the token ids in FILE (whitespace-separated; '-' reads stdin) as one sequence\n"
            "from position 0 and writes n_tokens × n_vocab float32 (little-endian) to OUT: row i\n"
            "holds the logits after token i.\n\n"
            "options:\n"
            "  -m, --model FILE          the model (GGUF)\n"
            "  --tokens FILE             token ids ('-' = stdin)\n"
            "  -o, --output FILE         where the logits go\n"
            "  -t, --threads N           threads (default: all cores)\n"
            "  -c, --ctx-size N          context size (default: the number of tokens)\n"
            "  --token-by-token          evaluate one token at a time (decode path) instead of in batches\n"
            "  --dump-routing FILE       write the chosen experts of every (token, MoE layer) as JSON lines\n"
            "                            (docs/FORMAT.md, \"Routing traces\")\n");
    cli_offload_print_help(f);
}

/* Reads whitespace-separated integers; ranges are checked against the model later. */
static int read_tokens(const char *path, int32_t **out, int64_t *n_out) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) return cli_fail("logits", "%s: cannot open: %s", path, strerror(errno));
    int64_t n = 0, cap = 256;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    char word[64];
    int rc = 0;
    while (v && fscanf(f, "%63s", word) == 1) {
        char *end;
        errno = 0;
        long long x = strtoll(word, &end, 10);
        if (errno || *end || end == word || x < INT32_MIN || x > INT32_MAX) {
            rc = cli_fail("logits", "%s: '%s' (token %lld) is not a token id", path, word, (long long)n);
            break;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[n++] = (int32_t)x;
    }
    if (!rc && (!v || ferror(f))) rc = cli_fail("logits", "%s: read error or out of memory", path);
    if (f != stdin) fclose(f);
    if (!rc && n == 0) rc = cli_fail("logits", "%s: no token ids", path);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* Routing events are kept and written sorted by (position, layer): the order a decoder
 * meets them, which is what the expert-cache simulator replays. */
typedef struct {
    int64_t pos;
    int32_t token;
    int layer, k;
    int64_t first;    /* into ids / weights */
} route_rec;

typedef struct {
    route_rec *recs;
    int64_t n, cap;
    int32_t *ids;
    float *w;
    int64_t n_ids, cap_ids;
    bool oom;
} route_log;

static void on_route(void *user, const moe_routing_event *ev) {
    route_log *L = user;
    if (L->oom) return;
    if (L->n == L->cap) {
        int64_t nc = L->cap ? 2 * L->cap : 1024;
        route_rec *r = realloc(L->recs, (size_t)nc * sizeof *r);
        if (!r) { L->oom = true; return; }
        L->recs = r;
        L->cap = nc;
    }
    while (L->n_ids + ev->k > L->cap_ids) {
        int64_t nc = L->cap_ids ? 2 * L->cap_ids : 4096;
        int32_t *ni = realloc(L->ids, (size_t)nc * sizeof *ni);
        if (ni) L->ids = ni;
        float *nw = realloc(L->w, (size_t)nc * sizeof *nw);
        if (nw) L->w = nw;
        if (!ni || !nw) { L->oom = true; return; }
        L->cap_ids = nc;
    }
    L->recs[L->n++] = (route_rec){ev->pos, ev->token, ev->layer, ev->k, L->n_ids};
    memcpy(L->ids + L->n_ids, ev->experts, (size_t)ev->k * sizeof *L->ids);
    memcpy(L->w + L->n_ids, ev->weights, (size_t)ev->k * sizeof *L->w);
    L->n_ids += ev->k;
}

static int cmp_rec(const void *a, const void *b) {
    const route_rec *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return (x->layer > y->layer) - (x->layer < y->layer);
}

static int write_routing(const char *path, route_log *L) {
    if (L->oom) return cli_fail("logits", "out of memory recording the routing trace");
    qsort(L->recs, (size_t)L->n, sizeof *L->recs, cmp_rec);
    FILE *f = fopen(path, "w");
    if (!f) return cli_fail("logits", "%s: cannot create: %s", path, strerror(errno));
    for (int64_t i = 0; i < L->n; i++) {
        const route_rec *r = &L->recs[i];
        fprintf(f, "{\"pos\":%lld,\"token\":%d,\"layer\":%d,\"experts\":[", (long long)r->pos, r->token, r->layer);
        for (int j = 0; j < r->k; j++) fprintf(f, "%s%d", j ? "," : "", L->ids[r->first + j]);
        fprintf(f, "],\"weights\":[");
        for (int j = 0; j < r->k; j++) {
            if (j) fputc(',', f);
            cli_json_num(f, L->w[r->first + j]);
        }
        fprintf(f, "]}\n");
    }
    if (fclose(f) != 0) return cli_fail("logits", "%s: write error", path);
    return 0;
}

static int write_f32(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return cli_fail("logits", "%s: cannot create: %s", path, strerror(errno));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = __builtin_bswap32(u);
        fwrite(&u, 4, 1, f);
    }
#else
    fwrite(x, sizeof *x, n, f);
#endif
    if (ferror(f) | (fclose(f) != 0)) return cli_fail("logits", "%s: write error", path);
    return 0;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *out_path = NULL, *route_path = NULL;
    int64_t n_threads = 0, n_ctx = 0;
    bool tbt = false;
    cli_offload_opts off_opts;
    cli_offload_opts_default(&off_opts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (cli_is_help(a)) { usage(stdout); return 0; }
        else if ((r = cli_offload_parse_opt("logits", argc, argv, &i, &off_opts)) != 0) { if (r < 0) return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str("logits", argc, argv, &i, &model_path)) return 2; }
        else if (!strcmp(a, "--tokens")) { if (!cli_arg_str("logits", argc, argv, &i, &tok_path)) return 2; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!cli_arg_str("logits", argc, argv, &i, &out_path)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_arg_int("logits", argc, argv, &i, 1, 512, &n_threads)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { if (!cli_arg_int("logits", argc, argv, &i, 1, INT64_C(1) << 24, &n_ctx)) return 2; }
        else if (!strcmp(a, "--dump-routing")) { if (!cli_arg_str("logits", argc, argv, &i, &route_path)) return 2; }
        else if (!strcmp(a, "--token-by-token")) tbt = true;
        else return cli_usage("logits", "unknown argument '%s'", a);
    }
    if (!model_path) return cli_usage("logits", "no model given (-m MODEL.gguf)");
    if (!tok_path) return cli_usage("logits", "no token file given (--tokens FILE)");
    if (!out_path) return cli_usage("logits", "no output file given (-o OUT.f32)");

    int32_t *tokens = NULL;
    int64_t n = 0;
    int rc = read_tokens(tok_path, &tokens, &n);
    if (rc) return rc;
    moe_model_params mp;
    if (!cli_offload_model_params("logits", &off_opts, (int)n_threads, model_path, &mp)) {
        free(tokens);
        return 2;
    }
    moe_model *m = moe_model_load(model_path, &mp);
    if (!m) {
        free(tokens);
        return cli_fail_lib("logits");
    }
    const int64_t V = moe_model_n_vocab(m);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) {
            rc = cli_fail("logits", "%s: token id %d (token %lld of the file) is out of range: %s has %lld tokens",
                          tok_path, tokens[i], (long long)i, model_path, (long long)V);
            goto done;
        }
    if (n_ctx && n_ctx < n) {
        rc = cli_fail("logits", "%lld tokens do not fit a context of %lld (-c)", (long long)n, (long long)n_ctx);
        goto done;
    }
    moe_context *c = moe_context_init(m, n_ctx ? n_ctx : n);
    float *logits = c ? malloc((size_t)n * (size_t)V * sizeof *logits) : NULL;
    if (!c || !logits) {
        rc = c ? cli_fail("logits", "out of memory for %lld × %lld logits", (long long)n, (long long)V) : cli_fail_lib("logits");
        moe_context_free(c);
        free(logits);
        goto done;
    }
    moe_offload *off = NULL;
    if (off_opts.params.budget || off_opts.profile_path) {
        /* the logits we return live inside the budget too */
        uint64_t out_bytes = (uint64_t)n * (uint64_t)V * sizeof *logits;
        off_opts.params.budget = off_opts.params.budget > out_bytes ? off_opts.params.budget - out_bytes : 1;
        if (!(off = cli_offload_attach("logits", &off_opts, m, c))) {
            rc = 1;
            free(logits);
            moe_context_free(c);
            goto done;
        }
    }
    route_log L = {0};
    if (route_path) moe_context_set_routing_hook(c, on_route, &L);
    moe_status st = MOE_OK;
    if (tbt)
        for (int64_t i = 0; i < n && !st; i++) st = moe_eval(c, tokens + i, 1, logits + i * V, 0);
    else
        st = moe_eval(c, tokens, n, logits, 0);
    if (st) rc = cli_fail_lib("logits");
    if (!rc) rc = write_f32(out_path, logits, (size_t)n * (size_t)V);
    if (!rc && route_path) rc = write_routing(route_path, &L);
    if (!rc)
        fprintf(stderr, "moe logits: %lld tokens × %lld logits → %s%s%s\n", (long long)n, (long long)V, out_path,
                route_path ? ", routing → " : "", route_path ? route_path : "");
    free(L.recs);
    free(L.ids);
    free(L.w);
    free(logits);
    if (off) cli_offload_print_stats("logits", off, stderr);
    moe_context_free(c);
    cli_offload_close(off, &off_opts);
done:
    moe_model_free(m);
    free(tokens);
    return rc;
}
