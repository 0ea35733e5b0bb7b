/* cmd_run.c — `moe run`: generate text from a prompt, streamed as it is produced; and the
 * generation engine `moe chat` shares (cli_gen_*: model + tokenizer + context + sampler,
 * the decode loop, UTF-8-safe streaming, timings). */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ options */

void cli_gen_opts_default(cli_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->sp = moe_sampler_default_params();
    cli_offload_opts_default(&o->offload);
    o->repeat_last_n = o->sp.penalty_last_n;
}

int cli_gen_parse_opt(const char *sub, int argc, char **argv, int *i, cli_gen_opts *o) {
    const char *a = argv[*i];
    int64_t v;
    double d;
    int r = cli_offload_parse_opt(sub, argc, argv, i, &o->offload);
    if (r) return r;
    if (!strcmp(a, "--dump-routing")) return cli_arg_str(sub, argc, argv, i, &o->dump_routing) ? 1 : -1;
#define IS(s) (strcmp(a, (s)) == 0)
    if (IS("-m") || IS("--model")) return cli_arg_str(sub, argc, argv, i, &o->model) ? 1 : -1;
    if (IS("-t") || IS("--threads")) {
        if (!cli_arg_int(sub, argc, argv, i, -1, 1024, &v)) return -1;
        o->threads = (int)v;
        return 1;
    }
    if (IS("-c") || IS("--ctx-size")) {
        if (!cli_arg_int(sub, argc, argv, i, 0, INT32_MAX, &v)) return -1;
        o->n_ctx = v;
        return 1;
    }
    if (IS("--temp")) {
        if (!cli_arg_float(sub, argc, argv, i, &d)) return -1;
        o->sp.temp = (float)d;
        return 1;
    }
    if (IS("--top-k")) {
        if (!cli_arg_int(sub, argc, argv, i, INT32_MIN, INT32_MAX, &v)) return -1;
        o->sp.top_k = (int32_t)v;
        return 1;
    }
    if (IS("--top-p") || IS("--min-p") || IS("--repeat-penalty") || IS("--presence-penalty") ||
        IS("--frequency-penalty")) {
        if (!cli_arg_float(sub, argc, argv, i, &d)) return -1;
        if (IS("--top-p")) o->sp.top_p = (float)d;
        else if (IS("--min-p")) o->sp.min_p = (float)d;
        else if (IS("--repeat-penalty")) o->sp.penalty_repeat = (float)d;
        else if (IS("--presence-penalty")) o->sp.penalty_present = (float)d;
        else o->sp.penalty_freq = (float)d;
        return 1;
    }
    if (IS("--repeat-last-n")) {
        if (!cli_arg_int(sub, argc, argv, i, -1, INT32_MAX, &v)) return -1;
        o->repeat_last_n = v;
        return 1;
    }
    if (IS("-s") || IS("--seed")) {
        /* -1 asks for a random seed, as in llama.cpp */
        if (!cli_arg_int(sub, argc, argv, i, -1, UINT32_MAX, &v)) return -1;
        o->sp.seed = v < 0 ? MOE_SEED_RANDOM : (uint32_t)v;
        return 1;
    }
    if (IS("--ignore-eos")) {
        o->ignore_eos = true;
        return 1;
    }
    if (IS("-v") || IS("--verbose")) {
        o->verbose = true;
        return 1;
    }
#undef IS
    return 0;
}

void cli_gen_print_opts_help(FILE *f) {
    moe_sampler_params d = moe_sampler_default_params();
    fprintf(f,
            "  -m, --model FILE         GGUF model (default: $MOE_MODEL, then models/default.gguf\n"
            "                           next to the binary or in ../share/moe/)\n"
            "  -t, --threads N          threads (default: all cores)\n"
            "  -c, --ctx-size N         context size in tokens (default: min(training context, 4096))\n"
            "  --temp T                 temperature; 0 = greedy (default %.2f)\n"
            "  --top-k K                keep the K most likely tokens; 0 = off (default %d)\n"
            "  --top-p P                keep the smallest set with probability >= P; 1 = off (default %.2f)\n"
            "  --min-p P                drop tokens below P x the best one's probability; 0 = off (default %.2f)\n"
            "  --repeat-penalty R       penalise tokens of the last N; 1 = off (default %.2f)\n"
            "  --repeat-last-n N        the N of the penalties; 0 = off, -1 = context size (default %d)\n"
            "  --presence-penalty P     subtract P from seen tokens (default %.2f)\n"
            "  --frequency-penalty F    subtract F x count from seen tokens (default %.2f)\n"
            "  -s, --seed S             random seed; -1 = random (default -1)\n"
            "  --ignore-eos             do not stop at end-of-generation tokens\n"
            "  -v, --verbose            print the sampler settings and the seed\n"
            "  --dump-routing FILE      write the chosen experts of every (token, MoE layer) as JSON\n"
            "                           lines, in execution order (docs/FORMAT.md)\n",
            (double)d.temp, (int)d.top_k, (double)d.top_p, (double)d.min_p, (double)d.penalty_repeat,
            (int)d.penalty_last_n, (double)d.penalty_present, (double)d.penalty_freq);
    cli_offload_print_help(f);
}

/* ------------------------------------------------------------------ default model */

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

bool cli_default_model(const char *sub, char *path, size_t cap) {
    const char *env = getenv("MOE_MODEL");
    char tried[4][PATH_MAX + 64];
    int nt = 0;
    if (env && *env) {
        /* an explicit choice: never fall back to another model behind the user's back */
        snprintf(path, cap, "%s", env);
        if (file_exists(path)) return true;
        fprintf(stderr, "moe %s: no model given (-m FILE) and $MOE_MODEL=%s does not exist (looked at it only)\n", sub, env);
        return false;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        /* next to the binary; the repository root when the binary is in build/;
         * the share directory of an installed prefix */
        const char *rel[3] = {"models/default.gguf", "../models/default.gguf", "../share/moe/default.gguf"};
        for (int k = 0; k < 3; k++) {
            snprintf(path, cap, "%s/%s", exe, rel[k]);
            if (file_exists(path)) return true;
            snprintf(tried[nt++], sizeof tried[0], "%s", path);
        }
    }
    fprintf(stderr, "moe %s: no model given (-m FILE) and no default model found; looked at:\n", sub);
    for (int k = 0; k < nt; k++) fprintf(stderr, "  %s\n", tried[k]);
    return false;
}

/* ------------------------------------------------------------------ tokenizer adapter */

/* The only place that calls the tokenizer API. */
typedef struct tok_adapter {
    moe_tokenizer *t;
} tok_adapter;

static bool tok_load(tok_adapter *ta, const moe_model *m) {
    ta->t = moe_tokenizer_load(moe_model_gguf(m));
    return ta->t != NULL;
}
static void tok_free(tok_adapter *ta) { moe_tokenizer_free(ta->t); }
static bool tok_encode(tok_adapter *ta, const char *text, size_t len, bool add_bos, bool special,
                       int32_t **ids, int64_t *n) {
    size_t nn = 0;
    *ids = NULL;
    if (moe_tokenizer_encode(ta->t, text, len, add_bos, special, ids, &nn) != MOE_OK) return false;
    *n = (int64_t)nn;
    return true;
}
/* The bytes of one token as printed (control tokens as ""), or -1. */
static int tok_piece(tok_adapter *ta, int32_t id, bool special, char *buf, size_t cap) {
    size_t len = 0;
    const char *p = moe_tokenizer_piece(ta->t, id, special, &len);
    if (!p) return -1;
    if (len > cap) len = cap;
    memcpy(buf, p, len);
    return (int)len;
}
static bool tok_is_eog(tok_adapter *ta, int32_t id) { return moe_tokenizer_is_eog(ta->t, id); }
static bool tok_add_bos(tok_adapter *ta) { return moe_tokenizer_add_bos(ta->t); }
static int32_t tok_bos(tok_adapter *ta) { return moe_tokenizer_bos(ta->t); }
static int32_t tok_eos(tok_adapter *ta) { return moe_tokenizer_eos(ta->t); }

/* ------------------------------------------------------------------ the engine */

struct cli_gen {
    const char *sub;
    moe_model *model;
    moe_context *ctx;
    moe_sampler *smpl;
    moe_offload *offload;   /* --mem: experts read through the expert cache */
    cli_offload_opts offload_opts;
    FILE *route_f;          /* --dump-routing */
    tok_adapter tok;
    bool have_tok;
    int64_t n_vocab;
    float *logits;          /* the last row */
    bool have_logits;
    bool ignore_eos;
    char bos_text[64], eos_text[64];
    double t_load;
    bool in_memory;         /* the model was read into memory (moe_model_params.no_mmap) */
    moe_kv_type kv_type;    /* the context's KV cache (--kv-type) */
    double t_prompt;
    int64_t n_prompt;
    double t_gen;
    int64_t n_gen;
    char pend[8];           /* bytes of an unfinished UTF-8 character */
    int n_pend;
};

cli_gen *cli_gen_open(const char *sub, const cli_gen_opts *o) {
    char defpath[PATH_MAX + 64];
    const char *path = o->model;
    moe_model_params mp;
    if (!path) {
        if (!cli_default_model(sub, defpath, sizeof defpath)) return NULL;
        path = defpath;
    }
    if (!cli_offload_model_params(sub, &o->offload, o->threads, path, &mp)) return NULL;
    cli_gen *g = calloc(1, sizeof *g);
    if (!g) {
        cli_fail(sub, "out of memory");
        return NULL;
    }
    g->sub = sub;
    g->ignore_eos = o->ignore_eos;
    double t0 = now_s();
    g->model = moe_model_load(path, &mp);
    if (!g->model) goto fail_lib;
    g->ctx = moe_context_init(g->model, o->n_ctx);
    if (!g->ctx) goto fail_lib;
    if (o->dump_routing) {
        if (!(g->route_f = fopen(o->dump_routing, "w"))) {
            cli_fail(sub, "%s: cannot create: %s", o->dump_routing, strerror(errno));
            goto fail;
        }
        moe_context_set_routing_hook(g->ctx, cli_routing_jsonl, g->route_f);
    }
    g->offload_opts = o->offload;
    if ((o->offload.params.budget || o->offload.profile_path) &&
        !(g->offload = cli_offload_attach(sub, &g->offload_opts, g->model, g->ctx)))
        goto fail;
    g->n_vocab = moe_model_n_vocab(g->model);
    g->logits = malloc((size_t)g->n_vocab * sizeof *g->logits);
    if (!g->logits) {
        cli_fail(sub, "out of memory for %lld logits", (long long)g->n_vocab);
        goto fail;
    }
    g->have_tok = tok_load(&g->tok, g->model);
    if (!g->have_tok && o->verbose)
        fprintf(stderr, "moe %s: no tokenizer (%s): token ids only\n", sub, moe_last_error());
    if (g->have_tok) {
        int32_t b = tok_bos(&g->tok), e = tok_eos(&g->tok);
        if (b >= 0) {
            int l = tok_piece(&g->tok, b, true, g->bos_text, sizeof g->bos_text - 1);
            g->bos_text[l > 0 ? l : 0] = 0;
        }
        if (e >= 0) {
            int l = tok_piece(&g->tok, e, true, g->eos_text, sizeof g->eos_text - 1);
            g->eos_text[l > 0 ? l : 0] = 0;
        }
    }
    moe_sampler_params sp = o->sp;
    int64_t last_n = o->repeat_last_n < 0 ? moe_context_n_ctx(g->ctx) : o->repeat_last_n;
    sp.penalty_last_n = (int32_t)(last_n > INT32_MAX ? INT32_MAX : last_n);
    g->smpl = moe_sampler_init(&sp);
    if (!g->smpl) goto fail_lib;
    g->t_load = now_s() - t0;
    g->in_memory = mp.no_mmap;
    g->kv_type = mp.kv_type;
    if (o->verbose)
        fprintf(stderr,
                "moe %s: sampler: repeat_last_n = %d, repeat_penalty = %.3f, frequency_penalty = %.3f, "
                "presence_penalty = %.3f, top_k = %d, top_p = %.3f, min_p = %.3f, temp = %.3f, seed = %u\n"
                "moe %s: chain: penalties -> top-k -> top-p -> min-p -> temperature -> dist\n",
                sub, (int)sp.penalty_last_n, (double)sp.penalty_repeat, (double)sp.penalty_freq,
                (double)sp.penalty_present, (int)sp.top_k, (double)sp.top_p, (double)sp.min_p, (double)sp.temp,
                moe_sampler_seed(g->smpl), sub);
    return g;
fail_lib:
    cli_fail_lib(sub);
fail:
    cli_gen_close(g);
    return NULL;
}

void cli_gen_close(cli_gen *g) {
    if (!g) return;
    if (g->have_tok) tok_free(&g->tok);
    moe_sampler_free(g->smpl);
    moe_context_free(g->ctx);
    cli_offload_close(g->offload, &g->offload_opts);
    if (g->route_f && fclose(g->route_f) != 0) cli_fail(g->sub, "write error on the routing trace");
    moe_model_free(g->model);
    free(g->logits);
    free(g);
}

bool cli_gen_tokenize(cli_gen *g, const char *text, size_t len, bool add_bos, bool special,
                      int32_t **ids, int64_t *n) {
    if (!g->have_tok) {
        cli_fail(g->sub, "the model has no usable tokenizer: give the prompt as token ids (--prompt-tokens)");
        return false;
    }
    if (!tok_encode(&g->tok, text, len, add_bos, special, ids, n)) {
        cli_fail_lib(g->sub);
        return false;
    }
    return true;
}

bool cli_gen_add_bos(const cli_gen *g) { return g->have_tok ? tok_add_bos((tok_adapter *)&g->tok) : true; }
const char *cli_gen_bos_text(const cli_gen *g) { return g->bos_text; }
const char *cli_gen_eos_text(const cli_gen *g) { return g->eos_text; }
int64_t cli_gen_pos(const cli_gen *g) { return moe_context_pos(g->ctx); }
int64_t cli_gen_n_ctx(const cli_gen *g) { return moe_context_n_ctx(g->ctx); }
uint32_t cli_gen_seed(const cli_gen *g) { return moe_sampler_seed(g->smpl); }

const char *cli_gen_chat_template(const cli_gen *g) {
    const char *s = NULL;
    if (moe_gguf_get_str(moe_model_gguf(g->model), "tokenizer.chat_template", &s) != MOE_OK) return NULL;
    return s;
}

bool cli_gen_feed(cli_gen *g, const int32_t *ids, int64_t n) {
    if (n <= 0) return true;
    if (moe_context_pos(g->ctx) + n > moe_context_n_ctx(g->ctx)) {
        cli_fail(g->sub, "the prompt (%lld tokens) does not fit in the context (%lld of %lld used); raise -c",
                 (long long)n, (long long)moe_context_pos(g->ctx), (long long)moe_context_n_ctx(g->ctx));
        return false;
    }
    double t0 = now_s();
    if (moe_eval(g->ctx, ids, n, g->logits, MOE_EVAL_LAST_ONLY) != MOE_OK) {
        cli_fail_lib(g->sub);
        return false;
    }
    g->t_prompt += now_s() - t0;
    g->n_prompt += n;
    g->have_logits = true;
    for (int64_t i = 0; i < n; i++) moe_sampler_accept(g->smpl, ids[i]);
    return true;
}

/* How many leading bytes of s[0..n) can be printed without cutting a UTF-8 character:
 * all but an incomplete sequence at the end. Invalid bytes pass through unchanged. */
static int utf8_complete(const char *s, int n) {
    for (int back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue;  /* continuation: look further back */
        int need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

static bool append(char **buf, size_t *len, const char *s, size_t n) {
    char *q = realloc(*buf, *len + n + 1);
    if (!q) return false;
    memcpy(q + *len, s, n);
    *len += n;
    q[*len] = 0;
    *buf = q;
    return true;
}

/* Streams a token's bytes: held bytes of a character cut between tokens go out with
 * the token that completes them. A piece is at most 512 bytes here (tok_piece's buffer;
 * vocabulary entries are far shorter). */
static void emit(cli_gen *g, const char *piece, int n, FILE *out, char **text, size_t *text_len) {
    char buf[512 + 8];
    int m = 0;
    memcpy(buf, g->pend, (size_t)g->n_pend);
    m = g->n_pend;
    if (n > 512) n = 512;
    memcpy(buf + m, piece, (size_t)n);
    m += n;
    int ok = utf8_complete(buf, m);
    if (out && ok) {
        fwrite(buf, 1, (size_t)ok, out);
        fflush(out);
    }
    if (text && ok && !append(text, text_len, buf, (size_t)ok)) cli_fail(g->sub, "out of memory");
    g->n_pend = m - ok;
    memcpy(g->pend, buf + ok, (size_t)g->n_pend);
}

static void emit_flush(cli_gen *g, FILE *out, char **text, size_t *text_len) {
    if (!g->n_pend) return;
    if (out) {
        fwrite(g->pend, 1, (size_t)g->n_pend, out);
        fflush(out);
    }
    if (text) append(text, text_len, g->pend, (size_t)g->n_pend);
    g->n_pend = 0;
}

bool cli_gen_generate(cli_gen *g, int64_t n_max, FILE *out, char **text, size_t *text_len,
                      int32_t **ids, int64_t *n_ids) {
    if (!g->have_logits) {
        cli_fail(g->sub, "nothing to continue: the prompt is empty");
        return false;
    }
    size_t tl_dummy = 0;
    if (!text_len) text_len = &tl_dummy;
    bool ok = true;
    for (int64_t k = 0; n_max < 0 || k < n_max; k++) {
        double t0 = now_s();
        int32_t tok = moe_sampler_sample(g->smpl, g->logits, (int32_t)g->n_vocab);
        if (tok < 0) {
            ok = false;
            cli_fail_lib(g->sub);
            break;
        }
        if (g->have_tok && !g->ignore_eos && tok_is_eog(&g->tok, tok)) {
            g->t_gen += now_s() - t0;
            g->n_gen++;
            break;
        }
        moe_sampler_accept(g->smpl, tok);
        if (ids) {
            int32_t *q = realloc(*ids, (size_t)(*n_ids + 1) * sizeof *q);
            if (!q) { ok = false; cli_fail(g->sub, "out of memory"); break; }
            q[(*n_ids)++] = tok;
            *ids = q;
        }
        if (g->have_tok) {
            char piece[512];
            int n = tok_piece(&g->tok, tok, false, piece, sizeof piece);
            if (n > 0) emit(g, piece, n, out, text, text_len);
        } else if (out) {
            fprintf(out, "%s%d", k ? " " : "", (int)tok);
            fflush(out);
        }
        g->n_gen++;
        if (moe_context_pos(g->ctx) >= moe_context_n_ctx(g->ctx)) {
            g->t_gen += now_s() - t0;
            fprintf(stderr, "\nmoe %s: context full (%lld tokens): stopping\n", g->sub, (long long)moe_context_n_ctx(g->ctx));
            break;
        }
        if (moe_eval(g->ctx, &tok, 1, g->logits, MOE_EVAL_LAST_ONLY) != MOE_OK) {
            ok = false;
            cli_fail_lib(g->sub);
            break;
        }
        g->t_gen += now_s() - t0;
    }
    emit_flush(g, out, text, text_len);
    return ok;
}

void cli_gen_print_stats(const cli_gen *g, FILE *f) {
    fprintf(f, "\nmoe %s: load time   = %10.2f ms (%s)\n", g->sub, 1e3 * g->t_load, g->in_memory ? "read into memory" : "mapped");
    fprintf(f, "moe %s: prompt eval = %10.2f ms / %5lld tokens (%8.2f tokens/s)\n", g->sub, 1e3 * g->t_prompt,
            (long long)g->n_prompt, g->t_prompt > 0 ? (double)g->n_prompt / g->t_prompt : 0.0);
    fprintf(f, "moe %s: generation  = %10.2f ms / %5lld tokens (%8.2f tokens/s)\n", g->sub, 1e3 * g->t_gen,
            (long long)g->n_gen, g->t_gen > 0 ? (double)g->n_gen / g->t_gen : 0.0);
    cli_offload_print_stats(g->sub, g->offload, f);
}

void cli_gen_json_stats(const cli_gen *g, FILE *f) {
    fprintf(f, "\"seed\": %u, \"weights\": \"%s\", \"kv_type\": \"%s\", \"load_ms\": ", moe_sampler_seed(g->smpl),
            g->in_memory ? "memory" : "mapped", moe_kv_type_name(g->kv_type));
    cli_json_num(f, 1e3 * g->t_load);
    fprintf(f, ", \"n_prompt\": %lld, \"prompt_ms\": ", (long long)g->n_prompt);
    cli_json_num(f, 1e3 * g->t_prompt);
    fprintf(f, ", \"prompt_tokens_per_s\": ");
    cli_json_num(f, g->t_prompt > 0 ? (double)g->n_prompt / g->t_prompt : NAN);
    fprintf(f, ", \"n_gen\": %lld, \"gen_ms\": ", (long long)g->n_gen);
    cli_json_num(f, 1e3 * g->t_gen);
    fprintf(f, ", \"gen_tokens_per_s\": ");
    cli_json_num(f, g->t_gen > 0 ? (double)g->n_gen / g->t_gen : NAN);
    cli_offload_json_stats(g->offload, f);
}

/* ------------------------------------------------------------------ moe run */

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: moe run [-m MODEL] (-p PROMPT | -f FILE | --prompt-tokens \"ID ...\" | --tokens FILE) [options]\n\n"
            "Generates text from a prompt and streams it to stdout; timings go to stderr.\n\n"
            "  -p, --prompt TEXT        the prompt\n"
            "  -f, --file FILE          read the prompt from FILE (byte-exact)\n"
            "  --prompt-tokens \"IDS\"    the prompt as token ids (spaces or commas between them)\n"
            "  --tokens FILE            the prompt as token ids read from FILE\n"
            "  -n, --n-predict N        tokens to generate; -1 = until end of generation or a full\n"
            "                           context (default -1)\n"
            "  --no-bos                 do not add the BOS token the model asks for\n"
            "  --json                   print one JSON object (prompt ids, generated ids and text,\n"
            "                           timings, seed) instead of streaming\n");
    cli_gen_print_opts_help(f);
}

static bool read_file(const char *sub, const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_fail(sub, "%s: %s", path, strerror(errno));
        return false;
    }
    *buf = NULL;
    *len = 0;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (!append(buf, len, chunk, n)) {
            fclose(f);
            cli_fail(sub, "out of memory reading %s", path);
            return false;
        }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        cli_fail(sub, "%s: read error", path);
        return false;
    }
    if (!*buf) append(buf, len, "", 0);
    return true;
}

static bool parse_ids(const char *sub, const char *s, int32_t **ids, int64_t *n) {
    *ids = NULL;
    *n = 0;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            cli_usage(sub, "token ids: '%.20s' is not a token id", s);
            free(*ids);
            return false;
        }
        int32_t *q = realloc(*ids, (size_t)(*n + 1) * sizeof *q);
        if (!q) {
            free(*ids);
            cli_fail(sub, "out of memory");
            return false;
        }
        q[(*n)++] = (int32_t)v;
        *ids = q;
        s = end;
    }
    return true;
}

int cmd_run(int argc, char **argv) {
    const char *sub = "run";
    cli_gen_opts o;
    cli_gen_opts_default(&o);
    const char *prompt = NULL, *prompt_file = NULL, *ids_str = NULL, *ids_file = NULL;
    int64_t n_predict = -1;
    bool no_bos = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_gen_parse_opt(sub, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (cli_is_help(a)) {
            run_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!cli_arg_str(sub, argc, argv, &i, &prompt)) return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!cli_arg_str(sub, argc, argv, &i, &prompt_file)) return 2;
        } else if (!strcmp(a, "--prompt-tokens")) {
            if (!cli_arg_str(sub, argc, argv, &i, &ids_str)) return 2;
        } else if (!strcmp(a, "--tokens")) {
            if (!cli_arg_str(sub, argc, argv, &i, &ids_file)) return 2;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!cli_arg_int(sub, argc, argv, &i, -1, INT32_MAX, &n_predict)) return 2;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else {
            return cli_usage(sub, "unknown option %s", a);
        }
    }
    int nsrc = (prompt != NULL) + (prompt_file != NULL) + (ids_str != NULL) + (ids_file != NULL);
    if (nsrc == 0) return cli_usage(sub, "no prompt: give -p TEXT, -f FILE, --prompt-tokens or --tokens");
    if (nsrc > 1) return cli_usage(sub, "give only one of -p, -f, --prompt-tokens, --tokens");

    int32_t *ids = NULL;
    int64_t n_ids = 0;
    char *text = NULL;
    size_t text_len = 0;
    if (ids_str && !parse_ids(sub, ids_str, &ids, &n_ids)) return 2;
    if (ids_file) {
        if (!read_file(sub, ids_file, &text, &text_len)) return 1;
        bool ok = parse_ids(sub, text, &ids, &n_ids);
        free(text);
        text = NULL;
        if (!ok) return 2;
    }
    if (!cli_offload_opts_check(sub, &o.offload)) {
        free(ids);
        return 2;
    }
    if (prompt_file && !read_file(sub, prompt_file, &text, &text_len)) return 1;

    cli_gen *g = cli_gen_open(sub, &o);
    if (!g) {
        free(ids);
        free(text);
        return 1;
    }
    int rc = 1;
    if (prompt || prompt_file) {
        const char *t = prompt ? prompt : text;
        size_t tl = prompt ? strlen(prompt) : text_len;
        /* special tokens written in the prompt (<s>, <|im_start|>) are parsed, as llama.cpp's
         * CLI does */
        if (!cli_gen_tokenize(g, t, tl, !no_bos && cli_gen_add_bos(g), true, &ids, &n_ids)) goto done;
    }
    if (n_ids == 0) {
        cli_fail(sub, "the prompt has no tokens");
        goto done;
    }
    if (!cli_gen_feed(g, ids, n_ids)) goto done;
    char *out_text = NULL;
    size_t out_len = 0;
    int32_t *gen = NULL;
    int64_t n_gen = 0;
    bool ok = cli_gen_generate(g, n_predict, json ? NULL : stdout, json ? &out_text : NULL, &out_len,
                               json ? &gen : NULL, &n_gen);
    if (json) {
        printf("{\"prompt_tokens\": [");
        for (int64_t i = 0; i < n_ids; i++) printf("%s%d", i ? ", " : "", (int)ids[i]);
        printf("], \"tokens\": [");
        for (int64_t i = 0; i < n_gen; i++) printf("%s%d", i ? ", " : "", (int)gen[i]);
        printf("], \"text\": ");
        cli_json_str(stdout, out_text ? out_text : "", out_len);
        printf(", ");
        cli_gen_json_stats(g, stdout);
        printf("}\n");
    } else {
        printf("\n");
    }
    fflush(stdout);
    cli_gen_print_stats(g, stderr);
    free(out_text);
    free(gen);
    rc = ok ? 0 : 1;
done:
    cli_gen_close(g);
    free(ids);
    free(text);
    return rc;
}
