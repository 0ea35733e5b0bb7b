/* kv_cache.h — the attention KV cache: keys and values of every past position, per
 * layer, in F32 (as the llama.cpp reference logits were computed), laid out
 * [layer][position][kv_head · head_size] so one position of one layer is contiguous. */
#ifndef MOE_MODEL_KV_CACHE_H
#define MOE_MODEL_KV_CACHE_H

#include "core/common.h"

typedef struct moe_kv_cache {
    int64_t n_layer, n_ctx;
    int64_t k_dim, v_dim;   /* n_head_kv · n_embd_head_k, n_head_kv · n_embd_head_v */
    float *k, *v;
} moe_kv_cache;

/* Allocates the cache (overflow-checked; not zeroed: a position is written before it is read). */
moe_status moe_kv_cache_init(moe_kv_cache *kv, int64_t n_layer, int64_t n_ctx, int64_t k_dim, int64_t v_dim);
void moe_kv_cache_free(moe_kv_cache *kv);
/* Bytes the cache of these dimensions takes (0 on overflow). */
uint64_t moe_kv_cache_bytes(int64_t n_layer, int64_t n_ctx, int64_t k_dim, int64_t v_dim);

static inline float *moe_kv_k(const moe_kv_cache *kv, int64_t layer, int64_t pos) {
    return kv->k + ((size_t)layer * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->k_dim;
}
static inline float *moe_kv_v(const moe_kv_cache *kv, int64_t layer, int64_t pos) {
    return kv->v + ((size_t)layer * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->v_dim;
}

#endif
