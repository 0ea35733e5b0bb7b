/* model.h — a loaded model: hyperparameters, the architecture's flags, and the weights,
 * grouped by role, as views into the mapped GGUF file. Routed experts are not here: the
 * forward pass asks the expert provider (experts.h) for them. */
#ifndef MOE_MODEL_MODEL_H
#define MOE_MODEL_MODEL_H

#include "core/arena.h"
#include "core/matmul.h"
#include "model/arch.h"
#include "model/experts.h"
#include "moe/router.h"

/* Shapes are [rows × cols]: a row is one output, as ggml's ne = {cols, rows}.
 * nq = n_head·n_embd_head_k, nk = n_head_kv·n_embd_head_k, nv = n_head_kv·n_embd_head_v,
 * na = n_head·n_embd_head_v, d = n_embd. Optional weights have data == NULL. */
typedef struct moe_attn_weights {
    const float *norm;         /* attn_norm [d] */
    moe_mat wq;                /* attn_q [nq × d] */
    moe_mat wk;                /* attn_k [nk × d] */
    moe_mat wv;                /* attn_v [nv × d] */
    moe_mat wo;                /* attn_output [d × na] */
    const float *bq, *bk, *bv, *bo;   /* optional biases [nq], [nk], [nv], [d] */
    const float *q_norm;       /* attn_q_norm: [n_embd_head_k] per head, or [nq] whole */
    const float *k_norm;       /* attn_k_norm: [n_embd_head_k] per head, or [nk] whole */
} moe_attn_weights;

typedef struct moe_ffn_weights {   /* a SwiGLU FFN: down · (silu(gate·x) ⊙ up·x) */
    moe_mat gate;              /* [ff × d] */
    moe_mat up;                /* [ff × d] */
    moe_mat down;              /* [d × ff] */
} moe_ffn_weights;

typedef struct moe_layer_weights {
    moe_attn_weights attn;
    const float *ffn_norm;     /* ffn_norm [d] */
    bool is_moe;               /* routed experts (else: the dense FFN) */
    moe_ffn_weights dense;     /* ffn_gate/up/down [n_ff]: dense models and leading layers */
    moe_mat router;            /* ffn_gate_inp [n_logits × d]: n_expert rows (adamoe: + null experts) */
    const float *sel_bias;     /* exp_probs_b [n_expert]: selection-only bias (deepseek-v3, loss-free), or NULL */
    /* Soft MoE (moe.router.kind soft-moe) runs through the training layer (moe/layer.h)
     * in F32: slot parameters Φ = ffn_gate_inp [E·p × d], its scale [1], the experts
     * [E × ff × d], [E × ff × d], [E × d × ff] (the file's, or dequantized at load). */
    const float *soft_phi, *soft_scale, *soft_gate, *soft_up, *soft_down;
    moe_ffn_weights shared;    /* ffn_*_shexp [n_ff_shexp]: shared expert(s), or empty */
    moe_mat shared_gate;       /* ffn_gate_inp_shexp [1 × d] (qwen2moe), or empty */
} moe_layer_weights;

struct moe_model {
    moe_gguf *gguf;
    const moe_arch_desc *arch;
    moe_hparams hp;
    moe_model_params params;
    moe_arena arena;               /* dequantized norms/biases of non-F32 files */
    moe_mat tok_embd;              /* token_embd [n_vocab × d] */
    const float *output_norm;      /* output_norm [d] */
    moe_mat output;                /* output [n_vocab × d], token_embd when tied */
    moe_layer_weights *layers;     /* [n_layer] */
    moe_expert_provider *experts;  /* default provider: routed experts in the mapping */
    bool per_expert_layout;        /* blk.N.ffn_*.E.weight tensors */
    /* How tokens are routed. Files written by llama.cpp route by their architecture's
     * softmax top-k (router_custom false: the fast path of moe_route_topk); files trained
     * with another router say so under moe.router.* and go through the training routers'
     * own forward (router.h), so inference and training route identically. */
    moe_router_cfg router;
    bool router_custom;
    int32_t *router_hash_map;      /* hash router's map (owned), or NULL */
    int64_t router_logits;         /* rows of ffn_gate_inp: n_expert (+ null experts) */
    int64_t router_cols;           /* choices per token: k, or n_expert for expert choice */
};

/* The context's thread pool (for its wait statistics, moe_pool_wait_seconds). */
moe_pool *moe_context_pool(moe_context *c);
/* Gate lookahead for the expert provider: guess n experts of the next MoE layer during
 * decode (0 turns it off). */
void moe_context_set_lookahead(moe_context *c, int n);

/* Tests only: nonzero makes attention score one key at a time (as for heads whose size
 * is not a multiple of 8) instead of eight at a time, whose results must be the same
 * bits (forward.c). Not for use from more than one thread at a time. */
extern int moe_forward_test_one_key_at_a_time;

#endif
