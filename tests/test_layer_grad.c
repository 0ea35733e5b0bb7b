/* test_layer_grad.c — the MoE layer's backward pass against central finite differences
 * of L = Σ y⊙dy + A·aux + Z·z for every router (x, router weights, bias, scale, every
 * expert and shared-expert matrix), the same results for any thread count, and the AVX2
 * activation against its scalar reference. */
#include "test.h"
#include "moe.h"
#include "moe/layer.h"

#include <stdlib.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_rng >> 11) * (1.0 / 4503599627370496.0) - 1.0);
}
static float *rand_buf(int64_t n, float scale) {
    size_t m = n > 0 ? (size_t)n : 1;
    float *p = malloc(m * sizeof *p);
    for (size_t i = 0; i < m; i++) p[i] = scale * frand();
    return p;
}

typedef struct {
    moe_layer_cfg cfg;
    int64_t T, R;
    float *x, *dy;
    int32_t *tok;
    moe_layer_params w, g;
    float aux, z;
} fd_setup;

static void setup(fd_setup *s, moe_router_kind kind, int E, int64_t T, int64_t d, int64_t ff, int64_t S) {
    memset(s, 0, sizeof *s);
    moe_router_cfg_default(&s->cfg.router, kind, E);
    if (kind == MOE_ROUTER_ADAMOE) s->cfg.router.n_null = 2;
    if (kind == MOE_ROUTER_SOFT_MOE) s->cfg.router.slots_per_expert = 2;
    if (kind == MOE_ROUTER_TOPK) s->cfg.router.capacity_factor = 1.0f; /* exercise drops */
    if (kind == MOE_ROUTER_DEEPSEEK_V3) { s->cfg.router.n_group = 2; s->cfg.router.topk_group = 1; s->cfg.router.route_scale = 1.5f; }
    s->cfg.d = d;
    s->cfg.ff = ff;
    s->cfg.shared_ff = S;
    s->T = T;
    s->R = moe_layer_router_rows(&s->cfg);
    s->x = rand_buf(T * d, 1.0f);
    s->dy = rand_buf(T * d, 1.0f);
    s->tok = malloc((size_t)T * sizeof *s->tok);
    for (int64_t t = 0; t < T; t++) s->tok[t] = (int32_t)((t * 5 + 1) % 11);
    if (kind != MOE_ROUTER_HASH) s->w.router_w = rand_buf(s->R * d, 0.8f);
    if (kind != MOE_ROUTER_SOFT_MOE && kind != MOE_ROUTER_BASE && kind != MOE_ROUTER_HASH)
        s->w.router_b = rand_buf(s->R, 0.3f);
    if (kind == MOE_ROUTER_SOFT_MOE) { s->w.router_scale = malloc(sizeof(float)); s->w.router_scale[0] = 1.7f; }
    s->w.experts.gate = rand_buf(E * ff * d, 0.5f);
    s->w.experts.up = rand_buf(E * ff * d, 0.5f);
    s->w.experts.down = rand_buf(E * d * ff, 0.5f);
    if (S) {
        s->w.shared.gate = rand_buf(S * d, 0.5f);
        s->w.shared.up = rand_buf(S * d, 0.5f);
        s->w.shared.down = rand_buf(d * S, 0.5f);
    }
    /* gradients: zeroed buffers wherever w has a tensor */
    float **wp[] = {&s->w.router_w, &s->w.router_b, &s->w.router_scale, &s->w.experts.gate, &s->w.experts.up,
                    &s->w.experts.down, &s->w.shared.gate, &s->w.shared.up, &s->w.shared.down};
    float **gp[] = {&s->g.router_w, &s->g.router_b, &s->g.router_scale, &s->g.experts.gate, &s->g.experts.up,
                    &s->g.experts.down, &s->g.shared.gate, &s->g.shared.up, &s->g.shared.down};
    int64_t sizes[] = {s->R * d, s->R, 1, E * ff * d, E * ff * d, E * d * ff, S * d, S * d, d * S};
    for (size_t i = 0; i < MOE_ARRAY_LEN(wp); i++)
        if (*wp[i]) *gp[i] = calloc((size_t)sizes[i], sizeof(float));
    s->aux = 0.3f;
    s->z = 0.05f;
}

static void teardown(fd_setup *s) {
    free(s->x); free(s->dy); free(s->tok);
    float *ps[] = {s->w.router_w, s->w.router_b, s->w.router_scale, s->w.experts.gate, s->w.experts.up,
                   s->w.experts.down, s->w.shared.gate, s->w.shared.up, s->w.shared.down,
                   s->g.router_w, s->g.router_b, s->g.router_scale, s->g.experts.gate, s->g.experts.up,
                   s->g.experts.down, s->g.shared.gate, s->g.shared.up, s->g.shared.down};
    for (size_t i = 0; i < MOE_ARRAY_LEN(ps); i++) free(ps[i]);
}

/* L in double, and the routing decisions it was computed with. */
static double loss(moe_layer *l, fd_setup *s, float *y, int32_t *ids) {
    moe_status st = moe_layer_forward(l, y, s->x, s->tok, &s->w, s->T, NULL);
    if (st) return NAN;
    double L = 0;
    for (int64_t i = 0; i < s->T * s->cfg.d; i++) L += (double)y[i] * s->dy[i];
    L += (double)s->aux * l->rt.aux_loss + (double)s->z * l->rt.z_loss;
    if (ids) memcpy(ids, l->rt.expert, (size_t)(s->T * l->rt.n_cols) * sizeof *ids);
    return L;
}

/* Central differences with h = 1e-2 in float32. L is summed in double from float y, and
 * the ±h evaluations round alike, so the difference quotient is accurate to ≈ 1e-5 here
 * (measured: worst |fd − analytic| ≈ 3e-6), the h² truncation term is ≈ 1e-5 for these
 * O(1) weights, and a wrong or missing gradient term is O(0.01-1). Hence the tolerance
 * 2e-4 + 2e-3·|analytic|. Coordinates whose ±h step changes a discrete routing decision
 * are skipped (the function is not differentiable there); at most a quarter may be. */
static void fd_check(moe_router_kind kind) {
    const int E = 4;
    const int64_t T = 8, d = 6, ff = 8, S = kind == MOE_ROUTER_TOPK || kind == MOE_ROUTER_SOFT_MOE ? 4 : 0;
    fd_setup s;
    setup(&s, kind, E, T, d, ff, S);
    moe_layer l;
    REQUIRE_MSG(moe_layer_init(&l, &s.cfg) == MOE_OK, "%s", moe_last_error());
    float *y = malloc((size_t)(T * d) * sizeof *y), *dx = calloc((size_t)(T * d), sizeof *dx);
    int32_t *ids0 = malloc((size_t)(T * (E + 2)) * sizeof *ids0), *ids1 = malloc((size_t)(T * (E + 2)) * sizeof *ids1);
    REQUIRE_MSG(!isnan(loss(&l, &s, y, ids0)), "%s", moe_last_error());
    const int nc = l.rt.n_cols;
    REQUIRE_MSG(moe_layer_backward(&l, dx, &s.g, s.dy, s.x, &s.w, s.aux, s.z, NULL) == MOE_OK, "%s", moe_last_error());

    struct { const char *name; float *p, *g; int64_t n, stride; } ts[] = {
        {"x", s.x, dx, T * d, 1},
        {"router.weight", s.w.router_w, s.g.router_w, s.R * d, 1},
        {"router.bias", s.w.router_b, s.g.router_b, s.R, 1},
        {"router.scale", s.w.router_scale, s.g.router_scale, 1, 1},
        {"experts.gate", s.w.experts.gate, s.g.experts.gate, E * ff * d, 5},
        {"experts.up", s.w.experts.up, s.g.experts.up, E * ff * d, 5},
        {"experts.down", s.w.experts.down, s.g.experts.down, E * d * ff, 5},
        {"shared.gate", s.w.shared.gate, s.g.shared.gate, S * d, 3},
        {"shared.up", s.w.shared.up, s.g.shared.up, S * d, 3},
        {"shared.down", s.w.shared.down, s.g.shared.down, d * S, 3},
    };
    const float h = 1e-2f;
    int checked = 0, skipped = 0;
    double worst = 0;
    for (size_t k = 0; k < MOE_ARRAY_LEN(ts); k++) {
        if (!ts[k].p) continue;
        REQUIRE_MSG(ts[k].g, "no gradient buffer for %s", ts[k].name);
        for (int64_t i = 0; i < ts[k].n; i += ts[k].stride) {
            float keep = ts[k].p[i];
            ts[k].p[i] = keep + h;
            double lp = loss(&l, &s, y, ids1);
            bool same = memcmp(ids0, ids1, (size_t)(T * nc) * sizeof *ids0) == 0;
            ts[k].p[i] = keep - h;
            double lm = loss(&l, &s, y, ids1);
            same = same && memcmp(ids0, ids1, (size_t)(T * nc) * sizeof *ids0) == 0;
            ts[k].p[i] = keep;
            if (!same) { skipped++; continue; }
            double fd = (lp - lm) / (2.0 * h), an = ts[k].g[i];
            double err = fabs(fd - an), tol = 2e-4 + 2e-3 * fabs(an);
            worst = fmax(worst, err / tol);
            CHECK_MSG(err <= tol, "%s: d%s[%lld]: analytic %.6g, finite differences %.6g",
                      moe_router_name(kind), ts[k].name, (long long)i, an, fd);
            checked++;
        }
    }
    CHECK_MSG(skipped * 4 <= checked + skipped, "%s: %d of %d coordinates changed the routing", moe_router_name(kind),
              skipped, checked + skipped);
    CHECK(checked > 50);
    if (getenv("MOE_TEST_VERBOSE"))
        fprintf(stderr, "  %s: %d coordinates checked, %d skipped, worst error %.3f of the tolerance\n",
                moe_router_name(kind), checked, skipped, worst);
    else if (worst > 0.5) fprintf(stderr, "  note: %s: worst error %.2f of the tolerance\n", moe_router_name(kind), worst);
    free(y); free(dx); free(ids0); free(ids1);
    moe_layer_free(&l);
    teardown(&s);
}

TEST(layer_fd_topk) { moe_blas_set_threads(1); fd_check(MOE_ROUTER_TOPK); }
TEST(layer_fd_switch) { fd_check(MOE_ROUTER_SWITCH); }
TEST(layer_fd_gshard) { fd_check(MOE_ROUTER_GSHARD); }
TEST(layer_fd_expert_choice) { fd_check(MOE_ROUTER_EXPERT_CHOICE); }
TEST(layer_fd_soft_moe) { fd_check(MOE_ROUTER_SOFT_MOE); }
TEST(layer_fd_base) { fd_check(MOE_ROUTER_BASE); }
TEST(layer_fd_deepseek_v3) { fd_check(MOE_ROUTER_DEEPSEEK_V3); }
TEST(layer_fd_loss_free) { fd_check(MOE_ROUTER_LOSS_FREE); }
TEST(layer_fd_adamoe) { fd_check(MOE_ROUTER_ADAMOE); }
TEST(layer_fd_hash) { fd_check(MOE_ROUTER_HASH); }
TEST(layer_fd_usmoe) { fd_check(MOE_ROUTER_USMOE); }

/* Forward and backward give the same numbers with 1 thread and with 2 (8 experts, balanced
 * enough for the whole-experts-per-thread schedule) and 3 (threaded GEMMs). */
static void threads_agree(int E, int n_threads) {
    const int64_t T = 256, d = 32, ff = 48;
    fd_setup s;
    setup(&s, MOE_ROUTER_TOPK, E, T, d, ff, 16);
    float *y[2], *dx[2], *gg[2];
    for (int r = 0; r < 2; r++) {
        moe_pool *pool = r ? moe_pool_create(n_threads) : NULL;
        moe_blas_set_threads(r ? n_threads : 1);
        moe_layer l;
        REQUIRE(moe_layer_init(&l, &s.cfg) == MOE_OK);
        y[r] = malloc((size_t)(T * d) * sizeof(float));
        dx[r] = calloc((size_t)(T * d), sizeof(float));
        memset(s.g.experts.gate, 0, (size_t)(E * ff * d) * sizeof(float));
        REQUIRE(moe_layer_forward(&l, y[r], s.x, NULL, &s.w, T, pool) == MOE_OK);
        REQUIRE(moe_layer_backward(&l, dx[r], &s.g, s.dy, s.x, &s.w, s.aux, s.z, pool) == MOE_OK);
        gg[r] = malloc((size_t)(E * ff * d) * sizeof(float));
        memcpy(gg[r], s.g.experts.gate, (size_t)(E * ff * d) * sizeof(float));
        moe_layer_free(&l);
        moe_pool_free(pool);
    }
    moe_blas_set_threads(1);
    for (int64_t i = 0; i < T * d; i++) {
        CHECK_NEAR(y[0][i], y[1][i], 1e-5 * (1 + fabsf(y[0][i])));
        CHECK_NEAR(dx[0][i], dx[1][i], 1e-5 * (1 + fabsf(dx[0][i])));
    }
    for (int64_t i = 0; i < E * ff * d; i++) CHECK_NEAR(gg[0][i], gg[1][i], 1e-5 * (1 + fabsf(gg[0][i])));
    for (int r = 0; r < 2; r++) { free(y[r]); free(dx[r]); free(gg[r]); }
    teardown(&s);
}

TEST(layer_threads_agree_parallel_experts) { threads_agree(8, 2); }
TEST(layer_threads_agree_threaded_gemms) { threads_agree(4, 3); }

/* The AVX2 SwiGLU activation (vector exp) against the scalar one with libm's expf. */
TEST(layer_swiglu_simd_matches_scalar) {
    const int64_t n = 1027; /* not a multiple of 8: the tail goes through the scalar path */
    float *A = rand_buf(n, 30.0f), *U = rand_buf(n, 2.0f);
    A[0] = -120; A[1] = 120; A[2] = 0; A[3] = -87.5f; A[4] = 88.5f;
    float *S0 = malloc(n * sizeof(float)), *H0 = malloc(n * sizeof(float));
    float *S1 = malloc(n * sizeof(float)), *H1 = malloc(n * sizeof(float));
    moe_ffn_act_forward_ref(MOE_FFN_SWIGLU, n, A, U, S0, H0);
    moe_ffn_act_forward(MOE_FFN_SWIGLU, n, A, U, S1, H1);
    for (int64_t i = 0; i < n; i++) {
        CHECK_MSG(fabsf(S0[i] - S1[i]) <= 1e-6f * fabsf(S0[i]) + 1e-38f, "σ(%g): %g vs %g", A[i], S1[i], S0[i]);
        CHECK_MSG(fabsf(H0[i] - H1[i]) <= 1e-6f * fabsf(H0[i]) + 1e-30f, "silu(%g)·%g: %g vs %g", A[i], U[i], H1[i], H0[i]);
    }
    free(A); free(U); free(S0); free(H0); free(S1); free(H1);
}
