/* test_router.c — the routers of src/moe/router.h: hand-computed cases from each paper's
 * rule, capacity and dropping edge cases, statistics, and every backward pass against
 * central finite differences of the double-precision instance of the same code. */
#include "test.h"

#include <stdlib.h>

#include "moe/route.h"
#include "moe/router_internal.h"

static double sm(const double *x, int n, int i) {   /* softmax_i by its definition */
    double s = 0;
    for (int j = 0; j < n; j++) s += exp(x[j]);
    return exp(x[i]) / s;
}
static double sg(double x) { return 1 / (1 + exp(-x)); }

static moe_routing route_f(moe_router_cfg *c, const float *x, int64_t T) {
    moe_routing rt = {0};
    moe_status st = moe_router_forward(c, x, NULL, T, &rt);
    if (st != MOE_OK) test_fail(__FILE__, __LINE__, "forward: %s", moe_last_error());
    return rt;
}

/* ---------------------------------------------------------------------------------- */
/* names and defaults                                                                   */

TEST(router_names_and_defaults) {
    const char *names[] = { "topk", "switch", "gshard", "expert-choice", "soft-moe", "base", "deepseek-v3",
                            "loss-free", "adamoe", "hash", "usmoe" };
    for (size_t i = 0; i < MOE_ARRAY_LEN(names); i++) {
        moe_router_kind k;
        REQUIRE(moe_router_from_name(names[i], &k) == MOE_OK);
        CHECK(strcmp(moe_router_name(k), names[i]) == 0);
    }
    moe_router_kind k;
    CHECK(moe_router_from_name("top2", &k) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "unknown router 'top2'");

    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, 8);
    CHECK(c.k == 2 && c.renorm && c.capacity_factor == 0);
    moe_router_cfg_default(&c, MOE_ROUTER_SWITCH, 8);
    CHECK(c.capacity_factor == 1.0 && moe_router_n_cols(&c) == 1);
    moe_router_cfg_default(&c, MOE_ROUTER_GSHARD, 8);
    CHECK(c.capacity_factor == 1.0 && moe_router_n_cols(&c) == 2);
    moe_router_cfg_default(&c, MOE_ROUTER_EXPERT_CHOICE, 8);
    CHECK(c.capacity_factor == 1.0 && c.min_capacity == 4 && moe_router_n_cols(&c) == 8);
    moe_router_cfg_default(&c, MOE_ROUTER_DEEPSEEK_V3, 8);
    CHECK(c.k == 2 && c.renorm && c.n_group == 1 && c.topk_group == 1 && c.route_scale == 1.0f);
    moe_router_cfg_default(&c, MOE_ROUTER_LOSS_FREE, 8);
    CHECK(!c.renorm);
    moe_router_cfg_default(&c, MOE_ROUTER_BASE, 8);
    CHECK(c.assign == MOE_ASSIGN_BALANCED);
    moe_router_cfg_default(&c, MOE_ROUTER_ADAMOE, 8);
    c.n_null = 3;
    CHECK(moe_router_n_logits(&c) == 11);
    moe_router_cfg_default(&c, MOE_ROUTER_SOFT_MOE, 4);
    c.slots_per_expert = 3;
    CHECK(moe_router_n_logits(&c) == 12 && moe_router_n_cols(&c) == 0);

    /* bad configurations are refused with a message naming the field */
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, 4);
    c.k = 5;
    CHECK(moe_router_cfg_check(&c) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "k = 5");
    moe_router_cfg_default(&c, MOE_ROUTER_DEEPSEEK_V3, 6);
    c.n_group = 4;
    CHECK(moe_router_cfg_check(&c) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "n_group");
}

/* ---------------------------------------------------------------------------------- */
/* capacities                                                                           */

TEST(router_capacity_formulas) {
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_SWITCH, 4);
    CHECK_EQ_INT(moe_router_capacity(&c, 8), 2);       /* ⌊1·1·⌈8/4⌉⌋ */
    CHECK_EQ_INT(moe_router_capacity(&c, 9), 3);       /* ⌈9/4⌉ = 3 */
    c.capacity_factor = 0.5;
    CHECK_EQ_INT(moe_router_capacity(&c, 8), 1);
    c.capacity_factor = 0;
    CHECK_EQ_INT(moe_router_capacity(&c, 8), -1);      /* no dropping */
    moe_router_cfg_default(&c, MOE_ROUTER_GSHARD, 4);
    c.capacity_factor = 1.25;
    CHECK_EQ_INT(moe_router_capacity(&c, 10), 7);      /* ⌊1.25·2·3⌋ = ⌊7.5⌋ */
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, 10);
    c.capacity_factor = 0.7;
    c.k = 1;
    CHECK_EQ_INT(moe_router_capacity(&c, 100), 7);     /* Python: 0.7·10 = 7.0 (a float cf would give 6) */

    moe_router_cfg_default(&c, MOE_ROUTER_EXPERT_CHOICE, 4);
    c.min_capacity = 0;
    CHECK_EQ_INT(moe_router_capacity(&c, 10), 2);      /* round(2.5) = 2 (half to even, Python) */
    CHECK_EQ_INT(moe_router_capacity(&c, 14), 4);      /* round(3.5) = 4 */
    CHECK_EQ_INT(moe_router_capacity(&c, 6), 2);       /* round(1.5) = 2 */
    c.min_capacity = 4;
    CHECK_EQ_INT(moe_router_capacity(&c, 10), 4);      /* max(2, 4) */
    CHECK_EQ_INT(moe_router_capacity(&c, 3), 3);       /* max(1, 4) capped at T = 3 */
    c.capacity_factor = 2.0;
    c.n_expert = 1;
    CHECK_EQ_INT(moe_router_capacity(&c, 3), 3);       /* 6 capped at T */
}

/* All tokens prefer expert 0; Switch with capacity 1.0: C = ⌈T/E⌉ = 2, first two kept. */
TEST(router_switch_all_to_one_expert) {
    const int T = 8, E = 4;
    float x[8 * 4];
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) x[t * E + e] = e == 0 ? 3.0f : 0.0f;
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_SWITCH, E);
    moe_routing rt = route_f(&c, x, T);
    double p0 = 1 / (1 + 3 * exp(-3.0));   /* softmax of (3,0,0,0) */
    for (int t = 0; t < T; t++) {
        CHECK_EQ_INT(rt.expert[t], t < 2 ? 0 : -1);
        CHECK_NEAR(rt.weight[t], t < 2 ? p0 : 0, 1e-6);
    }
    CHECK_EQ_INT(rt.stats.n_dropped, 6);
    CHECK_EQ_INT(rt.stats.n_dropped_tokens, 6);
    CHECK_EQ_INT(rt.stats.load[0], 2);
    CHECK_EQ_INT(rt.stats.load_before[0], 8);
    CHECK_EQ_INT(rt.stats.load[1], 0);
    CHECK_NEAR(rt.stats.maxvio, (2 - 0.5) / 0.5, 1e-12);   /* loads (2,0,0,0): mean 0.5 */
    /* aux = E·Σ f_i P_i = 4·(1·p0) since every token's top-1 is expert 0 */
    CHECK_NEAR(rt.aux_loss, 4 * p0, 1e-6);
    double lse = 3 + log(1 + 3 * exp(-3.0));
    CHECK_NEAR(rt.z_loss, lse * lse, 1e-5);
    /* entropy of (p0, q, q, q) */
    double q = (1 - p0) / 3;
    CHECK_NEAR(rt.stats.entropy, -(p0 * log(p0) + 3 * q * log(q)), 1e-6);
    moe_routing_free(&rt);
}

/* T < E: ⌈2/8⌉ = 1 slot per expert, capacity 0.5 → ⌊0.5⌋ = 0: everything dropped. */
TEST(router_capacity_small_T_and_half_factor) {
    float x[2 * 8] = {0};
    x[0 * 8 + 5] = 1;
    x[1 * 8 + 5] = 2;
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_SWITCH, 8);
    moe_routing rt = route_f(&c, x, 2);
    CHECK_EQ_INT(rt.expert[0], 5);
    CHECK_EQ_INT(rt.expert[1], -1);
    c.capacity_factor = 0.5;
    REQUIRE(moe_router_forward(&c, x, NULL, 2, &rt) == MOE_OK);
    CHECK_EQ_INT(rt.expert[0], -1);
    CHECK_EQ_INT(rt.expert[1], -1);
    CHECK_EQ_INT(rt.stats.n_dropped_tokens, 2);
    CHECK(rt.weight[0] == 0 && rt.weight[1] == 0);

    /* top-1 capacity 0.5 with T = 8, E = 2: ⌊0.5·4⌋ = 2 per expert */
    float y[8 * 2];
    for (int t = 0; t < 8; t++) { y[2 * t] = t < 6 ? 1.0f : 0.0f; y[2 * t + 1] = t < 6 ? 0.0f : 1.0f; }
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, 2);
    c.k = 1;
    c.capacity_factor = 0.5;
    REQUIRE(moe_router_forward(&c, y, NULL, 8, &rt) == MOE_OK);
    int expect[8] = { 0, 0, -1, -1, -1, -1, 1, 1 };
    for (int t = 0; t < 8; t++) CHECK_EQ_INT(rt.expert[t], expect[t]);
    /* topk renormalises over its k = 1 choice: weight 1 where kept */
    CHECK_NEAR(rt.weight[0], 1.0, 1e-7);
    moe_routing_free(&rt);
}

/* GShard priority: first choices of every token, then second choices; weights renormalised
 * over what is kept. T = 4, E = 2, cf = 0.5 → C = ⌊0.5·2·2⌋ = 2. Tokens 0-2 prefer expert
 * 0, token 3 expert 1. First pass: e0 ← 0, 1 (2 dropped), e1 ← 3. Second pass (token
 * order): token 0 → e1 (kept, e1 now full), tokens 1, 2 → e1 dropped, token 3 → e0 full. */
TEST(router_gshard_priority_hand) {
    float x[4 * 2] = { 2, 1, 1.5f, 0, 1, 0.5f, 0, 1 };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_GSHARD, 2);
    c.capacity_factor = 0.5;
    moe_routing rt = route_f(&c, x, 4);
    int ex[8] = { 0, 1, 0, -1, -1, -1, 1, -1 };
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(rt.expert[i], ex[i]);
    double w0 = sm((double[]){ 2, 1 }, 2, 0);
    CHECK_NEAR(rt.weight[0], w0, 1e-6);        /* both kept: p1/(p1+p2) = p1 */
    CHECK_NEAR(rt.weight[1], 1 - w0, 1e-6);
    CHECK_NEAR(rt.weight[2], 1.0, 1e-6);       /* only the first kept: renormalised to 1 */
    CHECK(rt.weight[4] == 0 && rt.weight[5] == 0);
    CHECK_NEAR(rt.weight[6], 1.0, 1e-6);
    CHECK_EQ_INT(rt.stats.n_dropped, 4);
    CHECK_EQ_INT(rt.stats.n_dropped_tokens, 1);

    /* BPR: tokens by descending top-1 probability, ties → lower index: 1 (σ(1.5) = .818),
     * 0 (σ(1) = .731), 3 (σ(1) = .731), 2 (σ(.5) = .622).
     * First pass: e0 ← 1, 0; token 3 → e1; token 2 → e0 dropped. Second pass in the
     * same order: 1 → e1 (kept, full), 0 → e1 dropped, 3 → e0 dropped, 2 → e1 dropped. */
    c.priority = MOE_PRIORITY_BPR;
    REQUIRE(moe_router_forward(&c, x, NULL, 4, &rt) == MOE_OK);
    int ex2[8] = { 0, -1, 0, 1, -1, -1, 1, -1 };
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(rt.expert[i], ex2[i]);
    CHECK_NEAR(rt.weight[0], 1.0, 1e-6);
    CHECK_NEAR(rt.weight[2], sm((double[]){ 1.5, 0 }, 2, 0), 1e-6);
    moe_routing_free(&rt);
}

/* Equal scores: the lower expert index first; expert choice: the lower token first. */
TEST(router_ties_lower_index) {
    float x[3 * 4] = {0};
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, 4);
    moe_routing rt = route_f(&c, x, 3);
    for (int t = 0; t < 3; t++) {
        CHECK_EQ_INT(rt.expert[2 * t], 0);
        CHECK_EQ_INT(rt.expert[2 * t + 1], 1);
        CHECK_NEAR(rt.weight[2 * t], 0.5, 1e-7);
    }
    moe_router_cfg_default(&c, MOE_ROUTER_EXPERT_CHOICE, 4);
    c.min_capacity = 2;   /* round(1·3/4) = 1 → max(1, 2) = 2 */
    REQUIRE(moe_router_forward(&c, x, NULL, 3, &rt) == MOE_OK);
    for (int e = 0; e < 4; e++) {
        CHECK_EQ_INT(rt.expert[0 * 4 + e], e);
        CHECK_EQ_INT(rt.expert[1 * 4 + e], e);
        CHECK_EQ_INT(rt.expert[2 * 4 + e], -1);
    }
    CHECK_EQ_INT(rt.stats.n_dropped_tokens, 1);
    moe_routing_free(&rt);
}

/* Expert choice, Zhou et al. eq. 1, by hand: T = 4, E = 2, C = round(1·4/2) = 2. */
TEST(router_expert_choice_hand) {
    float x[4 * 2] = { 1, 0, 0, 1, 3, 0, 0.5f, 0.6f };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_EXPERT_CHOICE, 2);
    c.min_capacity = 1;
    moe_routing rt = route_f(&c, x, 4);
    /* p(e0) per token: σ(1), σ(-1), σ(3), σ(-0.1): expert 0 takes tokens 2, 0; p(e1):
     * σ(-1), σ(1), σ(-3), σ(0.1): expert 1 takes tokens 1, 3. */
    int ex[8] = { 0, -1, -1, 1, 0, -1, -1, 1 };
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(rt.expert[i], ex[i]);
    CHECK_NEAR(rt.weight[0], sg(1), 1e-6);
    CHECK_NEAR(rt.weight[3], sg(1), 1e-6);
    CHECK_NEAR(rt.weight[4], sg(3), 1e-6);
    CHECK_NEAR(rt.weight[7], sg(0.1), 1e-6);
    CHECK(rt.aux_loss == 0);
    CHECK_EQ_INT(rt.stats.load[0], 2);
    CHECK(rt.stats.maxvio == 0);
    moe_routing_free(&rt);
}

/* DeepSeek-V3 Gate by hand: E = 8 in 4 groups of 2, topk_group 2, k = 2, with a bias. */
TEST(router_deepseek_groups_hand) {
    float x[8] = { 2.0f, -1.0f, 0.5f, 0.4f, 1.0f, 1.2f, -2.0f, 3.0f };
    float bias[8] = { 0, 0, 0.3f, 0.3f, 0, 0, 0, -0.9f };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_DEEPSEEK_V3, 8);
    c.n_group = 4;
    c.topk_group = 2;
    c.sel_bias = bias;
    c.route_scale = 2.5f;
    moe_routing rt = route_f(&c, x, 1);
    /* keys s+b: g0 (.881, .269) sum 1.150; g1 (.922, .898) 1.820; g2 (.731, .769) 1.500;
     * g3 (.119, .053) 0.172. Kept groups: g1, g2 → best keys: e2 (.922), e3 (.898). */
    CHECK_EQ_INT(rt.expert[0], 2);
    CHECK_EQ_INT(rt.expert[1], 3);
    double s2 = sg(0.5), s3 = sg(0.4);
    CHECK_NEAR(rt.weight[0], 2.5 * s2 / (s2 + s3), 1e-6);
    CHECK_NEAR(rt.weight[1], 2.5 * s3 / (s2 + s3), 1e-6);
    /* without bias the group score is the max: g0 .881, g1 .622, g2 .769, g3 .953 →
     * keep g3, g0 → e7 (.953), e0 (.881) */
    c.sel_bias = NULL;
    REQUIRE(moe_router_forward(&c, x, NULL, 1, &rt) == MOE_OK);
    CHECK_EQ_INT(rt.expert[0], 7);
    CHECK_EQ_INT(rt.expert[1], 0);
    /* the inference rule (route.c) agrees */
    moe_route_cfg rc = { .n_expert = 8, .k = 2, .score = MOE_SCORE_SIGMOID, .renorm = true, .scale = 2.5f,
                         .sel_bias = bias, .n_group = 4, .topk_group = 2 };
    float sc[8], w[2];
    int32_t id[2];
    moe_route_topk(&rc, x, sc, id, w);
    CHECK(id[0] == 2 && id[1] == 3);
    CHECK_NEAR(w[0], 2.5 * s2 / (s2 + s3), 1e-6);
    /* aux (no bias, no groups): top-2 of s = e7, e0; f_7 = f_0 = 8/(2·1)·1 = 4;
     * aux = 4·(s7 + s0)/Σs */
    double sum = 0;
    for (int e = 0; e < 8; e++) sum += sg(x[e]);
    REQUIRE(moe_router_forward(&c, x, NULL, 1, &rt) == MOE_OK);
    CHECK_NEAR(rt.aux_loss, 4 * (sg(3) + sg(2)) / sum, 1e-6);
    moe_routing_free(&rt);
}

/* AdaMoE: E = 2 real, m = 2 null, k = 2. */
TEST(router_adamoe_hand) {
    float x[3 * 4] = { 2, 0, 1, -1,     /* e0 + null 2 → e0 weight 1 */
                       1, 0.9f, -3, -3, /* e0 + e1, renormalised */
                       -2, -2, 1, 0.5f };/* nulls only → no expert */
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_ADAMOE, 2);
    c.n_null = 2;
    moe_routing rt = route_f(&c, x, 3);
    int ex[6] = { 0, -1, 0, 1, -1, -1 };
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(rt.expert[i], ex[i]);
    CHECK_NEAR(rt.weight[0], 1.0, 1e-6);
    CHECK(rt.weight[1] == 0);
    CHECK_NEAR(rt.weight[2], 1 / (1 + exp(-0.1)), 1e-6);
    CHECK(rt.weight[4] == 0 && rt.weight[5] == 0);
    CHECK_EQ_INT(rt.stats.n_null, 3);
    CHECK_EQ_INT(rt.stats.n_dropped_tokens, 1);
    /* aux: counts c = (2, 1, 2, 1) → nulls replaced by their mean 1.5; f = c/(T·k = 6);
     * aux = 4·Σ f_i P_i with P the mean softmax over the 4 columns */
    double P[4] = {0};
    for (int t = 0; t < 3; t++) {
        double r[4];
        for (int i = 0; i < 4; i++) r[i] = x[t * 4 + i];
        for (int i = 0; i < 4; i++) P[i] += sm(r, 4, i) / 3;
    }
    double f[4] = { 2 / 6.0, 1 / 6.0, 1.5 / 6.0, 1.5 / 6.0 }, aux = 0;
    for (int i = 0; i < 4; i++) aux += f[i] * P[i];
    CHECK_NEAR(rt.aux_loss, 4 * aux, 1e-6);
    moe_routing_free(&rt);
}

TEST(router_hash_hand) {
    int32_t ids[5] = { 0, 7, 13, 2, 4 };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_HASH, 4);
    moe_routing rt = {0};
    REQUIRE(moe_router_forward(&c, NULL, ids, 5, &rt) == MOE_OK);
    int ex[5] = { 0, 3, 1, 2, 0 };
    for (int t = 0; t < 5; t++) {
        CHECK_EQ_INT(rt.expert[t], ex[t]);
        CHECK(rt.weight[t] == 1.0f);
    }
    CHECK(rt.z_loss == 0 && rt.aux_loss == 0);
    int32_t map[14] = { 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2 };
    c.hash_map = map;
    c.hash_map_len = 14;
    REQUIRE(moe_router_forward(&c, NULL, ids, 5, &rt) == MOE_OK);
    int ex2[5] = { 3, 0, 2, 1, 3 };
    for (int t = 0; t < 5; t++) CHECK_EQ_INT(rt.expert[t], ex2[t]);
    ids[1] = 14;   /* past the map: an error, not a crash */
    CHECK(moe_router_forward(&c, NULL, ids, 5, &rt) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "token 1 has id 14");
    moe_routing_free(&rt);
}

/* USMoE: u = ½·softmax + ½·(2/E)·σ, the top T·k pairs globally. T = 2, E = 2, k = 1. */
TEST(router_usmoe_hand) {
    float x[4] = { 3, 0, 0.2f, 0 };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_USMOE, 2);
    c.k = 1;
    moe_routing rt = route_f(&c, x, 2);
    double u[4];
    for (int t = 0; t < 2; t++)
        for (int e = 0; e < 2; e++) {
            double r[2] = { x[2 * t], x[2 * t + 1] };
            u[2 * t + e] = 0.5 * sm(r, 2, e) + 0.5 * sg(x[2 * t + e]);
        }
    /* u = (.9 ish, .27), (.55, .5): the two best pairs are (0,0) and (1,0); expert 1 idle */
    CHECK_EQ_INT(rt.expert[0], 0);
    CHECK_EQ_INT(rt.expert[1], -1);
    CHECK_EQ_INT(rt.expert[2], 0);
    CHECK_EQ_INT(rt.expert[3], -1);
    CHECK_NEAR(rt.weight[0], u[0], 1e-6);
    CHECK_NEAR(rt.weight[2], u[2], 1e-6);
    CHECK_EQ_INT(rt.stats.load[0], 2);
    CHECK_NEAR(rt.stats.maxvio, 1.0, 1e-12);
    moe_routing_free(&rt);
}

TEST(router_soft_moe_hand) {
    /* T = 2 tokens, E = 1 expert, p = 2 slots */
    float x[4] = { 1, 2, 0, -1 };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_SOFT_MOE, 1);
    c.slots_per_expert = 2;
    moe_routing rt = route_f(&c, x, 2);
    REQUIRE(rt.n_slots == 2);
    CHECK_NEAR(rt.dispatch[0], sg(1), 1e-6);       /* slot 0 over tokens: (1, 0) */
    CHECK_NEAR(rt.dispatch[2], sg(-1), 1e-6);
    CHECK_NEAR(rt.dispatch[1], sg(3), 1e-6);       /* slot 1: (2, -1) */
    CHECK_NEAR(rt.combine[0], sg(-1), 1e-6);       /* token 0 over slots: (1, 2) */
    CHECK_NEAR(rt.combine[3], sg(-1), 1e-6);       /* token 1: (0, -1) */
    CHECK(rt.z_loss == 0 && rt.aux_loss == 0);
    moe_routing_free(&rt);
}

/* BASE by hand: all 4 tokens prefer expert 0; capacity 2. Greedy sends all to 0; the
 * balanced optimum moves the two tokens that lose least (t2: 0.2, t3: 0.3 vs t0 2, t1 1). */
TEST(router_base_hand) {
    float x[4 * 2] = { 3, 1, 2, 1, 1.2f, 1, 0.3f, 0 };
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_BASE, 2);
    moe_routing rt = route_f(&c, x, 4);
    int ex[4] = { 0, 0, 1, 1 };
    for (int t = 0; t < 4; t++) CHECK_EQ_INT(rt.expert[t], ex[t]);
    CHECK_NEAR(rt.weight[2], sg(1), 1e-6);
    CHECK_NEAR(rt.weight[0], sg(3), 1e-6);
    c.assign = MOE_ASSIGN_GREEDY;
    REQUIRE(moe_router_forward(&c, x, NULL, 4, &rt) == MOE_OK);
    for (int t = 0; t < 4; t++) CHECK_EQ_INT(rt.expert[t], 0);
    c.assign = MOE_ASSIGN_AUCTION;
    REQUIRE(moe_router_forward(&c, x, NULL, 4, &rt) == MOE_OK);
    for (int t = 0; t < 4; t++) CHECK_EQ_INT(rt.expert[t], ex[t]);
    moe_routing_free(&rt);
}

TEST(router_bias_update) {
    float b[4] = { 0, 0, 0, 0 };
    int64_t load[4] = { 5, 1, 3, 3 };   /* mean 3 */
    moe_router_bias_update(b, load, 4, 0.01f);
    CHECK(b[0] == -0.01f && b[1] == 0.01f && b[2] == 0 && b[3] == 0);
}

/* ---------------------------------------------------------------------------------- */
/* finite differences                                                                   */

static uint64_t g_rng = 88172645463325252ull;
static double urand(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* L = Σ dw·w + Σ dd·dispatch + Σ dc·combine + A·aux + Z·z, in double. */
static double fd_loss(const moe_router_cfg *c, const double *x, int64_t T, const double *dw, const double *dd,
                      const double *dc, double A, double Z, moe_routing_f64 *rt) {
    if (moe_router_forward_f64(c, x, NULL, T, rt) != MOE_OK) return NAN;
    double L = A * rt->aux_loss + Z * rt->z_loss;
    for (int64_t i = 0; i < T * rt->n_cols; i++) L += dw[i] * rt->weight[i];
    for (int64_t i = 0; i < T * rt->n_slots; i++) L += dd[i] * rt->dispatch[i] + dc[i] * rt->combine[i];
    return L;
}

/* Checks the analytic gradient of one configuration against central differences, and the
 * float instance against the double one. Returns the largest relative error seen. */
static void check_grad(const char *what, const moe_router_cfg *c, int64_t T, double scale) {
    const int L = moe_router_n_logits(c), nc = moe_router_n_cols(c);
    const int ns = c->kind == MOE_ROUTER_SOFT_MOE ? L : 0;
    double *x = malloc(sizeof(double) * T * L), *g = calloc(T * L, sizeof(double));
    double *dw = malloc(sizeof(double) * (T * nc + 1)), *dd = malloc(sizeof(double) * (T * ns + 1));
    double *dc = malloc(sizeof(double) * (T * ns + 1));
    for (int64_t i = 0; i < T * L; i++) x[i] = scale * nrand();
    for (int64_t i = 0; i < T * nc; i++) dw[i] = nrand();
    for (int64_t i = 0; i < T * ns; i++) { dd[i] = nrand(); dc[i] = nrand(); }
    const double A = 0.7, Z = 0.3;
    moe_routing_f64 rt = {0}, rp = {0}, rm = {0};
    double L0 = fd_loss(c, x, T, dw, dd, dc, A, Z, &rt);
    REQUIRE_MSG(!isnan(L0), "%s: forward failed: %s", what, moe_last_error());
    REQUIRE(moe_router_backward_f64(c, x, T, &rt, dw, dd, dc, A, Z, g) == MOE_OK);
    /* h = 1e-6 in double: truncation O(h²·|L'''|) ~ 1e-12, rounding O(ε·|L|/h) ~ 1e-9;
     * tolerance 1e-6·(1 + |g|) leaves three orders of margin. Coordinates whose ±h changes
     * a discrete decision (a top-k set, a drop, an assignment) are not differentiable there
     * and are skipped; they must be rare. */
    const double h = 1e-6;
    int skipped = 0, n = 0;
    double worst = 0;
    for (int64_t i = 0; i < T * L; i++) {
        double xi = x[i];
        x[i] = xi + h;
        double Lp = fd_loss(c, x, T, dw, dd, dc, A, Z, &rp);
        x[i] = xi - h;
        double Lm = fd_loss(c, x, T, dw, dd, dc, A, Z, &rm);
        x[i] = xi;
        bool same = nc == 0 || (memcmp(rp.expert, rt.expert, sizeof(int32_t) * T * nc) == 0 &&
                                memcmp(rm.expert, rt.expert, sizeof(int32_t) * T * nc) == 0 &&
                                memcmp(rp.choice, rt.choice, sizeof(int32_t) * T * nc) == 0 &&
                                memcmp(rm.choice, rt.choice, sizeof(int32_t) * T * nc) == 0);
        if (!same) { skipped++; continue; }
        double fd = (Lp - Lm) / (2 * h), err = fabs(fd - g[i]) / (1 + fabs(g[i]));
        worst = fmax(worst, err);
        n++;
        CHECK_MSG(err < 1e-6, "%s: dL/dx[%lld] analytic %.12g vs finite difference %.12g", what, (long long)i, g[i], fd);
    }
    CHECK_MSG(skipped * 10 <= T * L, "%s: %d of %lld coordinates change a decision", what, skipped, (long long)(T * L));

    /* float instance ≈ double instance: same decisions, weights and gradients */
    float *xf = malloc(sizeof(float) * T * L), *gf = calloc(T * L, sizeof(float));
    float *dwf = malloc(sizeof(float) * (T * nc + 1)), *ddf = malloc(sizeof(float) * (T * ns + 1));
    float *dcf = malloc(sizeof(float) * (T * ns + 1));
    for (int64_t i = 0; i < T * L; i++) x[i] = xf[i] = (float)x[i];   /* same inputs exactly */
    for (int64_t i = 0; i < T * nc; i++) dwf[i] = (float)dw[i];
    for (int64_t i = 0; i < T * ns; i++) { ddf[i] = (float)dd[i]; dcf[i] = (float)dc[i]; }
    for (int64_t i = 0; i < T * nc; i++) dw[i] = dwf[i];
    for (int64_t i = 0; i < T * ns; i++) { dd[i] = ddf[i]; dc[i] = dcf[i]; }
    moe_routing rf = {0};
    for (int64_t i = 0; i < T * L; i++) g[i] = 0;
    fd_loss(c, x, T, dw, dd, dc, A, Z, &rt);
    REQUIRE(moe_router_backward_f64(c, x, T, &rt, dw, dd, dc, A, Z, g) == MOE_OK);
    REQUIRE(moe_router_forward(c, xf, NULL, T, &rf) == MOE_OK);
    REQUIRE(moe_router_backward(c, xf, T, &rf, dwf, ddf, dcf, (float)A, (float)Z, gf) == MOE_OK);
    if (nc) CHECK_MSG(memcmp(rf.expert, rt.expert, sizeof(int32_t) * T * nc) == 0, "%s: float and double route differently", what);
    for (int64_t i = 0; i < T * nc; i++) CHECK_NEAR(rf.weight[i], rt.weight[i], 1e-6);
    for (int64_t i = 0; i < T * ns; i++) {
        CHECK_NEAR(rf.dispatch[i], rt.dispatch[i], 1e-6);
        CHECK_NEAR(rf.combine[i], rt.combine[i], 1e-6);
    }
    CHECK_NEAR(rf.aux_loss, rt.aux_loss, 1e-5 * (1 + fabs(rt.aux_loss)));
    CHECK_NEAR(rf.z_loss, rt.z_loss, 1e-5 * (1 + fabs(rt.z_loss)));
    for (int64_t i = 0; i < T * L; i++) CHECK_NEAR(gf[i], g[i], 1e-4 * (1 + fabs(g[i])));
    (void)worst;
    (void)n;
    moe_routing_free(&rf);
    moe_routing_f64_free(&rt);
    moe_routing_f64_free(&rp);
    moe_routing_f64_free(&rm);
    free(x); free(g); free(dw); free(dd); free(dc);
    free(xf); free(gf); free(dwf); free(ddf); free(dcf);
}

TEST(router_grad_token_choice) {
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, 6);
    check_grad("topk renorm", &c, 12, 1.0);
    c.renorm = false;
    c.k = 3;
    check_grad("topk k=3 no renorm", &c, 12, 1.0);
    c.renorm = true;
    c.k = 2;
    c.capacity_factor = 0.75;   /* drops, with renorm before dropping */
    check_grad("topk capacity 0.75", &c, 12, 1.5);
    c.priority = MOE_PRIORITY_BPR;
    check_grad("topk capacity BPR", &c, 12, 1.5);
    moe_router_cfg_default(&c, MOE_ROUTER_SWITCH, 4);
    check_grad("switch", &c, 12, 1.0);
    moe_router_cfg_default(&c, MOE_ROUTER_GSHARD, 4);
    check_grad("gshard", &c, 12, 1.0);
    c.capacity_factor = 0.5;
    check_grad("gshard capacity 0.5", &c, 12, 1.0);
}

TEST(router_grad_other_routers) {
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_EXPERT_CHOICE, 4);
    c.min_capacity = 2;
    check_grad("expert-choice", &c, 10, 1.0);
    moe_router_cfg_default(&c, MOE_ROUTER_SOFT_MOE, 2);
    c.slots_per_expert = 3;
    check_grad("soft-moe", &c, 5, 1.0);
    moe_router_cfg_default(&c, MOE_ROUTER_BASE, 3);
    check_grad("base balanced", &c, 9, 1.0);
    c.assign = MOE_ASSIGN_GREEDY;
    check_grad("base greedy", &c, 9, 1.0);
    float bias[8] = { 0.1f, -0.2f, 0.05f, 0.3f, -0.1f, 0, 0.2f, -0.3f };
    moe_router_cfg_default(&c, MOE_ROUTER_DEEPSEEK_V3, 8);
    check_grad("deepseek-v3", &c, 8, 1.0);
    c.n_group = 4;
    c.topk_group = 2;
    c.k = 3;
    c.sel_bias = bias;
    c.route_scale = 2.5f;
    check_grad("deepseek-v3 groups+bias", &c, 8, 1.0);
    c.renorm = false;
    check_grad("deepseek-v3 no renorm", &c, 8, 1.0);
    moe_router_cfg_default(&c, MOE_ROUTER_LOSS_FREE, 8);
    c.sel_bias = bias;
    check_grad("loss-free", &c, 8, 1.0);
    c.renorm = true;
    check_grad("loss-free renorm", &c, 8, 1.0);
    moe_router_cfg_default(&c, MOE_ROUTER_ADAMOE, 4);
    c.n_null = 3;
    c.k = 3;
    check_grad("adamoe", &c, 10, 1.0);
    moe_router_cfg_default(&c, MOE_ROUTER_USMOE, 4);
    check_grad("usmoe", &c, 8, 1.0);
    c.renorm = true;
    c.usmoe_alpha = 0.3f;
    c.usmoe_beta = 0.7f;
    check_grad("usmoe renorm", &c, 8, 1.0);
}

/* The inference rule and the training routers make the same choices with the same
 * weights (they share moe_route_select). */
TEST(router_matches_inference_route) {
    const int T = 20, E = 16;
    float x[20 * 16], bias[16];
    for (int i = 0; i < T * E; i++) x[i] = (float)nrand();
    for (int e = 0; e < E; e++) bias[e] = (float)(0.1 * nrand());
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_DEEPSEEK_V3, E);
    c.k = 4; c.n_group = 4; c.topk_group = 2; c.sel_bias = bias; c.route_scale = 1.5f;
    moe_routing rt = route_f(&c, x, T);
    moe_route_cfg rc = { .n_expert = E, .k = 4, .score = MOE_SCORE_SIGMOID, .renorm = true, .scale = 1.5f,
                         .sel_bias = bias, .n_group = 4, .topk_group = 2 };
    for (int t = 0; t < T; t++) {
        float sc[16], w[4];
        int32_t id[4];
        moe_route_topk(&rc, x + t * E, sc, id, w);
        for (int j = 0; j < 4; j++) {
            CHECK_EQ_INT(id[j], rt.expert[t * 4 + j]);
            CHECK(w[j] == rt.weight[t * 4 + j]);
        }
    }
    moe_router_cfg_default(&c, MOE_ROUTER_TOPK, E);
    c.k = 2;
    REQUIRE(moe_router_forward(&c, x, NULL, T, &rt) == MOE_OK);
    moe_route_cfg rs = { .n_expert = E, .k = 2, .score = MOE_SCORE_SOFTMAX, .renorm = true, .scale = 1.0f };
    for (int t = 0; t < T; t++) {
        float sc[16], w[2];
        int32_t id[2];
        moe_route_topk(&rs, x + t * E, sc, id, w);
        for (int j = 0; j < 2; j++) {
            CHECK_EQ_INT(id[j], rt.expert[t * 2 + j]);
            CHECK_NEAR(w[j], rt.weight[t * 2 + j], 1e-7);
        }
    }
    moe_routing_free(&rt);
}

/* Reusing one moe_routing across calls of different kinds and sizes. */
TEST(router_routing_reuse) {
    moe_routing rt = {0};
    float x[64 * 8];
    for (int i = 0; i < 64 * 8; i++) x[i] = (float)nrand();
    moe_router_kind kinds[] = { MOE_ROUTER_TOPK, MOE_ROUTER_EXPERT_CHOICE, MOE_ROUTER_SOFT_MOE, MOE_ROUTER_SWITCH,
                                MOE_ROUTER_USMOE, MOE_ROUTER_BASE };
    int Ts[] = { 3, 64, 10, 64, 1, 40 };
    for (size_t i = 0; i < MOE_ARRAY_LEN(kinds); i++) {
        moe_router_cfg c;
        moe_router_cfg_default(&c, kinds[i], 8);
        REQUIRE_MSG(moe_router_forward(&c, x, NULL, Ts[i], &rt) == MOE_OK, "%s: %s", moe_router_name(kinds[i]), moe_last_error());
        CHECK(rt.T == Ts[i] && rt.n_cols == moe_router_n_cols(&c));
    }
    /* T = 0 is a valid empty batch */
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_GSHARD, 8);
    CHECK(moe_router_forward(&c, x, NULL, 0, &rt) == MOE_OK);
    moe_routing_free(&rt);
}

/* GShard with the sampled second expert (fairseq's "sampling" policy, Gumbel-max): the
 * second expert is never the first, and is drawn ∝ its softmax probability among the
 * others. 20000 identical tokens, E = 4: frequencies within 4 standard errors. */
TEST(router_gshard_sampled_second) {
    const int T = 20000, E = 4;
    float *x = malloc(sizeof(float) * T * E);
    const float row[4] = { 2.0f, 1.0f, 0.5f, 0.0f };
    for (int t = 0; t < T; t++) memcpy(x + t * E, row, sizeof row);
    moe_router_cfg c;
    moe_router_cfg_default(&c, MOE_ROUTER_GSHARD, E);
    c.capacity_factor = 0;
    c.gshard_sample = true;
    c.seed = 1234;
    moe_routing rt = route_f(&c, x, T);
    int cnt[4] = {0};
    for (int t = 0; t < T; t++) {
        CHECK_EQ_INT(rt.expert[2 * t], 0);
        REQUIRE(rt.expert[2 * t + 1] > 0 && rt.expert[2 * t + 1] < E);
        cnt[rt.expert[2 * t + 1]]++;
    }
    double z = exp(1.0) + exp(0.5) + exp(0.0);
    for (int e = 1; e < E; e++) {
        double p = exp((double)row[e]) / z, se = sqrt(p * (1 - p) / T);
        CHECK_MSG(fabs((double)cnt[e] / T - p) < 4 * se, "expert %d drawn %.4f of the time, expected %.4f", e,
                  (double)cnt[e] / T, p);
    }
    /* weights are the two probabilities renormalised */
    double p0 = sm((const double[]){ 2, 1, 0.5, 0 }, 4, 0), p1 = sm((const double[]){ 2, 1, 0.5, 0 }, 4, 1);
    for (int t = 0; t < T; t++)
        if (rt.expert[2 * t + 1] == 1) { CHECK_NEAR(rt.weight[2 * t], p0 / (p0 + p1), 1e-6); break; }
    /* the same seed gives the same draws */
    moe_routing r2 = route_f(&c, x, T);
    CHECK(memcmp(r2.expert, rt.expert, sizeof(int32_t) * 2 * T) == 0);
    moe_routing_free(&r2);
    moe_routing_free(&rt);
    free(x);
}

TEST(router_hash_maps) {
    /* balanced by frequency, by hand: freq (10, 1, 7, 3, 3), E = 2. Order: 0 (10), 2 (7),
     * 3 (3), 4 (3), 1 (1). 0 → e0 (10); 2 → e1 (7); 3 → e1 (10); 4 → e0 (13, tie → lower
     * expert); 1 → e1 (11). */
    int64_t freq[5] = { 10, 1, 7, 3, 3 };
    int32_t map[5];
    REQUIRE(moe_router_hash_map_balanced(map, freq, 5, 2) == MOE_OK);
    int want[5] = { 0, 1, 1, 1, 0 };
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(map[i], want[i]);
    /* random: every expert used, deterministic in the seed */
    int32_t a[1000], b[1000];
    int cnt[8] = {0};
    REQUIRE(moe_router_hash_map_random(a, 1000, 8, 7) == MOE_OK);
    REQUIRE(moe_router_hash_map_random(b, 1000, 8, 7) == MOE_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    for (int i = 0; i < 1000; i++) { REQUIRE(a[i] >= 0 && a[i] < 8); cnt[a[i]]++; }
    for (int e = 0; e < 8; e++) CHECK(cnt[e] > 80 && cnt[e] < 170);   /* 125 ± 4σ */
}
