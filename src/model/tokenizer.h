/* tokenizer.h — the insides of moe_tokenizer shared by tokenizer.c (loading, special
 * tokens, encode/decode entry points) and tokenizer_merge.c (the SentencePiece and
 * byte-level BPE merge loops). The public API is the "Tokenizer" section of moe.h. */
#ifndef MOE_MODEL_TOKENIZER_H
#define MOE_MODEL_TOKENIZER_H

#include "core/common.h"
#include "model/tokenizer_pre.h"

#include <stdlib.h>

enum { TOK_SPM, TOK_BPE };

/* A growable array of token ids (the output of encode). */
typedef struct { int32_t *v; size_t n, cap; bool oom; } tok_ids;
static inline void tok_ids_push(tok_ids *o, int32_t id) {
    if (o->oom) return;
    if (o->n == o->cap) {
        size_t nc = o->cap ? 2 * o->cap : 64;
        int32_t *p = (int32_t *)realloc(o->v, nc * sizeof *p);
        if (!p) { o->oom = true; return; }
        o->v = p;
        o->cap = nc;
    }
    o->v[o->n++] = id;
}

/* An open-addressing table from byte strings to int32 values (token ids, merge ranks).
 * Keys are (pointer, length) into memory the owner keeps alive. */
typedef struct {
    int32_t *slot;      /* value index + 1 per slot, 0 = empty */
    size_t mask;        /* capacity - 1 (a power of two) */
} tok_hash;

struct moe_tokenizer {
    int type;                         /* TOK_SPM or TOK_BPE */
    char model[32], pre[64];          /* tokenizer.ggml.model / .pre */
    int32_t n_vocab;

    char *text;                       /* all token texts, each NUL-terminated */
    size_t *text_off;
    uint32_t *text_len;
    float *score;
    uint16_t *attr;                   /* MOE_TOKEN_ATTR_* */
    tok_hash by_text;                 /* text -> id */

    char *piece;                      /* token_to_piece(special = true) of every id */
    size_t *piece_off;
    uint32_t *piece_len;

    int32_t *special;                 /* control/user-defined/unknown ids, longest text first */
    size_t n_special;
    int32_t *eog;                     /* end-of-generation ids, sorted */
    size_t n_eog;

    /* byte-level BPE merges: pair i is (first, second) with rank i */
    char *merge_text;
    size_t *merge_off;                /* first at merge_off[i], second right after it */
    uint32_t *merge_len1, *merge_len2;
    size_t n_merges;
    tok_hash merges;                  /* (first, second) -> rank */

    int32_t bos, eos, eot, eom, unk, sep, pad, mask;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_sep, add_space_prefix;
    bool ignore_merges, clean_spaces;

    const moe_pretok_info *pre_info;  /* BPE only */
    moe_pretok *pretok;
};

/* The id of a token text, -1 when it is not in the vocabulary. */
int32_t tok_find(const moe_tokenizer *t, const char *s, size_t n);
/* The rank of the merge (a, b), -1 when there is none. */
int32_t tok_merge_rank(const moe_tokenizer *t, const char *a, size_t na, const char *b, size_t nb);

/* One raw-text fragment through the SentencePiece merge loop (text already has its
 * spaces escaped to U+2581) / through the BPE pre-tokenizer and merge loop. */
moe_status tok_spm_encode(const moe_tokenizer *t, const char *text, size_t n, tok_ids *out);
moe_status tok_bpe_encode(const moe_tokenizer *t, const char *text, size_t n, tok_ids *out);

#endif
