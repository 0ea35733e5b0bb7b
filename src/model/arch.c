/* arch.c — the architecture table and the hyperparameter reader (see arch.h). Defaults
 * follow llama.cpp's llama_model::load_hparams (2025): n_head_kv = n_head, head sizes =
 * n_embd / n_head, n_rot = head size, rope base 10000, linear scaling at factor 1. */
#include "model/arch.h"
#include "moe/route.h"

#include <math.h>
#include <stdio.h>

/*                      name        rope           qk_norm            experts renorm shared sh_gate dense_lead */
static const moe_arch_desc g_archs[] = {
    /* Mixtral is `llama` with expert_count > 0: softmax → top-k → renormalise. */
    {"llama",    MOE_ROPE_NORM, MOE_QK_NORM_NONE, false, true,  false, false, false},
    /* Qwen1.5/2-MoE: no renorm; a shared expert gated by sigmoid(x·w); q/k/v biases. */
    {"qwen2moe", MOE_ROPE_NEOX, MOE_QK_NORM_NONE, true,  false, true,  true,  false},
    /* Qwen3-MoE: RMS-norm of each q/k head before RoPE; norm_topk_prob. */
    {"qwen3moe", MOE_ROPE_NEOX, MOE_QK_NORM_HEAD, true,  true,  false, false, false},
    /* OLMoE: RMS-norm over the whole q and k projections; no renorm. */
    {"olmoe",    MOE_ROPE_NEOX, MOE_QK_NORM_FULL, true,  false, false, false, false},
    /* DeepSeek-MoE v1: dense leading layers, ungated shared experts, fine-grained experts. */
    {"deepseek", MOE_ROPE_NORM, MOE_QK_NORM_NONE, true,  false, true,  false, true},
};

const moe_arch_desc *moe_arch_find(const char *name) {
    for (size_t i = 0; i < MOE_ARRAY_LEN(g_archs); i++)
        if (strcmp(g_archs[i].name, name) == 0) return &g_archs[i];
    return NULL;
}

const char *moe_arch_list(void) { return "llama (dense or Mixtral), qwen2moe, qwen3moe, olmoe, deepseek"; }

/* ---------------------------------------------------------------- key access */

typedef struct {
    const moe_gguf *g;
    const char *path, *arch;
} keys;

/* "{arch}.suffix" */
static const char *akey(const keys *k, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", k->arch, suffix);
    return buf;
}

/* An integer hyperparameter. Per-layer arrays (llama.cpp's get_key_or_arr) are accepted
 * when every layer has the same value; moe.c does not support varying ones. */
static moe_status get_int(const keys *k, const char *suffix, bool required, int64_t def, int64_t max, int64_t *out) {
    char key[128];
    akey(k, suffix, key, sizeof key);
    const moe_gguf_value *v = moe_gguf_find(k->g, key);
    if (!v) {
        if (required) return moe_error(MOE_ERR_FORMAT, "%s: metadata key '%s' is missing", k->path, key);
        *out = def;
        return MOE_OK;
    }
    int64_t x;
    if (v->type == MOE_GGUF_ARRAY) {
        const void *data;
        uint64_t n;
        if (v->v.arr.n == 0) return moe_error(MOE_ERR_FORMAT, "%s: '%s' is an empty array", k->path, key);
        moe_status st = moe_gguf_get_arr(k->g, key, -1, &data, &n);
        if (st) return st;
        int64_t first = 0;
        for (uint64_t i = 0; i < n; i++) {
            int64_t e;
            switch (v->v.arr.type) {
            case MOE_GGUF_U32: e = ((const uint32_t *)data)[i]; break;
            case MOE_GGUF_I32: e = ((const int32_t *)data)[i]; break;
            case MOE_GGUF_U64: e = (int64_t)((const uint64_t *)data)[i]; break;
            case MOE_GGUF_I64: e = ((const int64_t *)data)[i]; break;
            default: return moe_error(MOE_ERR_FORMAT, "%s: '%s' is an array of non-integers", k->path, key);
            }
            if (i == 0) first = e;
            else if (e != first)
                return moe_error(MOE_ERR_UNSUPPORTED, "%s: '%s' varies between layers (%lld vs %lld); not supported",
                                 k->path, key, (long long)first, (long long)e);
        }
        x = first;
    } else {
        moe_status st = moe_gguf_get_i64(k->g, key, &x);
        if (st) return st;
    }
    if (x < 0 || x > max)
        return moe_error(MOE_ERR_FORMAT, "%s: '%s' = %lld is out of range [0, %lld]", k->path, key, (long long)x,
                         (long long)max);
    *out = x;
    return MOE_OK;
}

static moe_status get_float(const keys *k, const char *suffix, bool required, float def, float *out) {
    char key[128];
    akey(k, suffix, key, sizeof key);
    moe_status st = moe_gguf_get_f32(k->g, key, out);
    if (st == MOE_ERR_NOT_FOUND) {
        if (required) return moe_error(MOE_ERR_FORMAT, "%s: metadata key '%s' is missing", k->path, key);
        *out = def;
        return MOE_OK;
    }
    if (st) return st;
    if (!isfinite(*out)) return moe_error(MOE_ERR_FORMAT, "%s: '%s' is not a finite number", k->path, key);
    return MOE_OK;
}

static moe_status get_flag(const keys *k, const char *suffix, bool def, bool *out) {
    char key[128];
    akey(k, suffix, key, sizeof key);
    moe_status st = moe_gguf_get_bool(k->g, key, out);
    if (st == MOE_ERR_NOT_FOUND) {
        *out = def;
        return MOE_OK;
    }
    return st;
}

/* ---------------------------------------------------------------- hparams */

#define MAX_DIM (INT64_C(1) << 24)     /* any width beyond 16 M values is a corrupt file */
#define MAX_EXPERTS MOE_ROUTE_MAX_EXPERT  /* moe_route_topk's limit */

moe_status moe_hparams_load(const moe_gguf *g, const moe_arch_desc **arch_out, moe_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    const char *path = moe_gguf_path(g);
    const char *name;
    moe_status st = moe_gguf_get_str(g, "general.architecture", &name);
    if (st == MOE_ERR_NOT_FOUND)
        return moe_error(MOE_ERR_FORMAT, "%s: metadata key 'general.architecture' is missing", path);
    if (st) return st;
    const moe_arch_desc *arch = moe_arch_find(name);
    if (!arch)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", path, name,
                         moe_arch_list());
    *arch_out = arch;
    snprintf(hp->arch, sizeof hp->arch, "%s", arch->name);
    keys k = {g, path, arch->name};

#define TRY(x) do { if ((st = (x))) return st; } while (0)
    TRY(get_int(&k, "context_length", true, 0, INT64_C(1) << 30, &hp->n_ctx_train));
    TRY(get_int(&k, "embedding_length", true, 0, MAX_DIM, &hp->n_embd));
    TRY(get_int(&k, "block_count", true, 0, 4096, &hp->n_layer));
    TRY(get_int(&k, "attention.head_count", true, 0, 65536, &hp->n_head));
    TRY(get_int(&k, "attention.head_count_kv", false, hp->n_head, 65536, &hp->n_head_kv));
    TRY(get_int(&k, "feed_forward_length", false, 0, MAX_DIM, &hp->n_ff));
    TRY(get_int(&k, "expert_count", false, 0, MAX_EXPERTS, &hp->n_expert));
    TRY(get_int(&k, "expert_used_count", false, 0, MAX_EXPERTS, &hp->n_expert_used));
    TRY(get_int(&k, "expert_feed_forward_length", false, 0, MAX_DIM, &hp->n_ff_exp));
    TRY(get_int(&k, "expert_shared_feed_forward_length", false, 0, MAX_DIM, &hp->n_ff_shexp));
    TRY(get_int(&k, "expert_shared_count", false, 0, MAX_EXPERTS, &hp->n_expert_shared));
    TRY(get_int(&k, "leading_dense_block_count", false, 0, 4096, &hp->n_layer_dense_lead));
    TRY(get_flag(&k, "expert_weights_norm", arch->renorm, &hp->expert_weights_norm));
    TRY(get_float(&k, "expert_weights_scale", false, 1.0f, &hp->expert_weights_scale));
    TRY(get_float(&k, "attention.layer_norm_rms_epsilon", true, 0, &hp->rms_eps));

    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_head == 0 || hp->n_head_kv == 0)
        return moe_error(MOE_ERR_FORMAT, "%s: embedding_length, block_count and head counts must be > 0", path);
    if (hp->n_head % hp->n_head_kv)
        return moe_error(MOE_ERR_FORMAT, "%s: head_count %lld is not a multiple of head_count_kv %lld", path,
                         (long long)hp->n_head, (long long)hp->n_head_kv);
    TRY(get_int(&k, "attention.key_length", false, hp->n_embd / hp->n_head, MAX_DIM, &hp->n_embd_head_k));
    TRY(get_int(&k, "attention.value_length", false, hp->n_embd / hp->n_head, MAX_DIM, &hp->n_embd_head_v));
    TRY(get_int(&k, "rope.dimension_count", false, hp->n_embd_head_k, MAX_DIM, &hp->n_rot));
    if (hp->n_embd_head_k == 0 || hp->n_embd_head_v == 0)
        return moe_error(MOE_ERR_FORMAT, "%s: attention head size is 0", path);
    if (hp->n_rot % 2 || hp->n_rot > hp->n_embd_head_k)
        return moe_error(MOE_ERR_FORMAT, "%s: rope.dimension_count %lld must be even and at most the head size %lld",
                         path, (long long)hp->n_rot, (long long)hp->n_embd_head_k);
    if (hp->rms_eps < 0) return moe_error(MOE_ERR_FORMAT, "%s: negative layer_norm_rms_epsilon", path);

    /* Experts */
    if (arch->needs_experts && hp->n_expert == 0)
        return moe_error(MOE_ERR_FORMAT, "%s: architecture '%s' needs %s.expert_count > 0", path, arch->name, arch->name);
    if (hp->n_expert > 0 && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
        return moe_error(MOE_ERR_FORMAT, "%s: expert_used_count %lld must be in [1, expert_count %lld]", path,
                         (long long)hp->n_expert_used, (long long)hp->n_expert);
    if (hp->n_expert == 0) hp->n_expert_used = 0;
    if (!arch->dense_lead) hp->n_layer_dense_lead = 0;
    if (hp->n_layer_dense_lead > hp->n_layer) hp->n_layer_dense_lead = hp->n_layer;
    if (!arch->shared_expert) {
        hp->n_ff_shexp = 0;
        hp->n_expert_shared = 0;
    }
    hp->shared_expert_gate = arch->shared_gate;
    hp->qk_norm = arch->qk_norm;

    /* RoPE (llama.cpp: rope.scaling.type defaults to "linear"; factor 0/absent = 1) */
    hp->rope_type = arch->rope;
    TRY(get_float(&k, "rope.freq_base", false, 10000.0f, &hp->rope_freq_base));
    float factor = 0;
    char key[128];
    if (moe_gguf_find(g, akey(&k, "rope.scaling.factor", key, sizeof key)))
        TRY(get_float(&k, "rope.scaling.factor", false, 0, &factor));
    else
        TRY(get_float(&k, "rope.scale_linear", false, 0, &factor));
    if (factor < 0) return moe_error(MOE_ERR_FORMAT, "%s: negative rope scaling factor", path);
    hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    const char *stype = "linear";
    st = moe_gguf_get_str(g, akey(&k, "rope.scaling.type", key, sizeof key), &stype);
    if (st && st != MOE_ERR_NOT_FOUND) return st;
    if (strcmp(stype, "none") == 0) hp->rope_scaling = MOE_ROPE_SCALING_NONE;
    else if (strcmp(stype, "linear") == 0) hp->rope_scaling = MOE_ROPE_SCALING_LINEAR;
    else if (strcmp(stype, "yarn") == 0) hp->rope_scaling = MOE_ROPE_SCALING_YARN;
    else return moe_error(MOE_ERR_UNSUPPORTED, "%s: rope.scaling.type '%s' is not supported (none, linear, yarn)", path, stype);
    /* llama_context: "never scale if scaling type is none" */
    if (hp->rope_scaling == MOE_ROPE_SCALING_NONE) hp->rope_freq_scale = 1.0f;
    if (!(hp->rope_freq_base > 0)) return moe_error(MOE_ERR_FORMAT, "%s: rope.freq_base must be > 0", path);
    TRY(get_int(&k, "rope.scaling.original_context_length", false, hp->n_ctx_train, INT64_C(1) << 30,
                &hp->rope_n_ctx_orig));
    /* llama.cpp's context defaults: ext_factor -1 → 1 for YaRN, else 0; attn_factor 1;
     * beta_fast 32; beta_slow 1. */
    hp->yarn_ext_factor = hp->rope_scaling == MOE_ROPE_SCALING_YARN ? 1.0f : 0.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
#undef TRY
    return MOE_OK;
}

moe_status moe_layer_kind(const moe_gguf *g, const moe_hparams *hp, int il, bool *is_moe) {
    *is_moe = false;
    if (hp->n_expert <= 0 || il < hp->n_layer_dense_lead) return MOE_OK;
    char router[64], dense[64];
    snprintf(router, sizeof router, "blk.%d.ffn_gate_inp.weight", il);
    snprintf(dense, sizeof dense, "blk.%d.ffn_gate.weight", il);
    if (moe_gguf_find_tensor(g, router)) {
        *is_moe = true;
        return MOE_OK;
    }
    if (moe_gguf_find_tensor(g, dense)) return MOE_OK;
    return moe_error(MOE_ERR_NOT_FOUND,
                     "%s: layer %d has neither a router (tensor '%s': an MoE layer) nor a dense FFN (tensor '%s')",
                     moe_gguf_path(g), il, router, dense);
}
