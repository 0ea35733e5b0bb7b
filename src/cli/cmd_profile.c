/* cmd_profile.c — `moe profile`: runs a text through a model and records which experts
 * of each MoE layer follow which experts of the layer before (EdgeMoE's statistical
 * predictor), for `--profile` on run/chat/bench/logits with `--mem`. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    moe_profile *prof;
    int64_t batch_start;    /* position of the first token of the batch being evaluated */
    int kmax;
    int32_t *prev;          /* [batch][kmax]: the experts of the token's previous MoE layer */
    int *prev_k;            /* [batch]: how many (0: none yet) */
    int64_t events;
} profile_run;

static void on_route(void *user, const moe_routing_event *ev) {
    profile_run *r = user;
    int64_t i = ev->pos - r->batch_start;
    int k = (ev->k < r->kmax ? ev->k : r->kmax);
    if (r->prev_k[i] > 0) moe_profile_add(r->prof, ev->layer, r->prev + i * r->kmax, r->prev_k[i], ev->experts, k);
    memcpy(r->prev + i * r->kmax, ev->experts, (size_t)k * sizeof *ev->experts);
    r->prev_k[i] = k;
    r->events++;
}

static void help(void) {
    printf("usage: moe profile -m MODEL.gguf -f TEXT.txt -o PROFILE.gguf [-c CTX] [-t N] [--max-tokens N]\n\n"
           "Evaluates the text in windows of CTX tokens (default 512) and counts, for every MoE layer,\n"
           "how often each expert follows each expert of the previous MoE layer on the same token.\n"
           "Use the result with --mem ... --profile PROFILE.gguf (EdgeMoE's statistical predictor).\n");
}

int cmd_profile(int argc, char **argv) {
    const char *sub = "profile", *model = NULL, *text_path = NULL, *out = NULL;
    int64_t n_ctx = 512, threads = 0, max_tokens = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { help(); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str(sub, argc, argv, &i, &model)) return 2; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!cli_arg_str(sub, argc, argv, &i, &text_path)) return 2; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!cli_arg_str(sub, argc, argv, &i, &out)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { if (!cli_arg_int(sub, argc, argv, &i, 2, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_arg_int(sub, argc, argv, &i, 0, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--max-tokens")) { if (!cli_arg_int(sub, argc, argv, &i, 1, INT64_MAX, &max_tokens)) return 2; }
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!model || !text_path || !out) return cli_usage(sub, "-m, -f and -o are required");

    FILE *f = fopen(text_path, "rb");
    if (!f) return cli_fail(sub, "%s: cannot open", text_path);
    size_t cap = 1 << 16, len = 0, r;
    char *text = malloc(cap);
    while (text && (r = fread(text + len, 1, cap - len, f)) > 0)
        if ((len += r) == cap) { char *nt = realloc(text, cap *= 2); if (!nt) { free(text); text = NULL; } else text = nt; }
    fclose(f);
    if (!text) return cli_fail(sub, "out of memory reading %s", text_path);

    moe_model_params mp = moe_model_default_params();
    mp.n_threads = (int)threads;
    moe_model *m = moe_model_load(model, &mp);
    moe_tokenizer *tok = m ? moe_tokenizer_load(moe_model_gguf(m)) : NULL;
    moe_context *c = tok ? moe_context_init(m, n_ctx) : NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 1;
    profile_run run = {0};
    if (!c || moe_tokenizer_encode(tok, text, len, false, false, &ids, &n_ids) != MOE_OK) { cli_fail_lib(sub); goto done; }
    const moe_hparams *hp = moe_model_hparams(m);
    if (hp->n_expert <= 0) { cli_fail(sub, "%s is not an MoE model", model); goto done; }
    if (max_tokens && (size_t)max_tokens < n_ids) n_ids = (size_t)max_tokens;
    run.prof = moe_profile_init((int)hp->n_layer, (int)hp->n_expert);
    run.kmax = (int)(hp->n_expert_used > 1 ? hp->n_expert_used : 1);
    run.prev = malloc((size_t)n_ctx * (size_t)run.kmax * sizeof *run.prev);
    run.prev_k = malloc((size_t)n_ctx * sizeof *run.prev_k);
    if (!run.prof || !run.prev || !run.prev_k) { cli_fail(sub, "out of memory"); goto done; }
    moe_context_set_routing_hook(c, on_route, &run);
    for (size_t at = 0; at < n_ids; at += (size_t)n_ctx) {
        size_t n = n_ids - at < (size_t)n_ctx ? n_ids - at : (size_t)n_ctx;
        moe_context_reset(c);
        run.batch_start = 0;
        memset(run.prev_k, 0, (size_t)n_ctx * sizeof *run.prev_k);
        if (moe_eval(c, ids + at, (int64_t)n, NULL, 0) != MOE_OK) { cli_fail_lib(sub); goto done; }
        if (isatty(2)) fprintf(stderr, "\rmoe profile: %zu / %zu tokens", at + n, n_ids);
    }
    if (isatty(2)) fprintf(stderr, "\n");
    if (moe_profile_save(run.prof, out) != MOE_OK) { cli_fail_lib(sub); goto done; }
    fprintf(stderr, "moe profile: %lld routing events over %zu tokens -> %s\n", (long long)run.events, n_ids, out);
    rc = 0;
done:
    moe_profile_free(run.prof);
    free(run.prev);
    free(run.prev_k);
    free(ids);
    free(text);
    moe_context_free(c);
    moe_tokenizer_free(tok);
    moe_model_free(m);
    return rc;
}
