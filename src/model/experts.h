/* experts.h — the expert provider: the one interface through which the forward pass gets
 * the weights of a routed expert ("give me gate/up/down of expert e of layer l, at
 * whatever type they are stored"). The default provider points into the mapped file;
 * the offloading work plugs a cached provider in here without touching the forward pass. */
#ifndef MOE_MODEL_EXPERTS_H
#define MOE_MODEL_EXPERTS_H

#include "core/matmul.h"

/* One routed expert: SwiGLU FFN  down · (silu(gate · x) ⊙ (up · x)). Each matrix may have
 * its own type (per-expert bitwidths). */
typedef struct moe_expert_weights {
    moe_mat gate;   /* [n_ff_exp rows × n_embd] */
    moe_mat up;     /* [n_ff_exp rows × n_embd] */
    moe_mat down;   /* [n_embd rows × n_ff_exp] */
} moe_expert_weights;

typedef struct moe_expert_provider moe_expert_provider;

/* How the forward pass calls a provider, per MoE layer and batch:
 *   hint(l, experts of this batch, predicted=false)   once, right after routing
 *   for each expert e of the batch, in ascending id:  get(l, e) ... compute ... release(l, e)
 * get is called once per (layer, expert) per batch, so each expert's weights are read
 * once per batch. hint with predicted=true is for guesses about layers not yet routed
 * (prefetch); it never changes results. */
typedef struct moe_expert_provider_ops {
    /* Weights valid until release(l, e). NULL with moe_error() set on failure (an I/O
     * error of an offloading provider); the forward pass then fails with that error. */
    const moe_expert_weights *(*get)(moe_expert_provider *p, int layer, int expert);
    /* Optional (NULL): the experts about to be used (sorted, unique). */
    void (*hint)(moe_expert_provider *p, int layer, const int32_t *experts, int n, bool predicted);
    /* Optional (NULL): the forward pass no longer needs (l, e) in this batch. */
    void (*release)(moe_expert_provider *p, int layer, int expert);
    /* Frees the provider. */
    void (*destroy)(moe_expert_provider *p);
} moe_expert_provider_ops;

/* Providers embed this as their first member. */
struct moe_expert_provider {
    const moe_expert_provider_ops *ops;
};

/* The default provider: weights are pointers into the mapped file (no copies, no I/O on
 * our side; the kernel pages them in). Slots start empty; the model loader fills them. */
moe_expert_provider *moe_mapped_provider_create(int n_layer, int n_expert);
/* The slot of (layer, expert) to fill. */
moe_expert_weights *moe_mapped_provider_slot(moe_expert_provider *p, int layer, int expert);

static inline void moe_expert_provider_free(moe_expert_provider *p) {
    if (p) p->ops->destroy(p);
}

/* The model's own (mapped) provider, e.g. for a caching provider to wrap. */
moe_expert_provider *moe_model_default_experts(moe_model *m);

/* Makes a context use another provider (NULL: back to the model's default). The caller
 * keeps ownership and must keep it alive while the context uses it. */
void moe_context_set_expert_provider(moe_context *c, moe_expert_provider *p);

#endif
