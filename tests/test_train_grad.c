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

/* tiny_shape's configuration. "dense": no experts; "mixtral-every2": 3 layers of which
 * only layer 1 is MoE (moe upcycle --every 2's pattern), dense layers 20 wide. */
static moe_status tiny_config(const char *arch, tm_config *c) {
    const bool dense = !strcmp(arch, "dense"), every2 = !strcmp(arch, "mixtral-every2");
    tm_shape s = tiny_shape(dense || every2 ? "mixtral" : arch);
    if (dense) s.n_expert = 0;
    if (every2) s.n_layer = 3;
    moe_status st = tm_config_make(c, &s);
    if (!st && every2) st = tm_config_set_moe_every(c, 2, 20);
    return st;
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
    if (tiny_config(arch, &c)) { test_fail(__FILE__, __LINE__, "%s: %s", arch, moe_last_error()); return 0; }
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
    const char *archs[] = {"mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek", "dense", "mixtral-every2"};
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

/* The same tiny models against tests/ref/train_model.py (PyTorch autograd in float64):
 * the mean cross-entropy and its gradient for every tensor. Our float32 pass should agree
 * to float32 accuracy: |g − g_ref| ≤ 1e-7 + 2e-5·max|g_ref| per tensor (measured: ≤ 1.3e-6
 * relative), loss to 1e-5. */
#include "io/safetensors.h"

typedef struct {
    const char *arch;
    tm_config c;
    tm_model m;
    batch b;
    char model[512], toks[512], out[512];
} torch_case;

/* Writes the model (GGUF) and the batch for the reference script. */
static bool torch_prepare(torch_case *k) {
    if (tiny_config(k->arch, &k->c) || tm_model_init(&k->m, &k->c, NULL)) return false;
    tm_model_init_random(&k->m, 11);
    perturb_small(&k->m);
    snprintf(k->model, sizeof k->model, "%s/tm_%s.gguf", test_tmpdir(), k->arch);
    snprintf(k->toks, sizeof k->toks, "%s/tm_%s.txt", test_tmpdir(), k->arch);
    snprintf(k->out, sizeof k->out, "%s/tm_%s.safetensors", test_tmpdir(), k->arch);
    moe_gguf_writer *w = moe_gguf_writer_init();
    void *buf = NULL;
    bool ok = tm_model_to_writer(&k->m, w, NULL, true, false, &buf) == MOE_OK && moe_gguf_writer_write(w, k->model) == MOE_OK;
    moe_gguf_writer_free(w);
    free(buf);
    k->b = (batch){.B = 2, .T = 8};
    FILE *f = fopen(k->toks, "w");
    if (!f) return false;
    fprintf(f, "%lld %lld\n", (long long)k->b.B, (long long)k->b.T);
    for (int i = 0; i < 16; i++) { k->b.tok[i] = (int32_t)(tm_rng_next(&g_seed) % 50); fprintf(f, "%d ", k->b.tok[i]); }
    for (int i = 0; i < 16; i++) { k->b.tgt[i] = (int32_t)(tm_rng_next(&g_seed) % 50); fprintf(f, "%d ", k->b.tgt[i]); }
    fclose(f);
    return ok;
}

static void torch_compare(torch_case *k) {
    tm_model *m = &k->m;
    const char *arch = k->arch;
    m->aux_coef = m->z_coef = 0;
    tm_zero_grad(m);
    REQUIRE(tm_forward(m, k->b.tok, k->b.tgt, k->b.B, k->b.T) == MOE_OK);
    const double loss = m->loss;
    REQUIRE(tm_backward(m, 1.0f) == MOE_OK);
    moe_safetensors *st = moe_st_open(k->out);
    REQUIRE_MSG(st, "%s", moe_last_error());
    const moe_st_tensor *tl = moe_st_find(st, "loss");
    float ref_loss = 0;
    REQUIRE(tl && moe_st_read_f32(st, tl, &ref_loss) == MOE_OK);
    CHECK_MSG(fabs(loss - ref_loss) <= 1e-5 * fmax(1.0, fabs(ref_loss)), "%s: loss %.8g vs PyTorch %.8g", arch, loss, ref_loss);
    int compared = 0;
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const tm_tensor *t = &m->t[i];
        const moe_st_tensor *rt = moe_st_find(st, t->name);
        CHECK_MSG(rt && rt->n_elem == (int64_t)t->n, "%s: %s missing from the reference", arch, t->name);
        if (!rt || rt->n_elem != (int64_t)t->n) continue;
        float *ref = malloc(t->n * sizeof *ref);
        REQUIRE(moe_st_read_f32(st, rt, ref) == MOE_OK);
        double mx = 0, err = 0;
        for (size_t j = 0; j < t->n; j++) {
            mx = fmax(mx, fabs(ref[j]));
            err = fmax(err, fabs(ref[j] - m->grads[t->off + j]));
        }
        CHECK_MSG(err <= 1e-7 + 2e-5 * mx, "%s: d%s differs from PyTorch by %.3g (max |g| %.3g)", arch, t->name, err, mx);
        if (mx > 0) worst = fmax(worst, err / mx);
        compared++;
        free(ref);
    }
    CHECK_EQ_INT(compared, m->n_tensors);
    if (getenv("MOE_TEST_VERBOSE")) fprintf(stderr, "%s: loss %.8g vs %.8g, worst relative gradient error %.3g\n", arch, loss, ref_loss, worst);
    moe_st_close(st);
}

TEST(train_grad_vs_pytorch) {
    if (!test_have_python_module("torch")) {
        test_skip("python3-torch is missing (apt-get install python3-torch); the PyTorch comparison did not run");
        return;
    }
    static torch_case cases[] = {{.arch = "mixtral"}, {.arch = "qwen2moe"}, {.arch = "qwen3moe"}, {.arch = "olmoe"},
                                 {.arch = "deepseek"}, {.arch = "mixtral-every2"}};
    char cmd[8192] = "/usr/bin/python3 tests/ref/train_model.py";
    for (size_t a = 0; a < MOE_ARRAY_LEN(cases); a++) {
        REQUIRE_MSG(torch_prepare(&cases[a]), "%s: %s", cases[a].arch, moe_last_error());
        size_t n = strlen(cmd);
        snprintf(cmd + n, sizeof cmd - n, " %s %s %s", cases[a].model, cases[a].toks, cases[a].out);
    }
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    char *msg = NULL;
    int rc = test_run(cmd, &msg);
    CHECK_MSG(rc == 0, "%s", msg ? msg : "");
    free(msg);
    for (size_t a = 0; a < MOE_ARRAY_LEN(cases); a++) {
        if (rc == 0) torch_compare(&cases[a]);
        tm_model_free(&cases[a].m);
        tm_config_free(&cases[a].c);
    }
}

/* AdamW and the schedule against their closed forms: after one step m̂ = g, v̂ = g², so
 * p ← p − lr·(g/(|g| + ε) + wd·p) on decayed tensors and without the wd term on norms;
 * after two steps with gradients g1, g2 the bias-corrected moments are checked too. */
#include "train/optim.h"

TEST(train_adamw_closed_form) {
    tm_config c;
    tm_shape s = tiny_shape("mixtral");
    REQUIRE(tm_config_make(&c, &s) == MOE_OK);
    tm_model m;
    REQUIRE(tm_model_init(&m, &c, NULL) == MOE_OK);
    tm_model_init_random(&m, 3);
    const size_t n = m.n_params;
    float *p0 = malloc(n * sizeof *p0), *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2);
    float *mom = calloc(n, sizeof *mom), *var = calloc(n, sizeof *var);
    for (size_t i = 0; i < n; i++) { g1[i] = (float)(urand() - 0.5); g2[i] = (float)(urand() - 0.5); }
    memcpy(p0, m.params, n * sizeof *p0);
    const tm_adamw o = {0.9, 0.95, 1e-8, 0.1};
    const double lr = 1e-2, gs = 0.5; /* gs: a clipping factor */
    memcpy(m.grads, g1, n * sizeof *g1);
    tm_adamw_step(&m, mom, var, &o, 1, lr, gs, NULL);
    memcpy(m.grads, g2, n * sizeof *g2);
    tm_adamw_step(&m, mom, var, &o, 2, lr, gs, NULL);
    double worst = 0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const tm_tensor *t = &m.t[ti];
        for (size_t j = 0; j < t->n; j++) {
            size_t i = t->off + j;
            double p = p0[i];
            if (!t->trainable) { CHECK(m.params[i] == p0[i]); continue; }
            const double wd = t->decay ? o.weight_decay : 0.0;
            double a = gs * g1[i], b = gs * g2[i];
            double m1 = 0.1 * a, v1 = 0.05 * a * a;
            p -= lr * ((m1 / 0.1) / (sqrt(v1 / 0.05) + o.eps) + wd * p);
            double m2 = 0.9 * m1 + 0.1 * b, v2 = 0.95 * v1 + 0.05 * b * b;
            p -= lr * ((m2 / (1 - 0.81)) / (sqrt(v2 / (1 - 0.9025)) + o.eps) + wd * p);
            worst = fmax(worst, fabs(p - m.params[i]));
        }
    }
    CHECK_MSG(worst < 2e-6, "AdamW differs from its closed form by %g", worst);
    /* schedule: warm-up 10 to 1e-3, cosine to 1e-4 at step 99 */
    CHECK_NEAR(tm_lr_at(0, 100, 10, 1e-3, 1e-4), 1e-4, 1e-12);
    CHECK_NEAR(tm_lr_at(9, 100, 10, 1e-3, 1e-4), 1e-3, 1e-12);
    CHECK_NEAR(tm_lr_at(10, 100, 10, 1e-3, 1e-4), 1e-3, 1e-12);
    CHECK_NEAR(tm_lr_at(99, 100, 10, 1e-3, 1e-4), 1e-4, 1e-12);
    CHECK_NEAR(tm_lr_at(55, 101, 10, 1e-3, 1e-4), 5.5e-4, 1e-12); /* half-way through the cosine */
    /* gradient norm */
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g1[i] * g1[i];
    CHECK_NEAR(tm_grad_norm(g1, n, NULL), sqrt(ss), 1e-9 * sqrt(ss));
    free(p0); free(g1); free(g2); free(mom); free(var);
    tm_model_free(&m);
    tm_config_free(&c);
}
