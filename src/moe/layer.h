/* layer.h — the MoE layer for training and for `moe layer`: router logits, the routing
 * rule of router.h, dispatch to the experts as a grouped GEMM (experts.h), combine, an
 * optional shared expert, and the backward pass of all of it into gradient buffers.
 * Conventions follow llm.c: `_forward(out, in, weights, dims)`, `_backward(d_in, d_weights,
 * d_out, in, weights, dims)`, gradients accumulated (+=). ../shared/specs/moe-layer.md is
 * the contract. */
#ifndef MOE_MOE_LAYER_H
#define MOE_MOE_LAYER_H

#include "core/common.h"
#include "core/threads.h"
#include "moe/experts.h"
#include "moe/router.h"

typedef struct moe_layer_cfg {
    moe_router_cfg router;   /* router.n_expert is E; n_null, slots_per_expert as the router needs */
    int64_t d, ff;           /* model width, expert hidden width */
    int64_t shared_ff;       /* S, the shared expert's hidden width; 0 = no shared expert */
    moe_ffn_act act;
} moe_layer_cfg;

/* The layer's tensors (and, with the same struct, their gradients). NULL = absent.
 *   router_w  [R × d]: R = E, E+m (adamoe), E·p (soft-moe: Φ), E (base: centroids)
 *   router_b  [R]: topk/switch/gshard/expert-choice/adamoe/usmoe add it to the logits;
 *             deepseek-v3/loss-free use it for selection only (its gradient stays 0)
 *   router_scale [1]: soft-moe (absent = 1)
 *   experts.gate/up [E × ff × d], experts.down [E × d × ff]
 *   shared.gate/up [S × d], shared.down [d × S] */
typedef struct moe_layer_params {
    float *router_w, *router_b, *router_scale;
    moe_ffn experts;
    moe_ffn shared;
} moe_layer_params;

typedef struct { float *p; size_t cap; } moe_fbuf;

/* One layer's forward state, kept for its backward. Zero-initialise with moe_layer_init. */
typedef struct moe_layer {
    moe_layer_cfg cfg;
    int64_t T;               /* tokens of the last forward */
    moe_routing rt;          /* the routing of the last forward */
    moe_router_cfg rc;       /* the router configuration it ran with (sel_bias set) */
    /* router */
    moe_fbuf logits;         /* [T × R] */
    moe_fbuf xhat, xr;       /* soft-moe: normalised tokens [T × d], their 1/‖x‖ [T] */
    moe_fbuf phihat, phir;   /* soft-moe: normalised slot parameters [R × d], 1/‖φ‖ [R] */
    moe_fbuf sim;            /* soft-moe: ⟨x̂, φ̂⟩ [T × R] (logits / scale) */
    /* dispatch: rows sorted by expert */
    int64_t n_rows;
    int64_t *off;            /* [E + 1] */
    int64_t *row_of;         /* [T × n_cols] row of each (token, choice), −1 = none */
    size_t cap_rows, cap_pairs;
    moe_fbuf X, O;           /* [n_rows × d] expert inputs, outputs */
    moe_fbuf A, U, S, H;     /* [n_rows × ff] saved activations */
    moe_fbuf shA, shU, shS, shH; /* shared expert, [T × S] */
    /* backward scratch */
    moe_fbuf dO, dX, dA, dU, dW, dD, dC, dlogits, dxh, dph;
} moe_layer;

/* Checks cfg (dimensions positive and small enough for int GEMM arguments, the router's
 * own check) and stores it. */
moe_status moe_layer_init(moe_layer *l, const moe_layer_cfg *cfg);
void moe_layer_free(moe_layer *l);

/* Rows of router_w the layer expects: E, E+m, E·p. */
int64_t moe_layer_router_rows(const moe_layer_cfg *cfg);

/* y [T × d] = layer(x [T × d]). token_ids [T] for hash routing (else NULL). The routing
 * (ids, weights, dispatch/combine, losses, stats) is left in l->rt. */
moe_status moe_layer_forward(moe_layer *l, float *y, const float *x, const int32_t *token_ids,
                             const moe_layer_params *w, int64_t T, moe_pool *pool);

/* Gradients of L = Σ y ⊙ dy + aux_coef·aux_loss + z_coef·z_loss, for the x, w and T of
 * the last forward: dx [T × d] += ∂L/∂x, every non-NULL tensor of g += ∂L/∂tensor (g has
 * the layout of w). Discrete routing decisions are constants. */
moe_status moe_layer_backward(moe_layer *l, float *dx, moe_layer_params *g, const float *dy,
                              const float *x, const moe_layer_params *w, float aux_coef, float z_coef,
                              moe_pool *pool);

#endif
