/* kv_cache.h — the attention KV cache: keys and values of every past position, per
 * layer, in F32 (as the llama.cpp reference logits were computed) or F16 (llama.cpp's
 * default), laid out [layer][kv_head][position][head_size]: the attention of one head
 * reads its keys and its values over the positions as two contiguous streams. (With the
 * heads side by side per position, one head's 128-512 bytes every n_head · head_size
 * values, decoding at 1500 positions of context was 16-18 % slower on the Zen 5 host:
 * docs/BENCHMARKS.md.) */
#ifndef MOE_MODEL_KV_CACHE_H
#define MOE_MODEL_KV_CACHE_H

#include "core/common.h"

typedef struct moe_kv_cache {
    int64_t n_layer, n_ctx, n_head;  /* n_head: KV heads */
    int64_t k_head, v_head;          /* n_embd_head_k, n_embd_head_v */
    bool f16;                        /* elements are moe_f16 (else float) */
    uint8_t *k, *v;
} moe_kv_cache;

/* Bytes of one cached element */
static inline size_t moe_kv_elem_bytes(bool f16) { return f16 ? 2 : 4; }

/* Allocates the cache (overflow-checked; not zeroed: a position is written before it is
 * read, and the pages of positions not reached yet cost no memory). */
moe_status moe_kv_cache_init(moe_kv_cache *kv, int64_t n_layer, int64_t n_ctx, int64_t n_head, int64_t k_head,
                             int64_t v_head, bool f16);
void moe_kv_cache_free(moe_kv_cache *kv);
/* Bytes the cache of these dimensions takes (0 on overflow). */
uint64_t moe_kv_cache_bytes(int64_t n_layer, int64_t n_ctx, int64_t n_head, int64_t k_head, int64_t v_head, bool f16);

/* The key (value) of KV head `head` at position pos of a layer, as a float or moe_f16
 * array (kv->f16); the next position's is k_head (v_head) elements on. */
static inline void *moe_kv_k(const moe_kv_cache *kv, int64_t layer, int64_t head, int64_t pos) {
    return kv->k + (((size_t)layer * (size_t)kv->n_head + (size_t)head) * (size_t)kv->n_ctx + (size_t)pos) *
                       (size_t)kv->k_head * moe_kv_elem_bytes(kv->f16);
}
static inline void *moe_kv_v(const moe_kv_cache *kv, int64_t layer, int64_t head, int64_t pos) {
    return kv->v + (((size_t)layer * (size_t)kv->n_head + (size_t)head) * (size_t)kv->n_ctx + (size_t)pos) *
                       (size_t)kv->v_head * moe_kv_elem_bytes(kv->f16);
}

#endif
