/* tmodel.h — the training model: every parameter of an MoE language model in one F32
 * buffer (with its gradient and AdamW moments beside it), described by a tensor table in
 * llama.cpp's GGUF names, and the forward/backward pass of the whole model (llm.c style:
 * `_forward(out, in, weights, dims)`, `_backward(d_in, d_weights, d_out, in, weights, dims)`,
 * gradients accumulated). The MoE FFN is moe/layer.h's layer; the router is moe/router.h. */
#ifndef MOE_TRAIN_TMODEL_H
#define MOE_TRAIN_TMODEL_H

#include "core/common.h"
#include "core/threads.h"
#include "model/arch.h"
#include "moe/layer.h"

#define TM_MAX_TENSORS_PER_LAYER 24
#define TM_NAME_MAX 64
#define TM_MAX_LAYERS 4096       /* block_count's limit (model/arch.c) */

/* The shape of a model (everything `moe init` takes and a GGUF file's metadata gives). */
typedef struct tm_config {
    const moe_arch_desc *arch;   /* llama (Mixtral), qwen2moe, qwen3moe, olmoe, deepseek */
    moe_hparams hp;              /* n_vocab, n_embd, n_layer, heads, n_ff (dense), n_expert,
                                    n_expert_used, n_ff_exp, n_ff_shexp, n_layer_dense_lead, ... */
    moe_router_cfg router;       /* the router of every MoE layer (n_expert = hp.n_expert) */
    bool tied;                   /* no output.weight: the head is token_embd */
    int32_t *hash_map;           /* hash router's map (owned), NULL = id mod E */
    /* Which layers route to experts; the others run a dense FFN of width hp.n_ff:
     * deepseek's leading dense blocks, or all but every N-th layer after `moe upcycle
     * --every N`. A file's tensors decide (moe_layer_kind). */
    bool moe_layer[TM_MAX_LAYERS];
} tm_config;

/* One parameter tensor: GGUF name, ggml shape (ne[0] innermost), place in the buffers. */
typedef struct tm_tensor {
    char name[TM_NAME_MAX];
    int n_dims;
    int64_t ne[3];
    size_t off, n;               /* offset and count in floats */
    bool decay;                  /* AdamW weight decay applies (matrices, not norms/biases) */
    bool trainable;              /* false: updated by a rule, not by gradients (selection bias) */
} tm_tensor;

/* Pointers of one layer's tensors into a buffer (params or grads); NULL = absent.
 * Shapes as [rows × cols] row-major (= ggml ne {cols, rows}). */
typedef struct tm_layer_w {
    float *attn_norm;            /* [d] */
    float *wq, *wk, *wv;         /* [nq × d], [nk × d], [nv × d] */
    float *bq, *bk, *bv;         /* [nq], [nk], [nv] (qwen2moe) */
    float *q_norm, *k_norm;      /* [nq]/[nk] (olmoe) or [hk] (qwen3moe) */
    float *wo;                   /* [d × na] */
    float *ffn_norm;             /* [d] */
    moe_ffn dense;               /* gate/up [ff × d], down [d × ff]: dense (leading) layers */
    float *router_w;             /* [R × d] ffn_gate_inp */
    float *sel_bias;             /* [E] exp_probs_b.bias: loss-free / deepseek-v3 selection bias */
    float *router_scale;         /* [1] soft-moe */
    moe_ffn experts;             /* gate/up [E × ff × d], down [E × d × ff] */
    moe_ffn shared;              /* gate/up [S × d], down [d × S] */
    float *shared_gate;          /* [d] ffn_gate_inp_shexp (qwen2moe) */
} tm_layer_w;

typedef struct tm_weights {
    float *tok_embd;             /* [V × d] */
    tm_layer_w *layers;          /* [n_layer] */
    float *output_norm;          /* [d] */
    float *output;               /* [V × d], = tok_embd when tied */
} tm_weights;

/* Activations of one layer, kept for the backward pass. N = B·T tokens. */
typedef struct tm_layer_acts {
    float *x;                    /* [N × d] the layer's input (residual stream) */
    float *xn1, *rstd1;          /* [N × d], [N] attention RMSNorm */
    float *qp, *kp;              /* [N × nq], [N × nk] projections before q/k norm */
    float *qrs, *krs;            /* q/k norm 1/rms: [N × (1 or H)], [N × (1 or Hkv)] */
    float *qn, *kn;              /* [N × nq], [N × nk] after q/k norm, before RoPE */
    float *q, *k, *v;            /* [N × nq], [N × nk], [N × nv] after RoPE */
    float *att;                  /* [B × H × T × T] attention probabilities */
    float *ao;                   /* [N × na] attention output (heads concatenated) */
    float *xm;                   /* [N × d] residual after attention */
    float *xn2, *rstd2;          /* [N × d], [N] FFN RMSNorm */
    float *fA, *fU, *fS, *fH;    /* [N × ff] dense FFN, or the gated shared expert */
    float *sh_o, *sg;            /* [N × d] gated shared expert output, [N] its gate logit */
} tm_layer_acts;

typedef struct tm_model {
    tm_config c;
    int n_tensors;
    tm_tensor *t;
    size_t n_params;
    float *params, *grads;       /* [n_params] each */
    tm_weights w, g;             /* views of params, grads */
    /* forward/backward state */
    int64_t B, T, N;             /* batch of B sequences of T tokens, N = B·T */
    int64_t cap_B, cap_T;        /* the batch shape the buffers below hold */
    tm_layer_acts *acts;         /* [n_layer] */
    moe_layer *moe;              /* [n_layer] (only MoE layers are initialised) */
    float *xf, *xnf, *rstdf;     /* [N × d] final residual, its norm, [N] */
    float *logits;               /* [N × V]: logits, then probabilities / dlogits */
    float *rope;                 /* [T × n_rot] (cos, sin) pairs */
    float *dx, *dxm, *dxn, *dtmp;/* [N × d] backward scratch */
    float *dq, *dk, *dv, *dao;   /* [N × nq], [N × nk], [N × nv], [N × na] */
    float *dA, *dU, *dsh;        /* [N × max ff], [N × d] */
    float *scratch;              /* per thread attention rows */
    const int32_t *tokens, *targets; /* of the last forward */
    double loss;                 /* mean cross-entropy of the last forward */
    double aux_loss, z_loss;     /* summed over MoE layers (coefficient-free) */
    float aux_coef, z_coef;
    /* seconds spent, forward + backward, since init (for throughput reports) */
    double t_attn, t_moe, t_ffn, t_head;
    moe_pool *pool;              /* not owned */
} tm_model;

/* A model shape, as `moe init` takes it. arch: mixtral (gguf "llama"), qwen2moe, qwen3moe,
 * olmoe, deepseek (or the gguf name). shared_ff: total width of the shared expert(s)
 * (deepseek: a multiple of ff); dense_ff: width of deepseek's leading dense layers. */
typedef struct tm_shape {
    const char *arch;
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_expert, n_expert_used, shared_ff, dense_layers, dense_ff;
    int64_t n_ctx, n_vocab;
} tm_shape;
/* Fills c (router: token-choice top-k as the architecture routes). */
moe_status tm_config_make(tm_config *c, const tm_shape *s);
/* Sparse upcycling's layer pattern (moe upcycle --every N): only every N-th layer —
 * those with (il + 1) % every == 0, the 2nd, 4th, ... for N = 2 — keeps its experts; the
 * others become dense FFNs of width dense_ff. c must have experts and no leading dense
 * layers. every = 1: every layer is MoE. */
moe_status tm_config_set_moe_every(tm_config *c, int64_t every, int64_t dense_ff);

/* Reads "tm_config" from a GGUF file's metadata and tensor shapes (router: the file's
 * moe.router.* keys if present, else token-choice top-k as the architecture does). */
moe_status tm_config_from_gguf(const moe_gguf *g, tm_config *c);
void tm_config_free(tm_config *c);

/* Builds the tensor table and allocates params/grads (zeroed). */
moe_status tm_model_init(tm_model *m, const tm_config *c, moe_pool *pool);
void tm_model_free(tm_model *m);
const tm_tensor *tm_find(const tm_model *m, const char *name);

/* Random initialisation as ../shared/fixtures/mkmoe.py: matrices N(0,1)/√fan_in,
 * token_embd N(0,1), norms 1, biases and selection bias 0. */
void tm_model_init_random(tm_model *m, uint64_t seed);
/* Copies the weights from a GGUF file (any type moe.c can convert to float); every
 * tensor of the table must be present with its shape. With new_router (training with
 * another router than the file's), router tensors of another shape are not an error:
 * the rows both have are kept, the others drawn N(0,1)/√d (seed), biases 0, scales 1. */
moe_status tm_model_load_weights(tm_model *m, const moe_gguf *g, bool new_router, uint64_t seed);
/* Adds the model's metadata ({arch}.*, and moe.router.* when router_keys) and tensors
 * (F32, or F16 for matrices when f16) to w; `src` (may be NULL) supplies general.* and
 * tokenizer.* keys. Without router_keys the file says nothing of its router, which is then
 * the architecture's own (a fresh or upcycled model: a plain file llama.cpp loads). f16
 * needs a buffer that outlives the write: *f16_buf (free() it). */
moe_status tm_model_to_writer(const tm_model *m, moe_gguf_writer *w, const moe_gguf *src, bool router_keys, bool f16,
                              void **f16_buf);

/* Forward pass over B sequences of T tokens (tokens, targets [B × T]); targets may be
 * NULL (no loss). Leaves the mean cross-entropy in m->loss and the logits in m->logits. */
moe_status tm_forward(tm_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T);
/* Backward of  loss_scale·(CE + aux_coef·Σ aux + z_coef·Σ z)  into m->grads (+=). */
moe_status tm_backward(tm_model *m, float loss_scale);
void tm_zero_grad(tm_model *m);

/* splitmix64 (the training RNG: small state, trivially saved in checkpoints). */
static inline uint64_t tm_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
