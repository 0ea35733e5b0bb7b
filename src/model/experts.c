/* experts.c — the default expert provider: a table of moe_expert_weights pointing into
 * the mapped GGUF file, filled by the model loader for either tensor layout (3-D
 * ffn_*_exps or per-expert blk.N.ffn_*.E.weight). */
#include "model/experts.h"

#include <stdlib.h>

typedef struct {
    moe_expert_provider base;
    int n_layer, n_expert;
    moe_expert_weights *w;   /* [n_layer × n_expert] */
} mapped_provider;

static const moe_expert_weights *mapped_get(moe_expert_provider *p, int layer, int expert) {
    mapped_provider *m = (mapped_provider *)p;
    if (layer < 0 || layer >= m->n_layer || expert < 0 || expert >= m->n_expert)
        return moe_error_null(MOE_ERR_INVALID, "expert %d of layer %d does not exist", expert, layer);
    const moe_expert_weights *w = &m->w[(size_t)layer * (size_t)m->n_expert + (size_t)expert];
    if (!w->gate.data) return moe_error_null(MOE_ERR_INVALID, "layer %d has no routed experts", layer);
    return w;
}

static void mapped_destroy(moe_expert_provider *p) {
    mapped_provider *m = (mapped_provider *)p;
    free(m->w);
    free(m);
}

static const moe_expert_provider_ops g_mapped_ops = {mapped_get, NULL, NULL, mapped_destroy};

moe_expert_provider *moe_mapped_provider_create(int n_layer, int n_expert) {
    mapped_provider *m = moe_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->base.ops = &g_mapped_ops;
    m->n_layer = n_layer;
    m->n_expert = n_expert;
    m->w = moe_calloc((size_t)MOE_MAX(n_layer, 1) * (size_t)MOE_MAX(n_expert, 1), sizeof *m->w);
    if (!m->w) {
        free(m);
        return NULL;
    }
    return &m->base;
}

moe_expert_weights *moe_mapped_provider_slot(moe_expert_provider *p, int layer, int expert) {
    mapped_provider *m = (mapped_provider *)p;
    return &m->w[(size_t)layer * (size_t)m->n_expert + (size_t)expert];
}
