/* init.c — `moe init` as a library call (moe_init_model in moe.h): a randomly initialised
 * model of a given shape with the tokenizer of a vocabulary file, written as a GGUF file
 * in llama.cpp's conventions (the metadata keys and tensor names of
 * ../shared/fixtures/mkmoe.py). */
#include "train/tmodel.h"

#include <stdio.h>
#include <stdlib.h>

void moe_init_default_params(moe_init_params *p) {
    memset(p, 0, sizeof *p);
    p->arch = "mixtral";
    p->n_layer = 4;
    p->n_embd = 256;
    p->n_head = 8;
    p->n_head_kv = 4;
    p->n_ff = 512;
    p->n_expert = 8;
    p->n_expert_used = 2;
    p->n_ctx = 4096;
    p->seed = 1;
}

/* A set of the kept token texts (open addressing on FNV-1a), for filtering merges. */
typedef struct {
    const moe_gguf_str **slot;
    uint64_t mask;
} str_set;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static bool set_init(str_set *set, const moe_gguf_str *toks, int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    set->slot = moe_calloc(cap, sizeof *set->slot);
    set->mask = cap - 1;
    if (!set->slot) return false;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = fnv(toks[i].ptr, (size_t)toks[i].len) & set->mask;
        while (set->slot[h]) h = (h + 1) & set->mask;
        set->slot[h] = &toks[i];
    }
    return true;
}

/* Is a·b (the concatenation of two pieces) a kept token? */
static bool set_has(const str_set *set, const char *a, size_t la, const char *b, size_t lb) {
    char buf[512];
    if (la + lb > sizeof buf) return false;
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    for (uint64_t h = fnv(buf, la + lb) & set->mask; set->slot[h]; h = (h + 1) & set->mask)
        if (set->slot[h]->len == la + lb && !memcmp(set->slot[h]->ptr, buf, la + lb)) return true;
    return false;
}

/* Copies the tokenizer.* keys, the token arrays cut to n tokens. A BPE merge survives
 * the cut when both of its parts and their concatenation are still tokens (so the cut
 * vocabulary still tokenizes); special-token ids beyond the cut are dropped. */
static moe_status copy_tokenizer(moe_gguf_writer *w, const moe_gguf *v, int64_t n_tok, int64_t n) {
    moe_status st = MOE_OK;
    const moe_gguf_str *toks = NULL;
    uint64_t nt = 0;
    moe_gguf_get_arr(v, "tokenizer.ggml.tokens", MOE_GGUF_STRING, (const void **)&toks, &nt);
    for (int64_t i = 0; i < moe_gguf_n_kv(v) && !st; i++) {
        const char *key = moe_gguf_kv_key(v, i);
        const moe_gguf_value *val = moe_gguf_kv_value(v, i);
        if (strncmp(key, "tokenizer.", 10)) continue;
        if (n == n_tok) { st = moe_gguf_writer_set_value(w, key, val); continue; }
        if (val->type == MOE_GGUF_ARRAY && val->v.arr.n == (uint64_t)n_tok &&
            (!strcmp(key, "tokenizer.ggml.tokens") || !strcmp(key, "tokenizer.ggml.scores") ||
             !strcmp(key, "tokenizer.ggml.token_type"))) {
            moe_gguf_value cut = *val;
            cut.v.arr.n = (uint64_t)n;
            st = moe_gguf_writer_set_value(w, key, &cut);
        } else if (!strcmp(key, "tokenizer.ggml.merges") && val->type == MOE_GGUF_ARRAY && val->v.arr.type == MOE_GGUF_STRING) {
            const moe_gguf_str *mg = val->v.arr.data;
            const char **keep = moe_malloc((size_t)val->v.arr.n * sizeof *keep + 1);
            str_set set;
            if (!keep || !set_init(&set, toks, n)) { free(keep); return MOE_ERR_NOMEM; }
            uint64_t nk = 0;
            for (uint64_t m = 0; m < val->v.arr.n; m++) {
                const char *sp = memchr(mg[m].ptr, ' ', (size_t)mg[m].len);
                if (!sp) continue;
                size_t la = (size_t)(sp - mg[m].ptr), lb = (size_t)mg[m].len - la - 1;
                if (set_has(&set, mg[m].ptr, la, "", 0) && set_has(&set, sp + 1, lb, "", 0) &&
                    set_has(&set, mg[m].ptr, la, sp + 1, lb))
                    keep[nk++] = mg[m].ptr;
            }
            st = moe_gguf_writer_set_arr(w, key, MOE_GGUF_STRING, keep, nk);
            free(keep);
            free(set.slot);
        } else if (strstr(key, "_token_id") && val->type != MOE_GGUF_ARRAY && val->type != MOE_GGUF_STRING) {
            int64_t id;
            if (moe_gguf_get_i64(v, key, &id) == MOE_OK && id >= 0 && id < n) st = moe_gguf_writer_set_value(w, key, val);
        } else {
            st = moe_gguf_writer_set_value(w, key, val);
        }
    }
    return st;
}

moe_status moe_init_model(const moe_init_params *p, const char *vocab_path, const char *out_path) {
    moe_gguf *v = moe_gguf_open(vocab_path);
    if (!v) return moe_last_status() ? moe_last_status() : MOE_ERR_IO;
    const void *toks;
    uint64_t n_tok = 0;
    moe_status st = moe_gguf_get_arr(v, "tokenizer.ggml.tokens", MOE_GGUF_STRING, &toks, &n_tok);
    if (st) {
        moe_gguf_close(v);
        return moe_error(MOE_ERR_FORMAT, "%s: no tokenizer.ggml.tokens (not a vocabulary file?)", vocab_path);
    }
    int64_t n = p->vocab_size > 0 ? MOE_MIN(p->vocab_size, (int64_t)n_tok) : (int64_t)n_tok;
    tm_shape s = {.arch = p->arch, .n_layer = p->n_layer, .n_embd = p->n_embd, .n_head = p->n_head,
                  .n_head_kv = p->n_head_kv, .n_ff = p->n_ff, .n_expert = p->n_expert,
                  .n_expert_used = p->n_expert_used, .shared_ff = p->shared_ff, .dense_layers = p->dense_layers,
                  .dense_ff = p->dense_ff, .n_ctx = p->n_ctx, .n_vocab = n};
    tm_config c;
    tm_model m;
    bool have_m = false;
    moe_gguf_writer *w = NULL;
    void *buf = NULL;
    if ((st = tm_config_make(&c, &s))) goto done;
    c.tied = p->tied;
    if ((st = tm_model_init(&m, &c, NULL))) goto done;
    have_m = true;
    tm_model_init_random(&m, p->seed);
    if (!(w = moe_gguf_writer_init())) { st = MOE_ERR_NOMEM; goto done; }
    char name[96];
    snprintf(name, sizeof name, "moe-init-%s-%llu", p->arch, (unsigned long long)p->seed);
    if ((st = moe_gguf_writer_set_str(w, "general.architecture", c.arch->name)) ||
        (st = moe_gguf_writer_set_str(w, "general.name", name)) || (st = copy_tokenizer(w, v, (int64_t)n_tok, n)))
        goto done;
    /* the router of a fresh model is the architecture's own: no moe.router.* keys */
    if ((st = tm_model_to_writer(&m, w, NULL, false, p->f16, &buf))) goto done;
    st = moe_gguf_writer_write(w, out_path);
done:
    moe_gguf_writer_free(w);
    free(buf);
    if (have_m) tm_model_free(&m);
    moe_gguf_close(v);
    return st;
}
