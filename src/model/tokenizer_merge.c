/* tokenizer_merge.c — the merge loops of llama.cpp's tokenizers: SentencePiece BPE
 * (llm_tokenizer_spm: merge the adjacent pair whose merged text is the token with the
 * highest score, then byte fallback) and byte-level BPE (llm_tokenizer_bpe: pre-tokenize,
 * map bytes to GPT-2's printable codepoints, merge the pair with the lowest merge rank).
 * Both pick, among equal priorities, the leftmost pair, as llama.cpp's queues do. */
#include "model/tokenizer.h"
#include "model/unicode.h"

/* A symbol: a run of bytes of the text being merged, in a doubly linked chain. */
typedef struct { int32_t prev, next; size_t off, n; } sym;

/* A candidate merge. Higher prio first; on ties, the smaller left index. */
typedef struct { double prio; int32_t left, right; size_t size; } bigram;

typedef struct {
    sym *s;
    size_t n_s, cap_s;
    bigram *h;
    size_t n_h, cap_h;
    bool oom;
} scratch;

static bool better(const bigram *a, const bigram *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(scratch *w, bigram b) {
    if (w->n_h == w->cap_h) {
        size_t nc = w->cap_h ? 2 * w->cap_h : 64;
        bigram *p = realloc(w->h, nc * sizeof *p);
        if (!p) { w->oom = true; return; }
        w->h = p;
        w->cap_h = nc;
    }
    size_t i = w->n_h++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!better(&b, &w->h[up])) break;
        w->h[i] = w->h[up];
        i = up;
    }
    w->h[i] = b;
}

static bigram heap_pop(scratch *w) {
    bigram top = w->h[0], last = w->h[--w->n_h];
    size_t i = 0, n = w->n_h;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&w->h[c + 1], &w->h[c])) c++;
        if (!better(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (n) w->h[i] = last;
    return top;
}

/* Cuts text[0..n) into symbols of one UTF-8 sequence each (by the lead byte, unchecked,
 * the last one truncated at the end: llama.cpp's unicode_len_utf8 walk). */
static bool make_symbols(scratch *w, size_t n, const char *text) {
    w->n_s = 0;
    w->n_h = 0;
    if (n > w->cap_s) {
        sym *p = realloc(w->s, n * sizeof *p);
        if (!p) { w->oom = true; return false; }
        w->s = p;
        w->cap_s = n;
    }
    for (size_t off = 0; off < n;) {
        size_t len = moe_utf8_len((unsigned char)text[off]);
        if (len > n - off) len = n - off;
        int32_t i = (int32_t)w->n_s++;
        w->s[i] = (sym){i - 1, off + len == n ? -1 : i + 1, off, len};
        off += len;
    }
    return true;
}

/* Merges the right symbol of b into its left one. False when b is stale: one side was
 * merged away, or the right side grew (llama.cpp compares the texts; the sizes differ in
 * exactly those cases since a left symbol only grows by absorbing its right neighbour). */
static bool apply(scratch *w, const bigram *b) {
    sym *l = &w->s[b->left], *r = &w->s[b->right];
    if (l->n == 0 || r->n == 0 || l->n + r->n != b->size) return false;
    l->n += r->n;
    r->n = 0;
    l->next = r->next;
    if (r->next >= 0) w->s[r->next].prev = b->left;
    return true;
}

/* ------------------------------------------------------------------ SentencePiece */

static void spm_try(const moe_tokenizer *t, scratch *w, const char *text, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const sym *l = &w->s[left], *r = &w->s[right];
    int32_t id = tok_find(t, text + l->off, l->n + r->n);
    if (id < 0) return;
    heap_push(w, (bigram){t->score[id], left, right, l->n + r->n});
}

/* The byte fallback of llama.cpp's byte_to_token: <0xXX>, else the byte as a one-byte
 * token; llama.cpp throws when neither exists, we fall back to <unk> (or drop the byte). */
static int32_t spm_byte_token(const moe_tokenizer *t, unsigned char c) {
    static const char hex[] = "0123456789ABCDEF";
    char buf[6] = {'<', '0', 'x', hex[c >> 4], hex[c & 15], '>'};
    int32_t id = tok_find(t, buf, 6);
    if (id < 0) id = tok_find(t, (const char *)&c, 1);
    if (id < 0) id = t->unk;
    return id;
}

moe_status tok_spm_encode(const moe_tokenizer *t, const char *text, size_t n, tok_ids *out) {
    scratch w = {0};
    if (n == 0) return MOE_OK;
    if (make_symbols(&w, n, text)) {
        for (int32_t i = 1; i < (int32_t)w.n_s; i++) spm_try(t, &w, text, i - 1, i);
        while (w.n_h > 0 && !w.oom) {
            bigram b = heap_pop(&w);
            if (!apply(&w, &b)) continue;
            spm_try(t, &w, text, w.s[b.left].prev, b.left);
            spm_try(t, &w, text, b.left, w.s[b.left].next);
        }
        /* llama.cpp's resegment() also consults the merges it recorded, but those are keyed
         * by token texts, so a symbol that is not a token never finds one: bytes it is */
        for (int32_t i = 0; i != -1 && !w.oom; i = w.s[i].next) {
            const sym *s = &w.s[i];
            int32_t id = tok_find(t, text + s->off, s->n);
            if (id >= 0) {
                tok_ids_push(out, id);
                continue;
            }
            for (size_t k = 0; k < s->n; k++) {
                int32_t b = spm_byte_token(t, (unsigned char)text[s->off + k]);
                if (b >= 0) tok_ids_push(out, b);
            }
        }
    }
    bool oom = w.oom;
    free(w.s);
    free(w.h);
    if (oom) return moe_error(MOE_ERR_NOMEM, "out of memory tokenizing");
    return MOE_OK;
}

/* ------------------------------------------------------------------ byte-level BPE */

static void bpe_try(const moe_tokenizer *t, scratch *w, const char *word, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const sym *l = &w->s[left], *r = &w->s[right];
    int32_t rank = tok_merge_rank(t, word + l->off, l->n, word + r->off, r->n);
    if (rank < 0) return;
    heap_push(w, (bigram){-(double)rank, left, right, l->n + r->n});
}

static void bpe_word(const moe_tokenizer *t, scratch *w, const char *word, size_t n, tok_ids *out) {
    if (t->ignore_merges && tok_find(t, word, n) >= 0) {
        w->n_s = 0;
        tok_ids_push(out, tok_find(t, word, n));
        return;
    }
    if (!make_symbols(w, n, word)) return;
    for (int32_t i = 1; i < (int32_t)w->n_s; i++) bpe_try(t, w, word, i - 1, i);
    while (w->n_h > 0 && !w->oom) {
        bigram b = heap_pop(w);
        if (!apply(w, &b)) continue;
        bpe_try(t, w, word, w->s[b.left].prev, b.left);
        bpe_try(t, w, word, b.left, w->s[b.left].next);
    }
    for (int32_t i = 0; i != -1 && n > 0; i = w->s[i].next) {
        const sym *s = &w->s[i];
        int32_t id = tok_find(t, word + s->off, s->n);
        if (id >= 0) {
            tok_ids_push(out, id);
            continue;
        }
        /* llama.cpp looks each raw byte up as a one-byte token and drops the misses */
        for (size_t k = 0; k < s->n; k++) {
            int32_t b = tok_find(t, word + s->off + k, 1);
            if (b >= 0) tok_ids_push(out, b);
        }
    }
}

moe_status tok_bpe_encode(const moe_tokenizer *t, const char *text, size_t n, tok_ids *out) {
    uint32_t *cpt = NULL;
    size_t n_cpt = 0, *lens = NULL, n_words = 0;
    char *word = NULL;
    scratch w = {0};
    moe_status st = MOE_OK;
    if (!moe_utf8_decode_all(text, n, &cpt, &n_cpt)) return moe_last_status();
    st = moe_pretok_split(t->pretok, cpt, n_cpt, &lens, &n_words);
    if (st == MOE_OK && n_cpt > 0) {
        word = moe_malloc(8 * n_cpt); /* ≤ 4 bytes per codepoint, ≤ 2 per mapped byte */
        if (!word) st = moe_last_status();
    }
    size_t start = 0;
    for (size_t k = 0; k < n_words && st == MOE_OK; k++) {
        size_t wn = 0;
        for (size_t c = start; c < start + lens[k]; c++) {
            char u[4], m[4];
            size_t ul = moe_utf8_encode(cpt[c], u);
            for (size_t b = 0; b < ul; b++) {
                size_t ml = moe_utf8_encode(moe_gpt2_byte_to_cpt((uint8_t)u[b]), m);
                memcpy(word + wn, m, ml);
                wn += ml;
            }
        }
        start += lens[k];
        bpe_word(t, &w, word, wn, out);
        if (w.oom) st = moe_error(MOE_ERR_NOMEM, "out of memory tokenizing");
    }
    free(cpt);
    free(lens);
    free(word);
    free(w.s);
    free(w.h);
    return st;
}
