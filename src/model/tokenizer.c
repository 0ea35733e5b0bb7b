/* tokenizer.c — moe_tokenizer: reading `tokenizer.ggml.*` into a vocabulary the way
 * llama.cpp's llama_vocab::impl::load does (types, defaults, special ids, auto-detected
 * end-of-generation tokens), splitting special tokens out of the text
 * (tokenizer_st_partition), the encode/decode entry points, and token pieces. */
#include "model/tokenizer.h"
#include "model/unicode.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ hashing */

static uint64_t fnv1a(const char *s, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

static bool hash_init(tok_hash *h, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    h->slot = moe_calloc(cap, sizeof *h->slot);
    h->mask = cap - 1;
    return h->slot != NULL;
}

static const char *tok_text(const moe_tokenizer *t, int32_t id, size_t *n) {
    *n = t->text_len[id];
    return t->text + t->text_off[id];
}

int32_t tok_find(const moe_tokenizer *t, const char *s, size_t n) {
    for (size_t i = fnv1a(s, n, FNV_SEED) & t->by_text.mask;; i = (i + 1) & t->by_text.mask) {
        int32_t v = t->by_text.slot[i];
        if (v == 0) return -1;
        size_t len;
        const char *x = tok_text(t, v - 1, &len);
        if (len == n && memcmp(x, s, n) == 0) return v - 1;
    }
}

static uint64_t pair_hash(const char *a, size_t na, const char *b, size_t nb) {
    return fnv1a(b, nb, fnv1a(a, na, FNV_SEED) * 31 + na);
}

int32_t tok_merge_rank(const moe_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    if (!t->merges.slot) return -1;
    for (size_t i = pair_hash(a, na, b, nb) & t->merges.mask;; i = (i + 1) & t->merges.mask) {
        int32_t v = t->merges.slot[i];
        if (v == 0) return -1;
        const char *f = t->merge_text + t->merge_off[v - 1];
        uint32_t l1 = t->merge_len1[v - 1], l2 = t->merge_len2[v - 1];
        if (l1 == na && l2 == nb && memcmp(f, a, na) == 0 && memcmp(f + l1, b, nb) == 0) return v - 1;
    }
}

/* ------------------------------------------------------------------ loading */

/* GGUF token types (llama.cpp's llama_token_type) -> attributes */
static uint16_t type_to_attr(int32_t type) {
    switch (type) {
    case 1: return MOE_TOKEN_ATTR_NORMAL;
    case 2: return MOE_TOKEN_ATTR_UNKNOWN;
    case 3: return MOE_TOKEN_ATTR_CONTROL;
    case 4: return MOE_TOKEN_ATTR_USER_DEFINED;
    case 5: return MOE_TOKEN_ATTR_UNUSED;
    case 6: return MOE_TOKEN_ATTR_BYTE;
    default: return 0; /* undefined */
    }
}

static moe_status load_tokens(moe_tokenizer *t, const moe_gguf *g, const char *path) {
    const void *data;
    uint64_t n;
    moe_status st = moe_gguf_get_arr(g, "tokenizer.ggml.tokens", MOE_GGUF_STRING, &data, &n);
    if (st == MOE_ERR_NOT_FOUND)
        return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing (no vocabulary)", path);
    if (st) return st;
    if (n == 0 || n > INT32_MAX)
        return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path, (unsigned long long)n);
    const moe_gguf_str *strs = data;
    t->n_vocab = (int32_t)n;

    const float *scores_f = NULL;
    const int32_t *scores_i = NULL;
    const moe_gguf_value *sv = moe_gguf_find(g, "tokenizer.ggml.scores");
    if (sv) {
        if (sv->type != MOE_GGUF_ARRAY || (sv->v.arr.type != MOE_GGUF_F32 && sv->v.arr.type != MOE_GGUF_I32))
            return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.scores must be an array of f32 (or i32)", path);
        if (sv->v.arr.n < n)
            return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries for %llu tokens", path,
                             (unsigned long long)sv->v.arr.n, (unsigned long long)n);
        if (sv->v.arr.type == MOE_GGUF_F32) scores_f = sv->v.arr.data;
        else scores_i = sv->v.arr.data;
    }
    const int32_t *types = NULL;
    const moe_gguf_value *tv = moe_gguf_find(g, "tokenizer.ggml.token_type");
    if (tv) {
        if (tv->type != MOE_GGUF_ARRAY || tv->v.arr.type != MOE_GGUF_I32)
            return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be an array of i32", path);
        if (tv->v.arr.n < n)
            return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", path,
                             (unsigned long long)tv->v.arr.n, (unsigned long long)n);
        types = tv->v.arr.data;
    }

    /* one pool for all texts; an empty token becomes "[EMPTY_<id>]" as in llama.cpp */
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = strs[i].len ? strs[i].len : 32;
        if (len > UINT32_MAX || !moe_add_ok(total, len + 1, &total))
            return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%llu] is too long", path, (unsigned long long)i);
    }
    if (total > SIZE_MAX / 2) return moe_error(MOE_ERR_NOMEM, "%s: vocabulary too large", path);
    t->text = moe_malloc((size_t)total);
    t->text_off = moe_malloc((size_t)n * sizeof *t->text_off);
    t->text_len = moe_malloc((size_t)n * sizeof *t->text_len);
    t->score = moe_malloc((size_t)n * sizeof *t->score);
    t->attr = moe_malloc((size_t)n * sizeof *t->attr);
    if (!t->text || !t->text_off || !t->text_len || !t->score || !t->attr || !hash_init(&t->by_text, (size_t)n))
        return moe_last_status();
    size_t off = 0;
    for (int32_t i = 0; i < (int32_t)n; i++) {
        char *dst = t->text + off;
        size_t len = (size_t)strs[i].len;
        if (len) memcpy(dst, strs[i].ptr, len);
        else len = (size_t)snprintf(dst, 32, "[EMPTY_%d]", i);
        dst[len] = 0;
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)len;
        off += len + 1;
        t->score[i] = scores_f ? scores_f[i] : scores_i ? (float)scores_i[i] : 0.0f;
        t->attr[i] = types ? type_to_attr(types[i]) : MOE_TOKEN_ATTR_NORMAL;
        size_t h = fnv1a(dst, len, FNV_SEED) & t->by_text.mask;
        for (;; h = (h + 1) & t->by_text.mask) {
            int32_t v = t->by_text.slot[h];
            if (v == 0) break;
            size_t l2;
            const char *x = tok_text(t, v - 1, &l2);
            if (l2 == len && memcmp(x, dst, len) == 0)
                return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.tokens: duplicate token '%.*s' (ids %d and %d)",
                                 path, (int)MOE_MIN(len, 64), dst, v - 1, i);
        }
        t->by_text.slot[h] = i + 1;
    }
    return MOE_OK;
}

static moe_status load_merges(moe_tokenizer *t, const moe_gguf *g, const char *path) {
    const void *data;
    uint64_t n;
    moe_status st = moe_gguf_get_arr(g, "tokenizer.ggml.merges", MOE_GGUF_STRING, &data, &n);
    if (st == MOE_ERR_NOT_FOUND)
        return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.merges is missing (needed by a gpt2 tokenizer)", path);
    if (st) return st;
    if (n > INT32_MAX - 1) return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.merges has too many entries", path);
    const moe_gguf_str *strs = data;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++)
        if (strs[i].len > UINT32_MAX || !moe_add_ok(total, strs[i].len, &total) || total > SIZE_MAX / 2)
            return moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is too long", path, (unsigned long long)i);
    t->merge_text = moe_malloc((size_t)total + 1);
    t->merge_off = moe_malloc(((size_t)n + 1) * sizeof *t->merge_off);
    t->merge_len1 = moe_malloc(((size_t)n + 1) * sizeof *t->merge_len1);
    t->merge_len2 = moe_malloc(((size_t)n + 1) * sizeof *t->merge_len2);
    if (!t->merge_text || !t->merge_off || !t->merge_len1 || !t->merge_len2 || !hash_init(&t->merges, (size_t)n))
        return moe_last_status();
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s = strs[i].ptr;
        size_t len = (size_t)strs[i].len;
        /* "first second", split at the first space after the first byte (llama.cpp's
         * word.find(' ', 1)); a merge without one can never apply */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        size_t k = t->n_merges++; /* the rank is the index in the list */
        t->merge_off[k] = off;
        t->merge_len1[k] = t->merge_len2[k] = 0;
        if (!sp) continue; /* llama.cpp keeps it as ("", ""), which never applies */
        size_t l1 = (size_t)(sp - s), l2 = len - l1 - 1;
        memcpy(t->merge_text + off, s, l1);
        memcpy(t->merge_text + off + l1, sp + 1, l2);
        t->merge_len1[k] = (uint32_t)l1;
        t->merge_len2[k] = (uint32_t)l2;
        off += l1 + l2;
        size_t h = pair_hash(s, l1, sp + 1, l2) & t->merges.mask;
        for (;; h = (h + 1) & t->merges.mask) {
            int32_t v = t->merges.slot[h];
            if (v == 0) {
                t->merges.slot[h] = (int32_t)k + 1;
                break;
            }
            const char *f = t->merge_text + t->merge_off[v - 1];
            if (t->merge_len1[v - 1] == l1 && t->merge_len2[v - 1] == l2 && memcmp(f, s, l1) == 0 &&
                memcmp(f + l1, sp + 1, l2) == 0)
                break; /* a repeated pair keeps its first rank (std::unordered_map::emplace) */
        }
    }
    return MOE_OK;
}

/* Special ids: a key present with an id in range replaces the default; out of range it
 * keeps the default (llama.cpp warns); a negative value means "none". */
static moe_status read_id(moe_tokenizer *t, const moe_gguf *g, const char *key, int32_t *id) {
    int64_t v;
    moe_status st = moe_gguf_get_i64(g, key, &v);
    if (st == MOE_ERR_NOT_FOUND) return MOE_OK;
    if (st) return st;
    if (v < 0) *id = -1;
    else if (v < t->n_vocab) *id = (int32_t)v;
    return MOE_OK;
}

static moe_status read_bool(const moe_gguf *g, const char *key, bool *b) {
    moe_status st = moe_gguf_get_bool(g, key, b);
    return st == MOE_ERR_NOT_FOUND ? MOE_OK : st;
}

/* Texts of the tokens llama.cpp (as of the fixtures' snapshot) recognizes; a match that is
 * not a control token becomes one ("control-looking token ... will be overridden"). */
static const char *const EOT_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<EOT>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", NULL};
static const char *const EOM_TEXTS[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_TEXTS[] = {"<|fim_prefix|>", "<fim-prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>", NULL};
static const char *const FIM_SUF_TEXTS[] = {"<|fim_suffix|>", "<fim-suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>", NULL};
static const char *const FIM_MID_TEXTS[] = {"<|fim_middle|>", "<fim-middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>", NULL};
static const char *const FIM_PAD_TEXTS[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
static const char *const FIM_REP_TEXTS[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", NULL};
static const char *const FIM_SEP_TEXTS[] = {"<|file_sep|>", NULL};
static const char *const EOG_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<|eom_id|>", "<EOT>", NULL};
/* enders newer llama.cpp also knows; counted as end of generation only when the vocabulary
 * already marks them control, so that tokenization never changes because of them */
static const char *const EOG_TEXTS_IF_CONTROL[] = {"<|return|>", "<|call|>", "<|end_of_text|>", "_<EOT>", "[EOT]",
                                                   "[EOS]", "<end_of_utterance>", "<eos>", "</s>", NULL};

/* The first text of the list that the vocabulary has (llama.cpp takes the first match in
 * its hash map's order, which is unspecified; list order prefers end-of-turn markers such
 * as <|im_end|> over <|endoftext|>). */
static void detect(moe_tokenizer *t, int32_t *id, const char *const *texts) {
    if (*id >= 0) return;
    for (; *texts; texts++) {
        int32_t i = tok_find(t, *texts, strlen(*texts));
        if (i >= 0) {
            *id = i;
            t->attr[i] |= MOE_TOKEN_ATTR_CONTROL;
            return;
        }
    }
}

static void eog_add(moe_tokenizer *t, int32_t id) {
    if (id < 0) return;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    t->eog[t->n_eog++] = id;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static moe_status build_eog(moe_tokenizer *t) {
    t->eog = moe_malloc(32 * sizeof *t->eog); /* 3 fim + 16 texts + eos/eot/eom */
    if (!t->eog) return moe_last_status();
    eog_add(t, t->fim_pad);
    eog_add(t, t->fim_rep);
    eog_add(t, t->fim_sep);
    for (const char *const *s = EOG_TEXTS; *s; s++) {
        int32_t i = tok_find(t, *s, strlen(*s));
        if (i < 0) continue;
        eog_add(t, i);
        t->attr[i] |= MOE_TOKEN_ATTR_CONTROL;
    }
    for (const char *const *s = EOG_TEXTS_IF_CONTROL; *s; s++) {
        int32_t i = tok_find(t, *s, strlen(*s));
        if (i >= 0 && (t->attr[i] & MOE_TOKEN_ATTR_CONTROL)) eog_add(t, i);
    }
    eog_add(t, t->eos);
    eog_add(t, t->eot);
    eog_add(t, t->eom);
    qsort(t->eog, t->n_eog, sizeof *t->eog, cmp_i32);
    return MOE_OK;
}

static moe_status build_special(moe_tokenizer *t) {
    t->special = moe_malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!t->special) return moe_last_status();
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (MOE_TOKEN_ATTR_CONTROL | MOE_TOKEN_ATTR_USER_DEFINED | MOE_TOKEN_ATTR_UNKNOWN))
            t->special[t->n_special++] = i;
    /* longest text first, as llama.cpp's std::sort by length; equal lengths keep id order
     * (a stable bottom-up merge sort: qsort has no context pointer for the lengths) */
    int32_t *tmp = moe_malloc((t->n_special ? t->n_special : 1) * sizeof *tmp);
    if (!tmp) return moe_last_status();
    for (size_t w = 1; w < t->n_special; w *= 2) {
        for (size_t lo = 0; lo < t->n_special; lo += 2 * w) {
            size_t mid = MOE_MIN(lo + w, t->n_special), hi = MOE_MIN(lo + 2 * w, t->n_special);
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int32_t x = t->special[i], y = t->special[j];
                bool take_y = t->text_len[y] > t->text_len[x];
                tmp[k++] = take_y ? t->special[j++] : t->special[i++];
            }
            while (i < mid) tmp[k++] = t->special[i++];
            while (j < hi) tmp[k++] = t->special[j++];
        }
        memcpy(t->special, tmp, t->n_special * sizeof *tmp);
    }
    free(tmp);
    return MOE_OK;
}

/* ------------------------------------------------------------------ pieces */

typedef struct { char *v; size_t n, cap; bool oom; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *p = realloc(b->v, nc);
        if (!p) { b->oom = true; return; }
        b->v = p;
        b->cap = nc;
    }
    memcpy(b->v + b->n, s, n);
    b->n += n;
    b->v[b->n] = 0;
}

/* llama_decode_text: GPT-2 codepoints back to bytes; a codepoint outside the map becomes
 * "[UNK_BYTE_0x<utf-8 hex><token text>]", verbatim llama.cpp. */
static void decode_gpt2(sbuf *b, const char *s, size_t n) {
    for (size_t off = 0; off < n;) {
        uint32_t c = moe_utf8_decode(s, n, &off);
        int byte = moe_gpt2_cpt_to_byte(c);
        if (byte >= 0) {
            char ch = (char)byte;
            sb_add(b, &ch, 1);
            continue;
        }
        char u[4], hex[16];
        size_t ul = moe_utf8_encode(c, u);
        sb_add(b, "[UNK_BYTE_0x", 12);
        for (size_t k = 0; k < ul; k++) {
            snprintf(hex, sizeof hex, "%02x", (unsigned char)u[k]);
            sb_add(b, hex, 2);
        }
        sb_add(b, s, n);
        sb_add(b, "]", 1);
    }
}

static int hexdigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* token_to_piece(special = true) of every token, as llama.cpp's cache. */
static moe_status build_pieces(moe_tokenizer *t) {
    sbuf b = {0};
    t->piece_off = moe_malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = moe_malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_off || !t->piece_len) return moe_last_status();
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n, start = b.n;
        const char *s = tok_text(t, i, &n);
        uint16_t a = t->attr[i];
        if (a & (MOE_TOKEN_ATTR_UNKNOWN | MOE_TOKEN_ATTR_CONTROL | MOE_TOKEN_ATTR_USER_DEFINED)) {
            sb_add(&b, s, n);
        } else if (a & MOE_TOKEN_ATTR_NORMAL) {
            if (t->type == TOK_BPE) {
                decode_gpt2(&b, s, n);
            } else { /* U+2581 -> ' ' */
                for (size_t k = 0; k < n; k++) {
                    if (k + 2 < n && memcmp(s + k, "\xE2\x96\x81", 3) == 0) {
                        sb_add(&b, " ", 1);
                        k += 2;
                    } else {
                        sb_add(&b, s + k, 1);
                    }
                }
            }
        } else if (a & MOE_TOKEN_ATTR_BYTE) { /* "<0xXX>": strtol of the two characters at 3 */
            int v = 0;
            for (size_t k = 3; k < 5 && k < n && hexdigit(s[k]) >= 0; k++) v = v * 16 + hexdigit(s[k]);
            char ch = (char)v;
            sb_add(&b, &ch, 1);
        }
        if (b.n == start) sb_add(&b, "", 0); /* make sure the pool exists */
        t->piece_off[i] = start;
        t->piece_len[i] = (uint32_t)(b.n - start);
    }
    if (b.oom) {
        free(b.v);
        return moe_error(MOE_ERR_NOMEM, "out of memory building token pieces");
    }
    t->piece = b.v;
    return MOE_OK;
}

/* ------------------------------------------------------------------ load */

static void lower_ascii(char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

/* llama.cpp's per-model attribute fixes (model name / pre-tokenizer based). */
static void model_attrs(moe_tokenizer *t, const moe_gguf *g) {
    const char *name = NULL;
    char lname[256] = "";
    if (moe_gguf_get_str(g, "general.name", &name) == MOE_OK && name) snprintf(lname, sizeof lname, "%s", name);
    lower_ascii(lname);
    if (strstr(t->pre, "jina-v2-de") || strstr(t->pre, "jina-v2-es") || strstr(t->pre, "jina-v2-code")) {
        int32_t id = tok_find(t, "<mask>", 6);
        if (id >= 0) t->attr[id] |= MOE_TOKEN_ATTR_LSTRIP;
    } else if (strstr(lname, "phi-3") || strstr(lname, "phi3")) {
        for (size_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= MOE_TOKEN_ATTR_RSTRIP;
        int32_t id = tok_find(t, "</s>", 4);
        if (id >= 0) t->attr[id] |= MOE_TOKEN_ATTR_RSTRIP;
        const char *off[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int k = 0; k < 3; k++) {
            id = tok_find(t, off[k], strlen(off[k]));
            if (id >= 0) t->attr[id] &= (uint16_t)~MOE_TOKEN_ATTR_RSTRIP;
        }
    }
}

moe_tokenizer *moe_tokenizer_load(const moe_gguf *g) {
    if (!g) return moe_error_null(MOE_ERR_INVALID, "moe_tokenizer_load: no file");
    const char *path = moe_gguf_path(g);
    const char *model = NULL, *pre = NULL;
    moe_status st = moe_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (st == MOE_ERR_NOT_FOUND)
        return moe_error_null(MOE_ERR_NOT_FOUND, "%s: no tokenizer (tokenizer.ggml.model is missing)", path);
    if (st) return NULL;
    st = moe_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    if (st && st != MOE_ERR_NOT_FOUND) return NULL;

    moe_tokenizer *t = moe_calloc(1, sizeof *t);
    if (!t) return NULL;
    snprintf(t->model, sizeof t->model, "%s", model);
    if (strcmp(model, "llama") == 0) {
        t->type = TOK_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_space_prefix = true;
        t->add_bos = true;
    } else if (strcmp(model, "gpt2") == 0) {
        t->type = TOK_BPE;
        t->pre_info = moe_pretok_find(pre);
        if (!t->pre_info) {
            moe_error(MOE_ERR_UNSUPPORTED, "%s: unknown pre-tokenizer tokenizer.ggml.pre = '%s' (llama.cpp does not know it either)",
                      path, pre);
            goto fail;
        }
        if (!t->pre_info->regexes) {
            moe_error(MOE_ERR_UNSUPPORTED, "%s: pre-tokenizer tokenizer.ggml.pre = '%s' is not supported by moe", path, pre);
            goto fail;
        }
        snprintf(t->pre, sizeof t->pre, "%s", t->pre_info->name);
        t->bos = 11, t->eos = 11, t->unk = -1;
        t->ignore_merges = t->pre_info->ignore_merges;
        t->clean_spaces = t->pre_info->clean_spaces;
        t->add_bos = t->pre_info->add_bos;
        if (t->pre_info->no_bos) t->bos = -1;
    } else if (strcmp(model, "no_vocab") == 0 || strcmp(model, "none") == 0) {
        moe_error(MOE_ERR_UNSUPPORTED, "%s: the file has no vocabulary (tokenizer.ggml.model = '%s')", path, model);
        goto fail;
    } else {
        moe_error(MOE_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model = '%s' is not supported (supported: llama, gpt2)",
                  path, model);
        goto fail;
    }
    t->eot = t->eom = t->sep = t->pad = t->mask = -1;
    t->fim_pre = t->fim_suf = t->fim_mid = t->fim_pad = t->fim_rep = t->fim_sep = -1;

    if (read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)) goto fail;
    if (load_tokens(t, g, path)) goto fail;
    if (t->type == TOK_BPE && load_merges(t, g, path)) goto fail;

    /* default ids outside the vocabulary are disabled */
    int32_t *ids[] = {&t->bos, &t->eos, &t->unk};
    for (int k = 0; k < 3; k++)
        if (*ids[k] >= t->n_vocab) *ids[k] = -1;
    struct { const char *key; int32_t *id; } keys[] = {
        {"tokenizer.ggml.bos_token_id", &t->bos},         {"tokenizer.ggml.eos_token_id", &t->eos},
        {"tokenizer.ggml.eot_token_id", &t->eot},         {"tokenizer.ggml.eom_token_id", &t->eom},
        {"tokenizer.ggml.unknown_token_id", &t->unk},     {"tokenizer.ggml.seperator_token_id", &t->sep},
        {"tokenizer.ggml.padding_token_id", &t->pad},     {"tokenizer.ggml.mask_token_id", &t->mask},
        {"tokenizer.ggml.fim_pre_token_id", &t->fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &t->fim_suf},
        {"tokenizer.ggml.fim_mid_token_id", &t->fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &t->fim_pad},
        {"tokenizer.ggml.fim_rep_token_id", &t->fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &t->fim_sep},
        {"tokenizer.ggml.prefix_token_id", &t->fim_pre},  {"tokenizer.ggml.suffix_token_id", &t->fim_suf},
        {"tokenizer.ggml.middle_token_id", &t->fim_mid},
    };
    for (size_t k = 0; k < MOE_ARRAY_LEN(keys); k++)
        if (read_id(t, g, keys[k].key, keys[k].id)) goto fail;
    if (read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos) ||
        read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos) ||
        read_bool(g, "tokenizer.ggml.add_sep_token", &t->add_sep))
        goto fail;
    if (t->add_bos && t->bos < 0) {
        moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set", path);
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        moe_error(MOE_ERR_FORMAT, "%s: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set", path);
        goto fail;
    }

    detect(t, &t->eot, EOT_TEXTS);
    detect(t, &t->eom, EOM_TEXTS);
    detect(t, &t->fim_pre, FIM_PRE_TEXTS);
    detect(t, &t->fim_suf, FIM_SUF_TEXTS);
    detect(t, &t->fim_mid, FIM_MID_TEXTS);
    detect(t, &t->fim_pad, FIM_PAD_TEXTS);
    detect(t, &t->fim_rep, FIM_REP_TEXTS);
    detect(t, &t->fim_sep, FIM_SEP_TEXTS);
    if (build_eog(t) || build_special(t) || build_pieces(t)) goto fail;
    model_attrs(t, g); /* after the caches, as in llama.cpp */
    if (t->type == TOK_BPE && !(t->pretok = moe_pretok_create(t->pre_info))) goto fail;
    return t;
fail:
    moe_tokenizer_free(t);
    return NULL;
}

void moe_tokenizer_free(moe_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    free(t->by_text.slot);
    free(t->piece);
    free(t->piece_off);
    free(t->piece_len);
    free(t->special);
    free(t->eog);
    free(t->merge_text);
    free(t->merge_off);
    free(t->merge_len1);
    free(t->merge_len2);
    free(t->merges.slot);
    moe_pretok_free(t->pretok);
    free(t);
}

/* ------------------------------------------------------------------ encode */

/* A piece of the input: raw text [off, off+len), or a special token. */
typedef struct { int32_t token; size_t off, len; } frag;
typedef struct { frag *v; size_t n, cap; bool oom; } frags;

static void frag_push(frags *f, int32_t token, size_t off, size_t len) {
    if (f->oom || (token < 0 && len == 0)) return;
    if (f->n == f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 16;
        frag *p = realloc(f->v, nc * sizeof *p);
        if (!p) { f->oom = true; return; }
        f->v = p;
        f->cap = nc;
    }
    f->v[f->n++] = (frag){token, off, len};
}

/* isspace() in the "C" locale, which llama.cpp's lstrip/rstrip use */
static bool c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* tokenizer_st_partition: every special token, longest first, is cut out of the raw
 * fragments left so far; control and unknown tokens only with parse_special. */
static moe_status partition(const moe_tokenizer *t, const char *text, size_t len, bool parse_special, frags *out) {
    frags cur = {0}, nxt = {0};
    frag_push(&cur, -1, 0, len);
    for (size_t s = 0; s < t->n_special && !cur.oom && !nxt.oom; s++) {
        int32_t id = t->special[s];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & (MOE_TOKEN_ATTR_CONTROL | MOE_TOKEN_ATTR_UNKNOWN))) continue;
        size_t tl;
        const char *tt = tok_text(t, id, &tl);
        bool any = false;
        for (size_t k = 0; k < cur.n && !any; k++)
            any = cur.v[k].token < 0 && cur.v[k].len >= tl && memmem(text + cur.v[k].off, cur.v[k].len, tt, tl);
        if (!any) continue;
        nxt.n = 0;
        for (size_t k = 0; k < cur.n; k++) {
            frag f = cur.v[k];
            if (f.token >= 0) { frag_push(&nxt, f.token, 0, 0); continue; }
            size_t off = f.off, n = f.len;
            for (;;) {
                const char *m = n >= tl ? memmem(text + off, n, tt, tl) : NULL;
                if (!m) { frag_push(&nxt, -1, off, n); break; }
                size_t at = (size_t)(m - text);
                size_t left = at - off;
                if (a & MOE_TOKEN_ATTR_LSTRIP)
                    while (left > 0 && c_space(text[off + left - 1])) left--;
                frag_push(&nxt, -1, off, left);
                frag_push(&nxt, id, 0, 0);
                size_t roff = at + tl, rlen = off + n - roff;
                if (a & MOE_TOKEN_ATTR_RSTRIP)
                    while (rlen > 0 && c_space(text[roff])) roff++, rlen--;
                off = roff;
                n = rlen;
                if (n == 0) break;
            }
        }
        frags tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(nxt.v);
    if (cur.oom || nxt.oom) {
        free(cur.v);
        return moe_error(MOE_ERR_NOMEM, "out of memory tokenizing");
    }
    *out = cur;
    return MOE_OK;
}

moe_status moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t len, bool add_special,
                                bool parse_special, int32_t **ids, size_t *n_ids) {
    if (!ids || !n_ids) return moe_error(MOE_ERR_INVALID, "moe_tokenizer_encode: no output");
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return moe_error(MOE_ERR_INVALID, "moe_tokenizer_encode: no tokenizer or text");
    if (len > (SIZE_MAX - 4) / 8) return moe_error(MOE_ERR_INVALID, "moe_tokenizer_encode: text too long");
    frags fr = {0};
    tok_ids out = {0};
    char *buf = NULL;
    moe_status st = MOE_OK;
    if (len > 0 && (st = partition(t, text, len, parse_special, &fr))) return st;
    if (add_special && t->add_bos) tok_ids_push(&out, t->bos);
    if (t->type == TOK_SPM) {
        /* a space goes before the first raw fragment and after each special token, then
         * every space becomes U+2581: at most 3 bytes per input byte, plus the prefix */
        if (len > 0 && !(buf = moe_malloc(3 * len + 4))) st = moe_last_status();
        bool prev_special = true;
        for (size_t k = 0; k < fr.n && st == MOE_OK; k++) {
            const frag *f = &fr.v[k];
            if (f->token >= 0) {
                tok_ids_push(&out, f->token);
                prev_special = true;
                continue;
            }
            size_t bn = 0;
            if (t->add_space_prefix && prev_special) memcpy(buf, "\xE2\x96\x81", 3), bn = 3;
            for (size_t i = 0; i < f->len; i++) {
                char c = text[f->off + i];
                if (c == ' ') memcpy(buf + bn, "\xE2\x96\x81", 3), bn += 3;
                else buf[bn++] = c;
            }
            st = tok_spm_encode(t, buf, bn, &out);
            prev_special = false;
        }
    } else {
        for (size_t k = 0; k < fr.n && st == MOE_OK; k++) {
            const frag *f = &fr.v[k];
            if (f->token >= 0) tok_ids_push(&out, f->token);
            else st = tok_bpe_encode(t, text + f->off, f->len, &out);
        }
    }
    if (add_special && t->add_eos) tok_ids_push(&out, t->eos);
    free(fr.v);
    free(buf);
    if (st == MOE_OK && out.oom) st = moe_error(MOE_ERR_NOMEM, "out of memory tokenizing");
    if (st != MOE_OK) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return MOE_OK;
}

/* ------------------------------------------------------------------ decode */

static bool valid_id(const moe_tokenizer *t, int32_t id) { return t && id >= 0 && id < t->n_vocab; }

const char *moe_tokenizer_piece(const moe_tokenizer *t, int32_t id, bool special, size_t *len) {
    if (!valid_id(t, id)) {
        if (len) *len = 0;
        return moe_error_null(MOE_ERR_INVALID, "token id %d is not in the vocabulary (%d tokens)", id,
                              t ? t->n_vocab : 0);
    }
    const char *p = t->piece + t->piece_off[id];
    size_t n = t->piece_len[id];
    if (!special && (t->attr[id] & (MOE_TOKEN_ATTR_UNKNOWN | MOE_TOKEN_ATTR_CONTROL))) n = 0;
    if (len) *len = n;
    return p;
}

/* llama.cpp's clean_up_tokenization_spaces, three in-place passes ported as they are. */
static size_t clean_spaces(char *text, size_t total) {
    size_t total1 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < total1; ++i) { /* " ?", " !", " .", " ," */
        char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        text[total++] = x;
    }
    size_t total2 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < total2; ++i) { /* " ' " */
        char x = text[i];
        if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;
            text[++i] = '\0';
        }
        text[total++] = x;
    }
    size_t total3 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < total3; ++i) { /* " 's", " 'm", " 're", " 've" */
        char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
            char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm') total--;
            else if (i + 2 < total3) {
                char x2 = text[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
            }
        }
        text[total++] = x;
    }
    return total;
}

moe_status moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n, bool remove_special,
                                bool unparse_special, char **text, size_t *len) {
    if (!text) return moe_error(MOE_ERR_INVALID, "moe_tokenizer_decode: no output");
    *text = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n)) return moe_error(MOE_ERR_INVALID, "moe_tokenizer_decode: no tokenizer or ids");
    for (size_t i = 0; i < n; i++)
        if (!valid_id(t, ids[i]))
            return moe_error(MOE_ERR_INVALID, "token id %d (at %zu) is not in the vocabulary (%d tokens)", ids[i], i,
                             t->n_vocab);
    bool remove_space = t->add_space_prefix;
    if (remove_special && t->add_bos && n > 0 && ids[0] == t->bos) {
        remove_space = false;
        ids++;
        n--;
    }
    if (remove_special && t->add_eos && n > 0 && ids[n - 1] == t->eos) n--;
    sbuf b = {0};
    sb_add(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = moe_tokenizer_piece(t, ids[i], unparse_special, &pl);
        if (remove_space && pl > 0 && p[0] == ' ') p++, pl--;
        remove_space = false;
        sb_add(&b, p, pl);
    }
    if (b.oom) {
        free(b.v);
        return moe_error(MOE_ERR_NOMEM, "out of memory decoding %zu tokens", n);
    }
    if (t->clean_spaces) {
        b.n = clean_spaces(b.v, b.n);
        b.v[b.n] = 0;
    }
    *text = b.v;
    if (len) *len = b.n;
    return MOE_OK;
}

/* ------------------------------------------------------------------ accessors */

int32_t moe_tokenizer_n_vocab(const moe_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t moe_tokenizer_bos(const moe_tokenizer *t) { return t ? t->bos : -1; }
int32_t moe_tokenizer_eos(const moe_tokenizer *t) { return t ? t->eos : -1; }
int32_t moe_tokenizer_eot(const moe_tokenizer *t) { return t ? t->eot : -1; }
int32_t moe_tokenizer_unk(const moe_tokenizer *t) { return t ? t->unk : -1; }
int32_t moe_tokenizer_pad(const moe_tokenizer *t) { return t ? t->pad : -1; }
bool moe_tokenizer_add_bos(const moe_tokenizer *t) { return t && t->add_bos; }
bool moe_tokenizer_add_eos(const moe_tokenizer *t) { return t && t->add_eos; }
const char *moe_tokenizer_model(const moe_tokenizer *t) { return t ? t->model : ""; }
const char *moe_tokenizer_pre(const moe_tokenizer *t) { return t ? t->pre : ""; }

bool moe_tokenizer_is_eog(const moe_tokenizer *t, int32_t id) {
    if (!valid_id(t, id)) return false;
    size_t lo = 0, hi = t->n_eog;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->eog[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->n_eog && t->eog[lo] == id;
}

const char *moe_tokenizer_token_text(const moe_tokenizer *t, int32_t id, size_t *len) {
    if (!valid_id(t, id)) {
        if (len) *len = 0;
        return moe_error_null(MOE_ERR_INVALID, "token id %d is not in the vocabulary", id);
    }
    size_t n;
    const char *s = tok_text(t, id, &n);
    if (len) *len = n;
    return s;
}

float moe_tokenizer_token_score(const moe_tokenizer *t, int32_t id) { return valid_id(t, id) ? t->score[id] : 0.0f; }
int moe_tokenizer_token_attr(const moe_tokenizer *t, int32_t id) { return valid_id(t, id) ? t->attr[id] : 0; }

int32_t moe_tokenizer_find(const moe_tokenizer *t, const char *s, size_t len) {
    if (!t || (!s && len)) return -1;
    return tok_find(t, s ? s : "", len);
}
