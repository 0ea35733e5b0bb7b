/* tmodel.c — the training model's tensor table (llama.cpp's GGUF names and shapes, in
 * mkmoe.py's order), its F32 buffers, random initialisation, reading weights from a GGUF
 * file and describing the model (metadata + tensors) to the GGUF writer. */
#include "train/tmodel.h"
#include "core/f16.h"
#include "core/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- config */

/* Rows of the router weight the configuration needs. */
static int64_t router_rows(const tm_config *c) { return moe_router_n_logits(&c->router); }

static bool is_moe_layer(const tm_config *c, int il) { return c->moe_layer[il]; }

/* Router parameters stored under moe.router.* (docs/FORMAT.md "Training routers"); the
 * reader is shared with the inference loader. */
static moe_status router_from_gguf(const moe_gguf *g, tm_config *c, int64_t R) {
    return moe_router_cfg_from_gguf(g, (int)c->hp.n_expert, (int)c->hp.n_expert_used, c->hp.expert_weights_norm, R,
                                    &c->router, &c->hash_map);
}

void tm_config_free(tm_config *c) {
    free(c->hash_map);
    c->hash_map = NULL;
    c->router.hash_map = NULL;
}

moe_status tm_config_from_gguf(const moe_gguf *g, tm_config *c) {
    memset(c, 0, sizeof *c);
    const char *path = moe_gguf_path(g);
    moe_hparams *hp = &c->hp;
    moe_status st = moe_hparams_load(g, &c->arch, hp);
    if (st) return st;
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "token_embd.weight");
    if (!t) return moe_error(MOE_ERR_NOT_FOUND, "%s: tensor 'token_embd.weight' is missing", path);
    if (t->n_dims != 2 || t->ne[0] != hp->n_embd || t->ne[1] < 1 || t->ne[1] > INT32_MAX)
        return moe_error(MOE_ERR_FORMAT, "%s: token_embd.weight has shape [%lld, %lld], expected [%lld, n_vocab]", path,
                         (long long)t->ne[0], (long long)t->ne[1], (long long)hp->n_embd);
    hp->n_vocab = t->ne[1];
    c->tied = moe_gguf_find_tensor(g, "output.weight") == NULL;
    if (hp->n_embd_head_k != hp->n_embd_head_v || hp->n_rot != hp->n_embd_head_k)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: training needs key_length = value_length = rope dimension", path);
    if (hp->rope_scaling == MOE_ROPE_SCALING_YARN || hp->rope_freq_scale != 1.0f)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: training does not support RoPE scaling", path);
    if (hp->n_expert > 0 && hp->expert_weights_scale != 1.0f)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: training does not support expert_weights_scale != 1", path);
    if (hp->n_layer > TM_MAX_LAYERS)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: training supports at most %d layers, not %lld", path, TM_MAX_LAYERS,
                         (long long)hp->n_layer);
    /* which layers are MoE, and the first of each kind, whose tensors give the widths */
    int first_moe = (int)hp->n_layer, first_dense = (int)hp->n_layer;
    for (int il = (int)hp->n_layer - 1; il >= 0; il--) {
        if ((st = moe_layer_kind(g, hp, il, &c->moe_layer[il]))) return st;
        *(c->moe_layer[il] ? &first_moe : &first_dense) = il;
    }
    char n[96];
    int64_t R = 0;
    if (hp->n_expert > 0 && first_moe < hp->n_layer) {
        snprintf(n, sizeof n, "blk.%d.ffn_gate_exps.weight", first_moe);
        if (!(t = moe_gguf_find_tensor(g, n))) return moe_error(MOE_ERR_NOT_FOUND, "%s: tensor '%s' is missing", path, n);
        if (t->n_dims < 2) return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s' is not 3-D", path, n);
        hp->n_ff_exp = t->ne[1];
        snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.weight", first_moe);
        if (!(t = moe_gguf_find_tensor(g, n))) return moe_error(MOE_ERR_NOT_FOUND, "%s: tensor '%s' is missing", path, n);
        R = t->ne[1];
        hp->n_ff_shexp = 0;
        snprintf(n, sizeof n, "blk.%d.ffn_gate_shexp.weight", first_moe);
        if ((t = moe_gguf_find_tensor(g, n))) hp->n_ff_shexp = t->ne[1];
    }
    if (first_dense < hp->n_layer) {
        snprintf(n, sizeof n, "blk.%d.ffn_gate.weight", first_dense);
        if (!(t = moe_gguf_find_tensor(g, n))) return moe_error(MOE_ERR_NOT_FOUND, "%s: tensor '%s' is missing", path, n);
        hp->n_ff = t->ne[1];
    }
    if (hp->n_expert > 0) {
        if ((st = router_from_gguf(g, c, R))) {
            tm_config_free(c);
            return st;
        }
    }
    return MOE_OK;
}

moe_status tm_config_make(tm_config *c, const tm_shape *s) {
    memset(c, 0, sizeof *c);
    const char *name = !strcmp(s->arch, "mixtral") ? "llama" : s->arch;
    c->arch = moe_arch_find(name);
    if (!c->arch)
        return moe_error(MOE_ERR_INVALID, "unknown architecture '%s' (mixtral, qwen2moe, qwen3moe, olmoe, deepseek)", s->arch);
    moe_hparams *hp = &c->hp;
    snprintf(hp->arch, sizeof hp->arch, "%s", c->arch->name);
    if (s->n_layer < 1 || s->n_layer > TM_MAX_LAYERS || s->n_embd < 1 || s->n_head < 1 || s->n_head_kv < 1 ||
        s->n_head % s->n_head_kv || s->n_embd % s->n_head || (s->n_embd / s->n_head) % 2 || s->n_ff < 1 || s->n_vocab < 1 || s->n_ctx < 1)
        return moe_error(MOE_ERR_INVALID, "model shape: layers, embd, heads, ff, vocab, ctx must be positive; embd a "
                                          "multiple of heads with an even head size; heads a multiple of kv-heads");
    const bool dense = s->n_expert == 0 && !c->arch->needs_experts; /* a dense llama: for upcycling */
    if (!dense && (s->n_expert < 1 || s->n_expert > 1024 || s->n_expert_used < 1 || s->n_expert_used > s->n_expert))
        return moe_error(MOE_ERR_INVALID, "model shape: need 1 <= topk (%lld) <= experts (%lld) <= 1024%s",
                         (long long)s->n_expert_used, (long long)s->n_expert,
                         c->arch->needs_experts ? "" : " (or --experts 0 for a dense model)");
    hp->n_vocab = s->n_vocab;
    hp->n_ctx_train = s->n_ctx;
    hp->n_embd = s->n_embd;
    hp->n_layer = s->n_layer;
    hp->n_head = s->n_head;
    hp->n_head_kv = s->n_head_kv;
    hp->n_embd_head_k = hp->n_embd_head_v = hp->n_rot = s->n_embd / s->n_head;
    hp->n_expert = s->n_expert;
    hp->n_expert_used = s->n_expert_used;
    hp->n_ff_exp = s->n_ff;
    hp->expert_weights_norm = c->arch->renorm;
    hp->expert_weights_scale = 1.0f;
    hp->qk_norm = c->arch->qk_norm;
    hp->shared_expert_gate = c->arch->shared_gate;
    hp->rms_eps = 1e-5f;
    hp->rope_type = c->arch->rope;
    hp->rope_freq_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    hp->rope_n_ctx_orig = s->n_ctx;
    if (c->arch->shared_expert) {
        hp->n_ff_shexp = s->shared_ff > 0 ? s->shared_ff : c->arch->shared_gate ? s->n_ff : 0;
        if (c->arch->dense_lead && hp->n_ff_shexp % s->n_ff)
            return moe_error(MOE_ERR_INVALID, "deepseek: --shared-ff %lld must be a multiple of --ff %lld",
                             (long long)hp->n_ff_shexp, (long long)s->n_ff);
        hp->n_expert_shared = c->arch->dense_lead ? hp->n_ff_shexp / s->n_ff : hp->n_ff_shexp > 0;
    } else if (s->shared_ff > 0) {
        return moe_error(MOE_ERR_INVALID, "architecture %s has no shared expert", c->arch->name);
    }
    if (c->arch->dense_lead) {
        if (s->dense_layers < 0 || s->dense_layers > s->n_layer)
            return moe_error(MOE_ERR_INVALID, "--dense-layers %lld out of range", (long long)s->dense_layers);
        hp->n_layer_dense_lead = s->dense_layers;
        hp->n_ff = s->dense_layers ? (s->dense_ff > 0 ? s->dense_ff : s->n_ff * s->n_expert_used) : 0;
    } else if (s->dense_layers > 0) {
        return moe_error(MOE_ERR_INVALID, "architecture %s has no leading dense layers", c->arch->name);
    }
    if (dense) {
        hp->n_expert = hp->n_expert_used = hp->n_ff_exp = 0;
        hp->n_ff = s->n_ff;
        return MOE_OK;
    }
    for (int il = 0; il < hp->n_layer; il++) c->moe_layer[il] = il >= hp->n_layer_dense_lead;
    moe_router_cfg_default(&c->router, MOE_ROUTER_TOPK, (int)hp->n_expert);
    c->router.k = (int)hp->n_expert_used;
    c->router.renorm = hp->expert_weights_norm;
    return MOE_OK;
}

moe_status tm_config_set_moe_every(tm_config *c, int64_t every, int64_t dense_ff) {
    moe_hparams *hp = &c->hp;
    if (hp->n_expert < 1 || hp->n_layer_dense_lead > 0)
        return moe_error(MOE_ERR_INVALID, "MoE every N-th layer needs an MoE model without leading dense layers");
    if (every < 1 || (every > 1 && dense_ff < 1))
        return moe_error(MOE_ERR_INVALID, "MoE every %lld-th layer: need N >= 1 and a dense FFN width >= 1 (%lld)",
                         (long long)every, (long long)dense_ff);
    bool any_dense = false;
    for (int il = 0; il < hp->n_layer; il++) {
        c->moe_layer[il] = (il + 1) % every == 0;
        any_dense |= !c->moe_layer[il];
    }
    hp->n_ff = any_dense ? dense_ff : 0;
    return MOE_OK;
}

/* ---------------------------------------------------------------- tensor table */

typedef struct {
    tm_model *m;
    int cap;
    size_t off;
} table;

static float **slot_of(tm_layer_w *l, const char *suffix);

static moe_status add(table *tb, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2, bool decay, bool trainable,
                      const char *fmt, int il) {
    tm_model *m = tb->m;
    if (m->n_tensors == tb->cap) {
        int cap = tb->cap ? tb->cap * 2 : 64;
        tm_tensor *t = realloc(m->t, (size_t)cap * sizeof *t);
        if (!t) return moe_error(MOE_ERR_NOMEM, "training model: out of memory");
        m->t = t;
        tb->cap = cap;
    }
    tm_tensor *t = &m->t[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, fmt, il);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->n = (size_t)(ne0 * ne1 * ne2);
    t->off = tb->off;
    /* 16-float alignment keeps every tensor on a 64-byte boundary */
    tb->off += (t->n + 15) & ~(size_t)15;
    t->decay = decay;
    t->trainable = trainable;
    return MOE_OK;
}

static moe_status build_table(tm_model *m) {
    const tm_config *c = &m->c;
    const moe_hparams *hp = &c->hp;
    const int64_t d = hp->n_embd, V = hp->n_vocab, hk = hp->n_embd_head_k;
    const int64_t nq = hp->n_head * hk, nk = hp->n_head_kv * hk, nv = nk, na = nq;
    const int64_t E = hp->n_expert, F = hp->n_ff_exp, S = hp->n_ff_shexp, FF = hp->n_ff;
    table tb = {m, 0, 0};
    moe_status st;
#define ADD(nd, a, b, e, dec, tr, fmt) do { if ((st = add(&tb, nd, a, b, e, dec, tr, fmt, il))) return st; } while (0)
    int il = 0;
    ADD(2, d, V, 1, true, true, "token_embd.weight");
    for (il = 0; il < hp->n_layer; il++) {
        ADD(1, d, 1, 1, false, true, "blk.%d.attn_norm.weight");
        ADD(2, d, nq, 1, true, true, "blk.%d.attn_q.weight");
        ADD(2, d, nk, 1, true, true, "blk.%d.attn_k.weight");
        ADD(2, d, nv, 1, true, true, "blk.%d.attn_v.weight");
        if (c->arch->shared_gate) { /* qwen2moe: q/k/v biases */
            ADD(1, nq, 1, 1, false, true, "blk.%d.attn_q.bias");
            ADD(1, nk, 1, 1, false, true, "blk.%d.attn_k.bias");
            ADD(1, nv, 1, 1, false, true, "blk.%d.attn_v.bias");
        }
        if (hp->qk_norm == MOE_QK_NORM_FULL) {
            ADD(1, nq, 1, 1, false, true, "blk.%d.attn_q_norm.weight");
            ADD(1, nk, 1, 1, false, true, "blk.%d.attn_k_norm.weight");
        } else if (hp->qk_norm == MOE_QK_NORM_HEAD) {
            ADD(1, hk, 1, 1, false, true, "blk.%d.attn_q_norm.weight");
            ADD(1, hk, 1, 1, false, true, "blk.%d.attn_k_norm.weight");
        }
        ADD(2, na, d, 1, true, true, "blk.%d.attn_output.weight");
        ADD(1, d, 1, 1, false, true, "blk.%d.ffn_norm.weight");
        if (!is_moe_layer(c, il)) {
            ADD(2, d, FF, 1, true, true, "blk.%d.ffn_gate.weight");
            ADD(2, d, FF, 1, true, true, "blk.%d.ffn_up.weight");
            ADD(2, FF, d, 1, true, true, "blk.%d.ffn_down.weight");
            continue;
        }
        const moe_router_kind k = c->router.kind;
        ADD(2, d, router_rows(c), 1, true, k != MOE_ROUTER_HASH, "blk.%d.ffn_gate_inp.weight");
        if (k == MOE_ROUTER_LOSS_FREE || k == MOE_ROUTER_DEEPSEEK_V3)
            ADD(1, E, 1, 1, false, false, "blk.%d.exp_probs_b.bias");
        if (k == MOE_ROUTER_SOFT_MOE) ADD(1, 1, 1, 1, false, true, "blk.%d.ffn_gate_inp.scale");
        ADD(3, d, F, E, true, true, "blk.%d.ffn_gate_exps.weight");
        ADD(3, d, F, E, true, true, "blk.%d.ffn_up_exps.weight");
        ADD(3, F, d, E, true, true, "blk.%d.ffn_down_exps.weight");
        if (S > 0) {
            if (c->arch->shared_gate) ADD(1, d, 1, 1, true, true, "blk.%d.ffn_gate_inp_shexp.weight");
            ADD(2, d, S, 1, true, true, "blk.%d.ffn_gate_shexp.weight");
            ADD(2, d, S, 1, true, true, "blk.%d.ffn_up_shexp.weight");
            ADD(2, S, d, 1, true, true, "blk.%d.ffn_down_shexp.weight");
        }
    }
    ADD(1, d, 1, 1, false, true, "output_norm.weight");
    if (!c->tied) ADD(2, d, V, 1, true, true, "output.weight");
#undef ADD
    m->n_params = tb.off;
    return MOE_OK;
}

/* The tm_layer_w field a blk.N.<suffix> tensor binds to. */
static float **slot_of(tm_layer_w *l, const char *s) {
    static const struct { const char *suffix; size_t off; } map[] = {
#define F(s, f) {s, offsetof(tm_layer_w, f)}
        F("attn_norm.weight", attn_norm), F("attn_q.weight", wq), F("attn_k.weight", wk), F("attn_v.weight", wv),
        F("attn_q.bias", bq), F("attn_k.bias", bk), F("attn_v.bias", bv), F("attn_q_norm.weight", q_norm),
        F("attn_k_norm.weight", k_norm), F("attn_output.weight", wo), F("ffn_norm.weight", ffn_norm),
        F("ffn_gate.weight", dense.gate), F("ffn_up.weight", dense.up), F("ffn_down.weight", dense.down),
        F("ffn_gate_inp.weight", router_w), F("exp_probs_b.bias", sel_bias), F("ffn_gate_inp.scale", router_scale),
        F("ffn_gate_exps.weight", experts.gate), F("ffn_up_exps.weight", experts.up),
        F("ffn_down_exps.weight", experts.down), F("ffn_gate_inp_shexp.weight", shared_gate),
        F("ffn_gate_shexp.weight", shared.gate), F("ffn_up_shexp.weight", shared.up),
        F("ffn_down_shexp.weight", shared.down),
#undef F
    };
    for (size_t i = 0; i < MOE_ARRAY_LEN(map); i++)
        if (!strcmp(map[i].suffix, s)) return (float **)((char *)l + map[i].off);
    return NULL;
}

static void bind(tm_model *m, tm_weights *w, float *base) {
    for (int i = 0; i < m->n_tensors; i++) {
        const tm_tensor *t = &m->t[i];
        float *p = base + t->off;
        if (!strcmp(t->name, "token_embd.weight")) w->tok_embd = p;
        else if (!strcmp(t->name, "output_norm.weight")) w->output_norm = p;
        else if (!strcmp(t->name, "output.weight")) w->output = p;
        else {
            int il;
            char suffix[TM_NAME_MAX];
            if (sscanf(t->name, "blk.%d.%63s", &il, suffix) == 2) {
                float **s = slot_of(&w->layers[il], suffix);
                if (s) *s = p;
            }
        }
    }
    if (m->c.tied) w->output = w->tok_embd;
}

const tm_tensor *tm_find(const tm_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

moe_status tm_model_init(tm_model *m, const tm_config *c, moe_pool *pool) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->pool = pool;
    const moe_hparams *hp = &c->hp;
    if (hp->n_layer < 1 || hp->n_layer > TM_MAX_LAYERS || hp->n_embd < 1 || hp->n_head < 1 || hp->n_head_kv < 1 ||
        hp->n_vocab < 1 || hp->n_head % hp->n_head_kv)
        return moe_error(MOE_ERR_INVALID, "training model: bad dimensions");
    moe_status st = build_table(m);
    if (st) return st;
    const int64_t L = hp->n_layer;
    m->w.layers = moe_calloc((size_t)L, sizeof *m->w.layers);
    m->g.layers = moe_calloc((size_t)L, sizeof *m->g.layers);
    m->params = moe_aligned_alloc(m->n_params * sizeof(float));
    m->grads = moe_aligned_alloc(m->n_params * sizeof(float));
    m->acts = moe_calloc((size_t)L, sizeof *m->acts);
    m->moe = moe_calloc((size_t)L, sizeof *m->moe);
    if (!m->w.layers || !m->g.layers || !m->params || !m->grads || !m->acts || !m->moe) {
        tm_model_free(m);
        return moe_error(MOE_ERR_NOMEM, "training model: cannot allocate %zu parameters", m->n_params);
    }
    memset(m->params, 0, m->n_params * sizeof(float));
    memset(m->grads, 0, m->n_params * sizeof(float));
    bind(m, &m->w, m->params);
    bind(m, &m->g, m->grads);
    for (int il = 0; il < L; il++) {
        if (!is_moe_layer(c, il)) continue;
        moe_layer_cfg lc;
        memset(&lc, 0, sizeof lc);
        lc.router = c->router;
        lc.d = hp->n_embd;
        lc.ff = hp->n_ff_exp;
        /* qwen2moe's shared expert is gated: run here, not by the layer (which has no gate) */
        lc.shared_ff = c->arch->shared_gate ? 0 : hp->n_ff_shexp;
        lc.act = MOE_FFN_SWIGLU;
        if ((st = moe_layer_init(&m->moe[il], &lc))) {
            tm_model_free(m);
            return st;
        }
    }
    return MOE_OK;
}

void tm_model_free(tm_model *m) {
    if (!m) return;
    if (m->moe)
        for (int64_t il = 0; il < m->c.hp.n_layer; il++) moe_layer_free(&m->moe[il]);
    if (m->acts)
        for (int64_t il = 0; il < m->c.hp.n_layer; il++) free(m->acts[il].x); /* one block per layer */
    free(m->acts);
    free(m->moe);
    free(m->t);
    free(m->params);
    free(m->grads);
    free(m->w.layers);
    free(m->g.layers);
    free(m->xf);
    free(m->scratch);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- initialisation */

static double gauss(uint64_t *s) { /* Box-Muller on splitmix64 */
    double u1 = ((double)(tm_rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(tm_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void tm_model_init_random(tm_model *m, uint64_t seed) {
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
    for (int i = 0; i < m->n_tensors; i++) {
        const tm_tensor *t = &m->t[i];
        float *p = m->params + t->off;
        const char *nm = t->name;
        bool is_norm = strstr(nm, "norm.weight") != NULL, is_bias = strstr(nm, ".bias") != NULL;
        if (!strcmp(nm + strlen(nm) - 6, ".scale")) { p[0] = 1.0f; continue; }
        if (is_norm) { for (size_t j = 0; j < t->n; j++) p[j] = 1.0f; continue; }
        if (is_bias) { memset(p, 0, t->n * sizeof *p); continue; }
        double sc = !strcmp(nm, "token_embd.weight") ? 1.0 : 1.0 / sqrt((double)t->ne[0]);
        for (size_t j = 0; j < t->n; j++) p[j] = (float)(gauss(&s) * sc);
    }
}

/* ---------------------------------------------------------------- reading weights */

static bool is_router_tensor(const char *name) {
    return strstr(name, "ffn_gate_inp.weight") || strstr(name, "ffn_gate_inp.scale") || strstr(name, "exp_probs_b.bias");
}

moe_status tm_model_load_weights(tm_model *m, const moe_gguf *g, bool new_router, uint64_t seed) {
    const char *path = moe_gguf_path(g);
    uint64_t rs = seed ^ 0x5851f42d4c957f2dull;
    for (int i = 0; i < m->n_tensors; i++) {
        const tm_tensor *t = &m->t[i];
        float *p = m->params + t->off;
        const moe_gguf_tensor *gt = moe_gguf_find_tensor(g, t->name);
        const bool shape_ok = gt && gt->ne[0] == t->ne[0] && gt->ne[1] == t->ne[1] && gt->ne[2] == t->ne[2] && gt->ne[3] == 1;
        if (new_router && is_router_tensor(t->name) && !shape_ok) {
            /* another router than the file's: keep the rows both have, draw the others */
            int64_t keep = gt && gt->type == MOE_TYPE_F32 && gt->ne[0] == t->ne[0] && gt->n_dims == 2 ? MOE_MIN(gt->ne[1], t->ne[1]) : 0;
            if (strstr(t->name, ".scale")) { p[0] = 1.0f; continue; }
            if (strstr(t->name, ".bias")) { memset(p, 0, t->n * sizeof *p); continue; }
            if (keep) memcpy(p, gt->data, (size_t)(keep * t->ne[0]) * sizeof(float));
            for (size_t j = (size_t)(keep * t->ne[0]); j < t->n; j++) p[j] = (float)(gauss(&rs) / sqrt((double)t->ne[0]));
            continue;
        }
        if (!gt) return moe_error(MOE_ERR_NOT_FOUND, "%s: tensor '%s' is missing", path, t->name);
        if (!shape_ok)
            return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, 1]",
                             path, t->name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
                             (long long)gt->ne[3], (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2]);
        const moe_type_traits *tt = moe_type_get(gt->type);
        if (!tt || !tt->to_float || t->ne[0] % tt->block_size)
            return moe_error(MOE_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which cannot be converted to f32", path,
                             t->name, moe_type_name(gt->type));
        if (gt->type == MOE_TYPE_F32) memcpy(p, gt->data, t->n * sizeof(float));
        else tt->to_float(gt->data, p, (int64_t)t->n);
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- writing */

static moe_status write_router_keys(const tm_config *c, moe_gguf_writer *w) {
    const moe_router_cfg *r = &c->router;
    moe_status st;
#define TRY(x) do { if ((st = (x))) return st; } while (0)
    TRY(moe_gguf_writer_set_str(w, "moe.router.kind", moe_router_name(r->kind)));
    TRY(moe_gguf_writer_set_u32(w, "moe.router.k", (uint32_t)r->k));
    TRY(moe_gguf_writer_set_bool(w, "moe.router.renorm", r->renorm));
    TRY(moe_gguf_writer_set_f32(w, "moe.router.capacity_factor", (float)r->capacity_factor));
    switch (r->kind) {
    case MOE_ROUTER_EXPERT_CHOICE: TRY(moe_gguf_writer_set_u32(w, "moe.router.min_capacity", (uint32_t)r->min_capacity)); break;
    case MOE_ROUTER_DEEPSEEK_V3: case MOE_ROUTER_LOSS_FREE:
        TRY(moe_gguf_writer_set_u32(w, "moe.router.n_group", (uint32_t)r->n_group));
        TRY(moe_gguf_writer_set_u32(w, "moe.router.topk_group", (uint32_t)r->topk_group));
        TRY(moe_gguf_writer_set_f32(w, "moe.router.route_scale", r->route_scale));
        break;
    case MOE_ROUTER_BASE:
        TRY(moe_gguf_writer_set_str(w, "moe.router.assign", r->assign == MOE_ASSIGN_GREEDY ? "greedy"
                                                            : r->assign == MOE_ASSIGN_AUCTION ? "auction" : "balanced"));
        break;
    case MOE_ROUTER_ADAMOE: TRY(moe_gguf_writer_set_u32(w, "moe.router.n_null", (uint32_t)r->n_null)); break;
    case MOE_ROUTER_SOFT_MOE: TRY(moe_gguf_writer_set_u32(w, "moe.router.slots_per_expert", (uint32_t)r->slots_per_expert)); break;
    case MOE_ROUTER_USMOE:
        TRY(moe_gguf_writer_set_f32(w, "moe.router.usmoe_alpha", r->usmoe_alpha));
        TRY(moe_gguf_writer_set_f32(w, "moe.router.usmoe_beta", r->usmoe_beta));
        break;
    case MOE_ROUTER_HASH:
        if (r->hash_map) TRY(moe_gguf_writer_set_arr(w, "moe.router.hash_map", MOE_GGUF_I32, r->hash_map, (uint64_t)r->hash_map_len));
        break;
    default: break;
    }
    if (r->priority == MOE_PRIORITY_BPR) TRY(moe_gguf_writer_set_str(w, "moe.router.priority", "bpr"));
#undef TRY
    return MOE_OK;
}

/* The architecture's hyperparameter keys, as mkmoe.py / llama.cpp's converters write them. */
static moe_status write_hparams(const tm_config *c, moe_gguf_writer *w) {
    const moe_hparams *hp = &c->hp;
    const char *a = c->arch->name;
    char k[128];
    moe_status st;
#define U32(suffix, v) do { snprintf(k, sizeof k, "%s.%s", a, suffix); if ((st = moe_gguf_writer_set_u32(w, k, (uint32_t)(v)))) return st; } while (0)
#define F32(suffix, v) do { snprintf(k, sizeof k, "%s.%s", a, suffix); if ((st = moe_gguf_writer_set_f32(w, k, (float)(v)))) return st; } while (0)
    U32("context_length", hp->n_ctx_train);
    U32("embedding_length", hp->n_embd);
    U32("block_count", hp->n_layer);
    U32("feed_forward_length", hp->n_ff ? hp->n_ff : hp->n_ff_exp);
    U32("attention.head_count", hp->n_head);
    U32("attention.head_count_kv", hp->n_head_kv);
    F32("attention.layer_norm_rms_epsilon", hp->rms_eps);
    F32("rope.freq_base", hp->rope_freq_base);
    U32("rope.dimension_count", hp->n_rot);
    if (hp->n_expert > 0) {
        U32("expert_count", hp->n_expert);
        U32("expert_used_count", c->router.k <= hp->n_expert ? c->router.k : hp->n_expert_used);
        if (strcmp(a, "llama") != 0) U32("expert_feed_forward_length", hp->n_ff_exp);
        if (c->arch->shared_gate && hp->n_ff_shexp) U32("expert_shared_feed_forward_length", hp->n_ff_shexp);
        if (c->arch->dense_lead) {
            U32("leading_dense_block_count", hp->n_layer_dense_lead);
            U32("expert_shared_count", hp->n_ff_exp ? hp->n_ff_shexp / hp->n_ff_exp : 0);
            F32("expert_weights_scale", 1.0);
        }
        /* top-k's renormalisation travels in the architecture's own key (moe.c reads it) */
        const bool renorm = c->router.kind == MOE_ROUTER_TOPK ? c->router.renorm : hp->expert_weights_norm;
        if (renorm != c->arch->renorm) {
            snprintf(k, sizeof k, "%s.expert_weights_norm", a);
            if ((st = moe_gguf_writer_set_bool(w, k, renorm))) return st;
        }
    }
#undef U32
#undef F32
    return MOE_OK;
}

moe_status tm_model_to_writer(const tm_model *m, moe_gguf_writer *w, const moe_gguf *src, bool router_keys, bool f16,
                              void **f16_buf) {
    moe_status st;
    *f16_buf = NULL;
    if ((st = moe_gguf_writer_set_str(w, "general.architecture", m->c.arch->name))) return st;
    if (src) /* general.* (name, ...) and the tokenizer travel with the model */
        for (int64_t i = 0; i < moe_gguf_n_kv(src); i++) {
            const char *key = moe_gguf_kv_key(src, i);
            if (strncmp(key, "general.", 8) && strncmp(key, "tokenizer.", 10)) continue;
            if (!strcmp(key, "general.file_type")) continue;
            if ((st = moe_gguf_writer_set_value(w, key, moe_gguf_kv_value(src, i)))) return st;
        }
    if ((st = moe_gguf_writer_set_u32(w, "general.alignment", 32))) return st;
    if ((st = moe_gguf_writer_set_u32(w, "general.file_type", f16 ? 1 : 0))) return st;
    if ((st = write_hparams(&m->c, w))) return st;
    if (router_keys && m->c.hp.n_expert > 0 && (st = write_router_keys(&m->c, w))) return st;
    size_t n16 = 0;
    if (f16)
        for (int i = 0; i < m->n_tensors; i++)
            if (m->t[i].n_dims >= 2 && strstr(m->t[i].name, "ffn_gate_inp.weight") == NULL)
                n16 += m->t[i].n;
    moe_f16 *h = NULL;
    if (n16 && !(h = moe_malloc(n16 * sizeof *h))) return MOE_ERR_NOMEM;
    *f16_buf = h;
    for (int i = 0; i < m->n_tensors; i++) {
        const tm_tensor *t = &m->t[i];
        const float *p = m->params + t->off;
        /* llama.cpp keeps the router (ffn_gate_inp) and 1-D tensors in F32 */
        bool as16 = f16 && t->n_dims >= 2 && strstr(t->name, "ffn_gate_inp.weight") == NULL;
        if (as16) {
            for (size_t j = 0; j < t->n; j++) h[j] = moe_f32_to_f16(p[j]);
            st = moe_gguf_writer_add_tensor(w, t->name, MOE_TYPE_F16, t->n_dims, t->ne, h, t->n * 2);
            h += t->n;
        } else {
            st = moe_gguf_writer_add_tensor(w, t->name, MOE_TYPE_F32, t->n_dims, t->ne, p, t->n * 4);
        }
        if (st) return st;
    }
    return MOE_OK;
}
