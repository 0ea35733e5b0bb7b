/* kv_cache.c — allocation of the KV cache (see kv_cache.h). */
#include "model/kv_cache.h"

#include <stdlib.h>

uint64_t moe_kv_cache_bytes(int64_t n_layer, int64_t n_ctx, int64_t n_head, int64_t k_head, int64_t v_head, bool f16) {
    uint64_t cells, per, total;
    if (n_layer < 0 || n_ctx < 0 || n_head < 0 || k_head < 0 || v_head < 0) return 0;
    if (!moe_mul_ok((uint64_t)n_layer, (uint64_t)n_ctx, &cells) || !moe_mul_ok(cells, (uint64_t)n_head, &cells) ||
        !moe_add_ok((uint64_t)k_head, (uint64_t)v_head, &per) || !moe_mul_ok(cells, per, &total) ||
        !moe_mul_ok(total, moe_kv_elem_bytes(f16), &total))
        return 0;
    return total;
}

moe_status moe_kv_cache_init(moe_kv_cache *kv, int64_t n_layer, int64_t n_ctx, int64_t n_head, int64_t k_head,
                             int64_t v_head, bool f16) {
    memset(kv, 0, sizeof *kv);
    uint64_t total = moe_kv_cache_bytes(n_layer, n_ctx, n_head, k_head, v_head, f16);
    if (total == 0 || total > SIZE_MAX / 2)
        return moe_error(MOE_ERR_NOMEM, "KV cache of %lld positions × %lld layers is too large", (long long)n_ctx,
                         (long long)n_layer);
    const size_t elem = moe_kv_elem_bytes(f16);
    size_t kb = (size_t)n_layer * (size_t)n_head * (size_t)n_ctx * (size_t)k_head * elem;
    size_t vb = (size_t)n_layer * (size_t)n_head * (size_t)n_ctx * (size_t)v_head * elem;
    kv->k = moe_aligned_alloc(kb ? kb : 64);
    kv->v = moe_aligned_alloc(vb ? vb : 64);
    if (!kv->k || !kv->v) {
        moe_kv_cache_free(kv);
        return moe_error(MOE_ERR_NOMEM, "cannot allocate the KV cache (%.1f MiB)", (double)total / (1 << 20));
    }
    /* Not zeroed: positions are written before they are read, and untouched pages of a
     * large context cost no memory until used. */
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->n_head = n_head;
    kv->k_head = k_head;
    kv->v_head = v_head;
    kv->f16 = f16;
    return MOE_OK;
}

void moe_kv_cache_free(moe_kv_cache *kv) {
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

int moe_kv_type_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "f32")) return MOE_KV_F32;
    if (!strcmp(name, "f16")) return MOE_KV_F16;
    return -1;
}

const char *moe_kv_type_name(moe_kv_type t) { return t == MOE_KV_F16 ? "f16" : "f32"; }
