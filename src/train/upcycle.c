/* upcycle.c — `moe upcycle` as a library call (moe_upcycle in moe.h): sparse upcycling
 * (Komatsuzaki et al. 2022) of a dense llama model into a Mixtral-layout MoE model. Every
 * expert of an upcycled layer starts as a copy of that layer's dense FFN and the router is
 * drawn N(0, σ²), so the upcycled model computes the dense model's function at step 0.
 * With every = N > 1 only the layers with (il + 1) % N == 0 are upcycled (the paper's and
 * Switch/GShard's "every other layer", starting from the second); the others keep their
 * dense FFN unchanged. Such a file runs in moe.c only: llama.cpp's llama architecture
 * has the same FFN kind in every layer (docs/FORMAT.md). */
#include "train/tmodel.h"
#include "core/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void moe_upcycle_default_params(moe_upcycle_params *p) {
    memset(p, 0, sizeof *p);
    p->n_expert = 8;
    p->n_expert_used = 2;
    p->every = 1;
    p->seed = 1;
    p->router_std = 0.02f;
}

static double gauss(uint64_t *s) { /* Box-Muller on splitmix64, as tmodel.c */
    double u1 = ((double)(tm_rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(tm_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* "blk.7.ffn_gate_exps.weight" → the dense tensor it starts from ("blk.7.ffn_gate.weight");
 * false when name is not an expert tensor. */
static bool dense_source(const char *name, char *out, size_t cap) {
    static const char *const parts[] = {"ffn_gate", "ffn_up", "ffn_down"};
    int il;
    char part[32];
    if (sscanf(name, "blk.%d.%31[a-z_]", &il, part) != 2) return false;
    for (int i = 0; i < 3; i++) {
        char want[48];
        snprintf(want, sizeof want, "%s_exps", parts[i]);
        if (!strcmp(part, want)) {
            snprintf(out, cap, "blk.%d.%s.weight", il, parts[i]);
            return true;
        }
    }
    return false;
}

moe_status moe_upcycle(const moe_upcycle_params *p, const char *dense_path, const char *out_path) {
    if (p->n_expert < 1 || p->n_expert > 1024 || p->n_expert_used < 1 || p->n_expert_used > p->n_expert)
        return moe_error(MOE_ERR_INVALID, "upcycle: need 1 <= topk (%lld) <= experts (%lld) <= 1024",
                         (long long)p->n_expert_used, (long long)p->n_expert);
    if (p->every < 1) return moe_error(MOE_ERR_INVALID, "upcycle: --every %lld must be >= 1", (long long)p->every);
    if (!(p->router_std >= 0.0f) || !isfinite(p->router_std))
        return moe_error(MOE_ERR_INVALID, "upcycle: router std %g must be finite and >= 0", (double)p->router_std);
    moe_gguf *g = moe_gguf_open(dense_path);
    if (!g) return moe_last_status() ? moe_last_status() : MOE_ERR_IO;
    tm_config dc, mc;
    tm_model dm, mm;
    bool have_dc = false, have_mc = false, have_dm = false, have_mm = false;
    moe_gguf_writer *w = NULL;
    void *buf = NULL;
    moe_status st;
    if ((st = tm_config_from_gguf(g, &dc))) goto done;
    have_dc = true;
    if (strcmp(dc.arch->name, "llama") != 0 || dc.hp.n_expert != 0) {
        st = moe_error(MOE_ERR_UNSUPPORTED, "%s: upcycling needs a dense llama model (general.architecture 'llama', "
                                            "no expert_count); this one is '%s' with %lld experts",
                       dense_path, dc.arch->name, (long long)dc.hp.n_expert);
        goto done;
    }
    if (dc.hp.n_embd_head_k * dc.hp.n_head != dc.hp.n_embd) {
        st = moe_error(MOE_ERR_UNSUPPORTED, "%s: head size %lld × %lld heads != embedding_length %lld", dense_path,
                       (long long)dc.hp.n_embd_head_k, (long long)dc.hp.n_head, (long long)dc.hp.n_embd);
        goto done;
    }
    if (p->every > dc.hp.n_layer) {
        st = moe_error(MOE_ERR_INVALID, "upcycle: --every %lld exceeds the %lld layers of %s: no layer would be upcycled",
                       (long long)p->every, (long long)dc.hp.n_layer, dense_path);
        goto done;
    }
    if ((st = tm_model_init(&dm, &dc, NULL))) goto done;
    have_dm = true;
    if ((st = tm_model_load_weights(&dm, g, false, 0))) goto done;

    const moe_hparams *dh = &dc.hp;
    tm_shape s = {.arch = "mixtral", .n_layer = dh->n_layer, .n_embd = dh->n_embd, .n_head = dh->n_head,
                  .n_head_kv = dh->n_head_kv, .n_ff = dh->n_ff, .n_expert = p->n_expert,
                  .n_expert_used = p->n_expert_used, .n_ctx = dh->n_ctx_train, .n_vocab = dh->n_vocab};
    if ((st = tm_config_make(&mc, &s))) goto done;
    have_mc = true;
    /* the layers not upcycled keep the dense FFN (copied by name below) */
    if ((st = tm_config_set_moe_every(&mc, p->every, dh->n_ff))) goto done;
    /* what the shape does not carry travels from the dense file */
    mc.tied = dc.tied;
    mc.hp.rms_eps = dh->rms_eps;
    mc.hp.rope_freq_base = dh->rope_freq_base;
    mc.hp.rope_n_ctx_orig = dh->rope_n_ctx_orig;
    if ((st = tm_model_init(&mm, &mc, NULL))) goto done;
    have_mm = true;

    uint64_t rs = p->seed * 0x2545F4914F6CDD1Dull + 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < mm.n_tensors; i++) {
        const tm_tensor *t = &mm.t[i];
        float *dst = mm.params + t->off;
        char src_name[TM_NAME_MAX + 16];
        if (strstr(t->name, "ffn_gate_inp.weight")) {
            for (size_t j = 0; j < t->n; j++) dst[j] = (float)(gauss(&rs) * p->router_std);
            continue;
        }
        const bool expert = dense_source(t->name, src_name, sizeof src_name);
        const tm_tensor *d = tm_find(&dm, expert ? src_name : t->name);
        /* every expert tensor [ne0, ne1, E] is E copies of the dense [ne0, ne1] matrix */
        const size_t per = expert ? (size_t)(t->ne[0] * t->ne[1]) : t->n;
        if (!d || d->n != per || d->ne[0] != t->ne[0] || d->ne[1] != t->ne[1]) {
            st = moe_error(MOE_ERR_FORMAT, "%s: tensor '%s' is missing or misshapen for the upcycled '%s'", dense_path,
                           expert ? src_name : t->name, t->name);
            goto done;
        }
        const float *src = dm.params + d->off;
        for (size_t e = 0; e < t->n / per; e++) memcpy(dst + e * per, src, per * sizeof *dst);
    }

    if (!(w = moe_gguf_writer_init())) { st = MOE_ERR_NOMEM; goto done; }
    /* f16: keep the dense file's matrix type when it is F16 (the copies are then exact) */
    const moe_gguf_tensor *q = moe_gguf_find_tensor(g, "blk.0.attn_q.weight");
    const bool f16 = p->f16 || (q && q->type == MOE_TYPE_F16);
    /* token-choice top-k with Mixtral's renormalisation is the llama architecture's own
     * router: a plain Mixtral file (llama.cpp loads it), no moe.router.* keys */
    if ((st = tm_model_to_writer(&mm, w, g, false, f16, &buf))) goto done;
    st = moe_gguf_writer_write(w, out_path);
done:
    moe_gguf_writer_free(w);
    free(buf);
    if (have_mm) tm_model_free(&mm);
    if (have_dm) tm_model_free(&dm);
    if (have_mc) tm_config_free(&mc);
    if (have_dc) tm_config_free(&dc);
    moe_gguf_close(g);
    return st;
}
