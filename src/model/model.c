/* model.c — loading a model: hyperparameters (arch.c), then every tensor bound by
 * llama.cpp's name and checked against the shape the hyperparameters imply. A missing or
 * misshapen tensor is an error that names it. Routed experts go into the default expert
 * provider, from 3-D ffn_*_exps tensors or per-expert blk.N.ffn_*.E.weight tensors. */
#include "model/model.h"
#include "io/gguf.h"
#include "io/mapfile.h" /* moe_release_pages */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const moe_gguf *g;
    const char *path;
    moe_model *m;
    int first_moe, first_dense;  /* n_layer when there is none */
} loader;

static const moe_gguf_tensor *find(const loader *L, const char *name) { return moe_gguf_find_tensor(L->g, name); }

static moe_status missing(const loader *L, const char *name) {
    return moe_error(MOE_ERR_NOT_FOUND, "%s: tensor '%s' is missing (architecture %s)", L->path, name, L->m->arch->name);
}

/* ne must be {ne0, ne1, ne2, 1}. */
static moe_status check_shape(const loader *L, const moe_gguf_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2) {
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != ne2 || t->ne[3] != 1)
        return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, 1]",
                         L->path, t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)ne0, (long long)ne1, (long long)ne2);
    const moe_type_traits *tt = moe_type_get(t->type);
    if (!tt || ne0 % tt->block_size)
        return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': rows of %lld values do not fit type %s", L->path, t->name,
                         (long long)ne0, moe_type_name(t->type));
    return MOE_OK;
}

/* The tensor's type must have kernels (dequantize + dot); the message names the tensor. */
static moe_status check_type(const loader *L, const moe_gguf_tensor *t) {
    if (moe_type_check_compute(t->type) == MOE_OK) return MOE_OK;
    char why[256];
    snprintf(why, sizeof why, "%s", moe_last_error());
    return moe_error(MOE_ERR_UNSUPPORTED, "%s: tensor '%s': %s", L->path, t->name, why);
}

/* A 2-D weight [rows × cols] (ggml ne = {cols, rows}). Absent and optional: left empty. */
static moe_status load_mat(const loader *L, const char *name, int64_t rows, int64_t cols, bool required, moe_mat *out) {
    memset(out, 0, sizeof *out);
    const moe_gguf_tensor *t = find(L, name);
    if (!t) return required ? missing(L, name) : MOE_OK;
    moe_status st = check_shape(L, t, cols, rows, 1);
    if (!st) st = check_type(L, t);
    if (!st) *out = moe_mat_make(t->data, t->type, rows, cols);
    return st;
}

/* A vector [n] as floats: F32 tensors are used in place, others are dequantized once. */
static moe_status load_vec(const loader *L, const char *name, int64_t n, bool required, const float **out) {
    *out = NULL;
    const moe_gguf_tensor *t = find(L, name);
    if (!t) return required ? missing(L, name) : MOE_OK;
    moe_status st = check_shape(L, t, n, 1, 1);
    if (st) return st;
    if (t->type == MOE_TYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return MOE_OK;
    }
    if ((st = check_type(L, t))) return st;
    float *v = moe_arena_alloc(&L->m->arena, (size_t)n * sizeof(float), 64);
    if (!v) return MOE_ERR_NOMEM;
    moe_type_get(t->type)->to_float(t->data, v, n);
    *out = v;
    return MOE_OK;
}

/* One expert's slice of a 3-D tensor [n_expert × rows × cols]. */
static moe_mat expert_slice(const moe_gguf_tensor *t, int e, int64_t rows, int64_t cols) {
    moe_mat m = moe_mat_make(t->data, t->type, rows, cols);
    m.data = (const uint8_t *)t->data + (size_t)e * (size_t)rows * m.row_bytes;
    return m;
}

/* A whole tensor as floats: F32 data in place, other types dequantized once. */
static moe_status tensor_f32(const loader *L, const char *name, const float **out) {
    const moe_gguf_tensor *t = find(L, name);
    if (!t) return missing(L, name);
    if (t->type == MOE_TYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return MOE_OK;
    }
    moe_status st = check_type(L, t);
    if (st) return st;
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *v = moe_arena_alloc(&L->m->arena, (size_t)n * sizeof(float), 64);
    if (!v) return MOE_ERR_NOMEM;
    moe_type_get(t->type)->to_float(t->data, v, n);
    *out = v;
    return MOE_OK;
}

/* Soft MoE: the layer's tensors in F32 for moe_layer_forward (shapes were checked by
 * load_experts and load_mat). */
static moe_status load_soft_moe(const loader *L, int il, moe_layer_weights *ly) {
    char n[96];
    moe_status st;
#define F32(suffix, dst)                                                   \
    snprintf(n, sizeof n, "blk.%d.%s", il, suffix);                        \
    if ((st = tensor_f32(L, n, dst))) return st;
    F32("ffn_gate_inp.weight", &ly->soft_phi);
    F32("ffn_gate_exps.weight", &ly->soft_gate);
    F32("ffn_up_exps.weight", &ly->soft_up);
    F32("ffn_down_exps.weight", &ly->soft_down);
#undef F32
    snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.scale", il);
    return load_vec(L, n, 1, false, &ly->soft_scale);
}

static moe_status load_experts(const loader *L, int il) {
    const moe_hparams *hp = &L->m->hp;
    const int64_t d = hp->n_embd, ff = hp->n_ff_exp, E = hp->n_expert;
    char ng[96], nu[96], nd[96];
    snprintf(ng, sizeof ng, "blk.%d.ffn_gate_exps.weight", il);
    snprintf(nu, sizeof nu, "blk.%d.ffn_up_exps.weight", il);
    snprintf(nd, sizeof nd, "blk.%d.ffn_down_exps.weight", il);
    const moe_gguf_tensor *tg = find(L, ng), *tu = find(L, nu), *td = find(L, nd);
    moe_status st;
    if (tg || tu || td) {
        if (!tg) return missing(L, ng);
        if (!tu) return missing(L, nu);
        if (!td) return missing(L, nd);
        if ((st = check_shape(L, tg, d, ff, E)) || (st = check_shape(L, tu, d, ff, E)) ||
            (st = check_shape(L, td, ff, d, E)) || (st = check_type(L, tg)) || (st = check_type(L, tu)) ||
            (st = check_type(L, td)))
            return st;
        for (int e = 0; e < E; e++) {
            moe_expert_weights *w = moe_mapped_provider_slot(L->m->experts, il, e);
            w->gate = expert_slice(tg, e, ff, d);
            w->up = expert_slice(tu, e, ff, d);
            w->down = expert_slice(td, e, d, ff);
        }
        return MOE_OK;
    }
    /* Per-expert layout (DESIGN.md "Per-expert tensors"; older Mixtral files): each expert
     * its own 2-D tensors, each with its own type. */
    for (int e = 0; e < E; e++) {
        moe_expert_weights *w = moe_mapped_provider_slot(L->m->experts, il, e);
        snprintf(ng, sizeof ng, "blk.%d.ffn_gate.%d.weight", il, e);
        snprintf(nu, sizeof nu, "blk.%d.ffn_up.%d.weight", il, e);
        snprintf(nd, sizeof nd, "blk.%d.ffn_down.%d.weight", il, e);
        if (e == 0 && !find(L, ng)) {
            snprintf(ng, sizeof ng, "blk.%d.ffn_gate_exps.weight", il);
            return missing(L, ng);
        }
        if ((st = load_mat(L, ng, ff, d, true, &w->gate)) || (st = load_mat(L, nu, ff, d, true, &w->up)) ||
            (st = load_mat(L, nd, d, ff, true, &w->down)))
            return st;
    }
    L->m->per_expert_layout = true;
    return MOE_OK;
}

static moe_status load_ffn(const loader *L, int il, const char *suffix, int64_t ff, moe_ffn_weights *f) {
    const int64_t d = L->m->hp.n_embd;
    char n[96];
    moe_status st;
    snprintf(n, sizeof n, "blk.%d.ffn_gate%s.weight", il, suffix);
    if ((st = load_mat(L, n, ff, d, true, &f->gate))) return st;
    snprintf(n, sizeof n, "blk.%d.ffn_up%s.weight", il, suffix);
    if ((st = load_mat(L, n, ff, d, true, &f->up))) return st;
    snprintf(n, sizeof n, "blk.%d.ffn_down%s.weight", il, suffix);
    return load_mat(L, n, d, ff, true, &f->down);
}

static moe_status load_layer(const loader *L, int il) {
    moe_model *m = L->m;
    const moe_hparams *hp = &m->hp;
    moe_layer_weights *ly = &m->layers[il];
    moe_attn_weights *a = &ly->attn;
    const int64_t d = hp->n_embd, nq = hp->n_head * hp->n_embd_head_k, nk = hp->n_head_kv * hp->n_embd_head_k,
                  nv = hp->n_head_kv * hp->n_embd_head_v, na = hp->n_head * hp->n_embd_head_v;
    char n[96];
    moe_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
#define TRY(x) do { if ((st = (x))) return st; } while (0)
    TRY(load_vec(L, NAME("attn_norm.weight"), d, true, &a->norm));
    TRY(load_mat(L, NAME("attn_q.weight"), nq, d, true, &a->wq));
    TRY(load_mat(L, NAME("attn_k.weight"), nk, d, true, &a->wk));
    TRY(load_mat(L, NAME("attn_v.weight"), nv, d, true, &a->wv));
    TRY(load_mat(L, NAME("attn_output.weight"), d, na, true, &a->wo));
    TRY(load_vec(L, NAME("attn_q.bias"), nq, false, &a->bq));
    TRY(load_vec(L, NAME("attn_k.bias"), nk, false, &a->bk));
    TRY(load_vec(L, NAME("attn_v.bias"), nv, false, &a->bv));
    TRY(load_vec(L, NAME("attn_output.bias"), d, false, &a->bo));
    if (hp->qk_norm) {
        bool head = hp->qk_norm == MOE_QK_NORM_HEAD;
        TRY(load_vec(L, NAME("attn_q_norm.weight"), head ? hp->n_embd_head_k : nq, true, &a->q_norm));
        TRY(load_vec(L, NAME("attn_k_norm.weight"), head ? hp->n_embd_head_k : nk, true, &a->k_norm));
    }
    TRY(load_vec(L, NAME("ffn_norm.weight"), d, true, &ly->ffn_norm));
    if (!ly->is_moe) { /* is_moe was decided by layer_kinds() */
        if (hp->n_ff == 0) return missing(L, NAME("ffn_gate.weight"));
        return load_ffn(L, il, "", hp->n_ff, &ly->dense);
    }
    TRY(load_mat(L, NAME("ffn_gate_inp.weight"), L->m->router_logits, d, true, &ly->router));
    TRY(load_vec(L, NAME("exp_probs_b.bias"), hp->n_expert, false, &ly->sel_bias));
    TRY(load_experts(L, il));
    if (L->m->router.kind == MOE_ROUTER_SOFT_MOE) TRY(load_soft_moe(L, il, ly));
    if (hp->n_ff_shexp > 0) TRY(load_ffn(L, il, "_shexp", hp->n_ff_shexp, &ly->shared));
    if (hp->shared_expert_gate) TRY(load_mat(L, NAME("ffn_gate_inp_shexp.weight"), 1, d, true, &ly->shared_gate));
#undef NAME
#undef TRY
    return MOE_OK;
}

/* Which layers are MoE (moe_layer_kind: deepseek's leading dense blocks, otherwise the
 * layer's tensors), and the first MoE and first dense layer, whose tensors give the
 * widths. */
static moe_status layer_kinds(loader *L) {
    moe_model *m = L->m;
    L->first_moe = L->first_dense = (int)m->hp.n_layer;
    for (int il = (int)m->hp.n_layer - 1; il >= 0; il--) {
        moe_status st = moe_layer_kind(L->g, &m->hp, il, &m->layers[il].is_moe);
        if (st) return st;
        *(m->layers[il].is_moe ? &L->first_moe : &L->first_dense) = il;
    }
    return MOE_OK;
}

/* Widths the file may leave to the tensors' shapes (llama.cpp derives them from other
 * keys; the shapes are what the file really holds). */
static moe_status derive_sizes(const loader *L) {
    moe_hparams *hp = &L->m->hp;
    const moe_arch_desc *arch = L->m->arch;
    char n[96];
    const moe_gguf_tensor *t;
    const int first_moe = L->first_moe;
    if (hp->n_expert > 0 && first_moe < hp->n_layer && hp->n_ff_exp == 0) {
        snprintf(n, sizeof n, "blk.%d.ffn_gate_exps.weight", first_moe);
        if (!(t = find(L, n))) {
            char n0[96];
            snprintf(n0, sizeof n0, "blk.%d.ffn_gate.0.weight", first_moe);
            if (!(t = find(L, n0))) return missing(L, n);
        }
        hp->n_ff_exp = t->ne[1];
    }
    if (arch->shared_expert && hp->n_expert > 0 && first_moe < hp->n_layer && hp->n_ff_shexp == 0) {
        if (hp->n_expert_shared > 0) {
            hp->n_ff_shexp = hp->n_expert_shared * hp->n_ff_exp; /* deepseek: n shared experts as one FFN */
        } else {
            snprintf(n, sizeof n, "blk.%d.ffn_gate_shexp.weight", first_moe);
            if (!(t = find(L, n))) {
                if (!arch->shared_gate) return MOE_OK; /* deepseek without shared experts */
                return missing(L, n);
            }
            hp->n_ff_shexp = t->ne[1];
        }
    }
    if (arch->shared_expert && hp->n_expert_shared == 0 && hp->n_ff_shexp > 0)
        hp->n_expert_shared = hp->n_ff_exp > 0 && hp->n_ff_shexp % hp->n_ff_exp == 0 && !arch->shared_gate
                                  ? hp->n_ff_shexp / hp->n_ff_exp : 1;
    bool any_dense = L->first_dense < hp->n_layer;
    /* A Mixtral-style file's feed_forward_length is the experts' width; the dense layers
     * of a file that mixes dense and MoE layers (moe upcycle --every N) have their own. */
    bool mixed = hp->n_expert > 0 && any_dense && !arch->dense_lead;
    if (any_dense && (hp->n_ff == 0 || mixed)) {
        snprintf(n, sizeof n, "blk.%d.ffn_gate.weight", L->first_dense);
        if ((t = find(L, n))) hp->n_ff = t->ne[1];
    }
    if (!any_dense && hp->n_ff == 0) hp->n_ff = hp->n_ff_exp;
    return MOE_OK;
}

/* The routing rule: the architecture's, or the training router the file names under
 * moe.router.* (docs/FORMAT.md). Capacity dropping is a training-time rule: inference keeps
 * every choice. */
static moe_status load_router_cfg(const loader *L) {
    moe_model *m = L->m;
    const moe_hparams *hp = &m->hp;
    m->router_logits = hp->n_expert;
    m->router_cols = hp->n_expert_used;
    if (hp->n_expert <= 0 || L->first_moe >= hp->n_layer) return MOE_OK;
    char n[96];
    snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.weight", L->first_moe);
    const moe_gguf_tensor *t = find(L, n);
    if (!t) return missing(L, n);
    moe_status st = moe_router_cfg_from_gguf(L->g, (int)hp->n_expert, (int)hp->n_expert_used, hp->expert_weights_norm,
                                             t->ne[1], &m->router, &m->router_hash_map);
    if (st) return st;
    m->router_custom = m->router.kind != MOE_ROUTER_TOPK;
    moe_router_kind k = m->router.kind;
    if (k == MOE_ROUTER_SWITCH || k == MOE_ROUTER_GSHARD) m->router.capacity_factor = 0; /* no dropping */
    if (k == MOE_ROUTER_BASE) m->router.assign = MOE_ASSIGN_GREEDY; /* BASE layers route greedily at inference */
    if (k == MOE_ROUTER_GSHARD) m->router.gshard_sample = false;     /* the deterministic second expert */
    m->router_logits = moe_router_n_logits(&m->router);
    m->router_cols = moe_router_n_cols(&m->router);
    return MOE_OK;
}

moe_model_params moe_model_default_params(void) {
    moe_model_params p = {0};
    return p;
}

void moe_model_free(moe_model *m) {
    if (!m) return;
    free(m->router_hash_map);
    moe_expert_provider_free(m->experts);
    moe_arena_free(&m->arena);
    moe_gguf_close(m->gguf);
    free(m);
}

/* The matrices of a layer other than its routed experts: what the two loaders below
 * rearrange (those whose type and shape allow it: moe_mat_can_interleave). */
#define LAYER_MATS 12
static void layer_mats(moe_layer_weights *ly, moe_mat *out[LAYER_MATS]) {
    moe_mat *m[LAYER_MATS] = {&ly->attn.wq,    &ly->attn.wk,    &ly->attn.wv,   &ly->attn.wo,
                              &ly->router,     &ly->shared_gate, &ly->dense.gate, &ly->dense.up,
                              &ly->dense.down, &ly->shared.gate, &ly->shared.up, &ly->shared.down};
    memcpy(out, m, sizeof m);
}

/* no_mmap: the weights are in memory of our own, so every matrix the matmul streams is
 * interleaved in place (core/matmul.h: the four-row kernels then read one sequential
 * stream instead of four; the results are the same bit for bit). The embedding table too:
 * its row lookups handle the layout, and it is the output head when the two are tied. */
static moe_status interleave_weights(moe_model *m) {
    moe_buf tmp = {0};
    moe_status st = MOE_OK;
#define IL(mat) \
    if (!st && moe_mat_can_interleave(mat)) st = moe_mat_interleave(mat, &tmp)
    const bool tied = m->output.data == m->tok_embd.data;
    IL(&m->tok_embd);
    if (tied) m->output = m->tok_embd;
    else IL(&m->output);
    for (int64_t il = 0; il < m->hp.n_layer && !st; il++) {
        moe_layer_weights *ly = &m->layers[il];
        moe_mat *mats[LAYER_MATS];
        layer_mats(ly, mats);
        for (int k = 0; k < LAYER_MATS; k++) IL(mats[k]);
        for (int e = 0; e < m->hp.n_expert && ly->is_moe; e++) {
            moe_expert_weights *w = moe_mapped_provider_slot(m->experts, (int)il, e);
            IL(&w->gate);
            IL(&w->up);
            IL(&w->down);
        }
    }
#undef IL
    moe_buf_free(&tmp);
    return st;
}

/* resident_in_memory: each matrix that every token reads and the kernels can interleave is
 * copied out of the mapping into the model's arena and interleaved there, 2 MiB at a time,
 * handing back the mapped pages just read, so the copy never holds much more than the
 * weights once (the offloader's budget counts them once). The embedding table stays mapped
 * unless it is also the output head: a token reads one row of it, and a copy would bring
 * the whole table into RSS. */
static moe_status copy_one(moe_model *m, moe_mat *w, moe_buf *tmp) {
    if (!moe_mat_can_interleave(w)) return MOE_OK;
    const size_t bytes = (size_t)w->rows * w->row_bytes, piece = (size_t)2 << 20;
    uint8_t *dst = moe_arena_alloc(&m->arena, bytes, 64);
    if (!dst) return MOE_ERR_NOMEM;
    const uint8_t *src = w->data;
    for (size_t o = 0; o < bytes; o += piece) {
        const size_t len = MOE_MIN(bytes - o, piece);
        memcpy(dst + o, src + o, len);
        moe_release_pages(src + o, len);
    }
    w->data = dst;
    return moe_mat_interleave(w, tmp);
}

static moe_status copy_resident(moe_model *m) {
    moe_buf tmp = {0};
    const bool tied = m->output.data == m->tok_embd.data;
    moe_status st = copy_one(m, tied ? &m->tok_embd : &m->output, &tmp);
    if (tied) m->output = m->tok_embd;
    for (int64_t il = 0; il < m->hp.n_layer && !st; il++) {
        moe_mat *mats[LAYER_MATS];
        layer_mats(&m->layers[il], mats);
        for (int k = 0; k < LAYER_MATS && !st; k++) st = copy_one(m, mats[k], &tmp);
    }
    moe_buf_free(&tmp);
    return st;
}

moe_model *moe_model_load(const char *path, const moe_model_params *params) {
    if (params && params->kv_type != MOE_KV_F32 && params->kv_type != MOE_KV_F16)
        return moe_error_null(MOE_ERR_INVALID, "%s: moe_model_params.kv_type %d is not MOE_KV_F32 or MOE_KV_F16", path,
                              (int)params->kv_type);
    const bool in_memory = params && params->no_mmap;
    moe_gguf *g = in_memory ? moe_gguf_open_writable(path) : moe_gguf_open(path);
    if (!g) return NULL;
    moe_model *m = moe_calloc(1, sizeof *m);
    if (!m) {
        moe_gguf_close(g);
        return NULL;
    }
    m->gguf = g;
    m->params = params ? *params : moe_model_default_params();
    moe_arena_init(&m->arena, 0);
    loader L = {g, moe_gguf_path(g), m, 0, 0};
    moe_hparams *hp = &m->hp;
    moe_status st = moe_hparams_load(g, &m->arch, hp);
    if (st) goto fail;
    m->layers = moe_arena_calloc(&m->arena, (size_t)hp->n_layer * sizeof *m->layers, 64);
    if (!m->layers) {
        st = MOE_ERR_NOMEM;
        goto fail;
    }
    if ((st = layer_kinds(&L))) goto fail;
    if ((st = derive_sizes(&L))) goto fail;
    if ((st = load_router_cfg(&L))) goto fail;

    /* Vocabulary: the tokenizer's list, which must match the embedding's rows. */
    const moe_gguf_tensor *te = find(&L, "token_embd.weight");
    if (!te) {
        st = missing(&L, "token_embd.weight");
        goto fail;
    }
    const void *toks;
    uint64_t n_tok;
    if (moe_gguf_get_arr(g, "tokenizer.ggml.tokens", MOE_GGUF_STRING, &toks, &n_tok) == MOE_OK) hp->n_vocab = (int64_t)n_tok;
    else hp->n_vocab = te->ne[1];
    moe_clear_error();
    if (hp->n_vocab <= 0 || hp->n_vocab > (INT64_C(1) << 31)) {
        st = moe_error(MOE_ERR_FORMAT, "%s: vocabulary size %lld is out of range", L.path, (long long)hp->n_vocab);
        goto fail;
    }
    if ((st = load_mat(&L, "token_embd.weight", hp->n_vocab, hp->n_embd, true, &m->tok_embd))) goto fail;
    if ((st = load_vec(&L, "output_norm.weight", hp->n_embd, true, &m->output_norm))) goto fail;
    if ((st = load_mat(&L, "output.weight", hp->n_vocab, hp->n_embd, false, &m->output))) goto fail;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */

    m->experts = moe_mapped_provider_create((int)hp->n_layer, (int)hp->n_expert);
    if (!m->experts) {
        st = MOE_ERR_NOMEM;
        goto fail;
    }
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = load_layer(&L, il))) goto fail;
    if (in_memory && (st = interleave_weights(m))) goto fail;
    if (!in_memory && m->params.resident_in_memory && (st = copy_resident(m))) goto fail;
    moe_gguf_seal(g);
    return m;
fail:
    (void)st;
    moe_model_free(m);
    return NULL;
}

const moe_hparams *moe_model_hparams(const moe_model *m) { return &m->hp; }
const char *moe_model_arch(const moe_model *m) { return m->arch->name; }
int64_t moe_model_n_vocab(const moe_model *m) { return m->hp.n_vocab; }
int64_t moe_model_n_layer(const moe_model *m) { return m->hp.n_layer; }
const moe_gguf *moe_model_gguf(const moe_model *m) { return m->gguf; }
moe_expert_provider *moe_model_default_experts(moe_model *m) { return m->experts; }
