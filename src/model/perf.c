/* perf.c — what the benchmarks need to know about a model and a context: the bytes of
 * weights one decoded token reads (the DRAM bound's denominator) and the time the
 * context's thread pool spent waiting. */
#include "model/model.h"

static uint64_t mat_bytes(const moe_mat *m) { return m->data ? (uint64_t)m->rows * m->row_bytes : 0; }

static uint64_t ffn_bytes(const moe_ffn_weights *f) {
    return mat_bytes(&f->gate) + mat_bytes(&f->up) + mat_bytes(&f->down);
}

uint64_t moe_model_bytes_per_token(const moe_model *m) {
    const moe_hparams *hp = &m->hp;
    /* one embedding row, the output norm and head */
    uint64_t b = m->tok_embd.row_bytes + mat_bytes(&m->output) + (uint64_t)hp->n_embd * 4u;
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const moe_layer_weights *ly = &m->layers[il];
        const moe_attn_weights *a = &ly->attn;
        b += mat_bytes(&a->wq) + mat_bytes(&a->wk) + mat_bytes(&a->wv) + mat_bytes(&a->wo);
        b += 2u * (uint64_t)hp->n_embd * 4u; /* the two norms */
        if (!ly->is_moe) {
            b += ffn_bytes(&ly->dense);
            continue;
        }
        b += mat_bytes(&ly->router) + ffn_bytes(&ly->shared) + mat_bytes(&ly->shared_gate);
        /* the top-k experts: every expert of a layer has the same size; take expert 0 */
        const moe_expert_weights *w = moe_mapped_provider_slot(m->experts, (int)il, 0);
        b += (uint64_t)hp->n_expert_used * (mat_bytes(&w->gate) + mat_bytes(&w->up) + mat_bytes(&w->down));
    }
    return b;
}

void moe_context_pool_stats(moe_context *c, double *wait_seconds, uint64_t *runs, bool reset) {
    moe_pool *p = moe_context_pool(c);
    if (wait_seconds) *wait_seconds = moe_pool_wait_seconds(p);
    if (runs) *runs = moe_pool_runs(p);
    if (reset) moe_pool_reset_stats(p);
}

void moe_context_product_stats(moe_context *c, double *seconds, uint64_t *bytes, bool reset) {
    moe_pool *p = moe_context_pool(c);
    moe_pool_product_stats(p, seconds, bytes);
    if (reset) moe_pool_reset_stats(p);
}
