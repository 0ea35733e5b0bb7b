/* arch.h — the architecture table: one description per general.architecture (which
 * RoPE, which q/k norm, how routing weights are normalised, which FFN blocks exist), and
 * reading the hyperparameters from a GGUF file with llama.cpp's defaults. The forward
 * pass is one function driven by these flags; there is no per-model copy of it. */
#ifndef MOE_MODEL_ARCH_H
#define MOE_MODEL_ARCH_H

#include "core/common.h"

enum { MOE_QK_NORM_NONE = 0, MOE_QK_NORM_HEAD = 1, MOE_QK_NORM_FULL = 2 };

typedef struct moe_arch_desc {
    const char *name;        /* general.architecture */
    moe_rope_type rope;      /* llama.cpp's llama_model_rope_type() for the arch */
    int qk_norm;             /* MOE_QK_NORM_*: attn_q_norm / attn_k_norm and their extent */
    bool needs_experts;      /* expert_count must be > 0 */
    bool renorm;             /* default of expert_weights_norm (norm_w in build_moe_ffn) */
    bool shared_expert;      /* ffn_{gate,up,down}_shexp (required when the arch has them) */
    bool shared_gate;        /* ffn_gate_inp_shexp: sigmoid gate on the shared expert */
    bool dense_lead;         /* leading_dense_block_count dense FFN layers come first */
} moe_arch_desc;

/* NULL (no error recorded) for an architecture moe.c does not know. */
const moe_arch_desc *moe_arch_find(const char *name);
/* "llama, qwen2moe, ..." for error messages. */
const char *moe_arch_list(void);

/* Reads general.architecture and every hyperparameter (sizes that the file leaves out and
 * that the tensors determine — expert widths, vocabulary — are filled in by the model
 * loader). Errors name the file and the key. */
moe_status moe_hparams_load(const moe_gguf *g, const moe_arch_desc **arch, moe_hparams *hp);

/* Whether layer il routes to experts (*is_moe) or runs a dense FFN. A dense model's layers
 * are dense; deepseek's leading_dense_block_count layers are dense whatever they hold (as
 * in llama.cpp); any other layer of an MoE file is what its tensors say: a router
 * (blk.N.ffn_gate_inp.weight) makes it MoE, else a dense FFN (blk.N.ffn_gate.weight) makes
 * it dense, so files that mix the two (`moe upcycle --every N`) load. A layer with neither
 * is an error naming the file and both tensors. */
moe_status moe_layer_kind(const moe_gguf *g, const moe_hparams *hp, int il, bool *is_moe);

#endif
