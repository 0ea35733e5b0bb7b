/* test_sampler.c — the sampler: each step of the chain against hand-computed cases, the
 * chain order of llama.cpp, greedy = argmax, seed reproducibility, and a chi-square
 * check that temperature sampling draws from softmax(logits / T). */
#include "test.h"

#include "moe.h"
#include "model/sampler.h"

#include <stdlib.h>

static moe_cand_array mk(moe_cand *buf, const float *logits, size_t n) {
    for (size_t i = 0; i < n; i++) buf[i] = (moe_cand){(int32_t)i, logits[i], 0};
    return (moe_cand_array){buf, n, false};
}

static bool has_id(const moe_cand_array *c, int32_t id) {
    for (size_t i = 0; i < c->size; i++)
        if (c->data[i].id == id) return true;
    return false;
}

TEST(sampler_defaults_match_llama_cpp) {
    /* common_params_sampling: temp 0.80, top_k 40, top_p 0.95, min_p 0.05,
     * penalty_last_n 64, penalty_repeat 1.00, freq 0, present 0, seed LLAMA_DEFAULT_SEED. */
    moe_sampler_params p = moe_sampler_default_params();
    CHECK_NEAR(p.temp, 0.80, 1e-7);
    CHECK_EQ_INT(p.top_k, 40);
    CHECK_NEAR(p.top_p, 0.95, 1e-7);
    CHECK_NEAR(p.min_p, 0.05, 1e-7);
    CHECK_EQ_INT(p.penalty_last_n, 64);
    CHECK_NEAR(p.penalty_repeat, 1.0, 0);
    CHECK_NEAR(p.penalty_freq, 0.0, 0);
    CHECK_NEAR(p.penalty_present, 0.0, 0);
    CHECK(p.seed == 0xFFFFFFFFu);
}

TEST(sampler_top_k) {
    moe_cand buf[8];
    const float l[5] = {1, 5, 3, 5, 2};
    moe_cand_array c = mk(buf, l, 5);
    sampler_top_k(&c, 2);
    REQUIRE(c.size == 2);
    /* the tie between ids 1 and 3 (both 5) orders the lower id first */
    CHECK_EQ_INT(c.data[0].id, 1);
    CHECK_EQ_INT(c.data[1].id, 3);
    c = mk(buf, l, 5);
    sampler_top_k(&c, 0);  /* off */
    CHECK_EQ_INT(c.size, 5);
    CHECK_EQ_INT(c.data[0].id, 0);
    c = mk(buf, l, 5);
    sampler_top_k(&c, 99);  /* more than there are: all, sorted */
    REQUIRE(c.size == 5);
    const int32_t want[5] = {1, 3, 2, 4, 0};
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(c.data[i].id, want[i]);

    /* quickselect path on a larger array with many ties agrees with a full sort */
    enum { N = 3000, K = 40 };
    static moe_cand a[N], b[N];
    srand(7);
    for (int i = 0; i < N; i++) a[i] = b[i] = (moe_cand){i, (float)(rand() % 50), 0};
    moe_cand_array ca = {a, N, false}, cb = {b, N, false};
    sampler_top_k(&ca, K);
    sampler_sort(&cb);
    REQUIRE(ca.size == K);
    for (int i = 0; i < K; i++) CHECK_EQ_INT(ca.data[i].id, cb.data[i].id);
}

TEST(sampler_top_p) {
    /* probabilities 0.5, 0.3, 0.15, 0.05, given shuffled */
    moe_cand buf[4];
    const float l[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    moe_cand_array c = mk(buf, l, 4);
    sampler_top_p(&c, 0.75f, 0);  /* 0.5 < 0.75, 0.8 >= 0.75: the two best */
    REQUIRE(c.size == 2);
    CHECK_EQ_INT(c.data[0].id, 1);
    CHECK_EQ_INT(c.data[1].id, 3);
    c = mk(buf, l, 4);
    sampler_top_p(&c, 0.85f, 0);  /* 0.8 < 0.85 <= 0.95 */
    CHECK_EQ_INT(c.size, 3);
    CHECK(!has_id(&c, 2));
    c = mk(buf, l, 4);
    sampler_top_p(&c, 0.45f, 0);  /* the first alone already has 0.5 */
    CHECK_EQ_INT(c.size, 1);
    CHECK_EQ_INT(c.data[0].id, 1);
    c = mk(buf, l, 4);
    sampler_top_p(&c, 0.45f, 3);  /* min_keep wins */
    CHECK_EQ_INT(c.size, 3);
    c = mk(buf, l, 4);
    sampler_top_p(&c, 1.0f, 0);  /* off */
    CHECK_EQ_INT(c.size, 4);
}

TEST(sampler_min_p) {
    moe_cand buf[4];
    const float l[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    moe_cand_array c = mk(buf, l, 4);
    sampler_min_p(&c, 0.25f, 0);  /* threshold 0.125 relative to the max 0.5 */
    REQUIRE(c.size == 3);
    /* unsorted input: survivors keep their order */
    CHECK_EQ_INT(c.data[0].id, 0);
    CHECK_EQ_INT(c.data[1].id, 1);
    CHECK_EQ_INT(c.data[2].id, 3);
    c = mk(buf, l, 4);
    sampler_min_p(&c, 0.5f, 0);  /* threshold 0.25: 0.5 and 0.3 */
    CHECK_EQ_INT(c.size, 2);
    CHECK(has_id(&c, 1) && has_id(&c, 3));
    c = mk(buf, l, 4);
    sampler_min_p(&c, 0.9f, 2);  /* only the max passes; min_keep 2 keeps the two best */
    CHECK_EQ_INT(c.size, 2);
    CHECK(has_id(&c, 1) && has_id(&c, 3));
    c = mk(buf, l, 4);
    sampler_min_p(&c, 0.0f, 0);
    CHECK_EQ_INT(c.size, 4);
}

TEST(sampler_penalties) {
    moe_cand buf[4];
    const float l[4] = {2.0f, -2.0f, 1.0f, 0.5f};
    const int32_t win[4] = {0, 1, 0, 3};
    moe_cand_array c = mk(buf, l, 4);
    sampler_penalties(&c, win, 4, 2.0f, 0.1f, 0.5f);
    /* id0: seen twice, positive: 2/2 - (2*0.1 + 0.5) = 0.3
     * id1: once, negative: -2*2 - (0.1 + 0.5) = -4.6
     * id2: unseen: 1
     * id3: once: 0.5/2 - 0.6 = -0.35 */
    CHECK_NEAR(c.data[0].logit, 0.3, 1e-6);
    CHECK_NEAR(c.data[1].logit, -4.6, 1e-6);
    CHECK_NEAR(c.data[2].logit, 1.0, 0);
    CHECK_NEAR(c.data[3].logit, -0.35, 1e-6);
    /* all neutral: untouched */
    c = mk(buf, l, 4);
    sampler_penalties(&c, win, 4, 1.0f, 0.0f, 0.0f);
    for (int i = 0; i < 4; i++) CHECK_NEAR(c.data[i].logit, l[i], 0);
    /* ids beyond the vocabulary are ignored */
    const int32_t bad[2] = {7, -1};
    c = mk(buf, l, 4);
    sampler_penalties(&c, bad, 2, 2.0f, 0.0f, 0.0f);
    for (int i = 0; i < 4; i++) CHECK_NEAR(c.data[i].logit, l[i], 0);
}

TEST(sampler_temp_and_dist) {
    moe_cand buf[3];
    const float l[3] = {1, 2, 3};
    moe_cand_array c = mk(buf, l, 3);
    sampler_temp(&c, 0.5f);
    CHECK_NEAR(c.data[0].logit, 2, 0);
    CHECK_NEAR(c.data[2].logit, 6, 0);
    const float t[3] = {3, 1, 3};
    c = mk(buf, t, 3);
    sampler_temp(&c, 0.0f);  /* greedy: ties go to the lower id */
    REQUIRE(c.size == 1);
    CHECK_EQ_INT(c.data[0].id, 0);

    /* dist: probabilities 0.2, 0.3, 0.5; the first index whose running mass reaches u */
    const float d[3] = {logf(0.2f), logf(0.3f), logf(0.5f)};
    c = mk(buf, d, 3);
    CHECK_EQ_INT(sampler_dist(&c, 0.1), 0);
    CHECK_NEAR(c.data[1].p, 0.3, 1e-6);
    c = mk(buf, d, 3);
    CHECK_EQ_INT(sampler_dist(&c, 0.25), 1);
    c = mk(buf, d, 3);
    CHECK_EQ_INT(sampler_dist(&c, 0.6), 2);
    c = mk(buf, d, 3);
    CHECK_EQ_INT(sampler_dist(&c, 0.0), 0);
    c = mk(buf, d, 3);
    CHECK_EQ_INT(sampler_dist(&c, 0.9999999), 2);
}

static moe_sampler *mk_sampler(float temp, int top_k, float top_p, float min_p, uint32_t seed) {
    moe_sampler_params p = moe_sampler_default_params();
    p.temp = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    return moe_sampler_init(&p);
}

TEST(sampler_greedy_is_argmax) {
    moe_sampler *s = mk_sampler(0.0f, 40, 0.95f, 0.05f, 1);
    REQUIRE(s);
    enum { V = 1000 };
    static float l[V];
    srand(3);
    for (int trial = 0; trial < 20; trial++) {
        int best = 0;
        for (int i = 0; i < V; i++) {
            l[i] = (float)rand() / (float)RAND_MAX * 20.0f - 10.0f;
            if (l[i] > l[best]) best = i;
        }
        CHECK_EQ_INT(moe_sampler_sample(s, l, V), best);
    }
    /* ties: the lower id */
    for (int i = 0; i < V; i++) l[i] = 0;
    l[500] = l[17] = l[900] = 4.0f;
    CHECK_EQ_INT(moe_sampler_sample(s, l, V), 17);
    /* negative temperature is greedy too, as in llama.cpp */
    moe_sampler *s2 = mk_sampler(-1.0f, 40, 0.95f, 0.05f, 1);
    CHECK_EQ_INT(moe_sampler_sample(s2, l, V), 17);
    /* NaN never wins; all-NaN is an error */
    l[3] = NAN;
    CHECK_EQ_INT(moe_sampler_sample(s, l, V), 17);
    for (int i = 0; i < V; i++) l[i] = NAN;
    CHECK_EQ_INT(moe_sampler_sample(s, l, V), -1);
    CHECK_STR_CONTAINS(moe_last_error(), "NaN");
    moe_sampler_free(s);
    moe_sampler_free(s2);
}

TEST(sampler_greedy_with_repeat_penalty) {
    moe_sampler_params p = moe_sampler_default_params();
    p.temp = 0;
    p.penalty_repeat = 2.0f;
    p.penalty_last_n = 2;
    moe_sampler *s = moe_sampler_init(&p);
    REQUIRE(s);
    const float l[3] = {3.0f, 2.0f, 1.9f};
    CHECK_EQ_INT(moe_sampler_sample(s, l, 3), 0);
    moe_sampler_accept(s, 0);  /* 3 -> 1.5: id 1 is best now */
    CHECK_EQ_INT(moe_sampler_sample(s, l, 3), 1);
    moe_sampler_accept(s, 1);  /* window {0, 1}: 1.5, 1.0, 1.9 */
    CHECK_EQ_INT(moe_sampler_sample(s, l, 3), 2);
    moe_sampler_accept(s, 2);  /* window {1, 2}: id 0 left the window */
    CHECK_EQ_INT(moe_sampler_sample(s, l, 3), 0);
    moe_sampler_reset(s);
    CHECK_EQ_INT(moe_sampler_sample(s, l, 3), 0);
    moe_sampler_free(s);
}

TEST(sampler_chain_order) {
    enum { DRAWS = 2000 };
    /* penalties before top-k: id 0 (3.0) is penalised to 1.5, so top-k 1 keeps id 1 */
    moe_sampler_params p = moe_sampler_default_params();
    p.seed = 5;
    p.top_k = 1;
    p.penalty_repeat = 2.0f;
    moe_sampler *s = moe_sampler_init(&p);
    REQUIRE(s);
    moe_sampler_accept(s, 0);
    const float a[3] = {3.0f, 2.9f, 0.0f};
    for (int i = 0; i < 50; i++) CHECK_EQ_INT(moe_sampler_sample(s, a, 3), 1);
    moe_sampler_free(s);

    /* top-p before temperature: softmax(2,1,0) = .665,.245,.090 so top-p 0.6 keeps id 0
     * alone; with the temperature (2) first it would keep two (0.506 < 0.6). */
    s = mk_sampler(2.0f, 0, 0.6f, 0.0f, 9);
    REQUIRE(s);
    const float b[3] = {2, 1, 0};
    int other = 0;
    for (int i = 0; i < DRAWS; i++) other += moe_sampler_sample(s, b, 3) != 0;
    CHECK_EQ_INT(other, 0);
    moe_sampler_free(s);

    /* min-p before temperature: e^-1 = 0.37 < 0.5 drops id 1; after T=4, e^-0.25 = 0.78 */
    s = mk_sampler(4.0f, 0, 1.0f, 0.5f, 9);
    REQUIRE(s);
    const float c[2] = {0, -1};
    other = 0;
    for (int i = 0; i < DRAWS; i++) other += moe_sampler_sample(s, c, 2) != 0;
    CHECK_EQ_INT(other, 0);
    moe_sampler_free(s);

    /* top-k before top-p: after top-k 2 of (0, 0, 0, 0) each keeps 0.5, so top-p 0.4
     * keeps one; top-p over all four would need two (0.25 + 0.25). */
    s = mk_sampler(1.0f, 2, 0.4f, 0.0f, 9);
    REQUIRE(s);
    const float d[4] = {0, 0, 0, 0};
    other = 0;
    for (int i = 0; i < DRAWS; i++) other += moe_sampler_sample(s, d, 4) != 0;
    CHECK_EQ_INT(other, 0);
    moe_sampler_free(s);
}

TEST(sampler_seed_reproducible) {
    enum { V = 300, N = 200 };
    static float l[V];
    srand(11);
    for (int i = 0; i < V; i++) l[i] = (float)rand() / (float)RAND_MAX * 4.0f;
    int32_t x[N], y[N], z[N];
    moe_sampler *a = mk_sampler(1.0f, 0, 1.0f, 0.0f, 42);
    moe_sampler *b = mk_sampler(1.0f, 0, 1.0f, 0.0f, 42);
    moe_sampler *c = mk_sampler(1.0f, 0, 1.0f, 0.0f, 43);
    REQUIRE(a && b && c);
    CHECK_EQ_INT(moe_sampler_seed(a), 42);
    for (int i = 0; i < N; i++) {
        x[i] = moe_sampler_sample(a, l, V);
        y[i] = moe_sampler_sample(b, l, V);
        z[i] = moe_sampler_sample(c, l, V);
    }
    CHECK(memcmp(x, y, sizeof x) == 0);
    CHECK(memcmp(x, z, sizeof x) != 0);
    /* reset restarts the sequence */
    moe_sampler_reset(a);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(moe_sampler_sample(a, l, V), x[i]);
    /* a random seed is drawn and reported, and reproduces when given back */
    moe_sampler *r = mk_sampler(1.0f, 0, 1.0f, 0.0f, MOE_SEED_RANDOM);
    REQUIRE(r);
    CHECK(moe_sampler_seed(r) != MOE_SEED_RANDOM);
    moe_sampler *r2 = mk_sampler(1.0f, 0, 1.0f, 0.0f, moe_sampler_seed(r));
    for (int i = 0; i < 50; i++) CHECK_EQ_INT(moe_sampler_sample(r, l, V), moe_sampler_sample(r2, l, V));
    moe_sampler_free(a);
    moe_sampler_free(b);
    moe_sampler_free(c);
    moe_sampler_free(r);
    moe_sampler_free(r2);
}

TEST(sampler_temperature_frequencies) {
    /* Frequencies of 200k draws at T = 0.7 against softmax(logits / T) computed here in
     * double: Pearson's chi-square with 5 degrees of freedom. The 1e-6 quantile is ~35;
     * a wrong temperature (e.g. T applied twice) gives thousands. */
    enum { V = 6, DRAWS = 200000 };
    const float l[V] = {1.0f, 0.5f, 0.0f, -0.3f, 1.2f, -1.0f};
    const double T = 0.7;
    double ref[V], mx = -1e9, sum = 0;
    for (int i = 0; i < V; i++) mx = l[i] / T > mx ? l[i] / T : mx;
    for (int i = 0; i < V; i++) sum += ref[i] = exp(l[i] / T - mx);
    for (int i = 0; i < V; i++) ref[i] /= sum;
    moe_sampler *s = mk_sampler((float)T, 0, 1.0f, 0.0f, 1234);
    REQUIRE(s);
    long cnt[V] = {0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t t = moe_sampler_sample(s, l, V);
        REQUIRE(t >= 0 && t < V);
        cnt[t]++;
    }
    double chi2 = 0;
    for (int i = 0; i < V; i++) {
        double e = ref[i] * DRAWS;
        chi2 += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    CHECK_MSG(chi2 < 35.0, "chi-square %.2f over 5 dof: frequencies do not follow softmax(l/T)", chi2);
    moe_sampler_free(s);
}

TEST(sampler_rejects_bad_params) {
    moe_sampler_params p = moe_sampler_default_params();
    p.temp = NAN;
    CHECK(moe_sampler_init(&p) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "NaN");
    p = moe_sampler_default_params();
    p.penalty_repeat = 0;
    CHECK(moe_sampler_init(&p) == NULL);
    p = moe_sampler_default_params();
    p.penalty_last_n = -1;
    CHECK(moe_sampler_init(&p) == NULL);
    moe_sampler *s = moe_sampler_init(NULL);  /* NULL: defaults */
    REQUIRE(s);
    CHECK_EQ_INT(moe_sampler_sample(s, NULL, 10), -1);
    moe_sampler_free(s);
}
