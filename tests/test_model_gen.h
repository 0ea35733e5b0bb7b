/* test_model_gen.h — tiny random MoE models of every architecture written as F32 GGUF
 * files with the project's GGUF writer, in llama.cpp's tensor naming (3-D expert tensors
 * or the per-expert layout). Used by test_model.c and test_model_ref.c. */
#ifndef MOE_TEST_MODEL_GEN_H
#define MOE_TEST_MODEL_GEN_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moe.h"

typedef struct gen_spec {
    const char *arch;            /* general.architecture */
    int n_layer, n_embd, n_head, n_head_kv;
    int head_dim;                /* 0: n_embd / n_head and no attention.key_length key */
    int n_vocab, n_expert, n_expert_used;
    int n_ff_exp;                /* routed expert width */
    int n_ff;                    /* dense FFN width (deepseek's leading layers) */
    int n_ff_shexp;              /* qwen2moe shared expert width */
    int n_expert_shared, n_dense_lead;  /* deepseek */
    int qk_norm;                 /* 0 none, 1 per head, 2 whole projection */
    bool biases, per_expert, tied, shared_gate;
    float rope_base, rope_linear_factor; /* factor 0: no scaling keys */
    float rope_yarn_factor;      /* > 0: rope.scaling.type yarn with this factor ... */
    int rope_orig_ctx;           /* ... and rope.scaling.original_context_length */
    int expert_weights_norm;     /* -1: key absent */
    float router_scale;          /* router weights scale (peakier routing), 0 = 1 */
    uint64_t seed;
    const char *skip_tensor;     /* leave this tensor out (error tests), or NULL */
} gen_spec;

typedef struct {
    uint64_t s;
    int have;
    double spare;
} gen_rng;

static inline double gen_uniform(gen_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (double)((r->s * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double gen_normal(gen_rng *r) {
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2 * gen_uniform(r) - 1;
        v = 2 * gen_uniform(r) - 1;
        s = u * u + v * v;
    } while (s >= 1 || s == 0);
    double m = sqrt(-2 * log(s) / s);
    r->spare = v * m;
    r->have = 1;
    return u * m;
}

typedef struct {
    moe_gguf_writer *w;
    gen_rng rng;
    const gen_spec *s;
    float **bufs;
    int n_bufs, cap_bufs;
    moe_status st;
} gen_ctx;

static inline float *gen_alloc(gen_ctx *g, int64_t n) {
    if (g->n_bufs == g->cap_bufs) {
        g->cap_bufs = g->cap_bufs ? 2 * g->cap_bufs : 64;
        g->bufs = realloc(g->bufs, (size_t)g->cap_bufs * sizeof *g->bufs);
    }
    float *b = malloc((size_t)n * sizeof *b);
    g->bufs[g->n_bufs++] = b;
    return b;
}

/* A tensor of ne = {ne0, ne1, ne2} (n_dims given), values scale·N(0,1) + offset. */
static inline void gen_tensor(gen_ctx *g, const char *name, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                              double scale, double offset) {
    if (g->st) return;
    int64_t n = ne0 * ne1 * ne2;
    float *x = gen_alloc(g, n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(offset + scale * gen_normal(&g->rng));
    if (g->s->skip_tensor && strcmp(g->s->skip_tensor, name) == 0) return;
    int64_t ne[3] = {ne0, ne1, ne2};
    g->st = moe_gguf_writer_add_tensor(g->w, name, 0 /* f32 */, n_dims, ne, x, (uint64_t)n * 4);
}

static inline void gen_mat(gen_ctx *g, const char *name, int64_t rows, int64_t cols) {
    gen_tensor(g, name, 2, cols, rows, 1, 1.0 / sqrt((double)cols), 0);
}

static inline void gen_norm(gen_ctx *g, const char *name, int64_t n) { gen_tensor(g, name, 1, n, 1, 1, 0.1, 1.0); }

static inline void gen_key(gen_ctx *g, const char *suffix, uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", g->s->arch, suffix);
    if (!g->st) g->st = moe_gguf_writer_set_u32(g->w, k, v);
}

static inline void gen_keyf(gen_ctx *g, const char *suffix, float v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", g->s->arch, suffix);
    if (!g->st) g->st = moe_gguf_writer_set_f32(g->w, k, v);
}

static inline moe_status gen_write(const gen_spec *s, const char *path) {
    gen_ctx g = {moe_gguf_writer_init(), {s->seed * 2654435761u + 1, 0, 0}, s, NULL, 0, 0, MOE_OK};
    if (!g.w) return MOE_ERR_NOMEM;
    const int hd = s->head_dim ? s->head_dim : s->n_embd / s->n_head;
    const int64_t d = s->n_embd, nq = (int64_t)s->n_head * hd, nk = (int64_t)s->n_head_kv * hd;
    char n[96];
    g.st = moe_gguf_writer_set_str(g.w, "general.architecture", s->arch);
    gen_key(&g, "context_length", 4096);
    gen_key(&g, "embedding_length", (uint32_t)d);
    gen_key(&g, "block_count", (uint32_t)s->n_layer);
    gen_key(&g, "attention.head_count", (uint32_t)s->n_head);
    gen_key(&g, "attention.head_count_kv", (uint32_t)s->n_head_kv);
    if (s->head_dim) {
        gen_key(&g, "attention.key_length", (uint32_t)hd);
        gen_key(&g, "attention.value_length", (uint32_t)hd);
    }
    gen_key(&g, "rope.dimension_count", (uint32_t)hd);
    gen_keyf(&g, "rope.freq_base", s->rope_base ? s->rope_base : 10000.0f);
    if (s->rope_linear_factor > 0) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", s->arch);
        if (!g.st) g.st = moe_gguf_writer_set_str(g.w, k, "linear");
        gen_keyf(&g, "rope.scaling.factor", s->rope_linear_factor);
    }
    if (s->rope_yarn_factor > 0) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", s->arch);
        if (!g.st) g.st = moe_gguf_writer_set_str(g.w, k, "yarn");
        gen_keyf(&g, "rope.scaling.factor", s->rope_yarn_factor);
        gen_key(&g, "rope.scaling.original_context_length", (uint32_t)s->rope_orig_ctx);
    }
    gen_keyf(&g, "attention.layer_norm_rms_epsilon", 1e-5f);
    gen_key(&g, "feed_forward_length", (uint32_t)(s->n_ff ? s->n_ff : s->n_ff_exp));
    gen_key(&g, "expert_count", (uint32_t)s->n_expert);
    gen_key(&g, "expert_used_count", (uint32_t)s->n_expert_used);
    if (strcmp(s->arch, "llama") != 0 && strcmp(s->arch, "olmoe") != 0)
        gen_key(&g, "expert_feed_forward_length", (uint32_t)s->n_ff_exp);
    if (s->n_ff_shexp) gen_key(&g, "expert_shared_feed_forward_length", (uint32_t)s->n_ff_shexp);
    if (s->n_expert_shared) {
        gen_key(&g, "expert_shared_count", (uint32_t)s->n_expert_shared);
        gen_key(&g, "leading_dense_block_count", (uint32_t)s->n_dense_lead);
        gen_keyf(&g, "expert_weights_scale", 1.0f);
    }
    if (s->expert_weights_norm >= 0) {
        char k[128];
        snprintf(k, sizeof k, "%s.expert_weights_norm", s->arch);
        if (!g.st) g.st = moe_gguf_writer_set_bool(g.w, k, s->expert_weights_norm != 0);
    }

    gen_tensor(&g, "token_embd.weight", 2, d, s->n_vocab, 1, 1.0, 0);
    for (int il = 0; il < s->n_layer; il++) {
#define NM(fmt) (snprintf(n, sizeof n, "blk.%d." fmt, il), n)
        gen_norm(&g, NM("attn_norm.weight"), d);
        gen_mat(&g, NM("attn_q.weight"), nq, d);
        gen_mat(&g, NM("attn_k.weight"), nk, d);
        gen_mat(&g, NM("attn_v.weight"), nk, d);
        if (s->biases) {
            gen_tensor(&g, NM("attn_q.bias"), 1, nq, 1, 1, 0.1, 0);
            gen_tensor(&g, NM("attn_k.bias"), 1, nk, 1, 1, 0.1, 0);
            gen_tensor(&g, NM("attn_v.bias"), 1, nk, 1, 1, 0.1, 0);
        }
        if (s->qk_norm) {
            gen_norm(&g, NM("attn_q_norm.weight"), s->qk_norm == 1 ? hd : nq);
            gen_norm(&g, NM("attn_k_norm.weight"), s->qk_norm == 1 ? hd : nk);
        }
        gen_mat(&g, NM("attn_output.weight"), d, nq);
        gen_norm(&g, NM("ffn_norm.weight"), d);
        if (il < s->n_dense_lead) {
            gen_mat(&g, NM("ffn_gate.weight"), s->n_ff, d);
            gen_mat(&g, NM("ffn_up.weight"), s->n_ff, d);
            gen_mat(&g, NM("ffn_down.weight"), d, s->n_ff);
            continue;
        }
        gen_tensor(&g, NM("ffn_gate_inp.weight"), 2, d, s->n_expert, 1,
                   (s->router_scale ? s->router_scale : 1.0) / sqrt((double)d), 0);
        const int64_t ff = s->n_ff_exp;
        if (s->per_expert) {
            for (int e = 0; e < s->n_expert; e++) {
                snprintf(n, sizeof n, "blk.%d.ffn_gate.%d.weight", il, e);
                gen_mat(&g, n, ff, d);
                snprintf(n, sizeof n, "blk.%d.ffn_up.%d.weight", il, e);
                gen_mat(&g, n, ff, d);
                snprintf(n, sizeof n, "blk.%d.ffn_down.%d.weight", il, e);
                gen_mat(&g, n, d, ff);
            }
        } else {
            gen_tensor(&g, NM("ffn_gate_exps.weight"), 3, d, ff, s->n_expert, 1.0 / sqrt((double)d), 0);
            gen_tensor(&g, NM("ffn_up_exps.weight"), 3, d, ff, s->n_expert, 1.0 / sqrt((double)d), 0);
            gen_tensor(&g, NM("ffn_down_exps.weight"), 3, ff, d, s->n_expert, 1.0 / sqrt((double)ff), 0);
        }
        int64_t sh = s->n_ff_shexp ? s->n_ff_shexp : (int64_t)s->n_expert_shared * ff;
        if (sh) {
            if (s->shared_gate) gen_tensor(&g, NM("ffn_gate_inp_shexp.weight"), 1, d, 1, 1, 1.0 / sqrt((double)d), 0);
            gen_mat(&g, NM("ffn_gate_shexp.weight"), sh, d);
            gen_mat(&g, NM("ffn_up_shexp.weight"), sh, d);
            gen_mat(&g, NM("ffn_down_shexp.weight"), d, sh);
        }
#undef NM
    }
    gen_norm(&g, "output_norm.weight", d);
    if (!s->tied) gen_mat(&g, "output.weight", s->n_vocab, d);
    if (!g.st) g.st = moe_gguf_writer_write(g.w, path);
    moe_gguf_writer_free(g.w);
    for (int i = 0; i < g.n_bufs; i++) free(g.bufs[i]);
    free(g.bufs);
    return g.st;
}

#endif
