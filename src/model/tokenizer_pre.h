/* tokenizer_pre.h — byte-level BPE pre-tokenizers: the table from `tokenizer.ggml.pre`
 * names to llama.cpp's regex lists and flags, and the splitter that cuts text into words
 * exactly as llama.cpp's unicode_regex_split does. */
#ifndef MOE_MODEL_TOKENIZER_PRE_H
#define MOE_MODEL_TOKENIZER_PRE_H

#include "core/common.h"

/* What a pre-tokenizer name implies besides its regexes (llama.cpp's llama_vocab::load). */
typedef struct moe_pretok_info {
    const char *name;              /* the tokenizer.ggml.pre value */
    const char *const *regexes;    /* NULL-terminated; NULL: known but not supported */
    bool ignore_merges;            /* a word that is a token is taken whole (llama3, tekken) */
    bool clean_spaces;             /* detokenize applies clean_up_tokenization_spaces */
    bool add_bos;                  /* default of tokenizer.ggml.add_bos_token */
    bool no_bos;                   /* the BOS id defaults to none (chatglm) */
} moe_pretok_info;

/* The entry for a name ("" or NULL: llama.cpp's 'default'); NULL when unknown. */
const moe_pretok_info *moe_pretok_find(const char *name);

typedef struct moe_pretok moe_pretok;

/* Compiles the regexes of `info` (which must have some). NULL on error (recorded). */
moe_pretok *moe_pretok_create(const moe_pretok_info *info);
void moe_pretok_free(moe_pretok *p);

/* Splits codepoints cpt[0..n) into words: *lens (malloc'ed, freed by the caller) gets
 * the length in codepoints of each of the *n_words words, which cover cpt in order. */
moe_status moe_pretok_split(const moe_pretok *p, const uint32_t *cpt, size_t n, size_t **lens,
                            size_t *n_words);

#endif
