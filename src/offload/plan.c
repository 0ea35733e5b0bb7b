/* plan.c — how a memory budget splits between resident weights, KV cache, scratch and
 * expert slots, computed from a GGUF file's tensor table (moe_offload_plan_compute). */
#include "core/common.h"
#include "model/kv_cache.h" /* moe_kv_elem_bytes */

#include <stdio.h>
#include <stdlib.h>

/* Scratch buffers, thread stacks and bookkeeping that the budget must also cover: a
 * fixed allowance plus what scales with the vocabulary (logits) and context. */
#define OVERHEAD_FIXED (24ull << 20)

/* Parses "blk.N.ffn_{gate,up,down}_exps.weight" (all experts in one 3-D tensor) and
 * "blk.N.ffn_{gate,up,down}.E.weight" (one tensor per expert). Returns the layer or -1;
 * *per_expert tells which form matched. */
static int expert_tensor_layer(const char *name, bool *per_expert) {
    int layer, n = 0, e;
    char part[8];
    if (sscanf(name, "blk.%d.ffn_%7[a-z]_exps.weight%n", &layer, part, &n) == 2 && n > 0 && !name[n] &&
        (!strcmp(part, "gate") || !strcmp(part, "up") || !strcmp(part, "down"))) {
        *per_expert = false;
        return layer;
    }
    n = 0;
    if (sscanf(name, "blk.%d.ffn_%7[a-z].%d.weight%n", &layer, part, &e, &n) == 3 && n > 0 && !name[n] &&
        (!strcmp(part, "gate") || !strcmp(part, "up") || !strcmp(part, "down"))) {
        *per_expert = true;
        return layer;
    }
    return -1;
}

static int64_t get_arch_int(const moe_gguf *g, const char *arch, const char *suffix, int64_t def) {
    char key[160];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return moe_gguf_get_i64(g, key, &v) == MOE_OK ? v : def;
}

moe_status moe_offload_plan_compute(const moe_gguf *g, uint64_t budget, int n_ctx, moe_kv_type kv_type,
                                    moe_offload_plan *plan) {
    memset(plan, 0, sizeof *plan);
    const char *path = moe_gguf_path(g);
    if (kv_type != MOE_KV_F32 && kv_type != MOE_KV_F16)
        return moe_error(MOE_ERR_INVALID, "%s: KV type %d is not MOE_KV_F32 or MOE_KV_F16", path, (int)kv_type);
    const char *arch = NULL;
    if (moe_gguf_get_str(g, "general.architecture", &arch) != MOE_OK)
        return moe_error(MOE_ERR_FORMAT, "%s: key 'general.architecture' is missing", path);
    int64_t n_layer = get_arch_int(g, arch, "block_count", 0);
    int64_t n_embd = get_arch_int(g, arch, "embedding_length", 0);
    int64_t n_head = get_arch_int(g, arch, "attention.head_count", 0);
    int64_t n_head_kv = get_arch_int(g, arch, "attention.head_count_kv", n_head);
    if (n_layer <= 0 || n_layer > 100000 || n_embd <= 0 || n_head <= 0 || n_head_kv <= 0)
        return moe_error(MOE_ERR_FORMAT, "%s: missing or invalid %s.block_count / embedding_length / attention.head_count", path, arch);
    int64_t head_k = get_arch_int(g, arch, "attention.key_length", n_embd / n_head);
    int64_t head_v = get_arch_int(g, arch, "attention.value_length", n_embd / n_head);
    plan->n_layers = (int)n_layer;
    plan->n_experts = (int)get_arch_int(g, arch, "expert_count", 0);
    plan->n_experts_used = (int)get_arch_int(g, arch, "expert_used_count", 0);

    /* bytes of one expert per layer, summed over its gate/up/down */
    uint64_t *layer_expert = moe_calloc((size_t)n_layer, sizeof *layer_expert);
    if (!layer_expert) return MOE_ERR_NOMEM;
    plan->file_bytes = moe_gguf_file_size(g);
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        bool per_expert = false;
        int l = expert_tensor_layer(t->name, &per_expert);
        if (l < 0 || l >= n_layer) {
            plan->resident_bytes += t->nbytes;
            continue;
        }
        plan->expert_bytes += t->nbytes;
        if (per_expert) {
            /* every expert of a layer has the same shape; count the first one */
            if (strstr(t->name, ".0.weight")) layer_expert[l] += t->nbytes;
        } else if (t->ne[2] > 0) {
            layer_expert[l] += t->nbytes / (uint64_t)t->ne[2];
        }
    }
    for (int64_t l = 0; l < n_layer; l++) {
        if (layer_expert[l]) plan->n_moe_layers++;
        plan->slot_bytes = MOE_MAX(plan->slot_bytes, layer_expert[l]);
    }
    free(layer_expert);
    if (n_ctx <= 0) n_ctx = (int)get_arch_int(g, arch, "context_length", 4096);
    plan->kv_bytes = (uint64_t)n_layer * (uint64_t)n_ctx * (uint64_t)n_head_kv * (uint64_t)(head_k + head_v) *
                     moe_kv_elem_bytes(kv_type == MOE_KV_F16);
    uint64_t n_vocab = 0;
    const void *toks;
    if (moe_gguf_get_arr(g, "tokenizer.ggml.tokens", MOE_GGUF_STRING, &toks, &n_vocab) != MOE_OK) n_vocab = 0;
    plan->overhead_bytes = OVERHEAD_FIXED + n_vocab * 4u * 2u;
    if (plan->n_moe_layers == 0)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: no routed expert tensors (blk.N.ffn_*_exps.weight): nothing to offload", path);

    uint64_t fixed = plan->resident_bytes + plan->kv_bytes + plan->overhead_bytes;
    uint64_t one_layer = plan->slot_bytes * (uint64_t)MOE_MAX(plan->n_experts_used, 1);
    plan->min_budget = fixed + one_layer;
    plan->n_slots = budget > fixed ? (int64_t)((budget - fixed) / plan->slot_bytes) : 0;
    if (budget < plan->min_budget)
        return moe_error(MOE_ERR_NOMEM,
                         "%s: a budget of %.1f MiB is too small: the resident weights (%.1f MiB), the KV cache for %d tokens (%.1f MiB) "
                         "and scratch (%.1f MiB) plus one layer's %d experts (%.1f MiB) need at least %.1f MiB",
                         path, budget / 1048576.0, plan->resident_bytes / 1048576.0, n_ctx, plan->kv_bytes / 1048576.0,
                         plan->overhead_bytes / 1048576.0, plan->n_experts_used, one_layer / 1048576.0,
                         plan->min_budget / 1048576.0);
    return MOE_OK;
}
