/* test_router_assign.c — BASE balanced assignment (src/moe/assign.c): the exact solver
 * against brute force and against an independent Hungarian algorithm, fairseq's auction
 * against its ε-optimality bound, and the solver's speed at the sizes training uses. */
#include "test.h"

#include <stdlib.h>

#include "core/common.h"
#include "moe/assign.h"

static uint64_t g_s = 0x243F6A8885A308D3ull;
static double urand(void) {
    g_s ^= g_s << 13; g_s ^= g_s >> 7; g_s ^= g_s << 17;
    return (double)(g_s >> 11) / 9007199254740992.0;
}

static bool valid(const int32_t *a, int64_t T, int E, int64_t cap) {
    int64_t cnt[64] = {0};
    for (int64_t t = 0; t < T; t++) {
        if (a[t] < 0 || a[t] >= E) return false;
        if (++cnt[a[t]] > cap) return false;
    }
    return true;
}

/* Best total over all E^T assignments with ≤ cap per expert. */
static double brute(const double *s, int T, int E, int cap) {
    int a[12] = {0}, cnt[8];
    double best = -INFINITY;
    for (;;) {
        memset(cnt, 0, sizeof cnt);
        bool ok = true;
        double tot = 0;
        for (int t = 0; t < T && ok; t++) {
            ok = ++cnt[a[t]] <= cap;
            tot += s[t * E + a[t]];
        }
        if (ok && tot > best) best = tot;
        int i = 0;
        while (i < T && ++a[i] == E) a[i++] = 0;
        if (i == T) break;
    }
    return best;
}

/* Independent reference: the O(n²m) Hungarian algorithm (potentials, Kuhn–Munkres as in
 * e-maxx) on the expanded T × (E·cap) matrix of expert slots, minimising −score. */
static double hungarian(const double *s, int T, int E, int cap) {
    const int n = T, m = E * cap;
    double *u = calloc(n + 1, sizeof(double)), *v = calloc(m + 1, sizeof(double)), *minv = malloc((m + 1) * sizeof(double));
    int *p = calloc(m + 1, sizeof(int)), *way = calloc(m + 1, sizeof(int));
    bool *used = malloc(m + 1);
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= m; j++) { minv[j] = INFINITY; used[j] = false; }
        do {
            used[j0] = true;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int j = 1; j <= m; j++)
                if (!used[j]) {
                    double cur = -s[(i0 - 1) * E + (j - 1) / cap] - u[i0] - v[j];
                    if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                    if (minv[j] < delta) { delta = minv[j]; j1 = j; }
                }
            for (int j = 0; j <= m; j++)
                if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                else minv[j] -= delta;
            j0 = j1;
        } while (p[j0] != 0);
        do { int j1 = way[j0]; p[j0] = p[j1]; j0 = j1; } while (j0);
    }
    double tot = 0;
    for (int j = 1; j <= m; j++)
        if (p[j]) tot += s[(p[j] - 1) * E + (j - 1) / cap];
    free(u); free(v); free(minv); free(p); free(way); free(used);
    return tot;
}

TEST(assign_balanced_vs_brute_force) {
    int32_t a[12];
    double s[12 * 4];
    for (int trial = 0; trial < 200; trial++) {
        int E = 2 + trial % 3, T = 1 + (trial / 3) % 8;   /* up to 4^8 = 65536 assignments */
        int cap = (T + E - 1) / E;
        for (int i = 0; i < T * E; i++) s[i] = trial % 5 == 0 ? (double)(int)(urand() * 4) : urand() * 4 - 2;
        REQUIRE(moe_assign_balanced(s, T, E, cap, a) == MOE_OK);
        CHECK_MSG(valid(a, T, E, cap), "trial %d: capacity violated", trial);
        double got = moe_assign_total(s, T, E, a), want = brute(s, T, E, cap);
        CHECK_MSG(fabs(got - want) < 1e-12, "trial %d (T=%d E=%d): total %.15g, optimum %.15g", trial, T, E, got, want);
    }
    /* larger capacity than ⌈T/E⌉ (the solver's general contract) */
    for (int i = 0; i < 6 * 3; i++) s[i] = urand();
    REQUIRE(moe_assign_balanced(s, 6, 3, 4, a) == MOE_OK);
    CHECK_NEAR(moe_assign_total(s, 6, 3, a), brute(s, 6, 3, 4), 1e-12);
    /* refused when the tokens cannot fit */
    CHECK(moe_assign_balanced(s, 6, 3, 1, a) == MOE_ERR_INVALID);
}

TEST(assign_balanced_vs_hungarian) {
    const int sizes[][2] = { { 40, 4 }, { 64, 8 }, { 37, 5 }, { 100, 3 }, { 30, 16 } };
    for (size_t c = 0; c < MOE_ARRAY_LEN(sizes); c++) {
        int T = sizes[c][0], E = sizes[c][1], cap = (T + E - 1) / E;
        double *s = malloc(sizeof(double) * T * E);
        int32_t *a = malloc(sizeof(int32_t) * T);
        /* correlated preferences (a popular expert) make balancing bind */
        for (int t = 0; t < T; t++)
            for (int e = 0; e < E; e++) s[t * E + e] = urand() + (e == 0 ? 1.5 : 0) + 0.3 * e / E;
        REQUIRE(moe_assign_balanced(s, T, E, cap, a) == MOE_OK);
        CHECK(valid(a, T, E, cap));
        double got = moe_assign_total(s, T, E, a), want = hungarian(s, T, E, cap);
        CHECK_MSG(fabs(got - want) < 1e-9, "T=%d E=%d: total %.15g, Hungarian %.15g", T, E, got, want);
        free(s);
        free(a);
    }
}

/* fairseq's auction: a valid balanced assignment within T·ε of the optimum (the auction
 * algorithm's ε-complementary-slackness bound, Bertsekas 1988) while it is in its
 * bidding phase; ε = max((max − min)/50, 1e-4). */
TEST(assign_auction_eps_optimal) {
    int over = 0;
    for (int trial = 0; trial < 40; trial++) {
        int E = 2 + trial % 4, T = E * (2 + trial % 5);   /* divisible, as fairseq requires */
        int cap = T / E;
        double *s = malloc(sizeof(double) * T * E), mx = -INFINITY, mn = INFINITY;
        int32_t *a = malloc(sizeof(int32_t) * T);
        for (int i = 0; i < T * E; i++) {
            s[i] = urand() * 2 - 1;
            mx = fmax(mx, s[i]);
            mn = fmin(mn, s[i]);
        }
        int rounds = 0;
        REQUIRE(moe_assign_auction(s, T, E, a, &rounds) == MOE_OK);
        CHECK_MSG(valid(a, T, E, cap), "trial %d: auction broke the capacity", trial);
        double eps = fmax((mx - mn) / 50, 1e-4), got = moe_assign_total(s, T, E, a), opt = hungarian(s, T, E, cap);
        CHECK(got <= opt + 1e-12);
        if (rounds <= 100) CHECK_MSG(got >= opt - T * eps - 1e-12, "trial %d: auction %.9g < optimum %.9g − Tε (%g)", trial, got, opt, T * eps);
        else over++;
        free(s);
        free(a);
    }
    CHECK_MSG(over < 10, "%d of 40 auctions left the bidding phase", over);
}

/* Speed at training sizes: T = 4096 tokens, E = 64 experts, skewed preferences. The
 * bound is loose (2 CPU seconds on a shared core); the measured time is printed. */
TEST(assign_balanced_speed) {
    const int T = 4096, E = 64;
    double *s = malloc(sizeof(double) * T * E);
    int32_t *a = malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) s[t * E + e] = urand() + (e < 4 ? 1.0 : 0.0);
    double t0 = moe_time_s();
    REQUIRE(moe_assign_balanced(s, T, E, T / E, a) == MOE_OK);
    double dt = moe_time_s() - t0;
    CHECK(valid(a, T, E, T / E));
    fprintf(stderr, "  balanced assignment T=%d E=%d: %.3f s\n", T, E, dt);
    CHECK_MSG(dt < 2.0, "balanced assignment took %.2f s", dt);
    /* greedy would overload experts 0-3; the optimum beats every feasible greedy repair */
    int32_t *g = malloc(sizeof(int32_t) * T);
    moe_assign_greedy(s, T, E, g);
    CHECK(moe_assign_total(s, T, E, g) >= moe_assign_total(s, T, E, a));
    free(g);
    free(s);
    free(a);
}
